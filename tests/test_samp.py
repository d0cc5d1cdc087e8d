"""SAMP and SAMP++ (METHODS.md section 4)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

import fisherattr
from fisherattr.errors import UsageError
from fisherattr.methods.paths import ScoreFunction
from fisherattr.methods.paths.blur import delta_kernel_blur
from fisherattr.methods.samp import SAMP, default_blur, default_pixels_per_step, manipulation_path
from fisherattr.models import Classifier


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Two threads on a shared, loaded 2-core machine are ~10x slower than one for these tiny models."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class Linear(nn.Module):
    def __init__(self, shape=(3, 16, 16), classes: int = 3) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.w = nn.Parameter(torch.randn(classes, math.prod(shape), generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.w.t()


class SmoothCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.Softplus(), nn.Conv2d(6, 8, 3, stride=2, padding=1),
                                  nn.Tanh(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 3 * self.body(x)


MEAN, STD = (0.4, 0.5, 0.6), (0.25, 0.25, 0.25)


@pytest.fixture
def linear() -> Classifier:
    return Classifier(Linear(), mean=MEAN, std=STD, input_size=(16, 16)).eval()


@pytest.fixture
def smooth() -> Classifier:
    return Classifier(SmoothCNN(), mean=MEAN, std=STD, input_size=(16, 16)).eval()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))


def logit(model, x, t):
    with torch.no_grad():
        return model(x)[torch.arange(x.shape[0]), t]


def linear_gradient(model: Classifier, t: int) -> torch.Tensor:
    """d logit / d x (pixel space) of the wrapped linear model."""
    return (model.net.w[t].detach().view(1, 3, 16, 16) / model.std)


def gkern_blur(model, images):
    """The official insertion start: ``gkern(11, 5)`` convolved with zero padding in normalised space."""
    return model.denormalize(delta_kernel_blur(model.normalize(images), 11, 5.0))


def test_defaults():
    assert default_pixels_per_step(224, 224) == 224 * 16
    assert default_pixels_per_step(112, 224) == 224 * 8
    assert default_pixels_per_step(16, 16) == 18 and default_pixels_per_step(1, 1) == 1
    assert default_blur(224, 224) == (31, 5.0) and default_blur(32, 32) == (11, 5.0)


@pytest.mark.parametrize("name", ["samp", "samp++"])
def test_linear_model_closed_form(linear, images, name):
    """For a linear score every path gives sum_c w_c (end - start) per pixel, whatever order, eta or momentum."""
    t = 1
    w = linear_gradient(linear, t)
    m = fisherattr.get_method(name, linear)
    zero = linear.mean.expand_as(images)
    blur = gkern_blur(linear, images)
    expected = -(w * (zero - images)).sum(1, keepdim=True) + (w * (images - blur)).sum(1, keepdim=True)
    torch.testing.assert_close(m.attribute(images, target=t), expected, rtol=1e-4, atol=1e-5)
    dele = fisherattr.get_method(name, linear, direction="deletion").attribute(images, target=t)
    torch.testing.assert_close(dele, -(w * (zero - images)).sum(1, keepdim=True), rtol=1e-4, atol=1e-5)
    for base, img in [("black", torch.zeros_like(images)), ("white", torch.ones_like(images))]:
        ins = fisherattr.get_method(name, linear, direction="insertion", baseline=base).attribute(images, target=t)
        torch.testing.assert_close(ins, (w * (images - img)).sum(1, keepdim=True), rtol=1e-4, atol=1e-5)


def test_momentum_changes_nothing_when_the_gradient_is_constant(linear, images):
    """Momentum acts only through the gradient: with a constant gradient, same order and same attribution."""
    a = SAMP(linear, eta=0.05, lam=0.0).walk(images, target=0)
    b = SAMP(linear, eta=0.05, lam=0.7).walk(images, target=0)
    for k in a:
        assert torch.equal(a[k].finished_at, b[k].finished_at) and torch.equal(a[k].visits, b[k].visits)
        torch.testing.assert_close(a[k].attribution, b[k].attribution, rtol=1e-5, atol=1e-6)


def test_momentum_changes_order_on_a_curved_model(smooth, images):
    a = SAMP(smooth, eta=0.05, lam=0.0).walk(images, target=0)
    b = SAMP(smooth, eta=0.05, lam=0.9).walk(images, target=0)
    assert any(not torch.equal(a[k].finished_at, b[k].finished_at) for k in a)


def test_greedy_order_follows_projection(linear, images):
    """Without IC, pixels finish in order of their projection (insertion: largest first, deletion: smallest first)."""
    t = 2
    w = linear_gradient(linear, t)
    paths = SAMP(linear, pixels_per_step=7).walk(images, target=t)
    zero = linear.mean.expand_as(images)
    blur = gkern_blur(linear, images)
    for k, (start, end, sign) in {"insertion": (blur, images, 1), "deletion": (images, zero, -1)}.items():
        p = sign * (w * (end - start)).sum(1).flatten(1)
        step = paths[k].finished_at.flatten(1)
        for b in range(images.shape[0]):
            order = step[b][p[b].argsort(descending=True)]
            assert (order[1:] >= order[:-1]).all()


@pytest.mark.parametrize("name", ["samp", "samp++"])
def test_paths_end_at_the_end_point(smooth, images, name):
    """Every path ends exactly at its end point; without IC each pixel is visited exactly once."""
    m = fisherattr.get_method(name, smooth, pixels_per_step=10, selection="exact")
    paths = m.walk(images)
    zero = smooth.mean.expand_as(images)
    assert torch.equal(paths["deletion"].final, zero) and torch.equal(paths["insertion"].final, images)
    for p in paths.values():
        assert (p.finished_at > 0).all() and (p.visits >= 1).all()
        if name == "samp":
            assert (p.visits == 1).all() and (p.steps == math.ceil(256 / 10)).all()
        else:
            assert (p.steps >= 50).all()  # eta = L1/50: at least 50 steps


def test_completeness_error_shrinks_with_eta(smooth, images):
    t = torch.tensor([0, 3])
    errors = []
    for eta in (0.2, 0.02, 0.002):
        paths = SAMP(smooth, eta=eta, lam=0.5).walk(images, target=t)
        errors.append(torch.stack([(p.attribution.sum((1, 2, 3)) - (p.f_end - p.f_start)).abs()
                                   for p in paths.values()]))
    for a, b in zip(errors, errors[1:]):
        assert (b < a).all(), errors
    gaps = torch.stack([p.f_end - p.f_start for p in paths.values()]).abs()
    assert (errors[-1] < 0.1 * gaps).all(), (errors[-1], gaps)
    # and the path's own f values are the model's
    paths = SAMP(smooth).walk(images, target=t)
    torch.testing.assert_close(paths["deletion"].f_start, logit(smooth, images, t))
    torch.testing.assert_close(paths["deletion"].f_end, logit(smooth, smooth.mean.expand_as(images), t))


def test_manipulation_path_function(smooth, images):
    """The low-level walker: score and gradient evaluated once per step plus the start."""
    calls = []
    f = ScoreFunction(smooth, torch.tensor([0, 1]), batch_size=64)
    orig = f.__call__

    class Spy(ScoreFunction):
        def __call__(self, points, rows=None):
            calls.append(points.shape[1])
            return orig(points, rows)

    f.__class__ = Spy
    r = manipulation_path(f, images, torch.zeros_like(images), pixels_per_step=64)
    assert len(calls) == 1 + 4 and r.steps.tolist() == [4, 4]
    assert torch.equal(r.final, torch.zeros_like(images))


@pytest.mark.parametrize("name,opts", [("samp", {}), ("samp++", {}), ("samp++", dict(baseline="uniform")),
                                       ("samp", dict(baseline="blur", score="probability"))])
def test_contract(tiny_model, tiny_images, name, opts):
    """Shape, per pixel, batch == single, deterministic (seeded noise baseline), caller's tensor untouched."""
    before = tiny_images.clone()
    m = fisherattr.get_method(name, tiny_model, internal_batch_size=2, **opts)
    assert m.per_pixel
    a = m.attribute(tiny_images)
    assert a.shape == (3, 1, 16, 16) and a.dtype == torch.float32 and torch.isfinite(a).all()
    assert torch.equal(tiny_images, before)
    top = tiny_model(tiny_images).argmax(1)
    single = torch.cat([m.attribute(tiny_images[i:i + 1], int(top[i])) for i in range(3)])
    torch.testing.assert_close(a, single, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(a, m.attribute(tiny_images), rtol=0, atol=0)


def test_uniform_baseline_follows_seed(tiny_model, tiny_images):
    a = fisherattr.get_method("samp", tiny_model, baseline="uniform", seed=1).attribute(tiny_images)
    b = fisherattr.get_method("samp", tiny_model, baseline="uniform", seed=2).attribute(tiny_images)
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("opts,word", [(dict(direction="up"), "direction"), (dict(baseline="grey"), "baseline"),
                                       (dict(eta=0.0), "eta"), (dict(lam=1.0), "lam"),
                                       (dict(pixels_per_step=0), "pixels_per_step"), (dict(blur_size=4), "blur_size"),
                                       (dict(blur_sigma=0), "blur_sigma"), (dict(score="p"), "score")])
def test_bad_options(tiny_model, opts, word):
    with pytest.raises(UsageError, match=word):
        fisherattr.get_method("samp++", tiny_model, **opts)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["samp", "samp++"])
