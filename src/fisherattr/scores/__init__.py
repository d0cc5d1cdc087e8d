"""Score-model backends behind one interface (:class:`ScoreModel`)."""
from .base import ScoreModel

__all__ = ["ScoreModel"]
