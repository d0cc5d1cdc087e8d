"""Path methods: IG, Guided IG, Blur IG and the IDGI rule (METHODS.md section 5)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

import fisherattr
from fisherattr.errors import UsageError
from fisherattr.models import Classifier
from fisherattr.methods.paths import (IDGI, BlurPath, GuidedIGPath, Path, PathAttribution, ScoreFunction, Segment,
                                      StraightLinePath, gaussian_blur)

PATH_METHODS = ["ig", "guided-ig", "blur-ig", "idgi-ig", "idgi-guided-ig", "idgi-blur-ig"]
FEW_STEPS = {"ig": dict(steps=8), "idgi-ig": dict(steps=8), "guided-ig": dict(steps=8),
             "idgi-guided-ig": dict(steps=8), "blur-ig": dict(steps=6, max_sigma=4.0),
             "idgi-blur-ig": dict(steps=6, max_sigma=4.0)}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Two threads on a shared, loaded 2-core machine are ~10x slower than one for these tiny models."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class Separable(nn.Module):
    """Class 0 = sum over pixels of 5*r + g^2 + sin(3b): every feature acts alone. Class 1 = 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = (5 * x[:, 0] + x[:, 1] ** 2 + torch.sin(3 * x[:, 2])).flatten(1).sum(1)
        return torch.stack([f, torch.zeros_like(f)], 1)


