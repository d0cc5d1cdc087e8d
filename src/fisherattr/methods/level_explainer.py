"""The noise-level explainers' base class, shared by FDA and DiffIB (METHODS.md 2 and 3).

A :class:`~.level_strategy.LevelStrategy` says what a level means (FDA: SDE
truncation times; DiffIB: log-SNRs); an adapter (:mod:`.level_adapters`) holds
the raw level values; :mod:`.level_optimiser` solves the papers' constrained
problem per image (dual ascent on a per-image multiplier) and
:mod:`.level_training` trains one shared adapter for the amortised mode. This
module holds :class:`LevelMethod`, the attribution-method base class with the
options common to both methods and the two presets:

- ``preset="default"``: direct per-feature logits smoothed by a Gaussian
  (``smooth_sigma=1``), the level penalty, and the constraint "the target keeps
  at least ``keep_prob`` (0.6) times its clean probability under the perturbation"
  solved per image;
  chosen on development images (docs/fda.md, docs/diffib.md).
- ``preset="paper"``: each paper's literal recipe as far as our score models
  allow (a per-image U-Net adapter, one fixed beta, FDA: paper 001's information
  penalty; DiffIB: Algorithm 1's mean log-SNR).

An option passed explicitly always wins over the preset.
"""
from __future__ import annotations

import math
import os
from abc import abstractmethod
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..errors import UsageError
from .base import AttributionMethod
from .level_adapters import ADAPTERS, AdapterUNet, DirectLevels, load_adapter, make_adapter, save_adapter, smooth_raw
from ..layout import check_memory_format
from .level_optimiser import (FEASIBLE_CE, DualAscent, check_constraint, check_keep, check_keep_prob,
                              check_margin, check_nested, optimise_levels)
from .level_strategy import PENALTIES, LevelStrategy, State, collate_states, select_state
from .level_training import explain_with_adapter, train_adapter

PRESETS = ("default", "paper")
#: the constraint of amortised training (:meth:`LevelMethod.train_explainer`) unless given: a shared
#: adapter trained on the patch toy (60 steps at lr 1e-2) held 0.8 (final CE 0.01) but collapsed to
#: full noise at 0.6 and 0.7 (CE 2.8 and 1.4; its levels saturate and the gradient is lost)
TRAIN_KEEP_PROB = 0.8


# ============================================================================ preset defaults
class _PresetFloat(float):
    """A float default that means "the preset's value" (an explicit float is a plain float)."""


class _PresetInt(int):
    """An int default that means "the preset's value"."""


class _PresetStr(str):
    """A str default that means "the preset's value"."""


def preset_default(value: Any) -> Any:
    """Wrap a signature default so that :class:`LevelMethod` can tell it from an explicit value.

    The wrapped value has the default's type, so the command line still parses
    ``-o fda.steps=50`` as an int.
    """
    if isinstance(value, bool) or value is None:
        raise TypeError("preset defaults must be int, float or str")
    kind = _PresetFloat if isinstance(value, float) else _PresetInt if isinstance(value, int) else _PresetStr
    return kind(value)


def is_preset_default(value: Any) -> bool:
    return isinstance(value, (_PresetFloat, _PresetInt, _PresetStr))


