"""The shared SDE maths against closed forms (METHODS.md 1.1-1.8)."""
from __future__ import annotations

import math

import pytest
import torch

from fisherattr.errors import UsageError
from fisherattr.scores.gaussian import DiagonalGaussian
from fisherattr.sde import (DDPMSchedule, VESchedule, VPSchedule, fisher_curve, get_schedule, mmse_curve, nodes,
                            retained_grid, retained_pixelwise, vp_perturb)

SCHEDULES = [VPSchedule(), VESchedule()]


def _ones(shape, generator):
    """Deterministic 'noise' +1; with antithetic draws the pair (+1, -1) is an exact 2-point
    Gauss-Hermite rule, so the eps-average of a quadratic (the diagonal Gaussian's error) is exact."""
    return torch.ones(shape, dtype=torch.float64)


def _toy(dtype=torch.float64):
    """A diagonal Gaussian with distinct per-feature variances and an x0 with (x0 - m)^2 = v,
    for which the pointwise eps-MSE equals the population MMSE SNR v / (1 + SNR v)."""
    c, h, w = 2, 3, 3
    var = torch.linspace(0.02, 1.0, c * h * w, dtype=dtype).view(c, h, w)
    mean = torch.linspace(-0.3, 0.3, c * h * w, dtype=dtype).view(c, h, w)
    sign = torch.where(torch.arange(c * h * w) % 2 == 0, 1.0, -1.0).to(dtype).view(c, h, w)
    x0 = (mean + sign * var.sqrt())[None]
    sm = DiagonalGaussian(mean, var).double()
    return sm, x0, var


def _closed_form(schedule, var, t):
    """A_i(t) = I_i(t) - I_i(1), I_i = 1/2 log(1 + SNR v_i)."""
    def mi(tt):
        snr = torch.exp(schedule.log_snr(torch.as_tensor(tt, dtype=torch.float64)))
        return 0.5 * torch.log1p(snr * var)
    return mi(t) - mi(1.0)


# ----------------------------------------------------------------------------- schedules
@pytest.mark.parametrize("sched", [VPSchedule(), VESchedule(), DDPMSchedule()])
def test_log_snr_inverse_and_derivative(sched):
    t = torch.tensor([0.01, 0.1, 0.37, 0.8, 1.0], dtype=torch.float64, requires_grad=True)
    lam = sched.log_snr(t)
    assert torch.allclose(sched.t_of_log_snr(lam.detach()), t.detach(), atol=1e-6)
    if not isinstance(sched, DDPMSchedule):  # DDPM's g2 is piecewise constant; checked against VP below
        (grad,) = torch.autograd.grad(lam.sum(), t)
        assert torch.allclose(grad, sched.dlog_snr_dt(t.detach()), rtol=1e-6)
        # lam = log(alpha^2 / sigma^2)
        assert torch.allclose(lam, torch.log(sched.alpha(t) ** 2 / sched.sigma(t) ** 2), rtol=1e-9)


def test_vp_closed_forms_and_ddpm_equivalence():
    vp, dd = VPSchedule(), DDPMSchedule()
    t = torch.tensor([0.05, 0.5, 1.0], dtype=torch.float64)
    big_b = 0.1 * t + 0.5 * 19.9 * t ** 2
    assert torch.allclose(vp.alpha(t), torch.exp(-big_b / 2))
    assert torch.allclose(vp.sigma(t) ** 2, 1 - torch.exp(-big_b))
    assert torch.allclose(vp.g2(t), 0.1 + 19.9 * t)
    # -log(1 - beta) = beta + beta^2/2 + ...: the discrete schedule drifts by sum(beta^2)/2 ~ 0.07 at t = 1
    assert (dd.big_b(t) - vp.big_b(t)).abs().max() < 0.07
    assert (dd.big_b(t) - vp.big_b(t)).abs()[0] < 1e-3
    assert VESchedule().g2(torch.tensor(1.0)).item() == pytest.approx(2 * math.log(5000) * 2500, rel=1e-5)
    assert isinstance(get_schedule("ve"), VESchedule)
    with pytest.raises(UsageError, match="sde"):
        get_schedule("subvp")


@pytest.mark.parametrize("sched", SCHEDULES)
def test_to_vp_is_the_log_snr_parametrisation(sched):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(x.shape, generator=g, dtype=torch.float64)
    t = torch.rand(x.shape, generator=g, dtype=torch.float64) * 0.9 + 0.05  # per-feature levels
    z, lam = sched.to_vp(sched.perturb(x, t, eps), t)
    assert torch.allclose(z, vp_perturb(x, lam, eps), atol=1e-10)


def test_quadrature_rules():
    u, w = nodes("gauss-legendre", 4)
    assert float(w.sum()) == pytest.approx(1.0)
    assert float((w * u ** 7).sum()) == pytest.approx(1 / 8, rel=1e-12)  # exact to degree 2K-1
    u, w = nodes("trapezoid", 5)
    assert float((w * u).sum()) == pytest.approx(0.5)
    with pytest.raises(UsageError, match="quadrature"):
        nodes("simpson", 4)


