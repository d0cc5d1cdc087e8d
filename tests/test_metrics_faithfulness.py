"""Known-answer tests for MNIM, Sensitivity-N, mu-Fidelity and the completeness gap."""
from __future__ import annotations

import torch
import torch.nn as nn

from fisherattr.metrics.completeness import completeness_gap
from fisherattr.metrics.mnim import max_model_calls, mnim
from fisherattr.metrics.sensitivity import default_sizes, mu_fidelity, sensitivity_n
from fisherattr.models import Classifier

H = W = 16


class RegionNet(nn.Module):
    """Class 0 wins (p ~ 1) only when every feature of the region equals the reference image."""

    def __init__(self, ref_z: torch.Tensor, region: torch.Tensor, k: float = 1e4) -> None:
        super().__init__()
        self.register_buffer("ref", ref_z)
        self.register_buffer("region", region.float().expand_as(ref_z).clone())
        self.k = k
        self.images_seen = 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.images_seen += z.shape[0]
        err = (((z - self.ref) ** 2) * self.region).flatten(1).sum(1)
        s = 10.0 - self.k * err
        return torch.stack([s, torch.zeros_like(s)], dim=1)


def region_setup():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(1, 3, H, W, generator=g)
    region = torch.zeros(1, 1, H, W, dtype=torch.bool)
    region[..., 4:8, 4:12] = True  # 32 pixels = 96 of 768 features
    mean, std = 0.5, 0.25
    net = RegionNet((x - mean) / std, region)
    model = Classifier(net, mean=(mean,) * 3, std=(std,) * 3, classes=["in", "out"]).eval()
    return model, net, x, region


def test_mnim_perfect_map_equals_region_share_and_counts_passes():
    model, net, x, region = region_setup()
    perfect = region.float().expand(1, 3, H, W)
    before = net.images_seen
    r = mnim(model, x, perfect, target=0, grid=32)
    assert r.units == 768
    assert r.n.tolist() == [96]
    assert float(r.values[0]) == 96 / 768
    # grid pass: 33 counts (0, 24, ..., 768); 96 is grid point 4, so bisection runs on (72, 96]:
    # 84, 90, 93, 94, 95 -> 5 passes; plus 1 pass for the target = 39 images through the model.
    assert r.model_calls == 33 + 5
    assert net.images_seen - before == 1 + 33 + 5
    assert r.model_calls <= max_model_calls(768, 32)


def test_mnim_reversed_map_needs_everything_and_never_reached_is_one():
    model, _, x, region = region_setup()
    reverse = (~region).float().expand(1, 3, H, W)
    assert float(mnim(model, x, reverse, target=0).values[0]) == 1.0
    # class 1 already wins on pure noise: N = 0
    assert float(mnim(model, x, reverse, target=1).values[0]) == 0.0
    # a threshold no composite reaches (p <= sigmoid(10) < 1): MNIM = 1.0 by definition
    r = mnim(model, x, region.float().expand(1, 3, H, W), target=0, threshold=1.0)
    assert not bool(r.reached[0]) and float(r.values[0]) == 1.0


def test_mnim_per_pixel_map_batched_and_deterministic():
    model, _, x, region = region_setup()
    xb = x.repeat(2, 1, 1, 1)
    pix = region.float().repeat(2, 1, 1, 1)  # [2,1,H,W]: ranks pixels
    r1 = mnim(model, xb, pix, target=0, seed=5)
    r2 = mnim(model, xb, pix, target=0, seed=5)
    assert r1.units == 256 and r1.n.tolist() == [32, 32]
    assert torch.equal(r1.values, r2.values)


class LinearNet(nn.Module):
    """logit_0 = w . z + b (exactly additive in the normalised input), logit_1 = 0."""

    def __init__(self, d: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.randn(d, generator=g))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        s = z.flatten(1) @ self.w + 0.3
        return torch.stack([s, torch.zeros_like(s)], dim=1)


def linear_setup(size: int = 8):
    d = 3 * size * size
    net = LinearNet(d)
    model = Classifier(net, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25), classes=["a", "b"]).eval()
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    z = model.normalize(x)
    exact = (net.w.detach().view(1, 3, size, size) * z).detach()  # removal to the mean = z -> 0
    return model, x, exact


def test_sensitivity_n_is_one_for_exact_additive_attribution():
    model, x, exact = linear_setup()
    r = sensitivity_n(model, x, exact, target=0, n_subsets=20, baseline="mean")
    assert r.ns == default_sizes(192)
    assert torch.allclose(r.correlations, torch.ones_like(r.correlations), atol=1e-6)
    noise = torch.randn(exact.shape, generator=torch.Generator().manual_seed(9))
    rn = sensitivity_n(model, x, noise, target=0, ns=[20, 100], n_subsets=40)
    assert rn.correlations.abs().mean() < 0.5
    assert rn.model_calls == 2 * (1 + 2 * 40)  # per image: the clean score + one pass per subset


def test_mu_fidelity_exact_vs_wrong_sign():
    model, x, exact = linear_setup()
    good = mu_fidelity(model, x, exact, target=0, n_subsets=16)
    bad = mu_fidelity(model, x, -exact, target=0, n_subsets=16)
    assert torch.allclose(good, torch.ones(2, dtype=good.dtype), atol=1e-6)
    assert torch.allclose(bad, -torch.ones(2, dtype=bad.dtype), atol=1e-6)


def test_completeness_gap_closed_form():
    model, x, _ = linear_setup()
    w = model.net.w.detach().view(1, 3, 8, 8)
    # IG from black on a linear logit is exact: (x - 0) * d logit / dx = x * w / std
    ig = x * w / model.std
    gap = completeness_gap(model, x, ig, baselines=torch.zeros_like(x), target=0)
    assert torch.all(gap < 1e-5)
    gap2 = completeness_gap(model, x, 2 * ig, target=0)
    assert torch.allclose(gap2, torch.ones_like(gap2), atol=1e-5)


def test_completeness_metric_reads_the_methods_baseline(tiny_model, tiny_images):
    from fisherattr import get_method
    from fisherattr.metrics.suite import MetricContext, get_metric, method_baseline

    ig = get_method("integrated-gradients", tiny_model, n_steps=64)
    assert torch.equal(method_baseline(ig, tiny_model, tiny_images[:1]), torch.zeros(1, 3, 16, 16))
    assert method_baseline(get_method("saliency", tiny_model), tiny_model, tiny_images[:1]) is None
    x = tiny_images[:1]
    ctx = MetricContext(model=tiny_model, image=x, attribution=ig.attribute(x, 2), target=2, method=ig)
    out = get_metric("completeness").compute(ctx)
    assert out.skip is None and out.values["completeness_gap"] < 0.02  # Gauss-Legendre IG converges
    ctx.method = get_method("saliency", tiny_model)
    assert get_metric("completeness").compute(ctx).skip
