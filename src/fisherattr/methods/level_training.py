"""Amortised level explainers: train one shared U-Net adapter over many images.

:func:`train_adapter` minimises the same per-image objective as the per-image
optimiser (:mod:`.level_optimiser`) on random mini-batches. With ``keep_prob``
set, every *training image* keeps its own multiplier, updated by dual ascent each
time the image is drawn, so the trained adapter learns levels that hold the
prediction at about ``keep_prob`` on each image rather than one compromise beta;
at explanation time no multiplier is needed (one forward pass).

Example:
    >>> # net, hist = train_adapter(model, strategy, images, steps=300, keep_prob=0.8)  # doctest: +SKIP
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from ..errors import UsageError
from ..layout import use_channels_last
from ..progress import progress_iter
from .level_adapters import AdapterUNet, param_groups, smooth_raw
from .level_optimiser import DualAscent, check_keep_prob, constraint_offset, frozen, loss_backward, restore
from .level_strategy import LevelStrategy, collate_states, select_state

#: a shared adapter that over-noises every image at once has little gradient left to recover
#: (saturated levels), so during training a violated constraint lowers beta up to 5x faster
MAX_DOWN = 5.0
#: training multipliers start this many times lower than the per-image ones: a shared adapter pushed
#: hard from the start noises every image at once and collapses (measured on the patch toy:
#: initial beta 10 collapsed to all-zero maps, 1 kept the patch)
START_SCALE = 0.1


def train_adapter(model: nn.Module, strategy: LevelStrategy, images: torch.Tensor, *, steps: int = 300,
                  batch: int = 4, lr: float = 1e-3, beta: float = 1.0, keep_prob: Optional[float] = None,
                  dual_lr: float = 0.1, penalty: str = "information", smooth_sigma: float = 0.0,
                  share_channels: bool = False, noise_draws: int = 1, width: int = 8, seed: int = 0,
                  internal_batch_size: int = 16, progress: bool = True,
                  cache_state: bool = True, memory_format: str = "auto",
                  constraint: str = "relative") -> Tuple[AdapterUNet, Dict[str, List[float]]]:
    """Train one shared adapter over ``images`` (``[N,C,H,W]`` in [0,1]) with the per-image loss.

    Targets are the model's top-1 classes on the clean images. The strategy's
    per-image state is computed once per image (``cache_state``), and only for the information
    penalty (the level penalty does not use it). ``keep_prob``:
    per-training-image multipliers by dual ascent (initial value ``beta * START_SCALE``);
    None = one fixed ``beta``. ``smooth_sigma`` is stored in the adapter's config and
    applied at explanation time too. Returns the adapter (``copies=1``) and the
    loss history (``ce``, ``penalty``, ``beta`` per step; ``beta_final`` per image).
    ``memory_format``: the classifier's input layout (:func:`fisherattr.layout.use_channels_last`);

    ``constraint``: ``"relative"`` or ``"absolute"`` (:func:`.level_optimiser.constraint_offset`).
    """
    if images.dim() != 4 or images.shape[0] < 1:
        raise UsageError("train_adapter: images must be a non-empty [N,C,H,W] tensor")
    check_keep_prob(keep_prob)
    cl = use_channels_last(memory_format, images)
    device = images.device
    n = images.shape[0]
    gen = torch.Generator(device=device).manual_seed(int(seed))
    with torch.no_grad():
        targets = torch.cat([model(images[i:i + internal_batch_size]).argmax(1)
                             for i in range(0, n, internal_batch_size)])
    # the per-image state (e.g. FDA's information curve) is computed only where the penalty reads it
    # (on the synthetic world it cost about 1 s per training image, far more than a training step)
    need_state = strategy.penalty_uses_state(penalty)
    states = None
    if cache_state and need_state:
        states = collate_states([strategy.prepare(images[i:i + 1], [gen]) for i in range(n)])
    c = images.shape[1]
    net = AdapterUNet(c, 1 if share_channels else c, width, 1, strategy.init_value, seed).to(device)
    net.config["smooth_sigma"] = float(smooth_sigma)
    opt = torch.optim.Adam(param_groups(net, lr), lr=lr)
    offset = None if keep_prob is None else constraint_offset(model, images, targets, constraint, internal_batch_size)
    dual = None if keep_prob is None else DualAscent(torch.full((n,), float(beta) * START_SCALE, device=device), keep_prob,
                                                     dual_lr, smoothing=0.0, max_down=MAX_DOWN, offset=offset)
    history: Dict[str, List[float]] = {"ce": [], "penalty": [], "beta": []}
    flags = frozen(model)
    try:
        for _ in progress_iter(range(int(steps)), desc="training adapter", unit="step", enabled=progress,
                               min_interval=10.0):
            idx = torch.randperm(n, generator=gen, device=device)[:batch]
            x = images[idx]
            gens = [gen] * x.shape[0]
            st = None
            if need_state:
                st = select_state(states, idx) if cache_state else strategy.prepare(x, gens)
            opt.zero_grad(set_to_none=True)
            raw = smooth_raw(net(x), smooth_sigma).expand_as(x)
            weight = float(beta) if dual is None else dual.beta[idx]
            ce, pen = loss_backward(model, strategy, raw, x * 2 - 1, targets[idx], st, weight, noise_draws,
                                    gens, internal_batch_size, penalty, cl)
            if dual is not None:  # only the drawn images' multipliers move
                sub = DualAscent(dual.beta[idx], keep_prob, dual_lr, smoothing=0.0, max_down=MAX_DOWN,
                                 offset=None if offset is None else offset[idx])
                sub.update(ce)
                dual.log_beta[idx] = sub.log_beta
            opt.step()
            history["ce"].append(float(ce.mean()))
            history["penalty"].append(float(pen.mean()))
            history["beta"].append(float(torch.as_tensor(weight).mean()))
    finally:
        restore(model, flags)
    history["beta_final"] = [float(v) for v in (dual.beta if dual is not None else torch.full((n,), float(beta)))]
    return net.eval(), history


def explain_with_adapter(adapter: AdapterUNet, strategy: LevelStrategy, images: torch.Tensor) -> torch.Tensor:
    """Levels of ``images`` from a trained adapter (one forward pass, its stored smoothing applied)."""
    with torch.no_grad():
        raw = smooth_raw(adapter(images), float(adapter.config.get("smooth_sigma", 0.0)))
        return strategy.levels(raw.expand_as(images))


__all__ = ["explain_with_adapter", "train_adapter"]