class Linear(nn.Module):
    def __init__(self, shape=(3, 16, 16), classes: int = 3) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.w = nn.Parameter(torch.randn(classes, math.prod(shape), generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.w.t()


class SmoothCNN(nn.Module):
    """A small CNN with smooth activations (softplus, tanh)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.Softplus(), nn.Conv2d(6, 8, 3, stride=2, padding=1),
                                  nn.Tanh(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 3 * self.body(x)


class Counting(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.model(x)


def wrap(net: nn.Module) -> Classifier:
    return Classifier(net, classes=[str(i) for i in range(4)], input_size=(16, 16)).eval()


@pytest.fixture
def smooth() -> Classifier:
    return wrap(SmoothCNN())


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))


def score_at(model, x, target, kind="logit"):
    with torch.no_grad():
        out = model(x)
        out = out.softmax(1) if kind == "probability" else out
        return out[torch.arange(x.shape[0]), target]


# ---------------------------------------------------------------------- IG
def test_ig_closed_form_per_feature(images):
    """Features acting alone: IG_i = F_i(x_i) - F_i(0); left sums are exact for 5x and give x^2 (1-1/N)."""
    model = wrap(Separable())
    x = images
    n = 50
    left = fisherattr.get_method("ig", model, steps=n).attribute(x, target=0)
    trap = fisherattr.get_method("ig", model, steps=n, rule="trapezoid").attribute(x, target=0)
    torch.testing.assert_close(left[:, 0], 5 * x[:, 0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(left[:, 1], x[:, 1] ** 2 * (1 - 1 / n), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(trap[:, 1], x[:, 1] ** 2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(trap[:, 2], torch.sin(3 * x[:, 2]), rtol=0, atol=2e-4)
    # the left sum of a concave-then-not integrand is off by O(1/N), never more
    assert (left[:, 2] - torch.sin(3 * x[:, 2])).abs().max() < 3 * 3 / n


@pytest.mark.parametrize("batch,ibs,steps", [(2, 8, 20), (3, 2, 5), (1, 16, 40)])
def test_ig_model_calls(batch, ibs, steps):
    """steps+1 points, max(1, ibs // B) points per call, plus the one forward that resolves the target."""
    net = Counting(Separable())
    model = wrap(net)
    x = torch.rand(batch, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    fisherattr.get_method("ig", model, steps=steps, internal_batch_size=ibs).attribute(x, target=0)
    per_call = max(1, ibs // batch)
    calls_per_chunk = math.ceil(min(per_call, steps + 1) * batch / ibs)
    assert net.calls == 1 + math.ceil((steps + 1) / per_call) * calls_per_chunk


@pytest.mark.parametrize("base,idgi", [("ig", "idgi-ig"), ("guided-ig", "idgi-guided-ig"),
                                       ("blur-ig", "idgi-blur-ig")])
def test_idgi_needs_no_extra_model_calls(base, idgi):
    """IDGI reads its values from the passes that give the gradients: same calls as the base path."""
    counts = []
    for name in (base, idgi):
        net = Counting(SmoothCNN())
        fisherattr.get_method(name, wrap(net), internal_batch_size=4, **FEW_STEPS[name]).attribute(
            torch.rand(2, 3, 16, 16), target=1)
        counts.append(net.calls)
    assert counts[0] == counts[1]


@pytest.mark.parametrize("rule,captum_method", [("left", "riemann_left"), ("right", "riemann_right")])
def test_ig_equals_captum_riemann(tiny_model, tiny_images, rule, captum_method):
    from captum.attr import IntegratedGradients

    n = 24
    target = torch.tensor([0, 3, 1])
    ref = IntegratedGradients(tiny_model).attribute(tiny_images, target=target, n_steps=n, method=captum_method)
    ours = fisherattr.get_method("ig", tiny_model, steps=n, rule=rule, internal_batch_size=7).attribute(
        tiny_images, target=target)
    torch.testing.assert_close(ours, ref.float(), rtol=1e-4, atol=1e-7)


def test_ig_trapezoid_is_mean_of_left_and_right(tiny_model, tiny_images):
    """(Captum's 'riemann_trapezoid' weights n points by 1/n, so it is not this rule: its weights sum to (n-1)/n.)"""
    get = lambda rule: fisherattr.get_method("ig", tiny_model, steps=12, rule=rule).attribute(tiny_images, 1)
    torch.testing.assert_close(get("trapezoid"), 0.5 * (get("left") + get("right")), rtol=1e-5, atol=1e-7)


def test_ig_baselines(smooth, images):
    """Completeness towards each baseline (white, mean colour, constant, tensor)."""
    t = torch.tensor([1, 2])
    for spec, base in [("white", torch.ones_like(images)), (0.3, torch.full_like(images, 0.3)),
                       (images.flip(0), images.flip(0))]:
        a = fisherattr.get_method("ig", smooth, steps=100, baseline=spec, rule="trapezoid").attribute(images, t)
        gap = score_at(smooth, images, t) - score_at(smooth, base, t)
        torch.testing.assert_close(a.sum((1, 2, 3)), gap, rtol=2e-3, atol=1e-5)
    model = Classifier(SmoothCNN(), mean=(0.4, 0.5, 0.6), std=(0.2, 0.2, 0.2))
    a = fisherattr.get_method("ig", model, steps=100, baseline="mean", rule="trapezoid").attribute(images, t)
    base = model.mean.expand_as(images)
    torch.testing.assert_close(a.sum((1, 2, 3)), score_at(model, images, t) - score_at(model, base, t),
                               rtol=2e-3, atol=1e-5)


def test_straight_path_geometry(smooth, images):
    segs = walk(StraightLinePath(steps=7, baseline=0.25), smooth, images, torch.tensor([0, 1]))
    assert len(segs) == 7 and torch.equal(segs[0].start, torch.full_like(images, 0.25))
    torch.testing.assert_close(segs[-1].end, images)
    for j, s in enumerate(segs):
        torch.testing.assert_close(s.end - s.start, s.delta, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(s.f_start, score_at(smooth, s.start, torch.tensor([0, 1])), rtol=1e-5, atol=1e-6)


# -------------------------------------------------------------------- IDGI
def test_idgi_rule_formula():
    g = torch.tensor([[1.0, -2.0, 0.0, 3.0]])
    seg = Segment(*(torch.zeros(1, 4),) * 2, torch.tensor([0.5]), torch.tensor([2.0]), g, g * 0, g * 0)
    torch.testing.assert_close(IDGI()(seg), g * g * 1.5 / 14)
    # a zero gradient contributes nothing (no NaN); tiny gradients do not underflow
    zero = Segment(*(torch.zeros(1, 4),) * 2, torch.tensor([0.5]), torch.tensor([2.0]), g * 0, g, g)
    assert torch.equal(IDGI()(zero), torch.zeros(1, 4))
    tiny = Segment(*(torch.zeros(1, 4),) * 2, torch.tensor([0.5]), torch.tensor([2.0]), g * 1e-30, g, g)
    torch.testing.assert_close(IDGI()(tiny), g * g * 1.5 / 14)


@pytest.mark.parametrize("name,start", [("idgi-ig", "black"), ("idgi-guided-ig", "black"), ("idgi-blur-ig", "blur")])
def test_idgi_completeness_exact(smooth, images, name, start):
    """sum(A) == p(x) - p(x_0) to float precision on every path."""
    opts = dict(steps=30) if "blur" not in name else dict(steps=20, max_sigma=10.0)
    t = torch.tensor([0, 3])
    a = fisherattr.get_method(name, smooth, **opts).attribute(images, target=t)
    x0 = torch.zeros_like(images) if start == "black" else gaussian_blur(images, opts["max_sigma"])
    gap = score_at(smooth, images, t, "probability") - score_at(smooth, x0, t, "probability")
    torch.testing.assert_close(a.double().sum((1, 2, 3)), gap.double(), rtol=1e-5, atol=1e-7)


def test_idgi_on_user_path(smooth, images):
    """A user-defined path (black -> mid-grey -> image) with the IDGI rule is complete."""

    class Detour(Path):
        def segments(self, imgs, score, progress=False):
            k = 10
            pts = [imgs * 0 + 0.5 * i / k for i in range(k + 1)]
            pts += [0.5 + (imgs - 0.5) * i / k for i in range(1, k + 1)]
            f, g = score(torch.stack(pts))
            for j in range(len(pts) - 1):
                yield Segment(pts[j], pts[j + 1], f[j], f[j + 1], g[j], g[j + 1], pts[j + 1] - pts[j])

    t = torch.tensor([1, 1])
    a = PathAttribution(smooth, Detour(), rule="idgi", score="probability").attribute(images, t)
    gap = score_at(smooth, images, t, "probability") - score_at(smooth, torch.zeros_like(images), t, "probability")
    torch.testing.assert_close(a.double().sum((1, 2, 3)), gap.double(), rtol=1e-5, atol=1e-7)


def test_idgi_constant_model_gives_zero(images):
    class Const(nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, :2] * 0 + torch.tensor([1.0, 2.0])

    a = fisherattr.get_method("idgi-ig", wrap(Const()), steps=5).attribute(images, target=1)
    assert torch.equal(a, torch.zeros_like(a))


# -------------------------------------------------------------- Guided IG
def walk(path, model, x, target, kind="logit"):
    return list(path.segments(x, ScoreFunction(model, target, kind)))


def test_guided_ig_path_geometry(smooth, images):
    """Starts at the baseline, ends at the image, L1 distance on schedule, features stay in the alpha window."""
    n, md = 20, 0.05
    segs = walk(GuidedIGPath(steps=n, max_dist=md), smooth, images, torch.tensor([0, 1]))
    assert len(segs) == n
    assert torch.equal(segs[0].start, torch.zeros_like(images))
    assert torch.equal(segs[-1].end, images)
    l1_total = images.abs().sum((1, 2, 3))
    for k, s in enumerate(segs, start=1):
        torch.testing.assert_close(s.delta, s.end - s.start)
        l1 = (s.end - images).abs().sum((1, 2, 3))
        torch.testing.assert_close(l1, l1_total * (1 - k / n), rtol=1e-4, atol=1e-3)
        alpha = s.end / images
        assert alpha.min() >= k / n - md - 1e-5 and alpha.max() <= k / n + md + 1e-5
    for a, b in zip(segs, segs[1:]):
        assert torch.equal(a.end, b.start) and torch.equal(a.g_end, b.g_start)


def test_guided_ig_moves_small_gradients_first(images):
    """On a linear model the first steps move only the features with the smallest |w|."""
    lin = Linear()
    model = wrap(lin)
    segs = walk(GuidedIGPath(steps=10, max_dist=1.0), model, images[:1], torch.tensor([0]))
    moved = segs[0].delta[0].flatten() != 0
    w = lin.w[0].detach().abs()
    assert w[moved].max() <= w[~moved].min()


def test_guided_ig_linear_and_smooth_completeness(smooth, images):
    model = wrap(Linear())
    a = fisherattr.get_method("guided-ig", model, steps=20).attribute(images, target=2)
    torch.testing.assert_close(a, images * model.net.w[2].detach().view(1, 3, 16, 16), rtol=1e-4, atol=1e-5)
    t = torch.tensor([2, 3])
    a = fisherattr.get_method("guided-ig", smooth, steps=100).attribute(images, target=t)
    gap = score_at(smooth, images, t) - score_at(smooth, torch.zeros_like(images), t)
    assert ((a.sum((1, 2, 3)) - gap).abs() <= 0.02 * gap.abs()).all()


# --------------------------------------------------------------- Blur IG
@pytest.mark.parametrize("sigma", [0.3, 0.7, 2.0, 5.0, 50.0])
def test_gaussian_blur_matches_scipy(sigma):
    from scipy.ndimage import gaussian_filter

    x = torch.rand(2, 3, 16, 12, generator=torch.Generator().manual_seed(1))
    ref = gaussian_filter(x.double().numpy(), sigma=(0, 0, sigma, sigma), mode="constant", truncate=4.0)
    torch.testing.assert_close(gaussian_blur(x, sigma), torch.from_numpy(ref).float(), rtol=1e-5, atol=1e-6)
    fill = torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1)
    ref = gaussian_filter((x - fill).double().numpy(), sigma=(0, 0, sigma, sigma), mode="constant", truncate=4.0)
    torch.testing.assert_close(gaussian_blur(x, sigma, fill=fill), torch.from_numpy(ref).float() + fill,
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sqrt", [False, True])
def test_blur_path_geometry(smooth, images, sqrt):
    """Starts at blur(x, max_sigma), ends at x, sigma strictly falls along the path, points are the blurs."""
    path = BlurPath(max_sigma=8.0, steps=16, sqrt=sqrt)
    sig = path.sigmas()
    top = 8.0 ** 0.5 if sqrt else 8.0                       # PAIR's sqrt schedule: sqrt(i * max_sigma / steps)
    assert sig[0] == pytest.approx(top) and sig[-1] == 0.0 and all(a > b for a, b in zip(sig, sig[1:]))
    if sqrt:
        assert sig[-2] == pytest.approx((8.0 / 16) ** 0.5)
    segs = walk(path, smooth, images, torch.tensor([0, 1]))
    torch.testing.assert_close(segs[0].start, gaussian_blur(images, top))
    assert torch.equal(segs[-1].end, images)
    for s, sigma in zip(segs, sig[1:]):
        torch.testing.assert_close(s.end, gaussian_blur(images, sigma))
    # sharpness (distance to the image) falls monotonically along the path
    d = [(s.start - images).square().sum().item() for s in segs] + [0.0]
    assert all(a >= b for a, b in zip(d, d[1:]))


def test_blur_ig_completeness(smooth, images):
    """Linear sigma spacing: within 2%. (sqrt spacing takes a first step of max_sigma/sqrt(steps) from sigma = 0,
    where the paper's finite-difference tangent vanishes, so its plain Blur IG is less complete; IDGI is exact.)"""
    t = torch.tensor([0, 2])
    for ms in (3.0, 10.0):
        a = fisherattr.get_method("blur-ig", smooth, max_sigma=ms, steps=100).attribute(images, target=t)
        gap = score_at(smooth, images, t) - score_at(smooth, gaussian_blur(images, ms), t)
        assert ((a.sum((1, 2, 3)) - gap).abs() <= 0.02 * gap.abs()).all(), (a.sum((1, 2, 3)), gap)
    a = fisherattr.get_method("idgi-blur-ig", smooth, max_sigma=10.0, steps=30, sqrt=True).attribute(images, t)
    start = gaussian_blur(images, 10.0 ** 0.5)             # sqrt schedule starts at sqrt(max_sigma) (PAIR)
    gap = score_at(smooth, images, t, "probability") - score_at(smooth, start, t, "probability")
    torch.testing.assert_close(a.double().sum((1, 2, 3)), gap.double(), rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------ invariants
@pytest.mark.parametrize("name", PATH_METHODS)
def test_contract(tiny_model, tiny_images, name):
    """Shape, dtype, batch == single, deterministic, caller's tensor untouched."""
    before = tiny_images.clone()
    m = fisherattr.get_method(name, tiny_model, internal_batch_size=5, **FEW_STEPS[name])
    a = m.attribute(tiny_images)
    assert a.shape == tiny_images.shape and a.dtype == torch.float32 and torch.isfinite(a).all()
    assert torch.equal(tiny_images, before) and not tiny_images.requires_grad
    top = tiny_model(tiny_images).argmax(1)
    single = torch.cat([m.attribute(tiny_images[i:i + 1], int(top[i])) for i in range(3)])
    torch.testing.assert_close(a, single, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(a, m.attribute(tiny_images), rtol=0, atol=0)


@pytest.mark.parametrize("name,opts,word", [
    ("ig", dict(steps=0), "steps"), ("ig", dict(rule="middle"), "rule"), ("ig", dict(score="prob"), "score"),
    ("ig", dict(baseline="grey"), "baseline"), ("guided-ig", dict(fraction=0.0), "fraction"),
    ("guided-ig", dict(max_dist=2.0), "max_dist"), ("blur-ig", dict(max_sigma=-1.0), "max_sigma"),
    ("idgi-blur-ig", dict(grad_step=0), "grad_step"), ("idgi-ig", dict(internal_batch_size=0), "internal_batch_size"),
    ("idgi-guided-ig", dict(nope=1), "nope")])
def test_bad_options(tiny_model, name, opts, word):
    with pytest.raises(UsageError, match=word):
        fisherattr.get_method(name, tiny_model, **opts)


def test_bad_tensor_baseline(tiny_model, tiny_images):
    with pytest.raises(UsageError, match="baseline"):
        fisherattr.get_method("ig", tiny_model, baseline=torch.zeros(2, 3, 5, 5)).attribute(tiny_images)


@pytest.mark.slow
@pytest.mark.parametrize("name", PATH_METHODS)
def test_lite0_smoke(lite0, chelsea, name):
    """A few steps on EfficientNet-Lite0 at 224: right shape, finite, IDGI complete."""
    opts = dict(steps=4) if "blur" not in name else dict(steps=4, max_sigma=20.0)
    a = fisherattr.get_method(name, lite0, **opts).attribute(chelsea)
    assert a.shape == chelsea.shape and torch.isfinite(a).all()
    if name.startswith("idgi"):
        t = lite0(chelsea).argmax(1)
        x0 = torch.zeros_like(chelsea) if "blur" not in name else gaussian_blur(chelsea, 20.0)
        gap = score_at(lite0, chelsea, t, "probability") - score_at(lite0, x0, t, "probability")
        torch.testing.assert_close(a.double().sum(), gap.double().sum(), rtol=1e-4, atol=1e-6)
