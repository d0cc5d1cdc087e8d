"""InputIBA: the GAN-mask prior, a known-answer region model, the contract (tiny models, short runs)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import fisherattr
from fisherattr.errors import UsageError
from fisherattr.methods.bottleneck import BottleneckEstimate, estimate_layer
from fisherattr.methods.input_iba import Critic

from test_iba import RegionNet, region_model  # noqa: F401  (shared toy model)

FAST = dict(feat_steps=3, steps=8, noise_copies=4, gan_steps=4, gan_batch=4)


@pytest.fixture
def region_estimate(tmp_path):
    est = BottleneckEstimate(torch.zeros(4, 12, 12), torch.ones(4, 12, 12), torch.ones(4, 12, 12), 1000,
                             {"layer": "net.feat"})
    return str(est.save(tmp_path / "region.safetensors"))


@pytest.fixture
def tiny_estimate(tiny_model, tmp_path):
    with pytest.warns(UserWarning):
        est = estimate_layer(tiny_model, "net.conv2", "samples", 16, (16, 16), batch_size=8, progress=False)
    return str(est.save(tmp_path / "tiny.safetensors"))


def test_critic_shape_and_seeded_init():
    a = Critic(6, width=8, generator=torch.Generator().manual_seed(0))
    b = Critic(6, width=8, generator=torch.Generator().manual_seed(0))
    x = torch.randn(3, 6, 10, 10)
    assert a(x).shape == (3,)
    torch.testing.assert_close(a(x), b(x))
    w = a.body[0].weight
    assert w.abs().max() <= 1 / (6 * 9) ** 0.5  # PyTorch's default bound 1/sqrt(fan_in)


def test_gan_free_prior_is_the_sigmoid_of_the_feature_capacity_map(region_estimate):
    """With gan_steps=0 the prior is the generator's initialisation: sigmoid(channel-summed capacity, resized)."""
    model = region_model()
    m = fisherattr.get_method("input-iba", model, layer="net.feat", estimate=region_estimate, gan_steps=0,
                              feat_beta=5.0, feat_steps=10, steps=8, noise_copies=4)
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    mask, prior, cap = m.explain_one(x, torch.tensor([0]))
    expected = torch.sigmoid(F.interpolate(cap.sum(1, keepdim=True), size=(12, 12), mode="bilinear",
                                           align_corners=False)).expand(1, 3, 12, 12)
    torch.testing.assert_close(prior, expected)
    assert mask.shape == (1, 3, 12, 12) and ((mask > 0) & (mask < 1)).all()
    # the region the head reads carries the feature capacity; the rest carries none
    assert cap[0, :, :4, :4].mean() > 20 * cap[0, :, 6:, 6:].mean()


def test_region_model_known_answer(region_estimate):
    model = region_model()
    m = fisherattr.get_method("input-iba", model, layer="net.feat", estimate=region_estimate, steps=20,
                              feat_steps=10, gan_steps=6, noise_copies=4, gan_batch=4)
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    a = m.attribute(x)
    assert a.shape == (1, 1, 12, 12) and (a >= 0).all() and (a <= 1).all()
    inside, outside = a[0, 0, :4, :4].mean(), a[0, 0, 6:, 6:].mean()
    assert inside > 0.1 and inside > 50 * outside, (inside, outside)  # measured 0.22 vs 0.0003


def test_contract(tiny_model, tiny_images, tiny_estimate):
    m = fisherattr.get_method("input-iba", tiny_model, layer="net.conv2", estimate=tiny_estimate, **FAST)
    x = tiny_images[:2]
    before = x.clone()
    a = m.attribute(x)
    assert a.shape == (2, 1, 16, 16) and torch.isfinite(a).all() and m.per_pixel
    assert torch.equal(x, before)
    torch.testing.assert_close(a[1:], m.attribute(x[1:]))  # batch == single (hence also deterministic)


def test_options(tiny_model, tiny_estimate):
    for opt, val in [("beta", -1.0), ("steps", 0), ("gan_steps", -1), ("gan_lr", 0), ("gan_batch", 0),
                     ("noise_copies", 2.5)]:
        with pytest.raises(UsageError, match=opt):
            fisherattr.get_method("input-iba", tiny_model, layer="net.conv2", estimate=tiny_estimate, **{opt: val})


@pytest.mark.slow
def test_input_iba_lite0_chelsea(lite0, chelsea, tmp_path, monkeypatch):
    monkeypatch.setenv("FISHERATTR_CACHE", str(tmp_path))
    with pytest.warns(UserWarning):
        a = fisherattr.get_method("input-iba", lite0, estimate_samples=200).attribute(chelsea)
    assert a.shape == (1, 1, 224, 224) and torch.isfinite(a).all()
    assert a.max() > a.min()
