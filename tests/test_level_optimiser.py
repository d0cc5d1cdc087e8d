"""The constrained level optimiser shared by FDA and DiffIB (issue 16): dual ascent, presets, contract.

Known-answer toy: a classifier that reads only a 4x4 patch of a 16x16 image. The right
answer is "keep the patch clean, noise everything else"; the constraint is checked with
fresh noise draws the optimiser never saw.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

import fisherattr
from fisherattr.errors import UsageError
from fisherattr.methods.level_adapters import smooth_raw
from fisherattr.methods.level_optimiser import DualAscent
from fisherattr.metrics.localisation import roc_auc
from fisherattr.models import Classifier
from fisherattr.scores import DiagonalGaussian
from fisherattr.sde import VPSchedule

from conftest import PatchModel, patch_mask


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def _held_probability(method, model, x: torch.Tensor, draws: int = 64) -> torch.Tensor:
    """Per image: the target's mean probability under ``draws`` fresh perturbations at the final levels."""
    strategy = method.make_strategy(x)
    out = []
    for i in range(x.shape[0]):
        eps = torch.randn((draws, *x.shape[1:]), generator=torch.Generator().manual_seed(1000 + i))
        xp = strategy.perturb(x[i:i + 1] * 2 - 1, method.last_levels[i:i + 1], eps)
        with torch.no_grad():
            out.append(float(torch.softmax(model(((xp + 1) / 2).clamp(0, 1)), 1)[:, 0].mean()))
    return torch.tensor(out)


def _noise_amount(name: str, levels: torch.Tensor) -> torch.Tensor:
    """Higher = more noise: FDA's time t, DiffIB's negated log-SNR."""
    return levels if name == "fda" else -levels


# ----------------------------------------------------------------------------- dual ascent
def test_dual_ascent_raises_the_multiplier_while_the_constraint_holds_and_lowers_it_when_violated():
    thr = -math.log(0.8)
    d = DualAscent(torch.ones(2), keep_prob=0.8, lr=0.2, smoothing=0.0)
    trace = []
    for _ in range(5):  # image 0 holds with room (CE 0), image 1 violates (CE 3 thr)
        d.update(torch.tensor([0.0, 3 * thr]))
        trace.append(d.beta.clone())
    b = torch.stack(trace)
    assert (b[1:, 0] > b[:-1, 0]).all() and (b[1:, 1] < b[:-1, 1]).all()
    assert float(b[-1, 0]) == pytest.approx(math.exp(5 * 0.2), rel=1e-5)  # full step while far inside
    assert float(b[-1, 1]) == pytest.approx(math.exp(-5 * 0.2), rel=1e-5)  # clamped step of -lr
    # exactly on the boundary the multiplier does not move; half-way in it moves by half a step
    e = DualAscent(torch.ones(2), keep_prob=0.8, lr=0.2, smoothing=0.0)
    e.update(torch.tensor([thr, thr / 2]))
    assert torch.allclose(e.beta, torch.tensor([1.0, math.exp(0.1)]))
    # the smoothed cross-entropy decides: one good step after bad ones does not raise beta yet
    s = DualAscent(torch.ones(1), keep_prob=0.8, lr=0.2, smoothing=0.9)
    for ce in (5.0, 5.0, 0.0):
        s.update(torch.tensor([ce]))
    assert float(s.beta[0]) < math.exp(-0.3)
    assert bool(s.holds(torch.tensor([0.0]))[0]) is False


@pytest.mark.parametrize("bad", [0.0, 1.0, 1.5, -0.1, float("nan"), "high"])
def test_keep_prob_must_be_a_probability(patch_model, bad):
    with pytest.raises(UsageError, match="keep_prob"):
        fisherattr.get_method("fda", patch_model, keep_prob=bad)


@pytest.mark.parametrize("name", ["fda", "diffib"])
@pytest.mark.parametrize("opt", ["beta", "lr", "dual_lr", "smooth_sigma", "average"])
def test_float_options_reject_nan_and_inf(patch_model, name, opt):
    for bad in (float("nan"), float("inf")):
        with pytest.raises(UsageError, match=opt):
            fisherattr.get_method(name, patch_model, denoiser="gaussian", **{opt: bad}) if name == "diffib" else \
                fisherattr.get_method(name, patch_model, **{opt: bad})


