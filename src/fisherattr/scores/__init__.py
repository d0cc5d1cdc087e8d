"""Score-model backends behind one interface (:class:`ScoreModel`)."""
from .base import ScoreModel
from .diffusers_backend import DiffusersVE, DiffusersVP, load_score_model
from .gaussian import DiagonalGaussian, GaussianPrior

__all__ = ["ScoreModel", "DiagonalGaussian", "DiffusersVE", "DiffusersVP", "GaussianPrior", "load_score_model"]
from .noise_map import NoiseMapDenoiser, load_noise_map_denoiser, train_noise_map_denoiser  # noqa: F401
