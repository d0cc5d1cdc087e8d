"""Per-image optimisation of noise levels, shared by FDA and DiffIB.

The papers state a constrained problem (FDA eq. 3/4; DiffIB Algorithm 1): perturb
every feature as much as possible such that the classifier still predicts the
target. :func:`optimise_levels` solves it per image with a Lagrangian,

    minimise  mean_draws CE(f(x'), y)  +  beta_b * penalty_b(levels),

where the multiplier ``beta_b`` of each image is set by **dual ascent**
(:class:`DualAscent`): raised while the smoothed cross-entropy stays below
``-ln keep_prob`` plus the clean image's cross-entropy (the target keeps at least
``keep_prob`` times its clean probability, with room to spare, so more noise is
affordable), lowered when it rises above; ``constraint="absolute"`` drops the
clean term (the target keeps probability ``keep_prob``). It returns, per image, the iterate
with the least penalty among those that held the constraint. ``keep_prob=None``
keeps one fixed ``beta`` for every image (the papers' literal recipe).

Every image has its own adapter parameters, multiplier and noise stream, and the
loss is a sum over images, so a batch gives what each image gives alone.

Example:
    >>> d = DualAscent(torch.ones(2), keep_prob=0.8, lr=0.5)
    >>> d.update(torch.tensor([0.0, 5.0]))        # image 0 holds the constraint, image 1 does not
    >>> bool(d.beta[0] > 1.0 > d.beta[1])
    True
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..errors import UsageError
from ..layout import use_channels_last
from ..sde.information import draw_noise
from .level_adapters import make_adapter, param_groups, smooth_raw
from .level_strategy import PENALTIES, LevelStrategy, State

KEEPS = ("last", "feasible")
#: fractions of the way from the starting levels to an unverified candidate tried when no candidate
#: passes the re-check (:func:`choose_verified`)
BACKTRACK = (0.75, 0.5, 0.25, 0.0)
#: with ``backtrack=True``, backtracking starts where the re-checked probability (geometric mean over
#: the draws) is more than this far below the promised one. Off by default: on the dev images (robust
#: CNN, test 1000-1015, keep_prob 0.6) it lowered FDA's EHR from 0.921 to 0.884 and did not raise the
#: share of images that held under 64 fresh draws (15 of 16 either way); backtracking at the re-check's
#: own threshold: EHR 0.834, 16 of 16 held.
BACKTRACK_GIVE = 0.05
#: with a fixed beta, ``keep="feasible"`` counts an iterate as holding the prediction when its
#: step's cross-entropy is below ln 2 (the target's probability, geometric mean over the draws, > 1/2)
FEASIBLE_CE = math.log(2.0)


# ============================================================================ the multiplier
class DualAscent:
    """Per-image Lagrange multipliers for the constraint ``CE_b <= -ln keep_prob + offset_b``.

    ``log beta_b`` moves by ``lr * clamp((c - ce_b) / c, -1, 1)`` per step, where
    ``c = -ln keep_prob`` and ``ce_b`` is an exponential moving average (weight
    ``smoothing`` on the past) of image b's cross-entropy: up while the target's
    probability is above ``keep_prob``, down when it falls below, at most ``lr``
    per step up and ``max_down * lr`` down. Multipliers stay in ``[beta_min, beta_max]``.

    Args:
        beta: initial multipliers ``[B]``.
        keep_prob: the target probability to hold, in (0, 1).
        lr: step of ``log beta``.
        smoothing: weight of the past in the cross-entropy average (0 = this step only).
        offset: per image ``[B]``, added to the threshold; the clean image's cross-entropy makes the
            constraint relative, ``p_b >= keep_prob * p_clean_b`` (:func:`constraint_offset`).
            ``c`` is then a ``[B]`` tensor (always > 0: the clean cross-entropy is >= 0).
    """

    def __init__(self, beta: torch.Tensor, keep_prob: float, lr: float = 0.1, smoothing: float = 0.5,
                 beta_min: float = 1e-4, beta_max: float = 1e6, max_down: float = 1.0,
                 offset: Optional[torch.Tensor] = None) -> None:
        check_keep_prob(keep_prob)
        if not (float(lr) > 0 and math.isfinite(float(lr))):
            raise UsageError(f"dual_lr must be a finite number > 0, got {lr}")
        if not 0.0 <= float(smoothing) < 1.0:
            raise UsageError(f"smoothing must be in [0, 1), got {smoothing}")
        self.threshold: Union[float, torch.Tensor] = -math.log(float(keep_prob))
        if offset is not None:
            self.threshold = self.threshold + offset.detach().to(beta.dtype).clamp_min(0.0)
        self.lr, self.smoothing, self.max_down = float(lr), float(smoothing), float(max_down)
        self.log_min, self.log_max = math.log(beta_min), math.log(beta_max)
        self.log_beta = beta.clamp(beta_min, beta_max).log()
        self.ce: Optional[torch.Tensor] = None

    @property
    def beta(self) -> torch.Tensor:
        """Current multipliers ``[B]``."""
        return self.log_beta.exp()

    def update(self, ce: torch.Tensor) -> None:
        """One ascent step from this step's per-image cross-entropy ``[B]``."""
        ce = ce.detach().to(self.log_beta)
        self.ce = ce if self.ce is None else self.smoothing * self.ce + (1 - self.smoothing) * ce
        step = ((self.threshold - self.ce) / self.threshold).clamp(-self.max_down, 1.0)
        self.log_beta = (self.log_beta + self.lr * step).clamp(self.log_min, self.log_max)

    def holds(self, ce: torch.Tensor) -> torch.Tensor:
        """Per image: this step's and the smoothed cross-entropy are both within the constraint."""
        ok = ce < self.threshold
        return ok if self.ce is None else ok & (self.ce < self.threshold)


