"""The Captum baselines: contract invariants on a tiny CNN, known answers on linear toy
models, the ReLU6 swaps, Grad-CAM's layer choice, and one small run of each method on
EfficientNet-Lite0 (plus IG completeness at 224x224, 200 steps)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import fisherattr
from fisherattr.errors import UsageError
from fisherattr.methods.captum_activations import GuidedReLU6, RescaleReLU6, swap_relu6
from fisherattr.methods.captum_baselines import (DeepLift, GradCam, GuidedBackprop, IntegratedGradients, KernelShap,
                                                 Lime, Saliency, last_conv_layer, superpixels)
from fisherattr.methods.captum_perturbation import occlusion_geometry
from fisherattr.methods.captum_surrogate import weighted_ridge
from fisherattr.methods.registry import method_class
from fisherattr.models import Classifier

# Small options so every method runs in well under a second on the tiny model.
TINY_OPTIONS = {
    "saliency": {},
    "input-x-gradient": {},
    "integrated-gradients": {"n_steps": 16},
    "smoothgrad": {"n_samples": 6},
    "guided-backprop": {},
    "deeplift": {},
    "gradcam": {},
    "guided-gradcam": {},
    "occlusion": {"window": 4, "stride": 4},
    "lime": {"n_samples": 40, "n_segments": 50},
    "kernelshap": {"n_samples": 40, "n_segments": 50},
}
PER_PIXEL = {"gradcam", "occlusion", "lime", "kernelshap"}
SEEDED = ["smoothgrad", "lime", "kernelshap"]


# ----------------------------------------------------------------------------- toy models
def linear_model(classes: int = 4, size: int = 8, seed: int = 0) -> Classifier:
    """logits = W . normalise(x) + b: every gradient method has a closed form."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, classes))
    return Classifier(net, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3), classes=[str(i) for i in range(classes)],
                      input_size=(size, size)).eval()


