"""fisherattr: sharp pixel-level attributions for image classifiers, and the metrics to judge them.

Example:
    >>> import fisherattr
    >>> model = fisherattr.load_classifier()                 # offline EfficientNet-Lite0  # doctest: +SKIP
    >>> x = fisherattr.load_image("chelsea")                 # [1,3,224,224] in [0,1]      # doctest: +SKIP
    >>> fda = fisherattr.get_method("fda", model)                                          # doctest: +SKIP
    >>> maps = fda.attribute(x)                              # [1,3,224,224]               # doctest: +SKIP
"""
from importlib import import_module
from typing import Any

from .errors import FisherAttrError, InputError, UsageError

__version__ = "0.1.0"

# Public names -> the submodule that defines them. They are imported on first use
# (PEP 562), so that `import fisherattr` and `fisherattr --help` do not load torch,
# captum and scipy (seconds) before they are needed.
_LAZY = {
    "list_samples": ".data", "load_image": ".data",
    "AttributionMethod": ".methods", "get_method": ".methods", "list_methods": ".methods",
    "Classifier": ".models", "load_classifier": ".models", "save_classifier": ".models",
    "show_attribution": ".viz",
    "quantus_explain": ".quantus_compat",
}

__all__ = ["AttributionMethod", "Classifier", "FisherAttrError", "InputError", "UsageError", "get_method",
           "list_methods", "list_samples", "load_classifier", "load_image", "quantus_explain", "save_classifier",
           "show_attribution", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY))
