"""Noise schedules in continuous time ``t in [0, 1]`` (METHODS.md 1.1).

Every schedule describes a Gaussian kernel ``x_t = alpha(t) * x_0 + sigma(t) * eps``
in diffusion space ([-1, 1] images) and knows

- ``alpha(t)``, ``sigma(t)``: kernel mean factor and standard deviation;
- ``g2(t)``: the SDE's diffusion coefficient squared (never the kernel std);
- ``log_snr(t) = log(alpha^2 / sigma^2)`` and its inverse ``t_of_log_snr``;
- ``dlog_snr_dt(t) = -g2 / sigma^2`` (the same for every schedule here);
- ``perturb(x, t, eps)``: the kernel, with ``t`` a scalar, a ``[B]`` tensor or a
  per-feature map;
- ``to_vp(x_t, t) -> (z, log_snr)``: the variance-preserving input that
  :meth:`fisherattr.scores.ScoreModel.predict_eps` expects, with the same ``eps``.

Example:
    >>> s = VPSchedule()
    >>> t = torch.tensor([0.1, 0.5])
    >>> torch.allclose(s.t_of_log_snr(s.log_snr(t)), t, atol=1e-5)
    True
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Tuple, Union

import torch
import torch.nn.functional as F

from ..errors import UsageError

TensorLike = Union[float, torch.Tensor]


def _as_tensor(t: TensorLike, like: torch.Tensor | None = None) -> torch.Tensor:
    if isinstance(t, torch.Tensor):
        return t if t.is_floating_point() else t.float()
    kw = {"dtype": like.dtype, "device": like.device} if like is not None else {"dtype": torch.float32}
    return torch.tensor(float(t), **kw)


def _broadcast(level: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A scalar, ``[B]`` or ``[B,C,H,W]`` level, shaped to broadcast against ``x``."""
    level = level.to(device=x.device, dtype=x.dtype)
    if level.dim() == 1 and x.dim() > 1 and level.shape[0] == x.shape[0]:
        return level.view(-1, *([1] * (x.dim() - 1)))
    return level


