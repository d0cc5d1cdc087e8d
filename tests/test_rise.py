"""RISE: the saliency formula, the masks, a one-region toy model, contract."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

import fisherattr
from fisherattr.errors import UsageError
from fisherattr.methods.rise import RiseMasks
from fisherattr.models import Classifier


class RegionMeanNet(nn.Module):
    """Class 0's logit is 8 * (mean of the image over rows 2..8, columns 3..9) - 4; class 1's is 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x[:, :, 2:9, 3:10].mean((1, 2, 3)) * 8 - 4
        return torch.stack([v, torch.zeros_like(v)], 1)


def region_model() -> Classifier:
    return Classifier(RegionMeanNet(), classes=["a", "b"], name="region")


def test_masks():
    g = torch.Generator().manual_seed(0)
    masks = RiseMasks(500, (20, 20), grid_size=7, p=0.5, generator=g)
    m = masks.chunk(0, 500)
    assert m.shape == (500, 1, 20, 20) and m.min() >= 0 and m.max() <= 1
    assert masks.cell == (3, 3) and (masks.shift_x < 3).all() and (masks.shift_y < 3).all()
    assert m.mean().item() == pytest.approx(0.5, abs=0.03)
    # chunks are slices of one mask sequence
    torch.testing.assert_close(masks.chunk(100, 130), m[100:130])
    # a mask is the bilinear upsampling of its grid, shifted: a grid of ones gives ones
    ones = RiseMasks(3, (20, 20), 7, 1.0, torch.Generator().manual_seed(0)).chunk(0, 3)
    torch.testing.assert_close(ones, torch.ones(3, 1, 20, 20))


def test_saliency_is_the_rise_formula():
    model = region_model()
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    rise = fisherattr.get_method("rise", model, n_masks=50, internal_batch_size=16, seed=7)
    a = rise.attribute(x, target=0)
    masks = RiseMasks(50, (16, 16), 7, 0.5, torch.Generator().manual_seed(7)).chunk(0, 50)
    with torch.no_grad():
        f = model(x * masks).softmax(1)[:, 0]
    expected = (f[:, None, None, None] * masks).sum(0, keepdim=True) / (50 * 0.5)
    torch.testing.assert_close(a, expected, rtol=1e-5, atol=1e-6)


def test_constant_model_gives_its_probability_times_mask_coverage():
    class Const(nn.Module):
        def forward(self, x):
            return torch.tensor([[math.log(3.0), 0.0]]).expand(x.shape[0], 2)

    rise = fisherattr.get_method("rise", Classifier(Const()), n_masks=2000, p=0.5)
    a = rise.attribute(torch.rand(1, 3, 14, 14), target=0)
    assert a.mean().item() == pytest.approx(0.75, abs=0.03)  # 0.75 * E[M]/p = 0.75


def test_one_region_toy_model():
    model = region_model()
    x = torch.ones(2, 3, 16, 16)
    a = fisherattr.get_method("rise", model, n_masks=1000).attribute(x, target=0)
    inside = a[:, 0, 2:9, 3:10].mean((1, 2))
    ring = torch.ones(16, 16, dtype=torch.bool)
    ring[0:11, 1:12] = False  # well outside the region (masks are smooth over ~2 pixels)
    outside = a[:, 0][:, ring].mean(1)
    assert (inside - outside > 0.07).all(), (inside, outside)  # measured: 0.594 vs 0.494


def test_contract(tiny_model, tiny_images):
    rise = fisherattr.get_method("rise", tiny_model, n_masks=40, internal_batch_size=16)
    before = tiny_images.clone()
    a = rise.attribute(tiny_images)
    assert a.shape == (3, 1, 16, 16) and a.dtype == torch.float32 and rise.per_pixel
    assert torch.equal(tiny_images, before)
    torch.testing.assert_close(a, torch.cat([rise.attribute(tiny_images[i:i + 1]) for i in range(3)]))
    torch.testing.assert_close(rise.attribute(tiny_images), a)
    b = fisherattr.get_method("rise", tiny_model, n_masks=40, seed=1).attribute(tiny_images)
    assert not torch.allclose(a, b)


def test_options(tiny_model):
    for opt, val in [("n_masks", 0), ("grid_size", -1), ("p", 0.0), ("p", 1.5)]:
        with pytest.raises(UsageError, match=opt):
            fisherattr.get_method("rise", tiny_model, **{opt: val})


@pytest.mark.slow
def test_rise_lite0_chelsea(lite0, chelsea):
    a = fisherattr.get_method("rise", lite0, n_masks=500).attribute(chelsea)
    assert a.shape == (1, 1, 224, 224) and torch.isfinite(a).all() and a.min() >= 0
