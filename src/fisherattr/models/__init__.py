"""Classifier loading and the normalisation wrapper."""
from .classifier import Classifier, as_classifier, companion, imagenet_classes, normalized_zero
from .loading import DEFAULT_MODEL, TRUSTED_BUILDERS, available_models, load_classifier, save_classifier

__all__ = ["Classifier", "as_classifier", "companion", "imagenet_classes", "normalized_zero", "DEFAULT_MODEL",
           "TRUSTED_BUILDERS", "available_models", "load_classifier", "save_classifier"]