class Schedule(ABC):
    """A Gaussian noising kernel in continuous time; see the module docstring."""

    name: str = "schedule"
    #: smallest time used by methods (t = 0 is noise-free, log-SNR = +inf)
    t_min: float = 1e-3

    @abstractmethod
    def alpha(self, t: TensorLike) -> torch.Tensor:
        """Kernel mean factor ``alpha(t)``."""

    @abstractmethod
    def sigma(self, t: TensorLike) -> torch.Tensor:
        """Kernel standard deviation ``sigma(t)``."""

    @abstractmethod
    def g2(self, t: TensorLike) -> torch.Tensor:
        """Diffusion coefficient squared ``g(t)^2``."""

    @abstractmethod
    def log_snr(self, t: TensorLike) -> torch.Tensor:
        """``log(alpha^2 / sigma^2)`` at ``t``."""

    @abstractmethod
    def t_of_log_snr(self, lam: TensorLike) -> torch.Tensor:
        """Inverse of :meth:`log_snr`."""

    def dlog_snr_dt(self, t: TensorLike) -> torch.Tensor:
        """``d log_snr / dt = -g2(t) / sigma(t)^2``."""
        return -self.g2(t) / self.sigma(t) ** 2

    def perturb(self, x: torch.Tensor, t: TensorLike, eps: torch.Tensor) -> torch.Tensor:
        """``alpha(t) * x + sigma(t) * eps`` (``t`` scalar, ``[B]`` or per feature)."""
        t = _broadcast(_as_tensor(t, x), x)
        return self.alpha(t) * x + self.sigma(t) * eps

    def to_vp(self, x_t: torch.Tensor, t: TensorLike) -> Tuple[torch.Tensor, torch.Tensor]:
        """VP-form input ``z = x_t / sqrt(alpha^2 + sigma^2)`` and its log-SNR (same shape as ``t``)."""
        t = _as_tensor(t, x_t)
        tb = _broadcast(t, x_t)
        scale = torch.sqrt(self.alpha(tb) ** 2 + self.sigma(tb) ** 2)
        return x_t / scale, self.log_snr(t)

    def log_snr_range(self, t_min: float | None = None) -> Tuple[float, float]:
        """``(log_snr(1), log_snr(t_min))``: the log-SNR span methods use."""
        lo = float(self.log_snr(torch.tensor(1.0, dtype=torch.float64)))
        hi = float(self.log_snr(torch.tensor(self.t_min if t_min is None else t_min, dtype=torch.float64)))
        return lo, hi

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class VPSchedule(Schedule):
    """Variance-preserving SDE with linear ``beta(t) = b_min + t (b_max - b_min)``.

    Example:
        >>> VPSchedule().g2(torch.tensor(1.0))
        tensor(20.)
    """

    name = "vp"

    def __init__(self, b_min: float = 0.1, b_max: float = 20.0) -> None:
        if not (0 < b_min < b_max):
            raise UsageError(f"VP schedule needs 0 < b_min < b_max, got b_min={b_min}, b_max={b_max}")
        self.b_min = float(b_min)
        self.b_max = float(b_max)

    def big_b(self, t: TensorLike) -> torch.Tensor:
        t = _as_tensor(t)
        return self.b_min * t + 0.5 * (self.b_max - self.b_min) * t * t

    def alpha(self, t: TensorLike) -> torch.Tensor:
        return torch.exp(-0.5 * self.big_b(t))

    def sigma(self, t: TensorLike) -> torch.Tensor:
        return torch.sqrt(-torch.expm1(-self.big_b(t)))

    def g2(self, t: TensorLike) -> torch.Tensor:
        t = _as_tensor(t)
        return self.b_min + t * (self.b_max - self.b_min)

    def log_snr(self, t: TensorLike) -> torch.Tensor:
        return -torch.log(torch.expm1(self.big_b(t)))

    def t_of_log_snr(self, lam: TensorLike) -> torch.Tensor:
        lam = _as_tensor(lam)
        big_b = F.softplus(-lam)  # B = log(1 + e^-lam)
        d = self.b_max - self.b_min
        return 2.0 * big_b / (self.b_min + torch.sqrt(self.b_min ** 2 + 2.0 * d * big_b))