CONSTRAINTS = ("relative", "absolute")


def check_constraint(constraint: str) -> None:
    """UsageError unless ``constraint`` is one of :data:`CONSTRAINTS`."""
    if constraint not in CONSTRAINTS:
        raise UsageError(f"constraint must be one of {', '.join(CONSTRAINTS)}, got {constraint!r}")


def constraint_offset(model: nn.Module, images: torch.Tensor, target: torch.Tensor, constraint: str,
                      chunk: int = 16) -> Optional[torch.Tensor]:
    """The per-image threshold offset of ``constraint``: ``"relative"`` (``p >= keep_prob * p_clean``,
    offset = the clean image's cross-entropy) or ``"absolute"`` (``p >= keep_prob``, no offset).

    A photo classifier is often unsure on the clean photo (EfficientNet-Lite0 gives the top class of
    4 of the six sample photos p 0.29-0.39), so an absolute ``keep_prob`` of 0.8 cannot be met even
    without noise; the relative form asks the same of every image.
    """
    check_constraint(constraint)
    if constraint == "absolute":
        return None
    with torch.no_grad():
        return torch.cat([F.cross_entropy(model(images[i:i + chunk]), target[i:i + chunk], reduction="none")
                          for i in range(0, images.shape[0], chunk)])


def check_margin(name: str, value: object) -> float:
    """``float(value)`` for a probability margin in [0, 0.5) (``verify_margin``, ``aim_margin``), else UsageError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) < 0.5:
        raise UsageError(f"{name} must be a number in [0, 0.5), got {value!r}")
    return float(value)


def check_keep_prob(keep_prob: Optional[float]) -> None:
    """``None`` (fixed beta) or a probability strictly between 0 and 1."""
    if keep_prob is None:
        return
    if not (isinstance(keep_prob, (int, float)) and math.isfinite(float(keep_prob)) and 0 < float(keep_prob) < 1):
        raise UsageError(f"keep_prob must be a probability in (0, 1) or None (fixed beta), got {keep_prob!r}")


def check_nested(nested: Any, mode: str = "per-image") -> Tuple[float, ...]:
    """The ``nested`` option as a sorted tuple of distinct ``keep_prob`` values (``()`` = off).

    Example:
        >>> check_nested([0.9, 0.3, 0.6])
        (0.3, 0.6, 0.9)
    """
    if nested is None:
        return ()
    if isinstance(nested, (str, bytes)) or not isinstance(nested, (tuple, list)):
        raise UsageError(f"nested must be a sequence of keep_prob values such as (0.3, 0.6, 0.9), or () for off; "
                         f"got {nested!r}")
    values = []
    for k in nested:
        if k is None:  # check_keep_prob allows None (fixed beta); a nested value must be a probability
            raise UsageError(f"nested: every value must be a probability in (0, 1), got {k!r}")
        check_keep_prob(k)
        values.append(float(k))
    if values and mode == "amortised":
        raise UsageError("nested needs mode='per-image' (an amortised adapter was trained for one keep_prob)")
    return tuple(sorted(set(values)))


# ============================================================================ the loss
def loss_backward(model: nn.Module, strategy: LevelStrategy, raw: torch.Tensor, x_diff: torch.Tensor,
                  target: torch.Tensor, state: State, beta: Union[float, torch.Tensor], noise_draws: int,
                  generators: Sequence[torch.Generator], chunk: int,
                  penalty: str = "information", channels_last: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """Back-propagate ``sum_b [mean_m CE_bm + beta_b * penalty_b]``; returns per-image (CE, penalty).

    ``beta`` is one number or a ``[B]`` tensor. With a detached ``raw`` nothing is
    back-propagated (the loss is only evaluated)."""
    levels = strategy.levels(raw)
    pen = strategy.penalty(levels, state, x_diff, generators, kind=penalty)
    ce_all = perturbed_cross_entropy(model, strategy, x_diff, levels, target, noise_draws, generators, chunk,
                                     channels_last)
    if pen.requires_grad:
        weight = torch.as_tensor(beta, dtype=pen.dtype, device=pen.device).expand_as(pen)
        if bool((weight > 0).any()):
            (weight * pen).sum().backward()
    return ce_all, pen.detach()


def perturbed_cross_entropy(model: nn.Module, strategy: LevelStrategy, x_diff: torch.Tensor, levels: torch.Tensor,
                            target: torch.Tensor, noise_draws: int, generators: Sequence[torch.Generator],
                            chunk: int, channels_last: bool = False) -> torch.Tensor:
    """Per image, the cross-entropy of ``target`` averaged over ``noise_draws`` perturbations at ``levels``.

    When ``levels`` requires grad, the gradient of the sum over images is back-propagated
    chunk by chunk (``chunk`` classifier rows per call), so memory stays bounded.
    ``channels_last`` hands the classifier its input in that memory layout (same values;
    see :func:`fisherattr.layout.use_channels_last`)."""
    eps = draw_noise(generators, x_diff, noise_draws)
    b, m = x_diff.shape[0], noise_draws
    ce_all = torch.zeros(b, device=x_diff.device)
    y = target.repeat_interleave(m)
    rows = b * m
    for start in range(0, rows, chunk):
        sl = slice(start, min(rows, start + chunk))
        idx = torch.arange(sl.start, sl.stop, device=x_diff.device) // m
        xp = strategy.perturb(x_diff[idx], levels[idx], eps.flatten(0, 1)[sl])
        with torch.set_grad_enabled(levels.requires_grad):
            pixels = to_pixels(xp)
            if channels_last:
                pixels = pixels.contiguous(memory_format=torch.channels_last)
            ce = F.cross_entropy(model(pixels), y[sl], reduction="none")
        if ce.requires_grad:
            (ce.sum() / m).backward(retain_graph=True)
        ce_all.index_add_(0, idx, ce.detach() / m)
    return ce_all


def to_pixels(x_diff: torch.Tensor) -> torch.Tensor:
    """Diffusion space -> [0,1], clamped in the forward pass with a straight-through gradient.

    A plain clamp has zero gradient wherever the noise pushes a value out of range,
    which at large noise (VE: sigma up to 50) is almost everywhere: the levels then
    only feel the penalty and run away to full noise.
    """
    x = (x_diff + 1) / 2
    return x + (x.clamp(0, 1) - x).detach()


def frozen(model: nn.Module) -> List[bool]:
    """Switch off the model's parameter gradients; returns the old flags for :func:`restore`."""
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    return flags


