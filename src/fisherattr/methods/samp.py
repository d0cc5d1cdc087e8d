"""SAMP and SAMP++ (Zhang et al. 2023): attribution along manipulation paths.

A manipulation path moves ``s`` whole pixels per step from a start image to an
end image, choosing the pixels whose move changes the score fastest to first
order (the projection of the gradient on the remaining displacement). Two
paths are walked and summed: **deletion** ``x -> zero`` (zero in the model's
normalised space, i.e. its mean colour) whose attribution is negated, and
**insertion** ``blur(x) -> x``. Per step the attribution of the moved pixels
grows by ``sum_channels(move * g)``; per path ``sum(A) ~= f(end) - f(start)``.

SAMP++ adds the infinitesimal constraint (a step moves at most ``eta`` in L1,
``eta = ||end - start||_1 / 50`` by default) and momentum on the gradient
(``g = lam * g_prev + (1 - lam) * g_new``, lam 0.5). Plain SAMP has neither.

Defaults follow the official code (ExplainAttr ``benchmark/methods/sam.py``
with ``examples/run_benchmark.py``'s settings):

- ``selection='official'``: a step moves every unfinished pixel whose
  projection is within ``1e-6`` of the ``s``-th best one (near-ties included,
  so a step may move more than ``s`` pixels), and a pixel is finished once
  ``torch.isclose`` to the end (normalised values; matters after eta-scaled
  moves); ``'exact'`` moves exactly ``s`` and finishes a pixel on arrival.
- ``eta_space='normalised'``: the L1 lengths of the eta bound are measured on
  the model's normalised input (``|d| / std`` per channel), as the official
  code works on normalised tensors; ``'pixel'`` measures them in [0,1] units.
- the insertion start is ``gkern(klen, 5)`` (a delta through
  ``scipy.ndimage.gaussian_filter``) convolved with zero padding in
  normalised space; ``klen`` 31 at ImageNet size, 11 below 64 pixels.
- the walk itself runs where the official one does, on the network's
  normalised input (a :class:`~fisherattr.models.Classifier`'s ``net``, fed
  contiguous NCHW tensors), with its arithmetic: ``cur += move``, the eta
  bound ``L1 / n_frag`` (``n_frag = 1/eta``) and the scale
  ``bound / (L1(move) + 1e-8)``. Mathematically this changes nothing; it
  makes the rounding equal, which matters at ties: a selection near-tie at
  the 1e-6 margin, or a max-pool window of equal activations (flat image
  regions) whose arg-max, and with it the gradient, rounding decides. With
  pixel-space arithmetic the SAMP++ walks parted from the official ones on 3
  of 6 synthetic images (rel. L2 0.02-0.19); now the walks are identical
  (maps within 1e-7, ``tests/test_reference_samp.py``).

The official code rescales the summed map with ``norm_cam``; this one returns
the raw sum (rankings are unchanged).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Dict, Optional

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from ..errors import UsageError
from ..models import Classifier, normalized_zero
from .base import AttributionMethod, check_images, check_logits, resolve_target, Target
from .paths.blur import delta_kernel_blur
from .paths.core import SCORES, ScoreFunction, check_choice, check_positive_int
from .registry import register

DIRECTIONS = ("both", "deletion", "insertion")
SELECTIONS = ("official", "exact")
ETA_SPACES = ("normalised", "pixel")
#: The official code's tolerance when it selects pixels against the quantile.
NEAR_TIE = 1e-6
#: The official code's guard when it scales a move down to the eta bound: ``bound / (l1 + 1e-8)``.
SCALE_EPS = 1e-8
BASELINES = ("default", "zero", "black", "white", "uniform", "blur")


def default_pixels_per_step(height: int, width: int) -> int:
    """``224*16`` pixels per step at 224x224, scaled with the image area (at least 1)."""
    return max(1, round(16 * height * width / 224))


def default_blur(height: int, width: int) -> tuple:
    """(kernel length, sigma) of the insertion start: 31 and 5 at ImageNet size, 11 and 5 below 64 pixels."""
    return (11, 5.0) if min(height, width) < 64 else (31, 5.0)


@dataclass
class ManipulationPath:
    """The outcome of one manipulation path for a batch of B images.

    Attributes:
        attribution: ``[B,1,H,W]`` per-pixel attribution (not negated).
        f_start, f_end: the score at the start and end points ``[B]``.
        final: the last point of the path ``[B,C,H,W]`` (equals the end point).
        steps: number of steps taken per image ``[B]``.
        visits: how many steps moved each pixel ``[B,H,W]``.
        finished_at: the step (1-based) at which each pixel reached the end
            point, 0 for pixels that started there ``[B,H,W]``.
    """

    attribution: torch.Tensor
    f_start: torch.Tensor
    f_end: torch.Tensor
    final: torch.Tensor
    steps: torch.Tensor
    visits: torch.Tensor
    finished_at: torch.Tensor

    @property
    def completeness_gap(self) -> torch.Tensor:
        """``|sum(A) - (f_end - f_start)| / |f_end - f_start|`` per image."""
        d = self.f_end - self.f_start
        return (self.attribution.sum((1, 2, 3)) - d).abs() / d.abs().clamp_min(1e-12)


def manipulation_path(score: ScoreFunction, start: torch.Tensor, end: torch.Tensor, *, pixels_per_step: int,
                      eta: Optional[torch.Tensor] = None, lam: float = 0.0, lowest_first: bool = False,
                      near_tie: Optional[float] = None, l1_weight: Optional[torch.Tensor] = None,
                      at_end: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
                      progress: bool = False) -> ManipulationPath:
    """Walk a manipulation path from ``start`` to ``end`` (both ``[B,C,H,W]``).

    Each step takes the gradient ``g`` (momentum-smoothed when ``lam > 0``;
    the first step uses the raw gradient), the per-pixel projection
    ``p = sum_c g * (end - cur)`` over unfinished pixels, and moves the
    ``pixels_per_step`` pixels with the largest ``p`` (smallest when
    ``lowest_first``) to the end point (with ``near_tie``: every unfinished
    pixel within ``near_tie`` of the ``pixels_per_step``-th best, as the
    official code); if that move's L1 norm (per-channel weights
    ``l1_weight`` ``[C]``, default 1) exceeds ``eta[b]`` it is scaled by
    ``eta[b] / (L1 + 1e-8)`` and the pixels stay unfinished (unless
    ``at_end(cur, end)``, a ``[B,H,W]`` test such as the official
    ``isclose``, says they arrived). Without ``at_end`` a pixel that arrives
    is set to the end point exactly; with it the move is added
    (``cur + move``, the official arithmetic) and ``at_end`` judges arrival.
    The attribution of a pixel grows by ``sum_c move * g``. One forward +
    backward per step and one at the start; images that finish early stop.

    Example:
        >>> f = ScoreFunction(model, target)                                   # doctest: +SKIP
        >>> r = manipulation_path(f, images, zero, pixels_per_step=18)         # doctest: +SKIP
        >>> r.completeness_gap                                                 # doctest: +SKIP
    """
    b, c, h, w = start.shape
    s = check_positive_int("pixels_per_step", pixels_per_step)
    cur = start.clone()
    done = (end - cur).abs().sum(1) == 0
    if at_end is not None:
        done = done | at_end(cur, end)
    attr = torch.zeros(b, h, w, dtype=torch.float64, device=start.device)
    visits = torch.zeros(b, h, w, dtype=torch.long, device=start.device)
    finished_at = torch.zeros(b, h, w, dtype=torch.long, device=start.device)
    steps = torch.zeros(b, dtype=torch.long, device=start.device)
    f, g = score(cur[None])
    f_start, f_cur, g_cur = f[0].clone(), f[0].clone(), g[0].clone()
    g_mom = g_cur.clone()
    active = ~done.flatten(1).all(1)
    wl1 = None if l1_weight is None else l1_weight.to(start).view(1, -1, 1, 1)
    bar = tqdm(desc="manipulation path", disable=not progress, leave=False)
    while active.any():
        rows = active.nonzero().squeeze(1)
        g_new = g_cur[rows]
        gm = g_new if lam == 0 else torch.where((steps[rows] == 0).view(-1, 1, 1, 1), g_new,
                                                lam * g_mom[rows] + (1 - lam) * g_new)
        g_mom[rows] = gm
        x = cur[rows]
        disp = end[rows] - x
        fin = done[rows].flatten(1)
        proj = (gm * disp).sum(1).flatten(1)
        key = (-proj if lowest_first else proj).masked_fill(fin, float("-inf"))
        top = key.topk(min(s, h * w), dim=1)
        if near_tie is None:
            sel = torch.zeros_like(fin).scatter_(1, top.indices, True) & ~fin
        else:
            sel = (key > top.values[:, -1:] - near_tie) & ~fin
        sel4 = sel.view(-1, 1, h, w)
        move = disp * sel4
        if eta is None:
            partial = torch.zeros(len(rows), dtype=torch.bool, device=start.device)
        else:
            l1 = (move.abs() if wl1 is None else move.abs() * wl1).flatten(1).sum(1)
            e = eta[rows]
            partial = l1 > e
            move = torch.where(partial.view(-1, 1, 1, 1), move * (e / (l1 + SCALE_EPS)).view(-1, 1, 1, 1), move)
        if at_end is None:
            new = torch.where(sel4 & ~partial.view(-1, 1, 1, 1), end[rows], x + move)
            move = new - x
        else:
            new = x + move
        attr[rows] += (move * gm).sum(1).double()
        visits[rows] += sel.view(-1, h, w).long()
        steps[rows] += 1
        newly = sel.view(-1, h, w) & ~partial.view(-1, 1, 1)
        if at_end is not None:
            newly = newly | (at_end(new, end[rows]) & ~done[rows])
        finished_at[rows] = torch.where(newly, steps[rows].view(-1, 1, 1), finished_at[rows])
        done[rows] = done[rows] | newly
        cur[rows] = new
        f, g = score(new[None], rows=rows)
        f_cur[rows], g_cur[rows] = f[0], g[0]
        active = ~done.flatten(1).all(1)
        bar.update(1)
    bar.close()
    return ManipulationPath(attr.to(start.dtype).unsqueeze(1), f_start, f_cur, cur, steps, visits, finished_at)


@register("samp")
class SAMP(AttributionMethod):
    """SAMP: greedy manipulation paths (deletion negated + insertion), per pixel.

    Args:
        model: the classifier ([0,1] images in, logits out).
        direction: ``'both'`` (default), ``'deletion'`` or ``'insertion'``.
        baseline: ``'default'`` (deletion to the normalised zero, insertion
            from the Gaussian blur, as the official code) or one baseline for
            both paths: ``'zero'`` (normalised zero), ``'black'``, ``'white'``,
            ``'uniform'`` (seeded U[0,1] noise), ``'blur'`` (the paper's B/W/U/G).
        pixels_per_step: pixels moved per step (default ``224*16`` at
            224x224, scaled with the image area).
        eta: infinitesimal constraint as a fraction of the path's L1 length
            (``None`` = no constraint; SAMP++ uses 1/50).
        lam: gradient momentum (0 = none; SAMP++ uses 0.5).
        score: ``'logit'`` (official code) or ``'probability'``.
        blur_size, blur_sigma: the insertion start's ``gkern`` (default 31 and
            5, or 11 and 5 below 64 pixels), zero padded in normalised space.
        selection: ``'official'`` (near-ties within 1e-6 move too) or ``'exact'``.
        eta_space: ``'normalised'`` (official) or ``'pixel'``: where eta's L1 is measured.

    Example:
        >>> maps = SAMP(model).attribute(images)      # [B,1,H,W]  # doctest: +SKIP
    """

    per_pixel = True

    def __init__(self, model: nn.Module, *, direction: str = "both", baseline: str = "default",
                 pixels_per_step: Optional[int] = None, eta: Optional[float] = None, lam: float = 0.0,
                 score: str = "logit", blur_size: Optional[int] = None, blur_sigma: float = 5.0,
                 selection: str = "official", eta_space: str = "normalised", seed: int = 0,
                 internal_batch_size: Optional[int] = None, progress: bool = False) -> None:
        super().__init__(model, seed=seed, internal_batch_size=internal_batch_size, progress=progress)
        self.selection = check_choice("selection", selection, SELECTIONS)
        self.eta_space = check_choice("eta_space", eta_space, ETA_SPACES)
        self.direction = check_choice("direction", direction, DIRECTIONS)
        self.baseline = check_choice("baseline", baseline, BASELINES)
        self.pixels_per_step = None if pixels_per_step is None else check_positive_int("pixels_per_step",
                                                                                        pixels_per_step)
        if eta is not None and (isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0 < eta <= 1):
            raise UsageError(f"eta must be None or a fraction of the path length in (0, 1]; got {eta!r}")
        self.eta = None if eta is None else float(eta)
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0 <= lam < 1:
            raise UsageError(f"lam (momentum) must be a number in [0, 1); got {lam!r}")
        self.lam = float(lam)
        self.score = check_choice("score", score, SCORES)
        if blur_size is not None and (isinstance(blur_size, bool) or not isinstance(blur_size, int)
                                      or blur_size < 1 or blur_size % 2 == 0):
            raise UsageError(f"blur_size must be an odd integer >= 1; got {blur_size!r}")
        self.blur_size = blur_size
        if isinstance(blur_sigma, bool) or not isinstance(blur_sigma, (int, float)) or not blur_sigma > 0:
            raise UsageError(f"blur_sigma must be a number > 0; got {blur_sigma!r}")
        self.blur_sigma = float(blur_sigma)

    # ------------------------------------------------------------- helpers
    def blurred(self, images: torch.Tensor) -> torch.Tensor:
        """The insertion start: ``gkern`` blur, zero padded in the model's normalised space."""
        size = self.blur_size or default_blur(*images.shape[2:])[0]
        norm, denorm = getattr(self.model, "normalize", None), getattr(self.model, "denormalize", None)
        if not (callable(norm) and callable(denorm)):
            return delta_kernel_blur(images, size, self.blur_sigma)
        return denorm(delta_kernel_blur(norm(images), size, self.blur_sigma))

    def input_space(self):
        """``(network, to_input, from_input)``: where the walk runs, as in the official code.

        For a :class:`~fisherattr.models.Classifier` that is its ``net`` on
        normalised tensors (``normalize`` / ``denormalize`` convert); for any
        other module, the module itself on [0,1] images.
        """
        m = self.model
        if isinstance(m, Classifier) and type(m).forward is Classifier.forward:
            return m.net, m.normalize, m.denormalize
        return m, (lambda t: t), (lambda t: t)

    def l1_weight(self, channels: int) -> Optional[torch.Tensor]:
        """Per-channel weights of the eta L1 on the walk's (normalised) displacements: None for
        ``eta_space='normalised'``, ``std`` for ``'pixel'`` (``|d_pixel| = |d_normalised| * std``)."""
        std = getattr(self.model, "std", None)
        if self.eta_space == "normalised" or self.input_space()[0] is self.model or not isinstance(std, torch.Tensor):
            return None
        return std.detach().flatten().float().expand(channels)

    def baseline_image(self, images: torch.Tensor, which: str) -> torch.Tensor:
        """The path's other end in [0,1] pixel space (deletion: end, insertion: start)."""
        kind = self.baseline if self.baseline != "default" else ("zero" if which == "deletion" else "blur")
        if kind == "zero":
            return normalized_zero(self.model, images)
        if kind == "black":
            return torch.zeros_like(images)
        if kind == "white":
            return torch.ones_like(images)
        if kind == "uniform":
            gens = self.generators(images.shape[0], images.device)
            return torch.stack([torch.rand(images.shape[1:], generator=g, device=images.device) for g in gens])
        return self.blurred(images)

    def _baseline_input(self, images: torch.Tensor, z: torch.Tensor, which: str) -> torch.Tensor:
        """:meth:`baseline_image` in the walk's space ``z`` (the blur and the zero computed there directly)."""
        net, to_input, _ = self.input_space()
        kind = self.baseline if self.baseline != "default" else ("zero" if which == "deletion" else "blur")
        if kind == "blur":
            return delta_kernel_blur(z, self.blur_size or default_blur(*z.shape[2:])[0], self.blur_sigma)
        if kind == "zero" and net is not self.model:
            return torch.zeros_like(z)                     # the normalised zero, exactly
        return to_input(self.baseline_image(images, which)).contiguous()

    def _walk(self, images: torch.Tensor, target: torch.Tensor) -> Dict[str, ManipulationPath]:
        net, to_input, from_input = self.input_space()
        score = ScoreFunction(net, target, self.score, self.gradient_batch(images))
        s = self.pixels_per_step or default_pixels_per_step(*images.shape[2:])
        official = self.selection == "official"
        z = to_input(images).contiguous()                   # NCHW, as a data loader delivers it
        out = {}
        for which in ("deletion", "insertion"):
            if self.direction not in ("both", which):
                continue
            base = self._baseline_input(images, z, which)
            start, end = (z, base) if which == "deletion" else (base, z)
            w = self.l1_weight(images.shape[1])
            span = (end - start).abs() if w is None else (end - start).abs() * w.to(z).view(1, -1, 1, 1)
            # the official bound is L1 / n_frag with n_frag = 1/eta (1/(1/50) is exactly 50.0)
            eta = None if self.eta is None else span.flatten(1).sum(1) / (1.0 / self.eta)
            path = manipulation_path(score, start, end, pixels_per_step=s, eta=eta, lam=self.lam,
                                     lowest_first=which == "deletion", near_tie=NEAR_TIE if official else None,
                                     l1_weight=w, at_end=(lambda c, e: torch.isclose(c, e).all(1)) if official
                                     else None, progress=self.progress)
            # report the last point in pixel space; pixels that arrived are the end point itself
            end_px = images if which == "insertion" else self.baseline_image(images, which)
            arrived = torch.isclose(path.final, end).all(1, keepdim=True) | (path.final == end).all(1, keepdim=True)
            out[which] = replace(path, final=torch.where(arrived, end_px, from_input(path.final)))
        return out

    # --------------------------------------------------------------- public
    def walk(self, images: torch.Tensor, target: Target = None) -> Dict[str, ManipulationPath]:
        """The individual paths (``'deletion'`` and/or ``'insertion'``) with their diagnostics."""
        check_images(images, channels=getattr(self.model, "in_channels", 3))
        x = images.detach().to(self.device, dtype=torch.float32).clone().clamp_(0, 1)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                logits = self.model(x)
            check_logits(logits, x.shape[0])
            return self._walk(x, resolve_target(logits, target))
        finally:
            self.model.train(was_training)

    def _attribute(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        paths = self._walk(images, target)
        out = torch.zeros(images.shape[0], 1, *images.shape[2:], dtype=images.dtype, device=images.device)
        if "deletion" in paths:
            out -= paths["deletion"].attribution
        if "insertion" in paths:
            out += paths["insertion"].attribution
        return out


@register("samp++", "sampplusplus", "samp-pp")
class SAMPPlusPlus(SAMP):
    """SAMP++: SAMP with the infinitesimal constraint (eta = L1/50) and momentum (lam = 0.5).

    Example:
        >>> maps = SAMPPlusPlus(model, direction="both").attribute(images)  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, *, direction: str = "both", baseline: str = "default",
                 pixels_per_step: Optional[int] = None, eta: Optional[float] = 1 / 50, lam: float = 0.5,
                 score: str = "logit", blur_size: Optional[int] = None, blur_sigma: float = 5.0,
                 selection: str = "official", eta_space: str = "normalised", seed: int = 0,
                 internal_batch_size: Optional[int] = None, progress: bool = False) -> None:
        super().__init__(model, direction=direction, baseline=baseline, pixels_per_step=pixels_per_step, eta=eta,
                         lam=lam, score=score, blur_size=blur_size, blur_sigma=blur_sigma, selection=selection,
                         eta_space=eta_space, seed=seed, internal_batch_size=internal_batch_size,
                         progress=progress)
