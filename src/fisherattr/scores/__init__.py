"""Score-model backends behind one interface (:class:`ScoreModel`)."""
from .base import ScoreModel
from .gaussian import DiagonalGaussian, GaussianPrior

__all__ = ["ScoreModel", "DiagonalGaussian", "GaussianPrior"]