def restore(model: nn.Module, flags: List[bool]) -> None:
    for p, f in zip(model.parameters(), flags):
        p.requires_grad_(f)


# ============================================================================ per-image loop
def optimise_levels(model: nn.Module, strategy: LevelStrategy, images: torch.Tensor, target: torch.Tensor, *,
                    generators: Sequence[torch.Generator], adapter: str = "direct", steps: int = 100,
                    lr: float = 0.3, beta: float = 1.0, keep_prob: Optional[float] = 0.6, dual_lr: float = 0.1,
                    penalty: str = "level", smooth_sigma: float = 1.0, share_channels: bool = False,
                    noise_draws: int = 4, width: int = 8, seed: int = 0, internal_batch_size: int = 16,
                    progress: bool = False, state: State = None, average: float = 0.0,
                    keep: str = "feasible", candidates: int = 4, verify_draws: int = 16,
                    verify_margin: float = 0.02, aim_margin: float = 0.05, memory_format: str = "auto",
                    constraint: str = "relative",
                    backtrack: bool = False) -> Tuple[torch.Tensor, State, Dict[str, List[float]]]:
    """Per-image optimisation; returns (levels ``[B,C,H,W]``, state, history).

    Args:
        adapter: ``"direct"`` (free per-feature raw values) or ``"unet"`` (per-image U-Net).
        beta: the fixed multiplier (``keep_prob=None``) or the initial one (dual ascent).
        keep_prob: the probability of the target to hold under the perturbation; ``None`` = fixed beta.
        constraint: ``"relative"``: the target keeps ``keep_prob`` times its clean probability;
            ``"absolute"``: the target keeps probability ``keep_prob`` (:func:`constraint_offset`).
        dual_lr: step of ``log beta`` per optimisation step (dual ascent).
        penalty: ``"level"`` or ``"information"`` (see :data:`.level_strategy.PENALTIES`).
        smooth_sigma: Gaussian smoothing of the raw values (pixels) before the level map; 0 = none.
        share_channels: one level per pixel for all channels.
        average: return the mean of the levels over the last ``average`` fraction of the steps
            (tail iterate averaging); 0 = one iterate.
        keep: ``"feasible"``: per image, the iterate with the least penalty among those that held
            the constraint (with a fixed beta: step cross-entropy below ln 2); an image with none
            gets the last iterate. ``"last"``: the last iterate (or the tail average).
        candidates, verify_draws: with ``keep_prob`` and ``keep="feasible"``, the ``candidates``
            feasible iterates of least penalty are re-checked with ``verify_draws`` fresh
            perturbations and the least-penalty one that still holds ``keep_prob + verify_margin``
            is returned (:func:`choose_verified`); ``verify_draws=0`` skips the check.
        aim_margin: with ``keep_prob``, the dual ascent and the feasible iterates aim at
            ``keep_prob + aim_margin`` (capped at 0.99) while the promise, and the re-check's bar,
            stay at ``keep_prob`` (+ ``verify_margin``): the iterates then sit above the promise
            instead of on it, so fewer of them hold it only by the luck of their few draws.
        backtrack: an image whose re-checked candidates all miss the promise by more than
            :data:`BACKTRACK_GIVE` gets its best candidate moved towards less noise until it holds
            (:func:`choose_verified`).
        memory_format: the classifier's input layout, ``"auto"``, ``"channels_last"`` or
            ``"contiguous"`` (:func:`fisherattr.layout.use_channels_last`); the values are the same either way.

    The history holds per step the mean cross-entropy, penalty and multiplier
    (``ce``, ``penalty``, ``beta``) and per image the final multiplier
    (``beta_final``) and whether a feasible iterate was found (``feasible``).
    """
    if not 0.0 <= float(average) <= 1.0:
        raise UsageError(f"average must be in [0, 1], got {average}")
    check_keep(keep, average)
    check_keep_prob(keep_prob)
    check_constraint(constraint)
    if penalty not in PENALTIES:
        raise UsageError(f"penalty must be one of {', '.join(PENALTIES)}, got {penalty!r}")
    cl = use_channels_last(memory_format, images)
    x_diff = images * 2 - 1
    b = images.shape[0]
    if state is None:
        state = strategy.prepare(images, generators)
    net = make_adapter(adapter, images, strategy.init_value, width, seed, share_channels=share_channels)
    opt = torch.optim.Adam(param_groups(net, lr), lr=lr)
    aim_margin = check_margin("aim_margin", aim_margin)
    # the probability the optimiser aims at (never below the promise, even for keep_prob > 0.99)
    aim = None if keep_prob is None else max(min(float(keep_prob) + aim_margin, 0.99), float(keep_prob))
    dual = None if keep_prob is None else DualAscent(
        torch.full((b,), float(beta), device=images.device), aim, dual_lr,
        offset=constraint_offset(model, images, target, constraint, internal_batch_size))
    history: Dict[str, List[float]] = {"ce": [], "penalty": [], "beta": []}
    first_averaged = int(steps) - int(round(float(average) * int(steps)))
    total, count = None, 0
    verify = dual is not None and int(verify_draws) > 0
    feasible = FeasibleIterates(int(candidates) if verify else 1)  # keep="feasible"

    def raw_levels() -> torch.Tensor:
        raw = smooth_raw(net(images), smooth_sigma)
        return raw.expand_as(images) if raw.shape[1] != images.shape[1] else raw

    flags = frozen(model)
    try:
        for step in tqdm(range(int(steps)), desc=f"{type(strategy).__name__} levels", disable=not progress,
                         leave=False):
            opt.zero_grad(set_to_none=True)
            raw = raw_levels()
            lv = strategy.levels(raw.detach())
            if step >= first_averaged and step > 0:  # the iterate reached by the previous step
                total, count = (lv if total is None else total + lv), count + 1
            weight = float(beta) if dual is None else dual.beta
            ce, pen = loss_backward(model, strategy, raw, x_diff, target, state, weight, noise_draws,
                                    generators, internal_batch_size, penalty, cl)
            history["beta"].append(float(torch.as_tensor(weight).mean()))
            if dual is not None:
                dual.update(ce)
            if keep == "feasible":  # the iterate these ce and pen belong to (before this step's update)
                feasible.offer(lv, ce < FEASIBLE_CE if dual is None else dual.holds(ce), pen)
            opt.step()
            history["ce"].append(float(ce.mean()))
            history["penalty"].append(float(pen.mean()))
        with torch.no_grad():
            raw = raw_levels()
            levels = strategy.levels(raw)
            if total is not None:
                levels = (total + levels) / (count + 1)
        if keep == "feasible":  # the last iterate competes too (its loss evaluated, not back-propagated)
            weight = float(beta) if dual is None else dual.beta
            ce, pen = loss_backward(model, strategy, raw, x_diff, target, state, weight, noise_draws,
                                    generators, internal_batch_size, penalty, cl)
            feasible.offer(levels, ce < FEASIBLE_CE if dual is None else ce < dual.threshold, pen)
            if verify:
                # the dual's threshold is -ln(aim) + offset; the promise's is -ln(keep_prob) + offset and
                # the re-check's -ln(keep_prob + verify_margin) + offset
                promise = dual.threshold + math.log(aim / float(keep_prob))
                strict = dual.threshold + math.log(aim / min(float(keep_prob) + float(verify_margin), 0.999))
                # backtrack only where the promise is broken by more than BACKTRACK_GIVE in probability
                promised = torch.as_tensor(promise).neg().exp()
                loose = -(promised - BACKTRACK_GIVE).clamp_min(1e-6).log() if backtrack else None
                chosen, passed = choose_verified(model, strategy, x_diff, target, feasible, strict,
                                                 int(verify_draws), generators, internal_batch_size, cl,
                                                 backtrack_threshold=loose)
                history["verified"] = passed
            else:
                chosen = [feasible.items[i][0][1] if feasible.found(i) else None for i in range(b)]
            history["feasible"] = [feasible.found(i) for i in range(b)]
            levels = torch.stack([c if c is not None else levels[i] for i, c in enumerate(chosen)])
    finally:
        restore(model, flags)
    history["beta_final"] = [float(v) for v in (dual.beta if dual is not None else torch.full((b,), float(beta)))]
    return levels.detach(), state, history


