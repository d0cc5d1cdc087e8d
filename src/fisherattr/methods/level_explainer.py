"""Per-feature noise-level explainers, shared by FDA and DiffIB (METHODS.md 2 and 3).

An *adapter* maps the [0,1] image to one raw value per feature ``[B,C,H,W]``; a
:class:`LevelStrategy` turns raw values into noise levels, perturbs the image
at those levels and measures the information retained. The loss per image is
``mean_draws CE(f(x'), y) + beta * penalty(levels)`` and the attribution is the
strategy's map of the final levels.

Pieces:
- :class:`AdapterUNet`: a small fully convolutional U-Net; ``copies=B`` holds B
  independent parameter sets (grouped convolutions) so that per-image
  optimisation of a batch equals optimising each image alone; the last layer is
  zero-initialised with a bias ``init_value`` (the strategy's "almost no noise").
- :class:`DirectLevels`: per-feature raw values as free parameters (no U-Net).
- :func:`optimise_levels`: the per-image loop (Adam, fresh noise each step from
  the per-image generators, tqdm, chunks of ``internal_batch_size`` classifier rows).
- :func:`train_adapter`: amortised training of one shared adapter over many images;
  :func:`save_adapter` / :func:`load_adapter` (safetensors + json config).
- :class:`LevelMethod`: the attribution-method base class both FDA and DiffIB
  derive from (options ``mode``, ``explainer``, ``beta``, ``steps``, ``lr``, ...);
  a subclass only supplies :meth:`LevelMethod.make_strategy`.

Example:
    >>> import torch
    >>> net = AdapterUNet(width=4, copies=2, init_value=-5.0)
    >>> net(torch.rand(2, 3, 10, 12)).shape
    torch.Size([2, 3, 10, 12])
"""
from __future__ import annotations

import json
import math
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..errors import UsageError
from ..sde.information import draw_noise
from .base import AttributionMethod

State = Optional[Dict[str, torch.Tensor]]
ADAPTER_CONFIG = "adapter.json"
ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTERS = ("unet", "direct")
KEEPS = ("last", "feasible")
#: ``keep="feasible"``: an iterate holds the prediction when its step's cross-entropy is below
#: ln 2, i.e. the target's probability (geometric mean over that step's noise draws) is above 1/2
FEASIBLE_CE = math.log(2.0)