def test_lite0_smoke(lite0, chelsea, name):
    """EfficientNet-Lite0 at 224 with big steps: right shape, finite, paths end at their end points.

    (Completeness is not asserted here: on this ReLU6 network the greedy first-order steps overshoot by
    orders of magnitude unless eta is tiny; see docs/paths.md.)"""
    m = fisherattr.get_method(name, lite0, pixels_per_step=224 * 56, eta=None if name == "samp" else 0.2)
    paths = m.walk(chelsea)
    assert torch.equal(paths["insertion"].final, chelsea)
    assert torch.equal(paths["deletion"].final, lite0.mean.expand_as(chelsea))
    assert (paths["deletion"].f_end < paths["deletion"].f_start).all()
    a = m.attribute(chelsea)
    assert a.shape == (1, 1, 224, 224) and torch.isfinite(a).all()


def test_official_rules_options(tiny_model):
    """The walk runs on the network's normalised input (as the official code), so eta's L1 is unweighted
    there by default; 'pixel' weights the normalised displacements by std ([0,1] units)."""
    from fisherattr.methods.samp import SAMPPlusPlus

    model = Classifier(tiny_model.net, mean=(0.5,) * 3, std=(0.2, 0.4, 0.5), classes=tiny_model.classes).eval()
    m = SAMPPlusPlus(model)
    assert m.selection == "official" and m.eta_space == "normalised"
    assert m.input_space()[0] is model.net and m.l1_weight(3) is None
    torch.testing.assert_close(SAMPPlusPlus(model, eta_space="pixel").l1_weight(3), torch.tensor([0.2, 0.4, 0.5]))
    assert SAMPPlusPlus(model.net, eta_space="pixel").l1_weight(3) is None      # no normalisation: one space
    with pytest.raises(UsageError, match="selection"):
        SAMPPlusPlus(model, selection="nearest")