# ----------------------------------------------------------------------------- the known-answer toy
@pytest.mark.parametrize("name", ["fda", "diffib"])
def test_constrained_optimiser_keeps_the_patch_clean_and_holds_the_prediction(patch_model, patch_images, name):
    kw = dict(denoiser="gaussian") if name == "diffib" else {}
    default = fisherattr.get_method(name, patch_model, **kw)
    assert default.keep_prob == 0.6 and default.constraint == "relative"
    assert default.penalty == "level" and default.adapter == "direct"
    # keep_prob 0.8 (the toy's design): at the default 0.6, FDA's image 0 held 0.5433 against a
    # floor of 0.6 * 0.9893 - 0.05 = 0.5436 (the 16-draw re-check's own noise; docs/fda.md)
    method = fisherattr.get_method(name, patch_model, steps=100, keep_prob=0.8, **kw)
    a = method.attribute(patch_images)
    noise = _noise_amount(name, method.last_levels).mean(1)
    mask = patch_mask().flatten().numpy()
    for i in range(2):
        auc = roc_auc(-noise[i].flatten().numpy(), mask)  # the patch has the least noise
        assert auc >= 0.95, (name, i, auc)
        heat = a[i].sum(0)
        assert float(heat[patch_mask()].mean()) > 3 * float(heat[~patch_mask()].mean())
    p = _held_probability(method, patch_model, patch_images)
    with torch.no_grad():
        clean = torch.softmax(patch_model(patch_images), 1)[:, 0]
    assert (p >= 0.8 * clean - 0.05).all(), (p, clean)

    assert all(method.last_history["feasible"])
    # the noise costs probability (not the trivial answer: no noise); the outside of the patch may
    # already be at full noise before the bound is reached (DiffIB image 1 keeps 0.87 of 0.99)
    assert (p < clean - 0.05).all(), (p, clean)


@pytest.mark.parametrize("name", ["fda", "diffib"])
def test_fixed_beta_zero_and_huge_show_the_two_failure_modes(patch_model, patch_images, name):
    """beta = 0: nothing pushes noise anywhere, so the levels barely move and carry no location;
    a huge fixed beta: everything is noised and the prediction is lost. Dual ascent avoids both."""
    kw = dict(denoiser="gaussian") if name == "diffib" else {}
    common = dict(keep_prob=None, keep="last", steps=60, **kw)
    zero = fisherattr.get_method(name, patch_model, beta=0.0, **common)
    zero.attribute(patch_images)
    huge = fisherattr.get_method(name, patch_model, beta=1e4, **common)
    huge.attribute(patch_images)
    solved = fisherattr.get_method(name, patch_model, steps=60, **kw)  # the default: dual ascent
    solved.attribute(patch_images)

    def background_noise(m):
        return float(_noise_amount(name, m.last_levels)[..., ~patch_mask()].mean())

    # beta 0: the background, which the classifier never reads, is left almost clean
    assert background_noise(zero) < background_noise(solved) - (0.3 if name == "fda" else 5.0)
    with torch.no_grad():
        p_clean = torch.softmax(patch_model(patch_images), 1)[:, 0]
    p_zero = _held_probability(zero, patch_model, patch_images)
    p_huge = _held_probability(huge, patch_model, patch_images)
    assert (p_zero > p_clean - 0.005).all() and (p_zero > 0.95).all()
    assert (p_huge < 0.5).all()  # huge beta: the prediction is lost


def test_smoothing_is_a_normalised_gaussian_and_keeps_constants():
    r = torch.full((1, 2, 9, 9), -3.0)
    assert torch.allclose(smooth_raw(r, 1.5), r)
    d = torch.zeros(1, 1, 15, 15)
    d[..., 7, 7] = 1.0
    s = smooth_raw(d, 1.0)
    assert float(s.sum()) == pytest.approx(1.0, rel=1e-5)  # away from the border: mass preserved
    assert float(s[..., 7, 8] / s[..., 7, 7]) == pytest.approx(math.exp(-0.5), rel=1e-4)
    assert smooth_raw(d, 0.0) is d


