"""FDA: Fisher-divergence attribution through SDEs (METHODS.md 2).

Per feature ``i`` a truncation time ``t_i = t_min + (1 - t_min) sigmoid(tau_i)``;
the image is noised per feature in diffusion space by the SDE kernel (VP:
``a(t) x + s(t) eps``; VE: ``x + sigma(t) eps``), mapped back to [0,1] (clamped)
for the classifier, and the loss ``beta * mean_i A_i(t_i) + CE(f(x'), y)`` is
minimised, where ``A_i(t) = 1/2 int_t^1 e_i`` is the information about ``x_i``
retained at ``t`` (METHODS.md 1.5). The attribution is ``A_i`` of the final levels.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UsageError
from ..models import companion
from ..scores.base import ScoreModel
from ..sde import quadrature as quad
from ..sde.information import cumulative_integral, fisher_curve, mmse_curve, retained_grid, retained_pixelwise
from ..sde.schedules import Schedule, VESchedule, get_schedule
from .level_explainer import LevelMethod, preset_default
from .level_strategy import LevelStrategy, State
from .registry import register

GRID_QUADRATURES = ("log-snr", "trapezoid")
FORMS = ("i-mmse", "fisher")


class FDAStrategy(LevelStrategy):
    """Levels = truncation times; perturbation = the SDE kernel; information = ``A_i(t_i)``.

    Args:
        schedule: the SDE (VP / VE / DDPM).
        score_model: a frozen :class:`ScoreModel`.
        integration: ``"grid"`` (curve once per image, levels interpolated) or ``"pixelwise"``.
        nodes, quadrature: grid levels and their placement (``log-snr``: uniform in log-SNR;
            ``trapezoid``: uniform in t), or the pixelwise rule (see :mod:`fisherattr.sde.quadrature`).
        form: grid curve ``"i-mmse"`` (eps-MMSE on log-SNR nodes) or ``"fisher"`` (``e(t)`` on t nodes).
        curve_draws: noise draws per level for the curve (or per node, pixelwise).
        t_min: smallest truncation time.
        score_resize: grid mode only: run the score model at its own resolution and resize the curve back.

    Example:
        >>> from fisherattr.scores import GaussianPrior
        >>> from fisherattr.sde import VPSchedule
        >>> s = FDAStrategy(VPSchedule(), GaussianPrior.default())
        >>> float(s.levels(torch.tensor(-1e9)))  # "no noise" is t_min
        0.001
    """

    def __init__(self, schedule: Schedule, score_model: ScoreModel, integration: str = "grid", nodes: int = 32,
                 quadrature: str = "log-snr", form: str = "i-mmse", curve_draws: int = 4, t_min: float = 1e-3,
                 batch_size: int = 16, score_resize: bool = False, init_value: float = -5.0) -> None:
        self.schedule, self.score_model = schedule, score_model
        self.integration, self.nodes, self.quadrature, self.form = integration, int(nodes), quadrature, form
        self.curve_draws, self.t_min, self.batch_size = int(curve_draws), float(t_min), int(batch_size)
        self.score_resize, self.init_value = bool(score_resize), float(init_value)

    # -------------------------------------------------------------- levels
    def levels(self, raw: torch.Tensor) -> torch.Tensor:
        return self.t_min + (1.0 - self.t_min) * torch.sigmoid(raw)

    def perturb(self, x_diff: torch.Tensor, levels: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return self.schedule.perturb(x_diff, levels, eps)

    def level_penalty(self, levels: torch.Tensor) -> torch.Tensor:
        """Paper 000 eq. 32 (maximise the truncation times) as a penalty: ``mean_i (1 - t_i)``."""
        return (1.0 - levels).flatten(1).mean(1)

    # -------------------------------------------------------------- grid curve
    def grid_nodes(self, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Ascending nodes: log-SNRs (``form="i-mmse"``) or times (``form="fisher"``)."""
        t_min = torch.tensor(self.t_min, dtype=torch.float64)
        if self.quadrature == "log-snr":
            lo, hi = float(self.schedule.log_snr(torch.tensor(1.0, dtype=torch.float64))), float(
                self.schedule.log_snr(t_min))
            lams = torch.linspace(lo, hi, self.nodes, dtype=torch.float64)
            ts = self.schedule.t_of_log_snr(lams).flip(0)
        else:
            ts = torch.linspace(self.t_min, 1.0, self.nodes, dtype=torch.float64)
            lams = self.schedule.log_snr(ts).flip(0)
        out = lams if self.form == "i-mmse" else ts
        return out.to(device=device, dtype=dtype)

    def _curve(self, x_diff: torch.Tensor, grid: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
        kw = dict(draws=self.curve_draws, generators=generators, batch_size=self.batch_size)
        if self.form == "i-mmse":
            return mmse_curve(self.score_model, x_diff, grid, **kw)
        return fisher_curve(self.score_model, self.schedule, x_diff, grid, **kw)

    def prepare(self, images: torch.Tensor, generators: Sequence[torch.Generator]) -> State:
        if self.integration != "grid":
            return None
        x_diff = images * 2 - 1
        grid = self.grid_nodes(images.device)
        res = self.score_model.resolution
        if res is not None and tuple(images.shape[-2:]) != tuple(res):
            # score model at its own resolution; the per-feature curve is resized back with the
            # information per feature scaled by the area ratio (so totals are preserved)
            small = F.interpolate(images, size=res, mode="bilinear", antialias=True, align_corners=False)
            curve = self._curve(small * 2 - 1, grid, generators)
            l, b = curve.shape[:2]
            big = F.interpolate(curve.flatten(0, 1), size=images.shape[-2:], mode="bilinear", align_corners=False)
            ratio = (res[0] * res[1]) / (images.shape[-2] * images.shape[-1])
            curve = (big * ratio).view(l, b, *images.shape[1:])
        else:
            curve = self._curve(x_diff, grid, generators)
        cum = cumulative_integral(curve, grid)  # once per image, reused by every optimisation step
        return {"curve": curve.transpose(0, 1).contiguous(), "cum": cum.transpose(0, 1).contiguous(),
                "grid": grid.expand(images.shape[0], -1).contiguous()}

    # -------------------------------------------------------------- information
    def information(self, levels: torch.Tensor, state: State, x_diff: torch.Tensor,
                    generators: Sequence[torch.Generator]) -> torch.Tensor:
        if self.integration == "grid":
            curve, grid, cum = state["curve"].transpose(0, 1), state["grid"][0], state["cum"].transpose(0, 1)
            if self.form == "i-mmse":
                return retained_grid(curve, grid, self.schedule.log_snr(levels), param="log_snr", cumulative=cum)
            return retained_grid(curve, grid, levels, param="t", cumulative=cum)
        return retained_pixelwise(self.score_model, x_diff, levels, param="t", schedule=self.schedule,
                                  quadrature_kind=self.quadrature, k=self.nodes, draws=self.curve_draws,
                                  generators=generators)

    def check(self, images: torch.Tensor) -> None:
        """Raise UsageError (before any optimisation) if the score model cannot serve ``images``."""
        sm = self.score_model
        native = getattr(sm, "sde", None)
        if native is not None and native != self.schedule.name and not (native == "vp" and self.schedule.name == "ddpm"):
            raise UsageError(f"sde: score model {type(sm).__name__} is a {native.upper()} model; "
                             f"use sde={native!r}")
        probe = images
        if self.score_resize and self.integration == "grid" and sm.resolution is not None:
            probe = images.new_zeros((1, images.shape[1], *sm.resolution))
        sm.check_serves(probe, level_map=self.integration == "pixelwise",
                        log_snr_range=self.schedule.log_snr_range(self.t_min))


def resolve_score_model(spec: Union[None, str, ScoreModel]) -> ScoreModel:
    """``None``/``"gaussian"`` -> the default :class:`GaussianPrior`; a ScoreModel as is; else a path."""
    if isinstance(spec, ScoreModel):
        return spec
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("gaussian", "gaussian-prior")):
        from ..scores.gaussian import GaussianPrior

        return GaussianPrior.default()
    if isinstance(spec, nn.Module):
        raise UsageError(f"score_model must be a fisherattr ScoreModel, 'gaussian' or a folder; "
                         f"got {type(spec).__name__}")
    from ..scores.diffusers_backend import load_score_model

    return load_score_model(str(spec))