# ----------------------------------------------------------------------------- closed forms (1.8)
def _lam_grid(sched, n=64):
    lo, hi = sched.log_snr_range()
    return torch.linspace(lo, hi, n, dtype=torch.float64)


@pytest.mark.parametrize("sched", SCHEDULES, ids=["vp", "ve"])
def test_grid_immse_matches_gaussian_mutual_information(sched):
    sm, x0, var = _toy()
    lams = _lam_grid(sched)
    curve = mmse_curve(sm, x0, lams, draws=2, antithetic=True, noise=_ones)
    for t in (0.05, 0.3, 0.7):
        lam_t = sched.log_snr(torch.full_like(x0, t))
        got = retained_grid(curve, lams, lam_t, param="log_snr")[0]
        want = _closed_form(sched, var, t)
        assert torch.allclose(got, want, rtol=0.01), (t, (got / want - 1).abs().max())
        assert float(got.sum()) == pytest.approx(float(want.sum()), rel=0.01)


@pytest.mark.parametrize("sched", SCHEDULES, ids=["vp", "ve"])
def test_grid_fisher_matches_gaussian_mutual_information(sched):
    sm, x0, var = _toy()
    ts = sched.t_of_log_snr(_lam_grid(sched, 200)).flip(0)  # ascending times, dense near t = 0
    curve = fisher_curve(sm, sched, x0, ts, draws=2, antithetic=True, noise=_ones)
    # per-feature levels: each feature gets its own t, compared with its own closed form
    t_map = torch.linspace(0.05, 0.8, var.numel(), dtype=torch.float64).view_as(x0)
    got = retained_grid(curve, ts, t_map, param="t")[0]
    want = torch.stack([_closed_form(sched, var, float(t)).flatten()[i] for i, t in enumerate(t_map.flatten())])
    assert torch.allclose(got.flatten(), want, rtol=0.01)
    for t in (0.1, 0.5):
        got_t = retained_grid(curve, ts, torch.full_like(x0, t), param="t")[0]
        assert float(got_t.sum()) == pytest.approx(float(_closed_form(sched, var, t).sum()), rel=0.01)


@pytest.mark.parametrize("sched", SCHEDULES, ids=["vp", "ve"])
@pytest.mark.parametrize("kind,k", [("gauss-legendre", 16), ("log-snr-gauss-legendre", 8), ("log-snr", 48)])
def test_pixelwise_matches_gaussian_mutual_information(sched, kind, k):
    sm, x0, var = _toy()
    for t in (0.1, 0.4):
        t_map = torch.full_like(x0, t)
        got = retained_pixelwise(sm, x0, t_map, param="t", schedule=sched, quadrature_kind=kind, k=k, draws=2,
                                 antithetic=True, noise=_ones)[0]
        want = _closed_form(sched, var, t)
        assert torch.allclose(got, want, rtol=0.01), (kind, t, (got / want - 1).abs().max())
        assert float(got.sum()) == pytest.approx(float(want.sum()), rel=0.01)


def test_pixelwise_log_snr_param_with_floor():
    sm, x0, var = _toy()
    alpha_min, alpha = -12.0, torch.tensor([[-2.0, 0.5, 3.0]], dtype=torch.float64).view(1, 1, 1, 3)
    a_map = alpha.expand_as(x0)
    got = retained_pixelwise(sm, x0, a_map, param="log_snr", end=alpha_min, quadrature_kind="log-snr-gauss-legendre",
                             k=12, draws=2, antithetic=True, noise=_ones)[0]
    want = sm.mutual_information(a_map[0]) - sm.mutual_information(torch.tensor(alpha_min))
    assert torch.allclose(got, want, rtol=0.01)
    curve_l = torch.linspace(alpha_min, 6.0, 64, dtype=torch.float64)
    curve = mmse_curve(sm, x0, curve_l, draws=2, antithetic=True, noise=_ones)
    assert torch.allclose(retained_grid(curve, curve_l, a_map, param="log_snr")[0], want, rtol=0.01)


