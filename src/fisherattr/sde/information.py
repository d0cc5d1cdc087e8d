"""Information curves and the information retained per feature (METHODS.md 1.2-1.6).

Two per-feature curves measured with a frozen score model (whole image at one
level, ``draws`` noise draws per level, no autograd):

- :func:`mmse_curve` (I-MMSE form, on a log-SNR grid):
  ``mmse_i(lam) = E_eps (eps_hat_i - eps_i)^2``;
- :func:`fisher_curve` (Fisher form, on a time grid of a VP/VE/DDPM schedule):
  ``e_i(t) = g2(t) * E_eps (s_theta_i(x_t) - s_i(x_t | x_0))^2`` computed in the
  SDE's own space (the score model's eps converted to a score).

They are one curve in two variables: ``e_i(t) dt = -mmse_i(lam) dlam``.

Information retained at a per-feature level, integrated from the noisy end:

- :func:`retained_grid`: from a precomputed curve, by linear interpolation
  between nodes and exact integration of the interpolant; differentiable in the
  level (``dA/dt = -e(t)/2``, ``dA/dlam = mmse(lam)/2``) and never through the
  score model;
- :func:`retained_pixelwise`: the papers' implementation for score models that
  accept per-feature level maps: a quadrature rule after a change of variables
  (Jacobian included), differentiable in the level map through the score model.

Randomness: ``generators`` is one :class:`torch.Generator` per image (image b
draws only from ``generators[b]``, in a fixed order, so a batch gives what each
image gives alone), or a single generator shared by the batch.

Example:
    >>> from fisherattr.scores import DiagonalGaussian
    >>> sm = DiagonalGaussian(mean=torch.zeros(1, 2, 2), var=torch.full((1, 2, 2), 0.25))
    >>> lams = torch.linspace(-8.0, 8.0, 33)
    >>> x = torch.full((1, 1, 2, 2), 0.5)
    >>> curve = mmse_curve(sm, x, lams, draws=2, antithetic=True)
    >>> a = retained_grid(curve, lams, torch.full((1, 1, 2, 2), 8.0), param="log_snr")
    >>> a.shape
    torch.Size([1, 1, 2, 2])
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Union

import torch
from tqdm.auto import tqdm

from ..batching import forward_batch_size
from ..errors import UsageError
from . import quadrature
from .schedules import Schedule, vp_perturb

Generators = Union[None, torch.Generator, Sequence[torch.Generator]]
NoiseFn = Callable[[tuple, torch.Generator], torch.Tensor]


def gaussian_noise(shape: tuple, generator: torch.Generator) -> torch.Tensor:
    """Standard normal noise drawn from ``generator`` (on the generator's device)."""
    return torch.randn(shape, generator=generator, device=generator.device)


def _generator_list(generators: Generators, b: int, device: torch.device) -> List[torch.Generator]:
    if generators is None:
        g = torch.Generator(device=device)
        g.manual_seed(0)
        return [g] * b
    if isinstance(generators, torch.Generator):
        return [generators] * b
    gens = list(generators)
    if len(gens) != b:
        raise UsageError(f"generators: need one per image ({b}), got {len(gens)}")
    return gens


def draw_noise(generators: Generators, like: torch.Tensor, draws: int, *, antithetic: bool = False,
               noise: Optional[NoiseFn] = None) -> torch.Tensor:
    """``[B, draws, C, H, W]`` noise; image b uses ``generators[b]``.

    With ``antithetic=True`` the second half of the draws is the negated first
    half (``draws`` must be even): the mean of the noise is exactly zero.
    """
    b = like.shape[0]
    if draws < 1:
        raise UsageError(f"draws must be >= 1, got {draws}")
    if antithetic and draws % 2:
        raise UsageError(f"antithetic noise needs an even number of draws, got {draws}")
    fn = noise or gaussian_noise
    gens = _generator_list(generators, b, like.device)
    m = draws // 2 if antithetic else draws
    out = []
    for i in range(b):
        e = fn((m, *like.shape[1:]), gens[i]).to(device=like.device, dtype=like.dtype)
        out.append(torch.cat([e, -e]) if antithetic else e)
    return torch.stack(out)


def _rows(fn: Callable[[slice], torch.Tensor], n: int, batch_size: int, like: torch.Tensor) -> torch.Tensor:
    """``fn`` over ``n`` rows, at most ``batch_size`` at a time, fewer on a CPU when rows like ``like``
    are large (:func:`fisherattr.batching.forward_batch_size`: score models are memory bound there)."""
    batch_size = forward_batch_size(like, cap=batch_size)
    return torch.cat([fn(slice(i, min(i + batch_size, n))) for i in range(0, n, batch_size)])


@torch.no_grad()
def mmse_curve(score_model, x_diff: torch.Tensor, log_snrs: torch.Tensor, draws: int = 4,
               generators: Generators = None, *, antithetic: bool = False, noise: Optional[NoiseFn] = None,
               batch_size: int = 16, progress: bool = False, exact: bool = True) -> torch.Tensor:
    """Per-feature eps squared error ``[L, B, C, H, W]`` at each log-SNR (whole image at one level).

    ``x_diff``: images in diffusion space ``[B,C,H,W]``; ``log_snrs``: ``[L]``.
    Score-model calls are batched ``batch_size`` rows at a time (memory bound).
    With ``exact=True`` (default) and Gaussian noise, a score model that knows the
    noise average in closed form (``ScoreModel.expected_eps_error``, e.g. the analytic
    Gaussian prior) supplies it instead of ``draws`` Monte Carlo draws: the curve is
    then free of sampling noise and no generator is consumed.
    """
    lams = torch.as_tensor(log_snrs, dtype=x_diff.dtype, device=x_diff.device).reshape(-1)
    b, m = x_diff.shape[0], int(draws)
    out = torch.empty((lams.numel(), *x_diff.shape), dtype=x_diff.dtype, device=x_diff.device)
    closed = getattr(score_model, "expected_eps_error", None)
    if exact and noise is None and not antithetic and callable(closed):
        first = closed(x_diff, lams[0].expand(b))
        if first is not None:
            out[0] = first
            for li in range(1, lams.numel()):
                out[li] = closed(x_diff, lams[li].expand(b))
            return out
    for li in tqdm(range(lams.numel()), desc="mmse curve", disable=not progress, leave=False):
        eps = draw_noise(generators, x_diff, m, antithetic=antithetic, noise=noise)  # [B,M,C,H,W]
        z = vp_perturb(x_diff[:, None], lams[li], eps).flatten(0, 1)
        flat_eps = eps.flatten(0, 1)
        lam_rows = lams[li].expand(z.shape[0])

        def err(s: slice) -> torch.Tensor:
            return (score_model.predict_eps(z[s], lam_rows[s]) - flat_eps[s]) ** 2

        out[li] = _rows(err, z.shape[0], batch_size, z).view(b, m, *x_diff.shape[1:]).mean(1)
    return out


@torch.no_grad()
def fisher_curve(score_model, schedule: Schedule, x_diff: torch.Tensor, ts: torch.Tensor, draws: int = 4,
                 generators: Generators = None, *, antithetic: bool = False, noise: Optional[NoiseFn] = None,
                 batch_size: int = 16, progress: bool = False) -> torch.Tensor:
    """Per-feature Fisher integrand ``e_i(t)`` ``[L, B, C, H, W]`` on the times ``ts`` ``[L]``.

    ``e_i(t) = g2(t) * E (s_theta_i(x_t) + (x_t - alpha x_0)_i / sigma^2)^2`` with the model's
    score ``s_theta = -eps_hat / sigma`` in the SDE's own space (VP: ``x_t``; VE: ``x_0 + sigma eps``).
    """
    ts = torch.as_tensor(ts, dtype=x_diff.dtype, device=x_diff.device).reshape(-1)
    b, m = x_diff.shape[0], int(draws)
    out = torch.empty((ts.numel(), *x_diff.shape), dtype=x_diff.dtype, device=x_diff.device)
    for li in tqdm(range(ts.numel()), desc="fisher curve", disable=not progress, leave=False):
        t = ts[li]
        eps = draw_noise(generators, x_diff, m, antithetic=antithetic, noise=noise).flatten(0, 1)
        x0 = x_diff.repeat_interleave(m, 0)
        x_t = schedule.perturb(x0, t, eps)
        a, s, g2 = schedule.alpha(t), schedule.sigma(t), schedule.g2(t)
        z, lam = schedule.to_vp(x_t, t)
        lam_rows = lam.expand(z.shape[0])

        def sq(sl: slice) -> torch.Tensor:
            score = -score_model.predict_eps(z[sl], lam_rows[sl]) / s
            cond = -(x_t[sl] - a * x0[sl]) / s ** 2
            return g2 * (score - cond) ** 2

        out[li] = _rows(sq, z.shape[0], batch_size, z).view(b, m, *x_diff.shape[1:]).mean(1)
    return out


def _cumulative(curve: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Integral of the piecewise-linear interpolant from ``grid[0]`` to each node: ``[L, ...]``."""
    h = (grid[1:] - grid[:-1]).view(-1, *([1] * (curve.dim() - 1)))
    seg = 0.5 * (curve[1:] + curve[:-1]) * h
    return torch.cat([torch.zeros_like(curve[:1]), torch.cumsum(seg, 0)])


def cumulative_integral(curve: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """``[L, ...]``: the integral of the linear interpolant of ``curve`` from ``grid[0]`` to each node.

    Compute it once per curve and pass it to :func:`integral_to` / :func:`retained_grid`
    when the same curve is integrated to many levels (e.g. every optimisation step).
    """
    grid = torch.as_tensor(grid, dtype=curve.dtype, device=curve.device).reshape(-1)
    return _cumulative(curve, grid)


def integral_to(curve: torch.Tensor, grid: torch.Tensor, level: torch.Tensor,
                cumulative: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``int_{grid[0]}^{level} y``, ``y`` the per-feature linear interpolant of ``curve`` on ``grid``.

    ``curve``: ``[L, B, C, H, W]`` (or ``[L, *S]``); ``grid``: ``[L]`` ascending; ``level``
    broadcastable to ``curve[0]``, clamped to the grid. Differentiable in ``level``.
    ``cumulative``: :func:`cumulative_integral` of the same curve and grid, if already known.
    """
    grid = torch.as_tensor(grid, dtype=curve.dtype, device=curve.device).reshape(-1)
    if grid.numel() != curve.shape[0] or grid.numel() < 2:
        raise UsageError(f"grid has {grid.numel()} nodes for a curve of {curve.shape[0]} levels (need >= 2)")
    if not bool((grid[1:] > grid[:-1]).all()):
        raise UsageError("grid nodes must be strictly increasing")
    level = level.to(curve.dtype).expand(curve.shape[1:])
    lv = level.clamp(float(grid[0]), float(grid[-1]))
    idx = (torch.searchsorted(grid, lv.detach().reshape(-1).contiguous()) - 1).clamp(0, grid.numel() - 2)
    idx = idx.view(1, *lv.shape)
    cum = _cumulative(curve, grid) if cumulative is None else cumulative
    y0 = curve.gather(0, idx)[0]
    y1 = curve.gather(0, idx + 1)[0]
    c0 = cum.gather(0, idx)[0]
    g0, g1 = grid[idx[0]], grid[idx[0] + 1]
    d = lv - g0
    slope = (y1 - y0) / (g1 - g0)
    return c0 + y0 * d + 0.5 * slope * d * d


def retained_grid(curve: torch.Tensor, grid: torch.Tensor, level: torch.Tensor, param: str = "t",
                  cumulative: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Information retained ``A_i(level)`` from a per-feature curve on a grid of nodes (METHODS.md 1.5-1.6).

    - ``param="t"``: ``curve`` is the Fisher integrand ``e(t)`` on times ``grid``;
      ``A = 1/2 int_t^{grid[-1]} e dt`` (the noisy end is the last node).
    - ``param="log_snr"``: ``curve`` is ``mmse_eps(lam)`` on log-SNRs ``grid``;
      ``A = 1/2 int_{grid[0]}^{lam} mmse dlam`` (``grid[0]`` is the floor ``alpha_min``).

    Levels outside the grid are clamped (zero gradient there). ``cumulative``: see
    :func:`cumulative_integral` (saves recomputing it on every call with the same curve).
    """
    if param not in ("t", "log_snr"):
        raise UsageError(f"param must be 't' or 'log_snr', got {param!r}")
    if cumulative is None:
        cumulative = cumulative_integral(curve, grid)
    if param == "t":
        total = cumulative[-1]  # the integral over the whole grid
        return 0.5 * (total - integral_to(curve, grid, level, cumulative))
    return 0.5 * integral_to(curve, grid, level, cumulative)  # param == "log_snr"


def retained_pixelwise(score_model, x_diff: torch.Tensor, level_map: torch.Tensor, *, param: str = "t",
                       schedule: Optional[Schedule] = None, quadrature_kind: str = "log-snr", k: int = 8,
                       draws: int = 1, generators: Generators = None, end: Optional[float] = None,
                       antithetic: bool = False, noise: Optional[NoiseFn] = None) -> torch.Tensor:
    """Information retained per feature with per-feature levels, by quadrature (METHODS.md 1.6).

    ``score_model`` must accept level maps. ``level_map`` ``[B,C,H,W]``:

    - ``param="t"`` (FDA; needs ``schedule``): times ``t_i``; ``A_i = 1/2 int_{t_i}^{end} e_i dt``
      with ``end = 1`` by default. With a time rule (``trapezoid``, ``gauss-legendre``) the nodes
      are ``t = t_i + u (end - t_i)`` (Jacobian ``end - t_i``) and the integrand is the Fisher
      form; with a log-SNR rule the nodes are uniform between ``lam(end)`` and ``lam(t_i)``
      (Jacobian ``lam(t_i) - lam(end)``) and the integrand is the eps-MMSE.
    - ``param="log_snr"`` (DiffIB): log-SNRs ``alpha_i``; ``A_i = 1/2 int_{end}^{alpha_i} mmse_i``
      with ``end`` the floor ``alpha_min`` (required); always integrated in log-SNR.

    Differentiable w.r.t. ``level_map`` (through the score model's input and level map).
    """
    u, w = quadrature.nodes(quadrature_kind, k, dtype=x_diff.dtype)
    u, w = u.to(x_diff.device), w.to(x_diff.device)
    var = quadrature.variable(quadrature_kind)
    b, m = x_diff.shape[0], int(draws)
    x0 = x_diff.repeat_interleave(m, 0)
    if param == "log_snr":
        if end is None:
            raise UsageError("retained_pixelwise: param='log_snr' needs end=alpha_min (the floor)")
        lam_i, lam_lo, var = level_map, torch.as_tensor(float(end), dtype=x_diff.dtype), "log_snr"
    elif param == "t":
        if schedule is None:
            raise UsageError("retained_pixelwise: param='t' needs a schedule")
        t_end = torch.as_tensor(1.0 if end is None else float(end), dtype=x_diff.dtype, device=x_diff.device)
        lam_i, lam_lo = schedule.log_snr(level_map), schedule.log_snr(t_end)
    else:
        raise UsageError(f"param must be 't' or 'log_snr', got {param!r}")
    total = torch.zeros_like(level_map.expand_as(x_diff))
    for uk, wk in zip(u, w):
        eps = draw_noise(generators, x_diff, m, antithetic=antithetic, noise=noise).flatten(0, 1)
        if var == "log_snr":
            lam = (lam_lo + uk * (lam_i - lam_lo)).expand_as(x_diff).repeat_interleave(m, 0)
            eps_hat = score_model.predict_eps(vp_perturb(x0, lam, eps), lam)
            val = ((eps_hat - eps) ** 2).view(b, m, *x_diff.shape[1:]).mean(1)
        else:
            t = (level_map + uk * (t_end - level_map)).expand_as(x_diff).repeat_interleave(m, 0)
            x_t = schedule.perturb(x0, t, eps)
            a, s, g2 = schedule.alpha(t), schedule.sigma(t), schedule.g2(t)
            z, lam = schedule.to_vp(x_t, t)
            score = -score_model.predict_eps(z, lam) / s
            val = (g2 * (score + (x_t - a * x0) / s ** 2) ** 2).view(b, m, *x_diff.shape[1:]).mean(1)
        total = total + wk * val
    jac = (lam_i - lam_lo) if var == "log_snr" else (t_end - level_map)
    return 0.5 * jac * total


__all__ = ["draw_noise", "fisher_curve", "gaussian_noise", "integral_to", "mmse_curve", "retained_grid",
           "retained_pixelwise"]