def check_keep(keep: str, average: float) -> None:
    if keep not in KEEPS:
        raise UsageError(f"keep must be one of {', '.join(KEEPS)}, got {keep!r}")
    if keep == "feasible" and float(average) > 0:
        raise UsageError("keep='feasible' picks one iterate per image; it cannot be combined with average > 0")


class FeasibleIterates:
    """Per image, the ``k`` iterates of least penalty among those that held the constraint.

    Example:
        >>> f = FeasibleIterates(k=2)
        >>> for pen in (3.0, 1.0, 2.0):
        ...     f.offer(torch.full((1, 1), pen), torch.tensor([True]), torch.tensor([pen]))
        >>> [p for p, _ in f.items[0]]
        [1.0, 2.0]
    """

    def __init__(self, k: int = 1) -> None:
        self.k = max(1, int(k))
        self.items: Optional[List[List[Tuple[float, torch.Tensor]]]] = None

    def offer(self, levels: torch.Tensor, ok: torch.Tensor, pen: torch.Tensor) -> None:
        """Consider this iterate (``levels [B,...]``) for the images where ``ok``."""
        if self.items is None:
            self.items = [[] for _ in range(levels.shape[0])]
        for b in torch.nonzero(ok).flatten().tolist():
            lst, p = self.items[b], float(pen[b])
            if len(lst) < self.k or p < lst[-1][0]:
                lst.append((p, levels[b].detach().clone()))
                lst.sort(key=lambda item: item[0])
                del lst[self.k:]

    def found(self, b: int) -> bool:
        return self.items is not None and len(self.items[b]) > 0