def test_monte_carlo_total_and_the_two_forms_agree():
    """Gaussian noise (not the exact rule): the total still matches, and the Fisher and the
    I-MMSE code paths give one curve (1.4) for the same draws, hence the same information."""
    sched = VPSchedule()
    c, h, w = 3, 8, 8
    var = torch.full((c, h, w), 0.25, dtype=torch.float64)
    sm = DiagonalGaussian(torch.zeros(c, h, w), var).double()
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(1, c, h, w, generator=g, dtype=torch.float64)
    x0 = x0 / x0.pow(2).mean().sqrt() * 0.5  # a prior draw, rescaled so mean (x0-m)^2 = v: the summed
    # pointwise expectation then equals the population one (all v equal)
    lams = _lam_grid(sched, 48)
    ts = sched.t_of_log_snr(lams)  # descending; the same nodes in time
    mm = mmse_curve(sm, x0, lams, draws=64, generators=[torch.Generator().manual_seed(5)])
    fi = fisher_curve(sm, sched, x0, ts, draws=64, generators=[torch.Generator().manual_seed(5)])
    jac = -sched.dlog_snr_dt(ts).view(-1, 1, 1, 1, 1)
    assert torch.allclose(fi, jac * mm, rtol=1e-6)  # e(t) = -dlam/dt * mmse(lam), node by node
    dense_l = _lam_grid(sched, 256)
    fi_dense = fisher_curve(sm, sched, x0, sched.t_of_log_snr(dense_l).flip(0), draws=64,
                            generators=[torch.Generator().manual_seed(5)])
    for t in (0.1, 0.4):
        a_imm = retained_grid(mm, lams, sched.log_snr(torch.full_like(x0, t)), param="log_snr")
        a_fis = retained_grid(fi_dense, sched.t_of_log_snr(dense_l).flip(0), torch.full_like(x0, t), param="t")
        want = float(_closed_form(sched, var, t).sum())
        assert float(a_imm.sum()) == pytest.approx(want, rel=0.03)
        assert float(a_fis.sum()) == pytest.approx(float(a_imm.sum()), rel=0.02)


def test_retained_is_nonnegative_decreasing_and_has_the_right_gradient():
    sched = VPSchedule()
    sm, x0, var = _toy()
    lams = _lam_grid(sched, 128)
    curve = mmse_curve(sm, x0, lams, draws=2, antithetic=True, noise=_ones)
    ts = torch.linspace(sched.t_min, 1.0, 50, dtype=torch.float64)
    vals = torch.stack([retained_grid(curve, lams, sched.log_snr(torch.full_like(x0, float(t))), "log_snr")
                        for t in ts])
    assert (vals >= 0).all()
    assert (vals[1:] <= vals[:-1] + 1e-12).all()
    assert vals[-1].abs().max() < 1e-9  # nothing retained at the noisy end

    t = torch.linspace(0.05, 0.9, var.numel(), dtype=torch.float64).view_as(x0).requires_grad_(True)
    a = retained_grid(curve, lams, sched.log_snr(t), "log_snr")
    (grad,) = torch.autograd.grad(a.sum(), t)
    h = 1e-6
    fd = (retained_grid(curve, lams, sched.log_snr(t.detach() + h), "log_snr")
          - retained_grid(curve, lams, sched.log_snr(t.detach() - h), "log_snr")) / (2 * h)
    assert torch.allclose(grad, fd, rtol=1e-4, atol=1e-8)
    # dA/dt = -e(t)/2 with e the Fisher integrand of the exact model
    e = -sched.dlog_snr_dt(t.detach()) * sm.mmse(sched.log_snr(t.detach()))
    assert torch.allclose(grad, -0.5 * e, rtol=0.01)  # linear interpolation error only


def test_pixelwise_gradient_matches_finite_differences():
    sched = VESchedule()
    sm, x0, _ = _toy()
    t = torch.linspace(0.1, 0.8, x0.numel(), dtype=torch.float64).view_as(x0).requires_grad_(True)

    def run(tt):
        return retained_pixelwise(sm, x0, tt, param="t", schedule=sched, quadrature_kind="log-snr-gauss-legendre",
                                  k=6, draws=2, generators=[torch.Generator().manual_seed(1)])

    (grad,) = torch.autograd.grad(run(t).sum(), t)
    h = 1e-6
    fd = (run(t.detach() + h) - run(t.detach() - h)) / (2 * h)
    assert torch.allclose(grad, fd, rtol=1e-4, atol=1e-8)


def test_batch_equals_single_with_per_image_generators():
    sm, x0, _ = _toy()
    xb = torch.cat([x0, -x0])
    lams = torch.linspace(-5, 5, 4, dtype=torch.float64)
    both = mmse_curve(sm, xb, lams, draws=3, generators=[torch.Generator().manual_seed(9) for _ in range(2)],
                      batch_size=2)
    one = mmse_curve(sm, -x0, lams, draws=3, generators=[torch.Generator().manual_seed(9)])
    assert torch.allclose(both[:, 1:], one)


def test_bad_arguments():
    sm, x0, _ = _toy()
    with pytest.raises(UsageError, match="antithetic"):
        mmse_curve(sm, x0, torch.zeros(2), draws=3, antithetic=True)
    with pytest.raises(UsageError, match="increasing"):
        retained_grid(torch.zeros(3, *x0.shape), torch.tensor([0.0, 2.0, 1.0]), x0)
    with pytest.raises(UsageError, match="end"):
        retained_pixelwise(sm, x0, x0, param="log_snr")