# ----------------------------------------------------------------------------- presets
def test_fda_paper_preset_computes_paper_001s_information_penalty_exactly():
    """preset='paper': the penalty is the mean information retained, A_i(t_i) = 1/2 log((1+SNR(t_i) v)/(1+SNR(1) v))
    for the diagonal Gaussian prior (METHODS.md 1.8), on known levels; fixed beta, U-Net adapter."""
    model = Classifier(PatchModel(), classes=["a", "b"]).eval()
    v = 0.25
    sm = DiagonalGaussian(torch.zeros(3, 16, 16), torch.full((3, 16, 16), v))
    fda = fisherattr.get_method("fda", model, score_model=sm, preset="paper", curve_draws=32, nodes=64)
    assert (fda.penalty, fda.keep_prob, fda.adapter, fda.beta, fda.steps) == ("information", None, "unet", 1.0, 60)
    x = torch.full((1, 3, 16, 16), 0.25)
    x[..., ::2] = 0.75  # diffusion-space values +-sqrt(v): the eps-average of the error is the prior's MMSE
    strategy = fda.make_strategy(x)
    gens = fda.generators(1)
    state = strategy.prepare(x, gens)
    t = torch.linspace(0.01, 0.9, 16 * 16 * 3).view(1, 3, 16, 16)
    got = strategy.penalty(t, state, x * 2 - 1, gens, kind="information")
    sched = VPSchedule()
    snr = torch.exp(sched.log_snr(t.double()))
    snr1 = math.exp(float(sched.log_snr(torch.tensor(1.0, dtype=torch.float64))))
    want = (0.5 * torch.log((1 + snr * v) / (1 + snr1 * v))).mean()
    assert float(got[0]) == pytest.approx(float(want), rel=0.02)
    # the default preset's level penalty is paper 000's "maximise t": mean(1 - t)
    assert float(strategy.penalty(t, state, x * 2 - 1, gens, kind="level")[0]) == pytest.approx(
        float((1 - t).mean()), rel=1e-6)


def test_diffib_paper_preset_is_algorithm_1():
    model = Classifier(PatchModel(), classes=["a", "b"]).eval()
    d = fisherattr.get_method("diffib", model, denoiser="gaussian", preset="paper")
    assert (d.penalty, d.keep_prob, d.adapter, d.beta, d.keep) == ("level", None, "unet", 0.05, "last")
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    s = d.make_strategy(x)
    alpha = torch.linspace(-9, 9, 3 * 16 * 16).view(1, 3, 16, 16)
    assert float(s.penalty(alpha, None, x * 2 - 1, d.generators(1), kind="level")[0]) == pytest.approx(
        float(alpha.mean()), abs=1e-6)


def test_explicit_options_win_over_the_preset(patch_model):
    fda = fisherattr.get_method("fda", patch_model, preset="paper", steps=100, keep_prob=0.9, adapter="direct")
    assert (fda.steps, fda.keep_prob, fda.adapter, fda.penalty) == (100, 0.9, "direct", "information")
    fda = fisherattr.get_method("fda", patch_model, keep_prob=None)
    assert fda.keep_prob is None and fda.smooth_sigma == 1.0
    with pytest.raises(UsageError, match="preset"):
        fisherattr.get_method("fda", patch_model, preset="best")


