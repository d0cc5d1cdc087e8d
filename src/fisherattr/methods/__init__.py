"""Attribution methods: one module per family, reached through the registry."""
from .base import AttributionMethod, check_images, resolve_target
from .registry import get_method, list_methods, register

__all__ = ["AttributionMethod", "check_images", "resolve_target", "get_method", "list_methods", "register"]
