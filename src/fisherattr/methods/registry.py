"""Name -> method class registry, and option validation.

Every method module registers its classes with :func:`register`; users reach
them through :func:`fisherattr.get_method` and :func:`fisherattr.list_methods`.
"""
from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable, Dict, List, Type

import torch.nn as nn

from ..errors import UsageError

_REGISTRY: Dict[str, type] = {}
_ALIASES: Dict[str, str] = {}

# Modules that register methods on import. Missing modules are skipped so that
# a partial install still lists what it has.
_METHOD_MODULES = (
    "fisherattr.methods.captum_baselines",
    "fisherattr.methods.paths",
    "fisherattr.methods.samp",
    "fisherattr.methods.fda",
    "fisherattr.methods.diffib",
    "fisherattr.methods.iba",
    "fisherattr.methods.input_iba",
    "fisherattr.methods.hsic",
    "fisherattr.methods.rise",
)
_loaded = False


def register(name: str, *aliases: str) -> Callable[[type], type]:
    """Class decorator: make a method available as ``get_method(name)``."""

    def deco(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise RuntimeError(f"method name {name!r} registered twice")
        _REGISTRY[name] = cls
        cls.method_name = name
        for a in aliases:
            _ALIASES[a] = name
        return cls

    return deco


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in _METHOD_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:  # a real missing dependency inside the module
                raise


def canonical_name(name: str) -> str:
    _load_all()
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise UsageError(
            f"unknown method {name!r}; available: {', '.join(list_methods())}"
        )
    return key


def list_methods() -> List[str]:
    """Names of all registered methods (aliases not included), sorted."""
    _load_all()
    return sorted(_REGISTRY)


def method_class(name: str) -> type:
    return _REGISTRY[canonical_name(name)]


def accepted_options(cls: type) -> Dict[str, inspect.Parameter]:
    """Keyword options of a method's constructor (excluding ``model``)."""
    sig = inspect.signature(cls.__init__)
    return {
        k: p
        for k, p in sig.parameters.items()
        if k not in ("self", "model") and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def get_method(name: str, model: nn.Module, **options: Any):
    """Build the attribution method ``name`` for ``model``.

    Unknown options raise :class:`UsageError` listing the accepted ones.

    Example:
        >>> import fisherattr
        >>> model = fisherattr.load_classifier("efficientnet_lite0")  # doctest: +SKIP
        >>> sal = fisherattr.get_method("saliency", model)           # doctest: +SKIP
        >>> maps = sal.attribute(images)                              # doctest: +SKIP
    """
    cls = method_class(name)
    accepted = accepted_options(cls)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise UsageError(
            f"method {cls.method_name!r} has no option {', '.join(map(repr, unknown))}; "
            f"accepted: {', '.join(sorted(accepted)) or '(none)'}"
        )
    from .base import check_finite_options

    check_finite_options(cls.method_name, options)  # NaN/inf is never a valid setting
    return cls(model, **options)
