"""DiffIB: diffusion models as an information bottleneck (METHODS.md 3).

Per feature ``i`` a log-SNR ``alpha_i = alpha_min + (alpha_max - alpha_min) * sigmoid(r_i)``
(``r`` the adapter's raw output: a small U-Net, per image or amortised); the image
is noised in diffusion space ``z = sqrt(sigmoid(alpha)) x + sqrt(sigmoid(-alpha)) eps``
and fed to the classifier; the loss is Algorithm 1's ``CE(f(z), y) + beta * mean(alpha)``.
The attribution is eq. (14), the information about ``x_i`` that survives at ``alpha_i``:
``A_i = 1/2 int_{alpha_min}^{alpha_i} mmse_eps_i(alpha) d alpha`` (nats), measured with
a frozen MMSE denoiser that was never trained on the explained image.

The bounded map (sigmoid) is needed because the penalty ``mean(alpha)`` is linear:
without a floor it would push unneeded features to ``-inf``. ``alpha_min`` is the
floor where ``mmse_eps`` has vanished (``mmse_eps ~ SNR * var``, 1e-5 at -10).

The optimisation never runs the denoiser (the penalty is ``mean(alpha)``); the
denoiser is used once, for the final map: ``pixelwise`` (quadrature over per-feature
maps, needs a noise-map denoiser) or ``grid`` (one level per image on a log-SNR grid,
any score model, then exact integration of the interpolated curve).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import torch
import torch.nn as nn

from ..errors import UsageError
from ..models import companion
from ..scores.base import ScoreModel
from ..sde import quadrature as quad
from ..sde.information import NoiseFn, mmse_curve, retained_grid, retained_pixelwise
from ..sde.schedules import vp_perturb
from .level_explainer import LevelMethod, check_finite, preset_default
from .level_strategy import LevelStrategy, State
from .registry import register

INTEGRATIONS = ("pixelwise", "grid")
#: Default quadrature nodes and noise draws per node of the final information (eq. 14) with a
#: noise-map denoiser. 8 x 2 instead of 12 x 4 (2026-12-01, dev images only): synthetic test
#: 1000-1047 EHR 0.953 both, held 0.979 both; dev photos camera, coins, clock DifAUC 0.337 against
#: 0.321, and 15% less wall time (docs/diffib.md).
PIXELWISE_NODES = 8
PIXELWISE_INFO_DRAWS = 2

DenoiserSpec = Union[None, str, os.PathLike, ScoreModel]


class DiffIBStrategy(LevelStrategy):
    """Levels = per-feature log-SNRs; perturbation = VP noising; information = eq. (14).

    Args:
        denoiser: frozen eps-predictor (:class:`ScoreModel`).
        integration: ``"pixelwise"`` (needs ``denoiser.accepts_level_map``) or ``"grid"``.
        alpha_min, alpha_max: the log-SNR interval the levels live in.
        nodes: quadrature nodes (pixelwise) or grid levels (grid, uniform in log-SNR).
        quadrature: pixelwise rule applied in log-SNR: ``"log-snr-gauss-legendre"`` or ``"log-snr"``
            (trapezoid, the paper's).
        info_draws: noise draws per node/level for the eps-MMSE estimate.
        batch_size: denoiser rows per call.
        noise: optional noise function ``(shape, generator) -> Tensor`` (default: standard normal).

    Example:
        >>> from fisherattr.scores import DiagonalGaussian
        >>> g = DiagonalGaussian(torch.zeros(3, 4, 4), torch.full((3, 4, 4), 0.25))
        >>> s = DiffIBStrategy(g, "pixelwise")
        >>> float(s.levels(torch.tensor(0.0)))   # the middle of [alpha_min, alpha_max]
        0.0
    """

    def __init__(self, denoiser: ScoreModel, integration: str = "pixelwise", alpha_min: float = -10.0,
                 alpha_max: float = 10.0, nodes: int = 12, quadrature: str = "log-snr-gauss-legendre",
                 info_draws: int = 4, batch_size: int = 16, init_value: float = 3.0,
                 noise: Optional[NoiseFn] = None) -> None:
        self.denoiser, self.integration = denoiser, integration
        self.alpha_min, self.alpha_max = float(alpha_min), float(alpha_max)
        self.nodes, self.quadrature, self.info_draws = int(nodes), quadrature, int(info_draws)
        self.batch_size, self.init_value = max(1, int(batch_size)), float(init_value)
        self.noise = noise

    def levels(self, raw: torch.Tensor) -> torch.Tensor:
        return self.alpha_min + (self.alpha_max - self.alpha_min) * torch.sigmoid(raw)

    def perturb(self, x_diff: torch.Tensor, levels: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return vp_perturb(x_diff, levels, eps)

    def level_penalty(self, levels: torch.Tensor) -> torch.Tensor:
        """Algorithm 1's regulariser: ``mean(alpha)`` per image."""
        return levels.flatten(1).mean(1)

    def grid(self, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The grid mode's log-SNR levels (uniform from ``alpha_min`` to ``alpha_max``)."""
        return torch.linspace(self.alpha_min, self.alpha_max, self.nodes, dtype=dtype, device=device)

    def prepare(self, images: torch.Tensor, generators: Sequence[torch.Generator]) -> State:
        if self.integration != "grid":
            return None
        curve = mmse_curve(self.denoiser, images * 2 - 1, self.grid(images.device, images.dtype),
                           draws=self.info_draws, generators=generators, batch_size=self.batch_size,
                           noise=self.noise)
        return {"curve": curve.transpose(0, 1).contiguous()}

    def information(self, levels: torch.Tensor, state: State, x_diff: torch.Tensor,
                    generators: Sequence[torch.Generator]) -> torch.Tensor:
        if self.integration == "grid":
            curve = state["curve"].transpose(0, 1)
            return retained_grid(curve, self.grid(curve.device, curve.dtype), levels, param="log_snr")
        gens = list(generators)
        step = max(1, self.batch_size // self.info_draws)
        out = []
        for i in range(0, x_diff.shape[0], step):  # memory bound: ~batch_size denoiser rows per node
            sl = slice(i, i + step)
            out.append(retained_pixelwise(self.denoiser, x_diff[sl], levels[sl], param="log_snr",
                                          quadrature_kind=self.quadrature, k=self.nodes, draws=self.info_draws,
                                          generators=gens[sl] if len(gens) == x_diff.shape[0] else gens,
                                          end=self.alpha_min, noise=self.noise))
        return torch.cat(out)

    def check(self, images: torch.Tensor) -> None:
        """Raise UsageError if the denoiser cannot serve ``images`` at these levels."""
        self.denoiser.check_serves(images, level_map=self.integration == "pixelwise",
                                   log_snr_range=(self.alpha_min, self.alpha_max))


def resolve_denoiser(spec: DenoiserSpec) -> ScoreModel:
    """``None`` -> the shipped photo denoiser (else the Gaussian prior); ``"gaussian"``; a ScoreModel; a folder."""
    from ..scores.gaussian import GaussianPrior
    from ..scores.noise_map import default_denoiser_path, load_noise_map_denoiser

    if isinstance(spec, ScoreModel):
        return spec
    if spec is None:
        path = default_denoiser_path()
        return load_noise_map_denoiser(path) if path is not None else GaussianPrior.default()
    if isinstance(spec, nn.Module):
        raise UsageError(f"denoiser must be a fisherattr ScoreModel, 'gaussian' or a folder; got {type(spec).__name__}")
    key = str(spec).strip()
    if key.lower() in ("gaussian", "gaussian-prior"):
        return GaussianPrior.default()
    p = Path(key)
    folder = p if p.is_dir() else p.parent
    cfg = folder / "config.json"
    if (folder / "model.safetensors").exists() and cfg.exists() and \
            "noise-map-denoiser" in cfg.read_text(encoding="utf-8"):
        return load_noise_map_denoiser(folder)
    if not p.exists():
        raise UsageError(f"denoiser {key!r}: no such folder (or use 'gaussian')")
    try:  # a diffusers model folder (scalar levels; grid integration)
        from ..scores.diffusers_backend import load_score_model
    except ImportError:
        raise UsageError(f"denoiser {key!r} is not a noise-map denoiser folder") from None
    return load_score_model(key)


@register("diffib", "diffusion-ib", "diffusion-information-bottleneck")
class DiffIB(LevelMethod):
    """DiffIB: diffusion information bottleneck, eq. (14) information per feature (nats).

    Learns a per-feature log-SNR ``alpha`` that keeps the prediction with as little
    signal as possible (``CE + beta * mean(alpha)``), then reports the information
    ``1/2 int_{alpha_min}^{alpha_i} mmse_eps_i`` each feature keeps at its level.

    Args:
        model: the classifier ([0,1] images in, logits out).
        denoiser: ``None`` (the shipped photo noise-map denoiser if present, pixelwise;
            else the Gaussian prior, grid), ``"gaussian"``, a :class:`ScoreModel`, or a folder.
        integration: ``"pixelwise"`` | ``"grid"`` (default: pixelwise if the denoiser takes
            level maps, else grid).
        nodes: pixelwise quadrature nodes (default :data:`PIXELWISE_NODES`, 8) or grid levels (default 41).
        quadrature: pixelwise rule in log-SNR: ``"log-snr-gauss-legendre"`` (default) or
            ``"log-snr"`` (trapezoid, the paper's).
        alpha_min, alpha_max: the log-SNR interval (default [-10, 10], the shipped
            denoiser's training range).
        info_draws: noise draws per node for the final eps-MMSE (default :data:`PIXELWISE_INFO_DRAWS`,
            2, pixelwise; 4 grid).
        beta: weight of ``mean(alpha)`` (default 0.05; see docs/diffib.md).
        mode, explainer, steps, lr, noise_draws, adapter, adapter_width, average, keep,
            verify_draws, verify_margin, aim_margin, memory_format, constraint, backtrack, nested: see
            :class:`~fisherattr.methods.level_explainer.LevelMethod`.

    Example:
        >>> dib = get_method("diffib", model, steps=40)    # doctest: +SKIP
        >>> maps = dib.attribute(images)                   # [B,3,H,W], nats per feature  # doctest: +SKIP
    """

    PRESET_VALUES = {
        "default": dict(beta=0.5, steps=100, lr=0.3, noise_draws=2, keep_prob=0.6, penalty="level",
                        smooth_sigma=1.0, adapter="direct", keep="feasible"),
        # Algorithm 1: CE + beta * mean(alpha) with a U-Net adapter and one fixed beta
        "paper": dict(beta=0.05, steps=60, lr=0.05, noise_draws=2, keep_prob=None, penalty="level",
                      smooth_sigma=0.0, adapter="unet", keep="last"),
    }

    def __init__(self, model: nn.Module, *, denoiser: DenoiserSpec = None, preset: str = "default",
                 beta: float = preset_default(0.5), mode: str = "per-image", explainer: Optional[str] = None,
                 integration: Optional[str] = None, nodes: Optional[int] = None,
                 quadrature: str = "log-snr-gauss-legendre", alpha_min: float = -10.0, alpha_max: float = 10.0,
                 steps: int = preset_default(100), lr: float = preset_default(0.3),
                 noise_draws: int = preset_default(2), keep_prob: Optional[float] = preset_default(0.6),
                 dual_lr: float = 0.1, penalty: str = preset_default("level"),
                 smooth_sigma: float = preset_default(1.0), share_channels: bool = False,
                 info_draws: Optional[int] = None,
                 adapter: str = preset_default("direct"), adapter_width: int = 16, seed: int = 0,
                 internal_batch_size: Optional[int] = None, progress: bool = False, average: float = 0.0,
                 keep: str = preset_default("feasible"), verify_draws: int = 16,
                 memory_format: str = "auto", constraint: str = "relative", backtrack: bool = False,
                 verify_margin: float = 0.02, aim_margin: float = 0.05, nested: Sequence[float] = ()) -> None:
        if integration is not None and integration not in INTEGRATIONS:
            raise UsageError(f"integration must be 'pixelwise' or 'grid', got {integration!r}")
        if quadrature not in ("log-snr-gauss-legendre", "log-snr"):
            raise UsageError(f"quadrature must be 'log-snr-gauss-legendre' or 'log-snr', got {quadrature!r}")
        check_finite("alpha_min", alpha_min)
        check_finite("alpha_max", alpha_max)
        if not float(alpha_min) < float(alpha_max):
            raise UsageError(f"alpha_min must be < alpha_max, got {alpha_min} and {alpha_max}")
        if info_draws is not None and int(info_draws) < 1:
            raise UsageError(f"info_draws must be >= 1, got {info_draws}")
        if nodes is not None and int(nodes) < 2:
            raise UsageError(f"nodes must be >= 2, got {nodes}")
        self.alpha_min, self.alpha_max = float(alpha_min), float(alpha_max)  # read by check_explainer
        super().__init__(model, preset=preset, mode=mode, explainer=explainer, beta=beta, steps=steps, lr=lr,
                         noise_draws=noise_draws, keep_prob=keep_prob, dual_lr=dual_lr, penalty=penalty,
                         smooth_sigma=smooth_sigma, share_channels=share_channels, adapter=adapter,
                         adapter_width=adapter_width, seed=seed, internal_batch_size=internal_batch_size,
                         progress=progress, average=average, keep=keep, verify_draws=verify_draws,
                         memory_format=memory_format, constraint=constraint, backtrack=backtrack,
                         verify_margin=verify_margin, aim_margin=aim_margin, nested=nested)
        if denoiser is None:  # the classifier's own world may name one (Classifier.companions)
            denoiser = companion(model, "denoiser")
        self._denoiser = resolve_denoiser(denoiser).eval()
        for p in self._denoiser.parameters():
            p.requires_grad_(False)
        self.denoiser_spec = denoiser if isinstance(denoiser, (str, type(None))) else (
            str(denoiser) if isinstance(denoiser, os.PathLike) else type(denoiser).__name__)
        self.integration = integration or ("pixelwise" if self._denoiser.accepts_level_map else "grid")
        if self.integration == "pixelwise" and not self._denoiser.accepts_level_map:
            raise UsageError(f"integration: {type(self._denoiser).__name__} takes one level per image; "
                             "use integration='grid' or a noise-map denoiser")
        pixelwise = self.integration == "pixelwise"
        self.nodes = int(nodes if nodes is not None else (PIXELWISE_NODES if pixelwise else 41))
        self.quadrature = quadrature
        self.info_draws = int(info_draws if info_draws is not None else (PIXELWISE_INFO_DRAWS if pixelwise else 4))


    @property
    def denoiser(self) -> ScoreModel:
        """The frozen denoiser in use."""
        return self._denoiser

    def make_strategy(self, images: torch.Tensor) -> DiffIBStrategy:
        den = self._denoiser.to(images.device)
        strategy = DiffIBStrategy(den, self.integration, self.alpha_min, self.alpha_max, self.nodes,
                                  self.quadrature, self.info_draws, self.gradient_batch(images))
        strategy.check(images)
        return strategy

    def explainer_meta(self) -> Dict[str, Any]:
        return {**super().explainer_meta(), "alpha_min": self.alpha_min, "alpha_max": self.alpha_max}

    def check_explainer(self, cfg: Dict[str, Any]) -> None:
        super().check_explainer(cfg)
        for k in ("alpha_min", "alpha_max"):
            if k in cfg and abs(float(cfg[k]) - getattr(self, k)) > 1e-9:
                raise UsageError(f"explainer {self.explainer} was trained with {k}={cfg[k]}, not {getattr(self, k)}")


def diffib_information(denoiser: ScoreModel, images: torch.Tensor, alpha: torch.Tensor, *,
                       integration: str = "pixelwise", alpha_min: float = -10.0, alpha_max: float = 10.0,
                       nodes: int = 12, quadrature: str = "log-snr-gauss-legendre", info_draws: int = 4,
                       generators: Optional[Sequence[torch.Generator]] = None, batch_size: int = 16,
                       noise: Optional[NoiseFn] = None) -> torch.Tensor:
    """Eq. (14) for given per-feature log-SNRs ``alpha`` ([B,C,H,W]) of ``images`` ([0,1]).

    Example:
        >>> from fisherattr.scores import DiagonalGaussian
        >>> g = DiagonalGaussian(torch.zeros(3, 2, 2), torch.full((3, 2, 2), 0.25))
        >>> diffib_information(g, torch.rand(1, 3, 2, 2), torch.full((1, 3, 2, 2), 2.0)).shape
        torch.Size([1, 3, 2, 2])
    """
    if quadrature not in quad.KINDS:
        raise UsageError(f"unknown quadrature {quadrature!r}")
    gens = list(generators) if generators is not None else [
        torch.Generator(device=images.device).manual_seed(0) for _ in range(images.shape[0])]
    s = DiffIBStrategy(denoiser, integration, alpha_min, alpha_max, nodes, quadrature, info_draws, batch_size,
                       noise=noise)
    s.check(images)
    state = s.prepare(images, gens)
    with torch.no_grad():
        return s.information(alpha.clamp(alpha_min, alpha_max), state, images * 2 - 1, gens)


__all__ = ["DiffIB", "DiffIBStrategy", "diffib_information", "resolve_denoiser"]