def choose_verified(model: nn.Module, strategy: LevelStrategy, x_diff: torch.Tensor, target: torch.Tensor,
                    candidates: FeasibleIterates, threshold: Union[float, torch.Tensor], draws: int,
                    generators: Sequence[torch.Generator], chunk: int, channels_last: bool = False,
                    backtrack_threshold: Union[None, float, torch.Tensor] = None
                    ) -> Tuple[List[Optional[torch.Tensor]], List[bool]]:
    """Per image, the least-penalty candidate whose cross-entropy under ``draws`` fresh perturbations is
    below ``threshold`` (one number or ``[B]``; else the candidate with the lowest such cross-entropy;
    None without candidates).

    The penalty ranking of the optimisation steps favours iterates whose few noise draws
    were lucky; re-checking with fresh draws removes that selection bias. With a
    ``backtrack_threshold`` (None = no backtracking), an image none of whose candidates passes
    and whose best candidate's cross-entropy is also above it (the promise broken by more than
    a tolerance) **backtracks**: that candidate's levels are moved towards the starting levels (almost no
    noise), ``start + s * (candidate - start)`` for ``s`` in :data:`BACKTRACK`, and the first
    that passes ``backtrack_threshold`` is returned (the map keeps the promise at the cost of
    some selectivity). Returns the levels and, per image, whether the chosen one passed."""
    b_all = x_diff.shape[0]
    chosen: List[Optional[torch.Tensor]] = [None] * b_all
    passed = [False] * b_all
    fallback: List[Tuple[float, Optional[torch.Tensor]]] = [(math.inf, None)] * b_all
    limit = torch.as_tensor(threshold).expand(b_all)
    items = candidates.items or [[] for _ in range(b_all)]
    for rank in range(candidates.k):
        todo = [b for b in range(b_all) if not passed[b] and len(items[b]) > rank]
        if not todo:
            break
        lv = torch.stack([items[b][rank][1] for b in todo])
        with torch.no_grad():
            ce = perturbed_cross_entropy(model, strategy, x_diff[todo], lv, target[todo], draws,
                                         [generators[b] for b in todo], chunk, channels_last)
        for j, b in enumerate(todo):
            c = float(ce[j])
            if c < float(limit[b]):
                chosen[b], passed[b] = lv[j], True
            elif c < fallback[b][0]:
                fallback[b] = (c, lv[j])
    loose = torch.as_tensor(math.inf if backtrack_threshold is None else backtrack_threshold).expand(b_all)
    todo = [b for b in range(b_all) if not passed[b] and fallback[b][1] is not None and fallback[b][0] >= float(loose[b])]
    if todo:
        start = strategy.levels(torch.full_like(fallback[todo[0]][1], float(strategy.init_value)))
        for s in BACKTRACK:
            todo = [b for b in todo if not passed[b]]
            if not todo:
                break
            lv = torch.stack([start + s * (fallback[b][1] - start) for b in todo])
            with torch.no_grad():
                ce = perturbed_cross_entropy(model, strategy, x_diff[todo], lv, target[todo], draws,
                                             [generators[b] for b in todo], chunk, channels_last)
            for j, b in enumerate(todo):
                if float(ce[j]) < float(loose[b]):
                    chosen[b], passed[b] = lv[j], True
    for b in range(b_all):
        if chosen[b] is None:
            chosen[b] = fallback[b][1]
    return chosen, passed


__all__ = ["BACKTRACK", "BACKTRACK_GIVE", "CONSTRAINTS", "DualAscent", "FEASIBLE_CE", "FeasibleIterates", "KEEPS",
           "check_constraint", "check_keep", "check_keep_prob", "check_margin", "choose_verified", "constraint_offset",
           "loss_backward", "optimise_levels", "perturbed_cross_entropy", "to_pixels"]

