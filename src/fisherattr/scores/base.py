"""The one small interface every score-model backend keeps.

All backends speak the variance-preserving, log-SNR parametrisation (METHODS.md
1.3): for an image ``x`` in diffusion space [-1, 1] and log-SNR ``lam``,
``z = sqrt(sigmoid(lam)) * x + sqrt(sigmoid(-lam)) * eps`` and the backend
predicts ``eps``. VP time ``t`` maps to ``lam(t)``; a VE level ``sigma`` maps to
``lam = -2 log(sigma)`` with ``z = (x + sigma*eps) / sqrt(1 + sigma^2)``, so a
score network's output converts as ``eps_hat = -sigma * score``. The schedules in
:mod:`fisherattr.sde` do these conversions once.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Optional, Tuple

import torch
import torch.nn as nn

from ..errors import UsageError

#: How far (in log-SNR) below a model's trained minimum a method may still ask for
#: levels. Backends clamp their level input to the trained range, and the information
#: a feature of variance ``v`` carries below log-SNR ``lo`` is at most ``v * e^lo / 2``
#: nats (eps-MMSE <= SNR * v), so for the usual ``lo ~ -10`` the neglected part is below
#: 3e-5 nats per feature. This lets the standard VP schedule (``lam(1) = -10.05``)
#: use a denoiser trained on [-10, 10]. The clean end gets no slack.
NOISY_END_SLACK = 0.5


class ScoreModel(nn.Module, ABC):
    """A frozen eps-predictor ``eps_hat(z, log_snr)``.

    Attributes:
        accepts_level_map: True if ``log_snr`` may be a per-feature map ``[B,C,H,W]``
            (else only one level per image, ``[B]``).
        channels: image channels served.
        resolution: ``(H, W)`` the model needs, or None for any size.
        log_snr_range: the log-SNR range the model was trained on (or is exact on).
    """

    accepts_level_map: bool = False
    channels: int = 3
    resolution: Optional[Tuple[int, int]] = None
    log_snr_range: Tuple[float, float] = (float("-inf"), float("inf"))

    @abstractmethod
    def predict_eps(self, z: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
        """Predict the noise in ``z`` ([B,C,H,W], VP form) at ``log_snr`` ([B] or [B,C,H,W])."""

    def forward(self, z: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
        return self.predict_eps(z, log_snr)

    def expected_eps_error(self, x: torch.Tensor, log_snr: torch.Tensor) -> Optional[torch.Tensor]:
        """Exact ``E_eps[(eps_hat(z) - eps)^2]`` per feature for ``z = a x + s eps``, or None.

        ``x``: clean images ``[B,C,H,W]`` in diffusion space; ``log_snr``: one level per
        image. Models that can compute the noise average in closed form (the analytic
        Gaussian prior) return it, and the information curve then needs no noise draws;
        learned models return None and are averaged over draws.
        """
        return None

    def check_serves(self, images: torch.Tensor, level_map: bool = False,
                     log_snr_range: Optional[Tuple[float, float]] = None) -> None:
        """Raise :class:`UsageError` if this model cannot serve ``images`` as asked."""
        name = type(self).__name__
        if images.shape[1] != self.channels:
            raise UsageError(f"score model {name} serves {self.channels}-channel images, got {images.shape[1]}")
        if self.resolution is not None and tuple(images.shape[-2:]) != tuple(self.resolution):
            raise UsageError(f"score model {name} needs {self.resolution[0]}x{self.resolution[1]} images, "
                             f"got {images.shape[-2]}x{images.shape[-1]}")
        if level_map and not self.accepts_level_map:
            raise UsageError(f"score model {name} takes one noise level per image; "
                             "use integration='grid' or a noise-map denoiser")
        if log_snr_range is not None:
            lo, hi = self.log_snr_range
            if log_snr_range[0] < lo - NOISY_END_SLACK - 1e-6 or log_snr_range[1] > hi + 1e-6:
                raise UsageError(f"log-SNR range [{log_snr_range[0]:.2f}, {log_snr_range[1]:.2f}] is outside "
                                 f"what score model {name} was trained on [{lo:.2f}, {hi:.2f}] "
                                 f"(the noisy end may extend {NOISY_END_SLACK} below it)")