def check_finite(name: str, value: Any, low: Optional[float] = None, *, strict: bool = False) -> float:
    """``float(value)``, or a UsageError unless it is a finite number (>= / > ``low``)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise UsageError(f"{name} must be a finite number, got {value!r}")
    if low is not None and (v <= low if strict else v < low):
        raise UsageError(f"{name} must be {'>' if strict else '>='} {low:g}, got {value!r}")
    return v


# ============================================================================ method base
class LevelMethod(AttributionMethod):
    """Base of the noise-level explainers (FDA, DiffIB): per-image or amortised.

    Subclasses implement :meth:`make_strategy`, set :attr:`PRESET_VALUES` (the
    options each preset chooses) and may extend :meth:`explainer_meta` and
    :meth:`check_explainer`. Options common to both:

    Args:
        preset: ``"default"`` (the constrained recipe measured best on development images)
            or ``"paper"`` (the paper's literal recipe); explicit options override it.
        mode: ``"per-image"`` (optimise levels for each image) or ``"amortised"``
            (one forward pass of a trained adapter, ``explainer=`` its folder).
        explainer: folder written by ``fisherattr train-explainer`` (amortised mode).
        keep_prob: the probability of the target the perturbation must leave
            (solved per image by dual ascent on the multiplier); ``None`` = one fixed ``beta``.
        backtrack: where every re-checked candidate misses the promise by more than 0.05, move the
            best one towards less noise until it holds (off: it cost dev EHR, see
            :data:`~.level_optimiser.BACKTRACK_GIVE`).
        constraint: ``"relative"`` (default): the target keeps
 ``keep_prob`` times its probability
            on the clean image; ``"absolute"``: it keeps probability ``keep_prob`` (unreachable
            when the clean probability is lower, as on 4 of the six sample photos).
        beta: the fixed multiplier of the penalty (``keep_prob=None``), else its initial value.
        dual_lr: step of ``log beta`` per optimisation step.
        penalty: ``"level"`` (the papers' level objective) or ``"information"`` (mean information retained).
        smooth_sigma: Gaussian smoothing (pixels) of the raw levels; 0 = none.
        share_channels: one level per pixel for all three channels.
        steps, lr: Adam steps and learning rate of the per-image optimisation.
        noise_draws: perturbations per step (averaged cross-entropy).
        adapter: ``"direct"`` (free per-feature logits) or ``"unet"`` (a small U-Net, the papers').
        adapter_width: channels of the U-Net's first stage.
        average: return the mean of the levels over the last ``average`` fraction of the steps.
        keep: ``"feasible"``: the iterate with the least penalty among those that held the
            constraint (with a fixed beta: step cross-entropy below ln 2); ``"last"``: the last one.
        verify_draws: with ``keep_prob``: fresh perturbations that re-check the best few feasible
            iterates before one is returned; the returned one must keep ``keep_prob + verify_margin``
            under them (a margin for the check's own noise); 0 = no re-check.
        verify_margin: that margin, in probability (0.02; ``keep_prob + verify_margin`` is capped at 0.999).
        aim_margin: the optimisation aims at ``keep_prob + aim_margin`` (capped at 0.99); the
            promise stays ``keep_prob`` (see :func:`~.level_optimiser.optimise_levels`).
        memory_format: the layout of the classifier's perturbed inputs: ``"auto"`` (channels-last
            on the CPU for images of 128 px a side or more, where it measured about 1.5x faster on
            EfficientNet-Lite0), ``"channels_last"`` or ``"contiguous"``. Values are the same.
        nested: nested constraints, off by default (``()``). A sequence of ``keep_prob`` values,
            e.g. ``(0.3, 0.6, 0.9)``: the levels are solved once per value (replacing ``keep_prob``)
            and the map is the sum of the maps. A pixel kept clean under the loose constraint
            is also kept under the tight ones, so the sum ranks the pixels the single
            solution leaves tied at full noise. It costs one solve per value; on 8 dev photos
            (docs/results/dev-issue16/round6) it raised DiffIB's mean DifAUC from 0.274 to 0.356
            and FDA's from 0.272 to 0.299; on the six sample photos less (DiffIB 0.255 -> 0.276,
            FDA 0.205 -> 0.240; InputIBA 0.346). Per-image mode only.

    After :meth:`attribute`, ``last_levels`` holds the levels and ``last_history`` the
    optimisation's history (see :func:`~.level_optimiser.optimise_levels`); with ``nested``,
    those of the last (tightest) value.
    """

    #: per preset, the values of the preset-dependent options
    PRESET_VALUES: Dict[str, Dict[str, Any]] = {}

    def __init__(self, model: nn.Module, *, preset: str = "default", mode: str = "per-image",
                 explainer: Optional[str] = None, beta: float = 1.0, steps: int = 100, lr: float = 0.3,
                 noise_draws: int = 4, keep_prob: Optional[float] = 0.6, dual_lr: float = 0.1,
                 penalty: str = "level", smooth_sigma: float = 1.0, share_channels: bool = False,
                 adapter: str = "direct", adapter_width: int = 8, seed: int = 0,
                 internal_batch_size: Optional[int] = None,
                 progress: bool = False, average: float = 0.0, keep: str = "feasible", verify_draws: int = 16,
                 memory_format: str = "auto", constraint: str = "relative", backtrack: bool = False,
                 verify_margin: float = 0.02, aim_margin: float = 0.05, nested: Sequence[float] = ()) -> None:
        super().__init__(model, seed=seed, internal_batch_size=internal_batch_size, progress=progress)
        preset = str(preset).strip().lower()
        if preset not in PRESETS:
            raise UsageError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        given = dict(beta=beta, steps=steps, lr=lr, noise_draws=noise_draws, keep_prob=keep_prob, penalty=penalty,
                     smooth_sigma=smooth_sigma, adapter=adapter, keep=keep)
        chosen = self.PRESET_VALUES.get(preset, {})
        opts = {k: (chosen.get(k, v) if is_preset_default(v) else v) for k, v in given.items()}
        opts = {k: (type(v).__mro__[1](v) if is_preset_default(v) else v) for k, v in opts.items()}  # plain values
        if is_preset_default(keep) and float(average) > 0:  # averaging asks for the tail of the iterates
            opts["keep"] = "last"
        mode = str(mode).replace("_", "-").lower()
        if mode in ("amortized", "amortised"):
            mode = "amortised"
        if mode not in ("per-image", "amortised"):
            raise UsageError(f"mode must be 'per-image' or 'amortised', got {mode!r}")
        self.preset = preset
        self.beta = check_finite("beta", opts["beta"], 0.0)
        steps = opts["steps"]
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise UsageError(f"steps must be an int >= 0, got {steps!r}")
        self.lr = check_finite("lr", opts["lr"], 0.0, strict=True)
        if int(opts["noise_draws"]) < 1:
            raise UsageError(f"noise_draws must be >= 1, got {opts['noise_draws']}")
        check_keep_prob(opts["keep_prob"])
        self.dual_lr = check_finite("dual_lr", dual_lr, 0.0, strict=True)
        if opts["penalty"] not in PENALTIES:
            raise UsageError(f"penalty must be one of {', '.join(PENALTIES)}, got {opts['penalty']!r}")
        self.smooth_sigma = check_finite("smooth_sigma", opts["smooth_sigma"], 0.0)
        if opts["adapter"] not in ADAPTERS:
            raise UsageError(f"adapter must be one of {', '.join(ADAPTERS)}, got {opts['adapter']!r}")
        self.average = check_finite("average", average, 0.0)
        if self.average > 1.0:
            raise UsageError(f"average must be in [0, 1], got {average}")
        check_keep(opts["keep"], self.average)
        if int(adapter_width) < 1:
            raise UsageError(f"adapter_width must be >= 1, got {adapter_width}")
        if isinstance(verify_draws, bool) or int(verify_draws) < 0:
            raise UsageError(f"verify_draws must be an int >= 0, got {verify_draws!r}")
        self.verify_draws = int(verify_draws)
        self.verify_margin = check_margin("verify_margin", verify_margin)
        self.aim_margin = check_margin("aim_margin", aim_margin)
        check_memory_format(memory_format)
        self.memory_format = str(memory_format)
        check_constraint(constraint)
        self.constraint = str(constraint)

        self.backtrack = bool(backtrack)
        self.nested = check_nested(nested, mode)
        self.mode, self.steps, self.noise_draws = mode, int(steps), int(opts["noise_draws"])
        self.keep_prob = None if opts["keep_prob"] is None else float(opts["keep_prob"])
        self.penalty, self.adapter, self.keep = str(opts["penalty"]), str(opts["adapter"]), str(opts["keep"])
        self.share_channels, self.adapter_width = bool(share_channels), int(adapter_width)
        self.explainer = None if explainer is None else str(explainer)
        self._adapter: Optional[AdapterUNet] = None
        self.last_history: Dict[str, List[float]] = {}
        if mode == "amortised":
            if self.explainer is None:
                raise UsageError("explainer: mode='amortised' needs explainer=<folder from train-explainer>")
            self._adapter, cfg = load_adapter(self.explainer)
            self.check_explainer(cfg)

    # ---------------------------------------------------------------- hooks
    @abstractmethod
    def make_strategy(self, images: torch.Tensor) -> LevelStrategy:
        """The strategy for these images (checks the score model can serve them; raises UsageError)."""

    def explainer_meta(self) -> Dict[str, Any]:
        """What a saved adapter records about the method that trained it."""
        return {"method": self.method_name, "beta": self.beta, "keep_prob": self.keep_prob,
                "constraint": self.constraint, "penalty": self.penalty}

    def check_explainer(self, cfg: Dict[str, Any]) -> None:
        """Raise UsageError if a loaded adapter was trained for another method."""
        if cfg.get("method") not in (None, self.method_name):
            raise UsageError(f"explainer {self.explainer} was trained for {cfg.get('method')!r}, "
                             f"not {self.method_name!r}")

    # ---------------------------------------------------------------- running
    def _attribute(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x_diff = images * 2 - 1
        if self.mode == "amortised":
            strategy, gens = self.make_strategy(images), self.generators(images.shape[0])
            state = strategy.prepare(images, gens)
            levels = explain_with_adapter(self._adapter.to(images.device), strategy, images)
            self.last_levels = levels
            with torch.no_grad():
                return strategy.attribution(levels, state, x_diff, gens)
        total: Optional[torch.Tensor] = None
        for keep_prob in self.nested or (self.keep_prob,):  # each solve draws as a lone one would
            strategy, gens = self.make_strategy(images), self.generators(images.shape[0])
            levels, state, self.last_history = optimise_levels(
                self.model, strategy, images, target, generators=gens, adapter=self.adapter, steps=self.steps,
                lr=self.lr, beta=self.beta, keep_prob=keep_prob, dual_lr=self.dual_lr, penalty=self.penalty,
                smooth_sigma=self.smooth_sigma, share_channels=self.share_channels, noise_draws=self.noise_draws,
                width=self.adapter_width, seed=self.seed, internal_batch_size=self.gradient_batch(images),
                progress=self.progress, average=self.average, keep=self.keep, verify_draws=self.verify_draws,
                verify_margin=self.verify_margin, aim_margin=self.aim_margin,
                memory_format=self.memory_format, constraint=self.constraint, backtrack=self.backtrack)
            self.last_levels = levels
            with torch.no_grad():
                a = strategy.attribution(levels, state, x_diff, gens)
            total = a if total is None else total + a
        return total

    def train_explainer(self, images: torch.Tensor, out: str | os.PathLike, *, steps: int = 300, batch: int = 4,
                        lr: float = 1e-3, noise_draws: Optional[int] = None, progress: bool = True,
                        keep_prob: Optional[float] = None) -> Tuple[Path, Dict[str, List[float]]]:
        """Amortised training on ``images`` (``[N,3,H,W]`` in [0,1]); saves the adapter to ``out``.

        Uses this method's objective: penalty, smoothing, channel sharing and, when the
        method has a ``keep_prob``, one multiplier per training image by dual ascent, for
        the constraint ``keep_prob`` given here (default :data:`TRAIN_KEEP_PROB`, 0.8: lower
        values collapsed in training). A method with ``keep_prob=None`` trains with its fixed beta."""
        images = images.to(self.device, dtype=torch.float32)
        strategy = self.make_strategy(images)
        if keep_prob is not None:
            check_keep_prob(keep_prob)
        train_keep = None if self.keep_prob is None else float(keep_prob if keep_prob is not None else TRAIN_KEEP_PROB)
        net, hist = train_adapter(self.model.eval(), strategy, images, steps=steps, batch=batch, lr=lr,
                                  beta=self.beta, keep_prob=train_keep, dual_lr=self.dual_lr,
                                  penalty=self.penalty, smooth_sigma=self.smooth_sigma,
                                  share_channels=self.share_channels, noise_draws=noise_draws or self.noise_draws,
                                  width=self.adapter_width, seed=self.seed,
                                  internal_batch_size=self.gradient_batch(images), progress=progress,
                                  memory_format=self.memory_format, constraint=self.constraint)
        meta = {**self.explainer_meta(), "keep_prob": train_keep, "steps": steps, "batch": batch, "lr": lr,
                "train_images": images.shape[0],
                "final_ce": hist["ce"][-1] if hist["ce"] else None}
        return save_adapter(net, out, meta), hist


__all__ = ["AdapterUNet", "DirectLevels", "DualAscent", "FEASIBLE_CE", "LevelMethod", "LevelStrategy", "PRESETS",
           "State", "check_finite", "collate_states", "is_preset_default", "load_adapter", "make_adapter",
           "optimise_levels", "preset_default", "save_adapter", "select_state", "smooth_raw", "train_adapter"]
