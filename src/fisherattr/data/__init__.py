"""Image loading, shipped sample photos and data sets."""
from .images import DEFAULT_SAMPLES, RESIZE_RULES, image_name, list_samples, load_image

__all__ = ["DEFAULT_SAMPLES", "RESIZE_RULES", "image_name", "list_samples", "load_image"]