@register("fda", "fisher", "fisher-attribution")
class FDA(LevelMethod):
    """FDA: Fisher-divergence attribution through SDEs (information retained per feature).

    Finds per-feature SDE noise levels that keep the prediction while destroying
    as much information as possible; the map is the information ``A_i(t_i)``
    (nats) about each feature that survives at its level. Training-free by
    default (analytic Gaussian score model, grid integration).

    Args:
        model: the classifier ([0,1] images in, logits out).
        score_model: ``None``/``"gaussian"`` (analytic prior, default), a ScoreModel, or a folder
            (diffusers VP/VE model or noise-map denoiser).
        sde: ``"vp"`` (default), ``"ve"`` or ``"ddpm"``.
        integration: ``"grid"`` (default; any score model) or ``"pixelwise"`` (level-map models).
        nodes: grid levels / quadrature nodes (default 32 grid, 8 pixelwise).
        quadrature: grid: ``"log-snr"`` (default) | ``"trapezoid"``; pixelwise: ``"log-snr-gauss-legendre"``
            (default) | ``"log-snr"`` | ``"gauss-legendre"`` | ``"trapezoid"`` (the paper's).
        form: grid curve ``"i-mmse"`` (default) or ``"fisher"``.
        curve_draws: noise draws per curve level.
        t_min: smallest truncation time (``t`` is in ``[t_min, 1]``).
        score_resize: grid mode: serve images whose size differs from the score model's by resizing.
        mode, explainer, beta, steps, lr, noise_draws, adapter, adapter_width, average, keep,
            verify_draws, verify_margin, aim_margin, memory_format, constraint, backtrack, nested: see
            :class:`~fisherattr.methods.level_explainer.LevelMethod`.

    Example:
        >>> fda = get_method("fda", model, steps=40)       # doctest: +SKIP
        >>> maps = fda.attribute(images)                   # [B,3,H,W], nats per feature  # doctest: +SKIP
    """

    PRESET_VALUES = {
        "default": dict(beta=10.0, steps=100, lr=0.3, noise_draws=2, keep_prob=0.6, penalty="level",
                        smooth_sigma=1.0, adapter="direct", keep="feasible"),
        # paper 001: information penalty, a U-Net adapter, one fixed beta
        "paper": dict(beta=1.0, steps=60, lr=0.05, noise_draws=2, keep_prob=None, penalty="information",
                      smooth_sigma=0.0, adapter="unet", keep="last"),
    }

    def __init__(self, model: nn.Module, *, score_model: Union[None, str, ScoreModel] = None, sde: str = "vp",
                 preset: str = "default", mode: str = "per-image", explainer: Optional[str] = None,
                 integration: str = "grid", beta: float = preset_default(10.0), nodes: Optional[int] = None,
                 quadrature: Optional[str] = None, form: str = "i-mmse", steps: int = preset_default(100),
                 lr: float = preset_default(0.3), noise_draws: int = preset_default(2),
                 keep_prob: Optional[float] = preset_default(0.6), dual_lr: float = 0.1,
                 penalty: str = preset_default("level"), smooth_sigma: float = preset_default(1.0),
                 share_channels: bool = False, curve_draws: int = 4, t_min: float = 1e-3,
                 adapter: str = preset_default("direct"), adapter_width: int = 8, score_resize: bool = False,
                 seed: int = 0, internal_batch_size: Optional[int] = None, progress: bool = False, average: float = 0.0,
                 keep: str = preset_default("feasible"), verify_draws: int = 16,
                 memory_format: str = "auto", constraint: str = "relative", backtrack: bool = False,
                 verify_margin: float = 0.02, aim_margin: float = 0.05, nested: Sequence[float] = ()) -> None:
        if integration not in ("grid", "pixelwise"):
            raise UsageError(f"integration must be 'grid' or 'pixelwise', got {integration!r}")
        if form not in FORMS:
            raise UsageError(f"form must be one of {', '.join(FORMS)}, got {form!r}")
        quadrature = quadrature or ("log-snr" if integration == "grid" else "log-snr-gauss-legendre")
        allowed = GRID_QUADRATURES if integration == "grid" else quad.KINDS
        if quadrature not in allowed:
            raise UsageError(f"quadrature {quadrature!r} is not available with integration={integration!r}; "
                             f"choose one of {', '.join(allowed)}")
        nodes = int(nodes if nodes is not None else (32 if integration == "grid" else 8))
        if nodes < 2:
            raise UsageError(f"nodes must be >= 2, got {nodes}")
        if not (math.isfinite(float(t_min)) and 0.0 < float(t_min) < 1.0):
            raise UsageError(f"t_min must be in (0, 1), got {t_min}")
        if int(curve_draws) < 1:
            raise UsageError(f"curve_draws must be >= 1, got {curve_draws}")
        if score_model is None:  # the classifier's own world may name one (Classifier.companions)
            score_model = companion(model, "score_model")
        self._score_model = resolve_score_model(score_model).eval()
        self.schedule = self._schedule(sde, self._score_model)
        self.sde, self.integration, self.nodes, self.quadrature, self.form = sde, integration, nodes, quadrature, form
        self.curve_draws, self.t_min, self.score_resize = int(curve_draws), float(t_min), bool(score_resize)
        super().__init__(model, preset=preset, mode=mode, explainer=explainer, beta=beta, steps=steps, lr=lr,
                         noise_draws=noise_draws, keep_prob=keep_prob, dual_lr=dual_lr, penalty=penalty,
                         smooth_sigma=smooth_sigma, share_channels=share_channels, adapter=adapter,
                         adapter_width=adapter_width, seed=seed, internal_batch_size=internal_batch_size,
                         progress=progress, average=average, keep=keep, verify_draws=verify_draws,
                         memory_format=memory_format, constraint=constraint, backtrack=backtrack,
                         verify_margin=verify_margin, aim_margin=aim_margin, nested=nested)
        self.score_model_spec = score_model if isinstance(score_model, (str, type(None))) else type(score_model).__name__
        for p in self._score_model.parameters():
            p.requires_grad_(False)

    @staticmethod
    def _schedule(sde: str, score_model: Any) -> Schedule:
        key = str(sde).strip().lower()
        if key == "ve":
            sig = getattr(score_model, "ve_sigmas", None)
            return VESchedule(*sig) if sig else VESchedule()
        return get_schedule(key)

    def make_strategy(self, images: torch.Tensor) -> FDAStrategy:
        sm = self._score_model.to(images.device)
        strategy = FDAStrategy(self.schedule, sm, self.integration, self.nodes, self.quadrature, self.form,
                               self.curve_draws, self.t_min, self.gradient_batch(images), self.score_resize)
        strategy.check(images)
        return strategy

    def explainer_meta(self) -> Dict[str, Any]:
        return {**super().explainer_meta(), "sde": self.sde, "t_min": self.t_min}

    def check_explainer(self, cfg: Dict[str, Any]) -> None:
        super().check_explainer(cfg)
        if cfg.get("sde", self.sde) != self.sde:
            raise UsageError(f"explainer {self.explainer} was trained with sde={cfg.get('sde')!r}, not {self.sde!r}")


__all__ = ["FDA", "FDAStrategy", "resolve_score_model"]