def linear_gradient(model: Classifier, target: int) -> torch.Tensor:
    """d logit_target / d x (in [0,1] space) of :func:`linear_model`, [1,3,H,W]."""
    w = model.net[1].weight[target].detach()
    size = int(round((w.numel() // 3) ** 0.5))
    return w.view(1, 3, size, size) / model.std


class ReLU6Net(nn.Module):
    """Conv -> BN -> ReLU6 -> conv -> ReLU6 -> mean -> linear, scaled so that ReLU6 saturates."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.a1 = nn.ReLU6()
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.a2 = nn.ReLU6()
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.a2(self.c2(self.a1(self.bn(self.c1(x))))).mean((2, 3)))


@pytest.fixture
def relu6_model() -> Classifier:
    torch.manual_seed(0)
    net = ReLU6Net()
    with torch.no_grad():
        net.c1.weight.mul_(10)
        net.bn.running_mean.fill_(0.1)
        net.bn.running_var.fill_(0.5)
    return Classifier(net, mean=(0.5,) * 3, std=(0.25,) * 3).eval()


def blocky_image(size: int = 16, seed: int = 0) -> torch.Tensor:
    """Four flat colour quadrants with faint noise: SLIC finds clean segments."""
    g = torch.Generator().manual_seed(seed)
    img = torch.empty(1, 3, size, size)
    h = size // 2
    colours = torch.rand(4, 3, generator=g)
    for k, (i, j) in enumerate([(0, 0), (0, h), (h, 0), (h, h)]):
        img[0, :, i:i + h, j:j + h] = colours[k][:, None, None]
    return (img + 0.01 * torch.rand(img.shape, generator=g)).clamp(0, 1)


# ----------------------------------------------------------------------------- registry
def test_all_baselines_registered_without_ig_alias():
    names = fisherattr.list_methods()
    for name in TINY_OPTIONS:
        assert name in names
    assert method_class("integrated-gradients") is IntegratedGradients
    if "ig" in names:  # another module's path method; never ours
        assert method_class("ig") is not IntegratedGradients


# ----------------------------------------------------------------------------- contract on the tiny CNN
@pytest.mark.parametrize("name", sorted(TINY_OPTIONS))
def test_contract_on_tiny_model(name, tiny_model, tiny_images):
    method = fisherattr.get_method(name, tiny_model, **TINY_OPTIONS[name])
    before = tiny_images.clone()
    out = method.attribute(tiny_images)
    channels = 1 if name in PER_PIXEL else 3
    assert method.per_pixel is (name in PER_PIXEL)
    assert out.shape == (3, channels, 16, 16) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.abs().sum() > 0
    assert torch.equal(tiny_images, before) and not tiny_images.requires_grad
    # batch == one image at a time
    top = tiny_model(tiny_images).argmax(1)
    singles = torch.cat([method.attribute(tiny_images[i:i + 1], target=int(top[i])) for i in range(3)])
    torch.testing.assert_close(out, singles, rtol=1e-4, atol=1e-6)
    # the target matters
    other = method.attribute(tiny_images, target=(top + 1) % 5)
    assert not torch.allclose(out, other)


@pytest.mark.parametrize("name", SEEDED)
def test_seeded_methods_are_deterministic(name, tiny_model, tiny_images):
    x = tiny_images[:1]
    state = torch.random.get_rng_state()
    a = fisherattr.get_method(name, tiny_model, seed=3, **TINY_OPTIONS[name]).attribute(x)
    b = fisherattr.get_method(name, tiny_model, seed=3, **TINY_OPTIONS[name]).attribute(x)
    c = fisherattr.get_method(name, tiny_model, seed=4, **TINY_OPTIONS[name]).attribute(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's global RNG is untouched


def test_internal_batch_size_does_not_change_results(tiny_model, tiny_images):
    for name in ("integrated-gradients", "deeplift", "occlusion"):
        a = fisherattr.get_method(name, tiny_model, internal_batch_size=1, **TINY_OPTIONS[name]).attribute(tiny_images)
        b = fisherattr.get_method(name, tiny_model, internal_batch_size=64, **TINY_OPTIONS[name]).attribute(tiny_images)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- closed forms on a linear model
def test_saliency_and_input_x_gradient_exact_on_linear_model():
    model = linear_model()
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    grad = linear_gradient(model, 2)
    sal = fisherattr.get_method("saliency", model).attribute(x, target=2)
    torch.testing.assert_close(sal, grad.abs().expand(2, -1, -1, -1), rtol=1e-5, atol=1e-7)
    signed = fisherattr.get_method("saliency", model, abs=False).attribute(x, target=2)
    torch.testing.assert_close(signed, grad.expand(2, -1, -1, -1), rtol=1e-5, atol=1e-7)
    ixg = fisherattr.get_method("input-x-gradient", model).attribute(x, target=2)
    torch.testing.assert_close(ixg, x * grad, rtol=1e-5, atol=1e-7)


def test_saliency_matches_autograd_on_tiny_cnn(tiny_model, tiny_images):
    x = tiny_images.clone().requires_grad_(True)
    tiny_model(x)[:, 1].sum().backward()
    out = fisherattr.get_method("saliency", tiny_model, abs=False).attribute(tiny_images, target=1)
    torch.testing.assert_close(out, x.grad, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("baseline", ["black", "mean"])
def test_integrated_gradients_exact_on_linear_model(baseline):
    model = linear_model()
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    ref = torch.zeros_like(x) if baseline == "black" else model.mean.expand_as(x)
    ig = fisherattr.get_method("integrated-gradients", model, n_steps=3, baseline=baseline).attribute(x, target=1)
    torch.testing.assert_close(ig, (x - ref) * linear_gradient(model, 1), rtol=1e-5, atol=1e-7)


def test_integrated_gradients_completeness_on_tiny_cnn(tiny_model, tiny_images):
    a = fisherattr.get_method("integrated-gradients", tiny_model, n_steps=200).attribute(tiny_images, target=0)
    with torch.no_grad():
        delta = tiny_model(tiny_images)[:, 0] - tiny_model(torch.zeros_like(tiny_images))[:, 0]
    torch.testing.assert_close(a.sum((1, 2, 3)), delta, rtol=1e-2, atol=1e-4)  # ReLU kinks: 0.2% seen


def test_smoothgrad_of_linear_model_is_its_gradient():
    model = linear_model()
    x = torch.rand(1, 3, 8, 8)
    sg = fisherattr.get_method("smoothgrad", model, n_samples=5, noise_level=0.3, abs=False).attribute(x, target=3)
    torch.testing.assert_close(sg, linear_gradient(model, 3), rtol=1e-5, atol=1e-7)


def test_smoothgrad_averages_noisy_gradients(tiny_model, tiny_images):
    x = tiny_images[:1]
    sg = fisherattr.get_method("smoothgrad", tiny_model, n_samples=8, noise_level=0.2, seed=1).attribute(x, target=0)
    plain = fisherattr.get_method("saliency", tiny_model).attribute(x, target=0)
    assert not torch.allclose(sg, plain)  # noise really was added
    # same draws by hand: Captum adds N(0, 0.2) noise to 8 copies under the seed
    with torch.random.fork_rng():
        torch.manual_seed(1)
        noisy = (x.expand(8, -1, -1, -1) + torch.normal(0, torch.full((8, 3, 16, 16), 0.2))).requires_grad_(True)
    tiny_model(noisy)[:, 0].sum().backward()
    torch.testing.assert_close(sg, noisy.grad.abs().mean(0, keepdim=True), rtol=1e-4, atol=1e-7)


def test_occlusion_with_one_pixel_windows_is_the_logit_drop():
    model = linear_model()
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(7))
    occ = fisherattr.get_method("occlusion", model, window=1, stride=1).attribute(x, target=0)
    expected = (x * linear_gradient(model, 0)).sum(1, keepdim=True)  # removing pixel p drops W_p . x_p / std
    torch.testing.assert_close(occ, expected, rtol=1e-4, atol=1e-5)


def test_occlusion_geometry_scales_with_size():
    assert occlusion_geometry((224, 224), None, None) == (16, 8)
    assert occlusion_geometry((448, 300), None, None) == (21, 11)
    assert occlusion_geometry((64, 64), None, None) == (5, 2)
    assert occlusion_geometry((64, 64), 100, 3) == (64, 3)


@pytest.mark.parametrize("name", ["kernelshap", "lime"])
def test_superpixel_methods_exact_on_linear_model(name):
    """For a model linear in the super-pixels, KernelSHAP (and un-regularised LIME) recover
    phi_k = sum over segment k of W . (x - baseline) / std exactly."""
    model = linear_model(size=16)
    x = blocky_image(16)
    opts = {"n_samples": 60, "n_segments": 4}
    if name == "lime":
        opts["alpha"] = 0.0
    method = fisherattr.get_method(name, model, **opts)
    seg = method.segments(x[0])
    k = int(seg.max()) + 1
    assert k >= 3
    contrib = (x * linear_gradient(model, 1)).sum(1)[0]  # per pixel, black baseline
    phi = torch.zeros(k).index_add_(0, seg.flatten(), contrib.flatten())
    out = method.attribute(x, target=1)
    torch.testing.assert_close(out[0, 0], phi[seg], rtol=1e-3, atol=1e-4)


def test_lime_ridge_shrinks_towards_zero():
    model = linear_model(size=16)
    x = blocky_image(16)
    exact = fisherattr.get_method("lime", model, n_samples=60, n_segments=4, alpha=0.0).attribute(x, target=1)
    ridge = fisherattr.get_method("lime", model, n_samples=60, n_segments=4, alpha=50.0).attribute(x, target=1)
    assert ridge.abs().sum() < 0.9 * exact.abs().sum()


def test_weighted_ridge_matches_normal_equations():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(30, 4, generator=g)
    y = torch.rand(30, generator=g)
    w = torch.rand(30, generator=g) + 0.1
    for alpha in (0.0, 2.0):
        b, c = weighted_ridge(x, y, w, alpha)
        # augmented normal equations with an unpenalised intercept, in numpy
        xa = np.hstack([x.double().numpy(), np.ones((30, 1))])
        pen = np.diag([alpha] * 4 + [0.0])
        sol = np.linalg.solve(xa.T @ (w.double().numpy()[:, None] * xa) + pen, xa.T @ (w.double().numpy() * y.double().numpy()))
        np.testing.assert_allclose(b.numpy(), sol[:4], rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(c.item(), sol[4], rtol=1e-8, atol=1e-10)


def test_superpixels_are_dense_labels():
    x = blocky_image(32)
    seg = superpixels(x[0], n_segments=4)
    labels = torch.unique(seg)
    assert torch.equal(labels, torch.arange(len(labels)))
    assert seg.shape == (32, 32) and len(labels) >= 3


# ----------------------------------------------------------------------------- ReLU6 swaps
def test_relu6_replacements_compute_relu6():
    x = torch.linspace(-10, 20, 3001)
    torch.testing.assert_close(GuidedReLU6()(x), F.relu6(x), rtol=0, atol=0)
    torch.testing.assert_close(RescaleReLU6()(x), F.relu6(x), rtol=0, atol=2e-6)


def test_relu6_swap_works_on_a_copy(relu6_model):
    x = torch.rand(2, 3, 8, 8)
    swapped = swap_relu6(relu6_model, RescaleReLU6)
    assert swapped is not relu6_model
    assert isinstance(relu6_model.net.a1, nn.ReLU6) and isinstance(swapped.net.a1, RescaleReLU6)
    torch.testing.assert_close(swapped(x), relu6_model(x), rtol=1e-5, atol=1e-5)
    plain = linear_model()
    assert swap_relu6(plain, RescaleReLU6) is plain  # nothing to swap: no copy


def test_deeplift_summation_to_delta_with_relu6_and_batchnorm(relu6_model):
    from captum.attr import DeepLift as CaptumDeepLift

    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        h = relu6_model.net.bn(relu6_model.net.c1(relu6_model.normalize(x)))
        delta = relu6_model(x)[:, 1] - relu6_model(torch.zeros_like(x))[:, 1]
    assert (h > 6).float().mean() > 0.1 and (h < 0).float().mean() > 0.1  # both kinks are exercised
    a = DeepLift(relu6_model).attribute(x, target=1)
    torch.testing.assert_close(a.sum((1, 2, 3)), delta, rtol=1e-4, atol=1e-5)
    # Captum alone treats ReLU6 as linear: summation-to-delta fails there
    with pytest.warns(UserWarning):
        raw = CaptumDeepLift(relu6_model).attribute(x, baselines=torch.zeros_like(x), target=1)
    assert (raw.sum((1, 2, 3)) - delta).abs().max() > 0.05
    assert isinstance(relu6_model.net.a1, nn.ReLU6)  # the caller's model is untouched
    assert not relu6_model.net.a1._forward_hooks and not relu6_model.net.a1._forward_pre_hooks


def test_patched_copy_follows_weight_changes(relu6_model):
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    dl = DeepLift(relu6_model)
    first = dl.attribute(x, target=0)
    assert dl._patched.get(relu6_model) is dl._patched.get(relu6_model)  # cached between calls
    with torch.no_grad():
        relu6_model.net.fc.weight.mul_(-2.0)  # an in-place update the copy must see
        delta = relu6_model(x)[0, 0] - relu6_model(torch.zeros_like(x))[0, 0]
    second = dl.attribute(x, target=0)
    assert not torch.allclose(first, second)
    torch.testing.assert_close(second.sum(), delta, rtol=1e-4, atol=1e-5)


def test_deeplift_summation_to_delta_on_tiny_cnn(tiny_model, tiny_images):
    for baseline in ("black", "mean"):
        ref = torch.zeros_like(tiny_images) if baseline == "black" else tiny_model.mean.expand_as(tiny_images)
        a = DeepLift(tiny_model, baseline=baseline).attribute(tiny_images, target=2)
        with torch.no_grad():
            delta = tiny_model(tiny_images)[:, 2] - tiny_model(ref)[:, 2]
        torch.testing.assert_close(a.sum((1, 2, 3)), delta, rtol=1e-4, atol=1e-6)


def test_deeplift_warns_about_unsupported_activations():
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 6), nn.SiLU(), nn.Linear(6, 2))
    with pytest.warns(UserWarning, match="no DeepLIFT rule for SiLU"):
        DeepLift(Classifier(net))


def test_guided_backprop_relu6_by_hand():
    """x -> W1 -> ReLU6 -> W2: guided gradient = W1^T [relu(W2_t) * 1(0 < h < 6)]."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Flatten(), nn.Linear(48, 10), nn.ReLU6(), nn.Linear(10, 3))
    with torch.no_grad():
        net[1].weight.mul_(10)
    model = Classifier(net)
    x = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        h = net[1](x.flatten(1))[0]
    gate = ((h > 0) & (h < 6)).float()
    assert (h > 6).any() and (h < 0).any() and (net[3].weight[2] * gate < 0).any()  # every case occurs
    expected = (net[1].weight.T @ (F.relu(net[3].weight[2]) * gate)).view(1, 3, 4, 4)
    out = GuidedBackprop(model).attribute(x, target=2)
    torch.testing.assert_close(out, expected.detach(), rtol=1e-5, atol=1e-6)
    plain = Saliency(model, abs=False).attribute(x, target=2)
    assert not torch.allclose(out, plain)


# ----------------------------------------------------------------------------- Grad-CAM
def test_gradcam_closed_form_on_tiny_cnn(tiny_model, tiny_images):
    """TinyCNN ends relu2 -> mean pool -> fc, so alpha_k = W[t,k] / (H*W) and the CAM is
    relu(sum_k alpha_k A_k), bilinearly upsampled."""
    cam = GradCam(tiny_model)
    assert cam.layer_name() == "net.relu2"
    feats = {}
    handle = tiny_model.net.relu2.register_forward_hook(lambda m, i, o: feats.setdefault("a", o.detach()))
    with torch.no_grad():
        tiny_model(tiny_images)
    handle.remove()
    a = feats["a"]
    alpha = tiny_model.net.fc.weight[3].detach() / (a.shape[2] * a.shape[3])
    small = F.relu((alpha[None, :, None, None] * a).sum(1, keepdim=True))
    expected = F.interpolate(small, size=(16, 16), mode="bilinear")
    torch.testing.assert_close(cam.attribute(tiny_images, target=3), expected, rtol=1e-5, atol=1e-7)


def test_gradcam_layer_option_and_errors(tiny_model, tiny_images):
    cam = fisherattr.get_method("gradcam", tiny_model, layer="relu1")  # "net." prefix optional
    assert cam.layer_name() == "net.relu1"
    assert cam.attribute(tiny_images).shape == (3, 1, 16, 16)
    assert not torch.allclose(cam.attribute(tiny_images), GradCam(tiny_model).attribute(tiny_images))
    with pytest.raises(UsageError, match="layer 'nope' is not a submodule"):
        fisherattr.get_method("gradcam", tiny_model, layer="nope")
    with pytest.raises(UsageError, match="layer"):
        fisherattr.get_method("guided-gradcam", tiny_model, layer="net.conv9")
    with pytest.raises(UsageError, match="upsample"):
        fisherattr.get_method("gradcam", tiny_model, upsample="area")


def test_last_conv_layer_skips_reused_modules():
    class Reuse(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.act = nn.ReLU()
            self.block = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            x = self.act(self.block(self.act(self.conv(x))))  # self.act is used twice
            return self.fc(x.mean((2, 3)))

    assert last_conv_layer(Classifier(Reuse()), torch.rand(1, 3, 8, 8)) == "net.block"


# ----------------------------------------------------------------------------- option validation
@pytest.mark.parametrize("name, options, word", [
    ("integrated-gradients", {"n_steps": 0}, "n_steps"),
    ("integrated-gradients", {"method": "simpson"}, "method"),
    ("integrated-gradients", {"baseline": "grey"}, "baseline"),
    ("smoothgrad", {"noise_level": -0.1}, "noise_level"),
    ("smoothgrad", {"n_samples": 0}, "n_samples"),
    ("occlusion", {"window": 0}, "window"),
    ("occlusion", {"stride": 2.5}, "stride"),
    ("lime", {"n_samples": 1}, "n_samples"),
    ("lime", {"kernel_width": 0}, "kernel_width"),
    ("lime", {"alpha": -1}, "alpha"),
    ("kernelshap", {"n_segments": 0}, "n_segments"),
    ("deeplift", {"baseline": "white"}, "baseline"),
    ("saliency", {"n_steps": 3}, "no option 'n_steps'"),
])
def test_bad_options(name, options, word, tiny_model):
    with pytest.raises(UsageError, match=word):
        fisherattr.get_method(name, tiny_model, **options)


# ----------------------------------------------------------------------------- EfficientNet-Lite0
LITE_OPTIONS = {
    "saliency": {},
    "input-x-gradient": {},
    "integrated-gradients": {"n_steps": 4},
    "smoothgrad": {"n_samples": 2},
    "guided-backprop": {},
    "deeplift": {},
    "gradcam": {},
    "guided-gradcam": {},
    "occlusion": {"window": 32, "stride": 32},
    "lime": {"n_samples": 8, "n_segments": 10},
    "kernelshap": {"n_samples": 8, "n_segments": 10},
}


@pytest.fixture(scope="module")
def chelsea64(chelsea) -> torch.Tensor:
    return F.interpolate(chelsea, size=(64, 64), mode="bilinear", antialias=True).clamp(0, 1)


@pytest.mark.parametrize("name", sorted(LITE_OPTIONS))
def test_each_method_runs_on_lite0(name, lite0, chelsea64):
    out = fisherattr.get_method(name, lite0, **LITE_OPTIONS[name]).attribute(chelsea64, target=285)
    assert out.shape == (1, 1 if name in PER_PIXEL else 3, 64, 64)
    assert torch.isfinite(out).all() and out.abs().sum() > 0
    assert all(isinstance(m, nn.ReLU6) for n, m in lite0.named_modules() if n.endswith(("_act_head", "_act_stem")))
    assert not any(m._forward_hooks or m._backward_hooks or m._forward_pre_hooks for m in lite0.modules())


def test_deeplift_summation_to_delta_on_lite0(lite0, chelsea64):
    a = DeepLift(lite0).attribute(chelsea64, target=285)
    with torch.no_grad():
        delta = (lite0(chelsea64)[0, 285] - lite0(torch.zeros_like(chelsea64))[0, 285]).item()
    assert abs(a.sum().item() - delta) <= 1e-3 * abs(delta) + 1e-3


def test_guided_backprop_on_lite0_differs_from_gradient(lite0, chelsea64):
    gbp = GuidedBackprop(lite0).attribute(chelsea64, target=285)
    grad = Saliency(lite0, abs=False).attribute(chelsea64, target=285)
    assert not torch.allclose(gbp, grad, atol=1e-3)  # the ReLU6 modules were really guided


def test_gradcam_picks_the_last_conv_block_on_lite0(lite0, chelsea64):
    cam = GradCam(lite0)
    # _conv_head (1x1 conv) -> _bn1 -> _act_head: a 7x7x1280 map at 224, then global pooling
    assert cam.layer_name((224, 224)) == "net._act_head"
    assert cam.layer_name((64, 64)) == "net._act_head"  # still 2x2 there
    assert fisherattr.get_method("gradcam", lite0, layer="_blocks.15").layer_name() == "net._blocks.15"
    other = fisherattr.get_method("gradcam", lite0, layer="net._blocks.15").attribute(chelsea64, target=285)
    assert other.shape == (1, 1, 64, 64)
    with pytest.raises(UsageError, match="not a submodule"):
        GradCam(lite0, layer="net._blocks.99")


def test_integrated_gradients_completeness_on_lite0(lite0, chelsea):
    """sum(A) ~ f(x) - f(black) on the target logit within 5% at 200 steps (~25 s)."""
    a = fisherattr.get_method("integrated-gradients", lite0, n_steps=200, internal_batch_size=50).attribute(
        chelsea, target=285)
    with torch.no_grad():
        delta = (lite0(chelsea)[0, 285] - lite0(torch.zeros_like(chelsea))[0, 285]).item()
    assert abs(a.sum().item() - delta) <= 0.05 * abs(delta)
