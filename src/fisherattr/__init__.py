"""fisherattr: sharp pixel-level attributions for image classifiers, and the metrics to judge them.

Example:
    >>> import fisherattr
    >>> model = fisherattr.load_classifier()                 # offline EfficientNet-Lite0  # doctest: +SKIP
    >>> x = fisherattr.load_image("chelsea")                 # [1,3,224,224] in [0,1]      # doctest: +SKIP
    >>> fda = fisherattr.get_method("fda", model)                                          # doctest: +SKIP
    >>> maps = fda.attribute(x)                              # [1,3,224,224]               # doctest: +SKIP
"""
from .data import list_samples, load_image
from .errors import FisherAttrError, InputError, UsageError
from .methods import AttributionMethod, get_method, list_methods
from .models import Classifier, load_classifier, save_classifier

__version__ = "0.1.0"
__all__ = ["AttributionMethod", "Classifier", "FisherAttrError", "InputError", "UsageError", "get_method",
           "list_methods", "list_samples", "load_classifier", "load_image", "save_classifier", "__version__"]