class VESchedule(Schedule):
    """Variance-exploding SDE: ``sigma(t) = sigma_min (sigma_max / sigma_min)^t``, ``alpha = 1``.

    Example:
        >>> float(VESchedule().sigma(torch.tensor(1.0)))
        50.0
    """

    name = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0) -> None:
        if not (0 < sigma_min < sigma_max):
            raise UsageError(f"VE schedule needs 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)

    @property
    def _log_ratio(self) -> float:
        return math.log(self.sigma_max / self.sigma_min)

    def alpha(self, t: TensorLike) -> torch.Tensor:
        return torch.ones_like(_as_tensor(t))

    def sigma(self, t: TensorLike) -> torch.Tensor:
        return self.sigma_min * torch.exp(self._log_ratio * _as_tensor(t))

    def g2(self, t: TensorLike) -> torch.Tensor:
        return 2.0 * self._log_ratio * self.sigma(t) ** 2

    def log_snr(self, t: TensorLike) -> torch.Tensor:
        return -2.0 * torch.log(self.sigma(t))

    def t_of_log_snr(self, lam: TensorLike) -> torch.Tensor:
        lam = _as_tensor(lam)
        return (-0.5 * lam - math.log(self.sigma_min)) / self._log_ratio


class DDPMSchedule(Schedule):
    """Discrete DDPM (linear betas) in continuous time ``t = n / T``.

    ``log(alpha_bar)`` is interpolated linearly between the steps (so ``g2`` is
    piecewise constant); with ``T = 1000`` and betas 1e-4..0.02 it is
    :class:`VPSchedule` (0.1, 20) up to ``-log(1 - beta) - beta``: ``B(t)`` differs
    by less than 0.07 (at ``t = 1``, where ``alpha`` is 0.006 anyway).

    Example:
        >>> s = DDPMSchedule()
        >>> abs(float(s.alpha(torch.tensor(0.5))) - float(VPSchedule().alpha(torch.tensor(0.5)))) < 1e-3
        True
    """

    name = "ddpm"

    def __init__(self, num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> None:
        if int(num_steps) < 2 or not (0 < beta_start <= beta_end < 1):
            raise UsageError(f"DDPM schedule needs num_steps >= 2 and 0 < beta_start <= beta_end < 1, got "
                             f"{num_steps}, {beta_start}, {beta_end}")
        self.num_steps = int(num_steps)
        self.beta_start = float(beta_start)
        self.beta_end = float(beta_end)
        betas = torch.linspace(beta_start, beta_end, self.num_steps, dtype=torch.float64)
        # node n (t = n/T) holds -log alpha_bar after n steps; node 0 is the clean image
        self._big_b = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(-torch.log1p(-betas), 0)])

    def big_b(self, t: TensorLike) -> torch.Tensor:
        t = _as_tensor(t)
        table = self._big_b.to(device=t.device, dtype=t.dtype)
        pos = (t.clamp(0, 1) * self.num_steps)
        lo = pos.detach().floor().clamp(0, self.num_steps - 1).long()
        frac = pos - lo.to(t.dtype)
        return table[lo] + frac * (table[lo + 1] - table[lo])

    def alpha(self, t: TensorLike) -> torch.Tensor:
        return torch.exp(-0.5 * self.big_b(t))

    def sigma(self, t: TensorLike) -> torch.Tensor:
        return torch.sqrt(-torch.expm1(-self.big_b(t)))

    def g2(self, t: TensorLike) -> torch.Tensor:
        t = _as_tensor(t)
        table = self._big_b.to(device=t.device, dtype=t.dtype)
        lo = (t.detach().clamp(0, 1) * self.num_steps).floor().clamp(0, self.num_steps - 1).long()
        return (table[lo + 1] - table[lo]) * self.num_steps

    def log_snr(self, t: TensorLike) -> torch.Tensor:
        return -torch.log(torch.expm1(self.big_b(t)))

    def t_of_log_snr(self, lam: TensorLike) -> torch.Tensor:
        lam = _as_tensor(lam)
        target = F.softplus(-lam)
        table = self._big_b.to(device=lam.device, dtype=lam.dtype)
        idx = torch.searchsorted(table, target.detach().contiguous()).clamp(1, self.num_steps) - 1
        frac = (target - table[idx]) / (table[idx + 1] - table[idx])
        return (idx.to(lam.dtype) + frac) / self.num_steps


_SCHEDULES = {"vp": VPSchedule, "ve": VESchedule, "ddpm": DDPMSchedule}


def get_schedule(name: Union[str, Schedule], **kwargs) -> Schedule:
    """A schedule by name (``"vp"``, ``"ve"``, ``"ddpm"``); a :class:`Schedule` is returned as is."""
    if isinstance(name, Schedule):
        return name
    key = str(name).strip().lower()
    if key not in _SCHEDULES:
        raise UsageError(f"unknown sde {name!r}; choose one of {', '.join(_SCHEDULES)}")
    return _SCHEDULES[key](**kwargs)


def vp_perturb(x: torch.Tensor, log_snr: TensorLike, eps: torch.Tensor) -> torch.Tensor:
    """The log-SNR parametrisation ``sqrt(sigmoid(lam)) x + sqrt(sigmoid(-lam)) eps`` (METHODS.md 1.3).

    ``log_snr`` may be a scalar, a ``[B]`` tensor or a per-feature map.

    Example:
        >>> x = torch.zeros(1, 3, 2, 2); e = torch.ones_like(x)
        >>> float(vp_perturb(x, torch.tensor([0.0]), e)[0, 0, 0, 0])  # sqrt(1/2)
        0.7071067690849304
    """
    lam = _broadcast(_as_tensor(log_snr, x), x)
    return torch.sqrt(torch.sigmoid(lam)) * x + torch.sqrt(torch.sigmoid(-lam)) * eps