# ----------------------------------------------------------------------------- contract
@pytest.mark.parametrize("name", ["fda", "diffib"])
def test_determinism_batch_equals_single_and_caller_tensor_untouched(patch_model, patch_images, name):
    kw = dict(denoiser="gaussian") if name == "diffib" else {}
    x = patch_images.clone()
    make = lambda: fisherattr.get_method(name, patch_model, steps=30, **kw)  # noqa: E731
    a = make().attribute(x)
    assert torch.equal(x, patch_images)
    b = make().attribute(x)
    assert torch.equal(a, b)
    single = torch.cat([make().attribute(x[i:i + 1]) for i in range(2)])
    torch.testing.assert_close(a, single, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("share", [False, True])
def test_channel_sharing_gives_one_level_per_pixel(patch_model, patch_images, share):
    fda = fisherattr.get_method("fda", patch_model, steps=5, share_channels=share)
    fda.attribute(patch_images)
    lv = fda.last_levels
    same = bool((lv == lv[:, :1]).all())
    assert same == share


def test_amortised_training_with_per_image_multipliers(patch_model, patch_images, tmp_path):
    fda = fisherattr.get_method("fda", patch_model)
    folder, hist = fda.train_explainer(patch_images, tmp_path / "ex", steps=60, batch=2, lr=1e-2, progress=False)
    assert len(hist["beta_final"]) == 2 and all(np.isfinite(hist["beta_final"]))
    assert hist["ce"][-1] < -math.log(0.8)  # the trained adapter holds the constraint on its images
    amortised = fisherattr.get_method("fda", patch_model, mode="amortised", explainer=str(folder))
    a = amortised.attribute(patch_images)
    assert a.shape == patch_images.shape and torch.isfinite(a).all()
    heat = a.sum(1)
    assert float(heat[:, patch_mask()].mean()) > 3 * float(heat[:, ~patch_mask()].mean())
    import json
    cfg = json.loads((folder / "adapter.json").read_text())
    assert cfg["smooth_sigma"] == 1.0 and cfg["keep_prob"] == 0.8 and cfg["constraint"] == "relative" and cfg["penalty"] == "level"


def test_cli_options_reach_the_constrained_optimiser():
    from fisherattr.commands.explain import parse_options

    opts = parse_options(["fda.keep_prob=none", "fda.preset=paper", "diffib.keep_prob=0.9", "fda.smooth_sigma=2"],
                         ["fda", "diffib"])
    assert opts == {"fda": {"keep_prob": None, "preset": "paper", "smooth_sigma": 2.0}, "diffib": {"keep_prob": 0.9}}
    with pytest.raises(UsageError):
        parse_options(["fda.keep_prob=nan"], ["fda"])


@pytest.mark.parametrize("name", ["fda", "diffib"])
def test_memory_format_changes_the_layout_not_the_map(name):
    """channels-last inputs reach the classifier when asked (auto: only at >= 128 px on the CPU);
    the map is the same as with contiguous inputs up to float rounding."""
    from fisherattr.data import synthetic
    from fisherattr.layout import use_channels_last

    model = fisherattr.load_classifier("synthetic-robust")
    x = synthetic.load_samples(1, size=64, split="val")[0].image.contiguous()
    kw = dict(denoiser="gaussian") if name == "diffib" else {}
    seen = []
    hook = model.register_forward_pre_hook(
        lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)
                                    and not args[0].is_contiguous()))
    try:
        maps = {}
        for fmt in ("contiguous", "channels_last", "auto"):
            seen.clear()
            maps[fmt] = fisherattr.get_method(name, model, steps=8, memory_format=fmt, **kw).attribute(x, target=0)
            assert any(seen) == (fmt == "channels_last"), fmt  # auto: 64 px stays contiguous
    finally:
        hook.remove()
    torch.testing.assert_close(maps["channels_last"], maps["contiguous"], rtol=1e-3, atol=1e-4)
    assert torch.equal(maps["auto"], maps["contiguous"])
    assert use_channels_last("auto", torch.zeros(1, 3, 224, 224))
    assert not use_channels_last("contiguous", torch.zeros(1, 3, 224, 224))
    with pytest.raises(UsageError, match="memory_format"):
        fisherattr.get_method(name, model, memory_format="nhwc", **kw)


def test_relative_constraint_offsets_the_threshold_by_the_clean_cross_entropy():
    clean = torch.tensor([0.0, -math.log(0.5)])  # clean probabilities 1.0 and 0.5
    d = DualAscent(torch.ones(2), keep_prob=0.8, lr=0.2, smoothing=0.0, offset=clean)
    torch.testing.assert_close(d.threshold, torch.tensor([-math.log(0.8), -math.log(0.4)]))
    ce = torch.tensor([-math.log(0.45), -math.log(0.45)])  # p 0.45: violates 0.8 * 1.0, holds 0.8 * 0.5
    assert d.holds(ce).tolist() == [False, True]
    d.update(ce)
    assert float(d.beta[0]) < 1.0 < float(d.beta[1])