# ============================================================================ strategy
class LevelStrategy(ABC):
    """What a level means: raw adapter output -> levels -> perturbation and information.

    ``state`` is a dict of tensors with the image index on dim 0 (or None); it is
    computed once per image by :meth:`prepare` (e.g. an information curve) and
    concatenated along dim 0 for batches.
    """

    #: raw adapter value at initialisation (the strategy's "almost no noise")
    init_value: float = -5.0

    def prepare(self, images: torch.Tensor, generators: Sequence[torch.Generator]) -> State:
        """Per-image state computed before optimisation (default: none)."""
        return None

    @abstractmethod
    def levels(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw adapter output ``[B,C,H,W]`` -> noise levels (same shape)."""

    @abstractmethod
    def perturb(self, x_diff: torch.Tensor, levels: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Perturbed image in diffusion space (``x_diff``, ``levels`` and ``eps`` broadcast)."""

    @abstractmethod
    def information(self, levels: torch.Tensor, state: State, x_diff: torch.Tensor,
                    generators: Sequence[torch.Generator]) -> torch.Tensor:
        """Information retained per feature ``[B,C,H,W]`` (differentiable in ``levels``)."""

    def penalty(self, levels: torch.Tensor, state: State, x_diff: torch.Tensor,
                generators: Sequence[torch.Generator]) -> torch.Tensor:
        """Per-image regulariser ``[B]`` (default: mean information retained)."""
        return self.information(levels, state, x_diff, generators).flatten(1).mean(1)

    def attribution(self, levels: torch.Tensor, state: State, x_diff: torch.Tensor,
                    generators: Sequence[torch.Generator]) -> torch.Tensor:
        """The output map of the final levels (default: the information retained)."""
        return self.information(levels, state, x_diff, generators)


def collate_states(states: Sequence[State]) -> State:
    """Concatenate per-image states along dim 0."""
    if not states or states[0] is None:
        return None
    return {k: torch.cat([s[k] for s in states]) for k in states[0]}


def select_state(state: State, idx: torch.Tensor) -> State:
    return None if state is None else {k: v[idx] for k, v in state.items()}


# ============================================================================ adapters
class _GroupConv(nn.Module):
    """``copies`` independent convolutions; ``copies == 1`` is a plain conv on any batch."""

    def __init__(self, copies: int, cin: int, cout: int, k: int, generator: torch.Generator,
                 zero: bool = False, bias: float = 0.0) -> None:
        super().__init__()
        self.copies, self.cin, self.cout, self.pad = copies, cin, cout, k // 2
        w = torch.zeros(cout, cin, k, k)
        if not zero:
            bound = math.sqrt(6.0 / (cin * k * k))  # He-uniform
            w = (torch.rand(cout, cin, k, k, generator=generator) * 2 - 1) * bound
        self.weight = nn.Parameter(w[None].repeat(copies, 1, 1, 1, 1))
        self.bias = nn.Parameter(torch.full((copies, cout), float(bias)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.copies == 1:
            return F.conv2d(x, self.weight[0], self.bias[0], padding=self.pad)
        n, _, h, w = x.shape
        if n != self.copies:
            raise UsageError(f"this adapter holds {self.copies} per-image copies but got {n} images")
        y = F.conv2d(x.reshape(1, n * self.cin, h, w), self.weight.reshape(-1, self.cin, *self.weight.shape[-2:]),
                     self.bias.reshape(-1), padding=self.pad, groups=n)
        return y.reshape(n, self.cout, h, w)


class AdapterUNet(nn.Module):
    """Small fully convolutional U-Net: [0,1] image -> one raw level per feature.

    One 3x3 convolution at full resolution, two down-sampling stages (average
    pooling, two 3x3 convolutions each), nearest up-sampling with skip
    connections, SiLU (about 0.2 GMAC at 224x224 with width 8); the last
    1x1 convolution is zero-initialised with bias ``init_value`` so that every
    feature starts at the strategy's "almost no noise" level. Any image size works.

    Args:
        in_channels, out_channels: image channels in, level channels out.
        width: channels of the first stage (then 2x).
        copies: independent parameter sets (one per image for per-image optimisation).
        init_value: the output at initialisation.
        seed: initialisation seed (all copies start identical).

    Example:
        >>> AdapterUNet(width=4)(torch.rand(1, 3, 16, 16)).unique()
        tensor([-5.], grad_fn=<Unique2Backward0>)
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, width: int = 8, copies: int = 1,
                 init_value: float = -5.0, seed: int = 0) -> None:
        super().__init__()
        if width < 1 or copies < 1:
            raise UsageError(f"adapter width and copies must be >= 1, got {width}, {copies}")
        self.config = {"in_channels": in_channels, "out_channels": out_channels, "width": width,
                       "init_value": float(init_value)}
        g = torch.Generator().manual_seed(int(seed))
        w1, w2 = width, 2 * width

        def conv(cin: int, cout: int, k: int = 3, **kw: Any) -> _GroupConv:
            return _GroupConv(copies, cin, cout, k, g, **kw)

        self.enc1 = nn.ModuleList([conv(in_channels, w1)])
        self.enc2 = nn.ModuleList([conv(w1, w2), conv(w2, w2)])
        self.mid = nn.ModuleList([conv(w2, w2), conv(w2, w2)])
        self.dec2 = conv(2 * w2, w2)
        self.dec1 = conv(w2 + w1, w1)
        self.out = conv(w1, out_channels, 1, zero=True, bias=init_value)

    @staticmethod
    def _run(layers: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        for layer in layers:
            x = F.silu(layer(x))
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images * 2 - 1
        e1 = self._run(self.enc1, x)
        e2 = self._run(self.enc2, F.avg_pool2d(e1, 2, ceil_mode=True))
        m = self._run(self.mid, F.avg_pool2d(e2, 2, ceil_mode=True))
        d2 = F.silu(self.dec2(torch.cat([e2, F.interpolate(m, size=e2.shape[-2:], mode="nearest")], 1)))
        d1 = F.silu(self.dec1(torch.cat([e1, F.interpolate(d2, size=e1.shape[-2:], mode="nearest")], 1)))
        return self.out(d1)


class DirectLevels(nn.Module):
    """Per-feature raw levels as free parameters (the ``adapter="direct"`` option).

    Example:
        >>> DirectLevels((2, 3, 4, 4), init_value=-5.0)(torch.rand(2, 3, 4, 4)).shape
        torch.Size([2, 3, 4, 4])
    """

    def __init__(self, shape: Tuple[int, ...], init_value: float = -5.0) -> None:
        super().__init__()
        self.raw = nn.Parameter(torch.full(shape, float(init_value)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.raw


def make_adapter(kind: str, images: torch.Tensor, init_value: float, width: int = 8, seed: int = 0,
                 copies: Optional[int] = None) -> nn.Module:
    """Per-image adapter for ``images`` (``copies`` defaults to the batch size)."""
    b, c = images.shape[:2]
    if kind == "unet":
        return AdapterUNet(c, c, width, copies or b, init_value, seed).to(images.device)
    if kind == "direct":
        return DirectLevels(tuple(images.shape), init_value).to(images.device)
    raise UsageError(f"adapter must be one of {', '.join(ADAPTERS)}, got {kind!r}")


HIDDEN_LR_FACTOR = 0.1


def param_groups(net: nn.Module, lr: float) -> List[Dict[str, Any]]:
    """Adam groups: the U-Net's hidden layers learn ``HIDDEN_LR_FACTOR`` times slower than its output layer.

    With one learning rate every hidden weight moves by ``lr`` in the same direction
    as soon as the zero-initialised output layer lets gradient through, and the
    output jumps by many units in one step; the levels then saturate at full noise
    where the sigmoid has no gradient left.
    """
    if not isinstance(net, AdapterUNet):
        return [{"params": list(net.parameters()), "lr": lr}]
    out = list(net.out.parameters())
    ids = {id(p) for p in out}
    hidden = [p for p in net.parameters() if id(p) not in ids]
    return [{"params": out, "lr": lr}, {"params": hidden, "lr": lr * HIDDEN_LR_FACTOR}]


# ============================================================================ the loss
def _loss_backward(model: nn.Module, strategy: LevelStrategy, raw: torch.Tensor, x_diff: torch.Tensor,
                   target: torch.Tensor, state: State, beta: float, noise_draws: int,
                   generators: Sequence[torch.Generator], chunk: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Back-propagate ``sum_b [mean_m CE_bm + beta * penalty_b]``; returns per-image (CE, penalty).

    With a detached ``raw`` nothing is back-propagated (the loss is only evaluated)."""
    levels = strategy.levels(raw)
    pen = strategy.penalty(levels, state, x_diff, generators)
    eps = draw_noise(generators, x_diff, noise_draws)
    b, m = x_diff.shape[0], noise_draws
    ce_all = torch.zeros(b, device=x_diff.device)
    y = target.repeat_interleave(m)
    rows = b * m
    for start in range(0, rows, chunk):
        sl = slice(start, min(rows, start + chunk))
        idx = torch.arange(sl.start, sl.stop, device=x_diff.device) // m
        xp = strategy.perturb(x_diff[idx], levels[idx], eps.flatten(0, 1)[sl])
        ce = F.cross_entropy(model(to_pixels(xp)), y[sl], reduction="none")
        if ce.requires_grad:
            (ce.sum() / m).backward(retain_graph=True)
        ce_all.index_add_(0, idx, ce.detach() / m)
    if beta > 0 and pen.requires_grad:
        (beta * pen.sum()).backward()
    return ce_all, pen.detach()


def to_pixels(x_diff: torch.Tensor) -> torch.Tensor:
    """Diffusion space -> [0,1], clamped in the forward pass with a straight-through gradient.

    A plain clamp has zero gradient wherever the noise pushes a value out of range,
    which at large noise (VE: sigma up to 50) is almost everywhere: the levels then
    only feel the information penalty and run away to full noise.
    """
    x = (x_diff + 1) / 2
    return x + (x.clamp(0, 1) - x).detach()


def _frozen(model: nn.Module):
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    return flags


def _restore(model: nn.Module, flags: List[bool]) -> None:
    for p, f in zip(model.parameters(), flags):
        p.requires_grad_(f)


def optimise_levels(model: nn.Module, strategy: LevelStrategy, images: torch.Tensor, target: torch.Tensor, *,
                    adapter: str = "unet", steps: int = 60, lr: float = 0.05, beta: float = 1.0,
                    noise_draws: int = 2, generators: Sequence[torch.Generator], width: int = 8, seed: int = 0,
                    internal_batch_size: int = 16, progress: bool = False,
                    state: State = None, average: float = 0.0,
                    keep: str = "last") -> Tuple[torch.Tensor, State, Dict[str, List[float]]]:
    """Per-image optimisation; returns (levels ``[B,C,H,W]``, state, history of mean CE/penalty).

    Every image has its own adapter parameters and noise stream, and the loss is a
    sum over images, so a batch gives exactly what each image gives alone.

    ``average``: the returned levels are the mean of the iterates over the last
    ``average`` fraction of the steps (and the final one) instead of the final
    iterate alone (tail iterate averaging, which damps the step-to-step noise of a
    loss drawn with fresh noise every step); 0 = the final iterate.

    ``keep="feasible"`` guards against collapse (the information penalty winning and
    the levels running to full noise, where the prediction is lost): per image it
    returns, among the iterates whose step cross-entropy stayed below ``FEASIBLE_CE``
    (ln 2), the one with the smallest penalty, i.e. the most noise that still held the
    prediction; an image with no such iterate gets the last one. ``keep="last"``
    (default) returns the last iterate (or the tail average).
    """
    if not 0.0 <= float(average) <= 1.0:
        raise UsageError(f"average must be in [0, 1], got {average}")
    _check_keep(keep, average)
    x_diff = images * 2 - 1
    if state is None:
        state = strategy.prepare(images, generators)
    net = make_adapter(adapter, images, strategy.init_value, width, seed)
    opt = torch.optim.Adam(param_groups(net, lr), lr=lr)
    history: Dict[str, List[float]] = {"ce": [], "penalty": []}
    first_averaged = int(steps) - int(round(float(average) * int(steps)))
    total, count = None, 0
    best, best_pen = None, None  # keep="feasible": per-image best iterate and its penalty
    flags = _frozen(model)
    try:
        for step in tqdm(range(int(steps)), desc=f"{type(strategy).__name__} levels", disable=not progress,
                         leave=False):
            opt.zero_grad(set_to_none=True)
            raw = net(images)
            if step >= first_averaged and step > 0:  # the iterate reached by the previous step
                lv = strategy.levels(raw.detach())
                total, count = (lv if total is None else total + lv), count + 1
            ce, pen = _loss_backward(model, strategy, raw, x_diff, target, state, beta, noise_draws,
                                     generators, internal_batch_size)
            if keep == "feasible":  # the iterate these ce and pen belong to (before this step's update)
                best, best_pen = _keep_feasible(strategy.levels(raw.detach()), ce, pen, best, best_pen)
            opt.step()
            history["ce"].append(float(ce.mean()))
            history["penalty"].append(float(pen.mean()))
        with torch.no_grad():
            raw = net(images)
            levels = strategy.levels(raw)
            if total is not None:
                levels = (total + levels) / (count + 1)
        if keep == "feasible":  # the last iterate competes too (its loss evaluated, not back-propagated)
            ce, pen = _loss_backward(model, strategy, raw, x_diff, target, state, beta, noise_draws,
                                     generators, internal_batch_size)
            best, best_pen = _keep_feasible(levels, ce, pen, best, best_pen)
            found = torch.isfinite(best_pen).view(-1, *([1] * (levels.dim() - 1)))
            levels = torch.where(found, best, levels)
    finally:
        _restore(model, flags)
    return levels.detach(), state, history


def _check_keep(keep: str, average: float) -> None:
    if keep not in KEEPS:
        raise UsageError(f"keep must be one of {', '.join(KEEPS)}, got {keep!r}")
    if keep == "feasible" and float(average) > 0:
        raise UsageError("keep='feasible' picks one iterate per image; it cannot be combined with average > 0")


def _keep_feasible(levels: torch.Tensor, ce: torch.Tensor, pen: torch.Tensor, best: Optional[torch.Tensor],
                   best_pen: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Update the per-image best feasible iterate (``best_pen`` is +inf where none was feasible yet)."""
    if best is None:
        best, best_pen = levels.clone(), torch.full_like(pen, math.inf)
    better = (ce < FEASIBLE_CE) & (pen < best_pen)
    if bool(better.any()):
        best[better] = levels[better]
        best_pen = torch.where(better, pen, best_pen)
    return best, best_pen


# ============================================================================ amortised
def train_adapter(model: nn.Module, strategy: LevelStrategy, images: torch.Tensor, *, steps: int = 300,
                  batch: int = 4, lr: float = 1e-3, beta: float = 1.0, noise_draws: int = 1, width: int = 8,
                  seed: int = 0, internal_batch_size: int = 16, progress: bool = True,
                  cache_state: bool = True) -> Tuple[AdapterUNet, Dict[str, List[float]]]:
    """Train one shared adapter over ``images`` (``[N,C,H,W]`` in [0,1]) with the per-image loss.

    Targets are the model's top-1 classes on the clean images. The strategy's
    per-image state is computed once per image (``cache_state``). Returns the
    adapter (``copies=1``) and the loss history.
    """
    if images.dim() != 4 or images.shape[0] < 1:
        raise UsageError("train_adapter: images must be a non-empty [N,C,H,W] tensor")
    device = images.device
    gen = torch.Generator(device=device).manual_seed(int(seed))
    with torch.no_grad():
        targets = torch.cat([model(images[i:i + internal_batch_size]).argmax(1)
                             for i in range(0, images.shape[0], internal_batch_size)])
    states = None
    if cache_state:
        states = collate_states([strategy.prepare(images[i:i + 1], [gen]) for i in range(images.shape[0])])
    net = AdapterUNet(images.shape[1], images.shape[1], width, 1, strategy.init_value, seed).to(device)
    opt = torch.optim.Adam(param_groups(net, lr), lr=lr)
    history: Dict[str, List[float]] = {"ce": [], "penalty": []}
    flags = _frozen(model)
    try:
        for _ in tqdm(range(int(steps)), desc="training adapter", disable=not progress):
            idx = torch.randperm(images.shape[0], generator=gen, device=device)[:batch]
            x = images[idx]
            gens = [gen] * x.shape[0]
            st = select_state(states, idx) if cache_state else strategy.prepare(x, gens)
            opt.zero_grad(set_to_none=True)
            ce, pen = _loss_backward(model, strategy, net(x), x * 2 - 1, targets[idx], st, beta, noise_draws,
                                     gens, internal_batch_size)
            opt.step()
            history["ce"].append(float(ce.mean()))
            history["penalty"].append(float(pen.mean()))
    finally:
        _restore(model, flags)
    return net.eval(), history


def save_adapter(adapter: AdapterUNet, folder: str | os.PathLike, meta: Optional[Dict[str, Any]] = None) -> Path:
    """Write ``adapter.safetensors`` and ``adapter.json`` (architecture + ``meta``) into ``folder``."""
    from safetensors.torch import save_file

    if not isinstance(adapter, AdapterUNet) or adapter.out.copies != 1:
        raise UsageError("only a shared (copies=1) AdapterUNet can be saved")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in adapter.state_dict().items()}
    save_file(state, str(folder / ADAPTER_WEIGHTS))
    (folder / ADAPTER_CONFIG).write_text(json.dumps({"kind": "unet", **adapter.config, **(meta or {})}, indent=2))
    return folder


def load_adapter(folder: str | os.PathLike, device: torch.device | str = "cpu") -> Tuple[AdapterUNet, Dict[str, Any]]:
    """Load an adapter saved by :func:`save_adapter`; returns (adapter, config)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"explainer folder {folder} does not exist")
    if not (folder / ADAPTER_CONFIG).exists():
        raise UsageError(f"explainer folder {folder} has no {ADAPTER_CONFIG} (train one with fisherattr train-explainer)")
    if not (folder / ADAPTER_WEIGHTS).exists():
        raise UsageError(f"explainer folder {folder} has no {ADAPTER_WEIGHTS}")
    cfg = json.loads((folder / ADAPTER_CONFIG).read_text())
    net = AdapterUNet(cfg["in_channels"], cfg["out_channels"], cfg["width"], 1, cfg["init_value"])
    net.load_state_dict(load_file(str(folder / ADAPTER_WEIGHTS)))
    return net.to(device).eval(), cfg


# ============================================================================ method base
class LevelMethod(AttributionMethod):
    """Base of the noise-level explainers (FDA, DiffIB): per-image or amortised.

    Subclasses implement :meth:`make_strategy` (and may extend :meth:`explainer_meta`
    and :meth:`check_explainer`). Options common to both:

    Args:
        mode: ``"per-image"`` (optimise an adapter for each image) or ``"amortised"``
            (one forward pass of a trained adapter, ``explainer=`` its folder).
        explainer: folder written by ``fisherattr train-explainer`` (amortised mode).
        beta: weight of the information penalty.
        steps, lr: Adam steps and learning rate of the per-image optimisation.
        noise_draws: perturbations per step (averaged cross-entropy).
        adapter: ``"unet"`` (small U-Net, the papers') or ``"direct"`` (free per-feature logits).
        adapter_width: channels of the U-Net's first stage.
        average: per-image mode: return the mean of the levels over the last ``average``
            fraction of the steps (tail iterate averaging); 0 = the last step's levels.
        keep: per-image mode: ``"last"`` (default) returns the last iterate; ``"feasible"``
            the iterate with the least information among those that held the prediction
            (step cross-entropy below ln 2), a guard against collapse to full noise.
    """

    def __init__(self, model: nn.Module, *, mode: str = "per-image", explainer: Optional[str] = None,
                 beta: float = 1.0, steps: int = 60, lr: float = 0.05, noise_draws: int = 2,
                 adapter: str = "unet", adapter_width: int = 8, seed: int = 0, internal_batch_size: int = 16,
                 progress: bool = False, average: float = 0.0, keep: str = "last") -> None:
        super().__init__(model, seed=seed, internal_batch_size=internal_batch_size, progress=progress)
        mode = str(mode).replace("_", "-").lower()
        if mode in ("amortized", "amortised"):
            mode = "amortised"
        if mode not in ("per-image", "amortised"):
            raise UsageError(f"mode must be 'per-image' or 'amortised', got {mode!r}")
        if float(beta) < 0:
            raise UsageError(f"beta must be >= 0, got {beta}")
        if int(steps) < 0:
            raise UsageError(f"steps must be >= 0, got {steps}")
        if float(lr) <= 0:
            raise UsageError(f"lr must be > 0, got {lr}")
        if int(noise_draws) < 1:
            raise UsageError(f"noise_draws must be >= 1, got {noise_draws}")
        if adapter not in ADAPTERS:
            raise UsageError(f"adapter must be one of {', '.join(ADAPTERS)}, got {adapter!r}")
        if not 0.0 <= float(average) <= 1.0:
            raise UsageError(f"average must be in [0, 1], got {average}")
        self.average = float(average)
        _check_keep(keep, self.average)
        self.keep = keep
        if int(adapter_width) < 1:
            raise UsageError(f"adapter_width must be >= 1, got {adapter_width}")
        self.mode, self.beta, self.steps, self.lr = mode, float(beta), int(steps), float(lr)
        self.noise_draws, self.adapter, self.adapter_width = int(noise_draws), adapter, int(adapter_width)
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
        return {"method": self.method_name, "beta": self.beta}

    def check_explainer(self, cfg: Dict[str, Any]) -> None:
        """Raise UsageError if a loaded adapter was trained for another method."""
        if cfg.get("method") not in (None, self.method_name):
            raise UsageError(f"explainer {self.explainer} was trained for {cfg.get('method')!r}, "
                             f"not {self.method_name!r}")

    # ---------------------------------------------------------------- running
    def _attribute(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        strategy = self.make_strategy(images)
        gens = self.generators(images.shape[0])
        x_diff = images * 2 - 1
        if self.mode == "amortised":
            adapter = self._adapter.to(images.device)
            state = strategy.prepare(images, gens)
            with torch.no_grad():
                levels = strategy.levels(adapter(images))
        else:
            levels, state, self.last_history = optimise_levels(
                self.model, strategy, images, target, adapter=self.adapter, steps=self.steps, lr=self.lr,
                beta=self.beta, noise_draws=self.noise_draws, generators=gens, width=self.adapter_width,
                seed=self.seed, internal_batch_size=self.internal_batch_size, progress=self.progress,
                average=self.average, keep=self.keep)
        self.last_levels = levels
        with torch.no_grad():
            return strategy.attribution(levels, state, x_diff, gens)

    def train_explainer(self, images: torch.Tensor, out: str | os.PathLike, *, steps: int = 300, batch: int = 4,
                        lr: float = 1e-3, noise_draws: Optional[int] = None,
                        progress: bool = True) -> Tuple[Path, Dict[str, List[float]]]:
        """Amortised training on ``images`` (``[N,3,H,W]`` in [0,1]); saves the adapter to ``out``."""
        images = images.to(self.device, dtype=torch.float32)
        strategy = self.make_strategy(images)
        net, hist = train_adapter(self.model.eval(), strategy, images, steps=steps, batch=batch, lr=lr,
                                  beta=self.beta, noise_draws=noise_draws or self.noise_draws,
                                  width=self.adapter_width, seed=self.seed,
                                  internal_batch_size=self.internal_batch_size, progress=progress)
        meta = {**self.explainer_meta(), "steps": steps, "batch": batch, "lr": lr, "train_images": images.shape[0],
                "final_ce": hist["ce"][-1] if hist["ce"] else None}
        return save_adapter(net, out, meta), hist


__all__ = ["AdapterUNet", "DirectLevels", "FEASIBLE_CE", "LevelMethod", "LevelStrategy", "collate_states", "load_adapter",
           "make_adapter", "optimise_levels", "save_adapter", "select_state", "train_adapter"]