def test_relative_constraint_is_reachable_where_an_absolute_one_is_not(patch_model):
    """A clean prediction of p 0.6: keeping p >= 0.8 is impossible, keeping 0.8 x 0.6 is not."""
    x = torch.full((1, 3, 16, 16), 0.5)
    x[:, :, 4:8, 4:8] = 0.72  # PatchModel: logit gap 2 * 10 * (0.72 - 0.7) = 0.4, p = 0.60
    x = (x + 0.02 * torch.rand(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    p_clean = float(torch.softmax(patch_model(x), 1)[0, 0])
    assert 0.55 < p_clean < 0.7
    absolute = fisherattr.get_method("fda", patch_model, steps=100, keep_prob=0.8, constraint="absolute")
    absolute.attribute(x, target=0)
    assert absolute.last_history["feasible"] == [False]
    relative = fisherattr.get_method("fda", patch_model, steps=100, keep_prob=0.8)
    assert relative.constraint == "relative"  # the default
    relative.attribute(x, target=0)
    assert relative.last_history["feasible"] == [True] and relative.last_history["verified"] == [True]
    p = float(_held_probability(relative, patch_model, x)[0])
    assert 0.8 * p_clean - 0.05 <= p < 0.95 * p_clean, (p, p_clean)  # held, and the noise went as far as allowed
    auc = roc_auc(-relative.last_levels[0].mean(0).flatten().numpy(), patch_mask().flatten().numpy())
    assert auc >= 0.95, auc
    with pytest.raises(UsageError, match="constraint"):
        fisherattr.get_method("fda", patch_model, constraint="loose")


def test_an_unverified_candidate_backtracks_towards_the_start_until_it_keeps_the_promise(patch_model, patch_images):
    """No candidate holds under fresh draws (full noise everywhere): the returned levels are the
    candidate moved towards the starting levels, and they pass the check."""
    from fisherattr.methods.level_optimiser import BACKTRACK, FeasibleIterates, choose_verified

    fda = fisherattr.get_method("fda", patch_model)
    strategy = fda.make_strategy(patch_images)
    full = strategy.levels(torch.full_like(patch_images, 8.0))  # t ~ 1: the patch is lost
    cands = FeasibleIterates(k=2)
    cands.offer(full, torch.tensor([True, True]), torch.zeros(2))
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    target = torch.zeros(2, dtype=torch.long)
    thr = -math.log(0.8)
    x_diff = patch_images * 2 - 1
    chosen, passed = choose_verified(patch_model, strategy, x_diff, target, cands, thr, 16, gens, 16)
    assert passed == [False, False] and all(torch.equal(c, full[0]) for c in chosen)  # no backtracking asked
    chosen, passed = choose_verified(patch_model, strategy, x_diff, target, cands, thr, 16, gens, 16,
                                     backtrack_threshold=thr)
    assert passed == [True, True]

    start = strategy.levels(torch.full_like(full[0], strategy.init_value))
    for c in chosen:
        s = float((c - start).mean() / (full[0] - start).mean())  # how far towards the candidate
        assert any(abs(s - v) < 1e-4 for v in BACKTRACK), s  # not the candidate itself (s = 1)
    assert float(_held_probability_levels(strategy, patch_model, patch_images, torch.stack(chosen)).min()) > 0.75


def _held_probability_levels(strategy, model, x, levels, draws: int = 64) -> torch.Tensor:
    eps = torch.randn((draws, *x.shape[1:]), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        return torch.stack([torch.softmax(model(((strategy.perturb(x[i:i + 1] * 2 - 1, levels[i:i + 1], eps) + 1) / 2)
                                                .clamp(0, 1)), 1)[:, 0].mean() for i in range(x.shape[0])])


@pytest.mark.parametrize("option", ["verify_margin", "aim_margin"])
@pytest.mark.parametrize("bad", [-0.01, 0.5, float("nan"), True, "wide"])
def test_margins_are_validated(patch_model, option, bad):
    with pytest.raises(UsageError, match=option):
        fisherattr.get_method("fda", patch_model, **{option: bad})


@pytest.mark.parametrize("name", ["fda", "diffib"])
def test_verify_margin_reaches_the_re_check(patch_model, patch_images, name, monkeypatch):
    """The option is the margin the optimiser's re-check adds to keep_prob (choose_verified's bar)."""
    import fisherattr.methods.level_explainer as le

    seen = {}
    real = le.optimise_levels

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(le, "optimise_levels", spy)
    kw = dict(denoiser="gaussian") if name == "diffib" else {}
    fisherattr.get_method(name, patch_model, steps=3, verify_margin=0.07, **kw).attribute(patch_images[:1])
    assert seen["verify_margin"] == 0.07
    assert fisherattr.get_method(name, patch_model, **kw).verify_margin == 0.02


@pytest.mark.parametrize("name", ["fda", "diffib"])
def test_aim_margin_raises_the_optimisers_target_but_not_the_promise(patch_model, patch_images, name, monkeypatch):
    """The dual ascent aims at keep_prob + aim_margin; the re-check's bar stays keep_prob + verify_margin
    (x the clean probability), and the returned levels keep more of the prediction."""
    import fisherattr.methods.level_optimiser as lo

    aims, bars = [], []

    class SpyDual(lo.DualAscent):
        def __init__(self, beta, keep_prob, *args, **kwargs):
            aims.append(keep_prob)
            super().__init__(beta, keep_prob, *args, **kwargs)

    real_choose = lo.choose_verified

    def spy_choose(model, strategy, x_diff, target, candidates, threshold, *args, **kwargs):
        bars.append(torch.as_tensor(threshold).clone())
        return real_choose(model, strategy, x_diff, target, candidates, threshold, *args, **kwargs)

    monkeypatch.setattr(lo, "DualAscent", SpyDual)
    monkeypatch.setattr(lo, "choose_verified", spy_choose)
    kw = dict(denoiser="gaussian") if name == "diffib" else {}
    held = []
    for aim in (0.0, 0.2):
        method = fisherattr.get_method(name, patch_model, steps=60, aim_margin=aim, **kw)
        method.attribute(patch_images)
        held.append(_held_probability(method, patch_model, patch_images))
    assert aims == pytest.approx([0.6, 0.8])
    with torch.no_grad():
        clean = torch.softmax(patch_model(patch_images), 1)[:, 0]
    expected_bar = -torch.log(0.62 * clean)  # the promise (0.6) plus the re-check's margin (0.02)
    for bar in bars:
        assert torch.allclose(bar.float(), expected_bar, atol=1e-5), (bar, expected_bar)
    assert (held[1] > held[0]).all(), held
    assert (held[1] >= 0.6 * clean).all(), (held[1], clean)
    assert fisherattr.get_method(name, patch_model, **kw).aim_margin == 0.05  # the default (docs/fda.md)


# ----------------------------------------------------------------------------- nested constraints
@pytest.mark.parametrize("name", ["fda", "diffib"])
def test_nested_map_is_the_sum_of_the_lone_solves_and_keeps_the_contract(patch_model, patch_images, name):
    kw = dict(denoiser="gaussian") if name == "diffib" else {}
    x = patch_images.clone()
    nested = fisherattr.get_method(name, patch_model, steps=40, nested=[0.9, 0.5], **kw)
    assert nested.nested == (0.5, 0.9)
    a = nested.attribute(x)
    assert torch.equal(x, patch_images)
    lone = [fisherattr.get_method(name, patch_model, steps=40, keep_prob=k, **kw) for k in (0.5, 0.9)]
    maps = [m.attribute(x) for m in lone]
    torch.testing.assert_close(a, maps[0] + maps[1], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(nested.last_levels, lone[1].last_levels)  # the tightest value's levels
    assert not torch.equal(maps[0], maps[1])  # the two constraints give different maps
    single = torch.cat([fisherattr.get_method(name, patch_model, steps=40, nested=(0.5, 0.9), **kw)
                        .attribute(x[i:i + 1]) for i in range(2)])
    torch.testing.assert_close(a, single, rtol=1e-4, atol=1e-5)
    heat = a.sum(1)
    for i in range(2):  # still the toy's answer: the patch carries the map
        assert float(heat[i][patch_mask()].mean()) > 3 * float(heat[i][~patch_mask()].mean())


@pytest.mark.parametrize("bad", [0.5, "0.3,0.6", [0.3, 1.0], [0.0], [None], [True], [float("nan")]])
def test_nested_values_are_validated(patch_model, bad):
    with pytest.raises(UsageError, match="nested|keep_prob"):
        fisherattr.get_method("fda", patch_model, nested=bad)


def test_nested_needs_per_image_mode(patch_model, tmp_path):
    with pytest.raises(UsageError, match="per-image"):
        fisherattr.get_method("fda", patch_model, mode="amortised", explainer=str(tmp_path), nested=(0.3, 0.9))


def test_nested_reaches_the_method_from_the_command_line():
    from fisherattr.commands.explain import parse_options

    assert parse_options(["diffib.nested=0.3,0.6,0.9"], ["diffib"]) == {"diffib": {"nested": (0.3, 0.6, 0.9)}}
