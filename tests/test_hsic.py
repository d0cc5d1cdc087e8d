"""HSIC-Attribution: the estimator against the O(n^2) centring-matrix formula, a one-cell toy model, contract."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import fisherattr
from fisherattr.errors import UsageError
from fisherattr.methods.hsic import binary_designs, hsic_dirac, rbf_median_gram
from fisherattr.models import Classifier


class OneCellNet(nn.Module):
    """Class 0's logit is 6 * mean of the image over one 2x2 grid cell (row 2, column 5 of a 7x7 grid on 14x14)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x[:, :, 4:6, 10:12].mean((1, 2, 3)) * 6
        return torch.stack([v, torch.zeros_like(v), torch.full_like(v, 0.5)], 1)


def direct_hsic(bits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """tr(K H L H)/(n-1)^2 with explicit Gram matrices, one input dimension at a time."""
    n = bits.shape[0]
    h = torch.eye(n, dtype=torch.float64) - torch.ones(n, n, dtype=torch.float64) / n
    w = float(np.median(y.numpy()))
    yy = y.double()
    gram_l = torch.exp(-(yy[:, None] - yy[None, :]) ** 2 / (2 * w ** 2))
    out = []
    for j in range(bits.shape[1]):
        b = bits[:, j].double()
        gram_k = (b[:, None] == b[None, :]).double()
        out.append(torch.trace(gram_k @ h @ gram_l @ h) / (n - 1) ** 2)
    return torch.stack(out)


def test_estimator_equals_direct_formula():
    g = torch.Generator().manual_seed(0)
    bits = (torch.rand(13, 5, generator=g) < 0.5).float()
    y = torch.rand(13, generator=g) + 0.1
    gram = rbf_median_gram(y)
    w = np.median(y.numpy())
    assert gram[0, 1].item() == pytest.approx(np.exp(-(y[0] - y[1]).item() ** 2 / (2 * w ** 2)), rel=1e-6)
    torch.testing.assert_close(hsic_dirac(bits, gram), direct_hsic(bits, y))
    # an output independent of one bit and equal to another: the latter scores far higher
    y2 = bits[:, 2] * 2 + 0.5
    s = hsic_dirac(bits, rbf_median_gram(y2))
    assert int(s.argmax()) == 2


@pytest.mark.parametrize("sampler", ["sobol", "lhs"])
def test_designs_are_balanced_binary_and_seeded(sampler):
    d = binary_designs(64, 49, sampler, seed=3)
    assert d.shape == (64, 49) and set(d.unique().tolist()) <= {0.0, 1.0}
    assert (d.sum(0) == 32).all()  # both designs stratify each coordinate: exactly half the cells kept
    assert torch.equal(d, binary_designs(64, 49, sampler, seed=3))
    assert not torch.equal(d, binary_designs(64, 49, sampler, seed=4))


@pytest.mark.parametrize("sampler", ["sobol", "lhs"])
def test_one_cell_model_scores_that_cell_highest(sampler):
    model = Classifier(OneCellNet(), classes=["a", "b", "c"], name="onecell")
    x = torch.full((1, 3, 14, 14), 0.9)
    hsic = fisherattr.get_method("hsic", model, designs=128, sampler=sampler)
    a = hsic.attribute(x, target=0)
    assert a.shape == (1, 1, 14, 14)
    low = hsic_dirac(hsic.masks_low().flatten(1), rbf_median_gram(
        model(x * torch.nn.functional.interpolate(hsic.masks_low(), size=(14, 14))).softmax(1)[:, 0]))
    assert int(low.argmax()) == 2 * 7 + 5
    others = torch.cat([low[:19], low[20:]])
    assert low[19] > 20 * others.abs().max()
    # the upsampled map peaks in that cell
    yx = divmod(int(a.flatten().argmax()), 14)
    assert 3 <= yx[0] <= 6 and 9 <= yx[1] <= 12


def test_contract(tiny_model, tiny_images):
    hsic = fisherattr.get_method("hsic", tiny_model, designs=32, internal_batch_size=10)
    before = tiny_images.clone()
    a = hsic.attribute(tiny_images)
    assert a.shape == (3, 1, 16, 16) and torch.isfinite(a).all() and hsic.per_pixel
    assert torch.equal(tiny_images, before)
    single = torch.cat([hsic.attribute(tiny_images[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(a, single)
    torch.testing.assert_close(fisherattr.get_method("hsic", tiny_model, designs=32).attribute(tiny_images), a)
    logit = fisherattr.get_method("hsic", tiny_model, designs=32, score="logit").attribute(tiny_images)
    assert logit.shape == a.shape


def test_options(tiny_model):
    for opt, val in [("grid_size", 0), ("designs", 2), ("sampler", "halton"), ("score", "log"),
                     ("designs", 10.5)]:
        with pytest.raises(UsageError, match=opt):
            fisherattr.get_method("hsic", tiny_model, **{opt: val})


@pytest.mark.slow
def test_hsic_lite0_chelsea(lite0, chelsea):
    a = fisherattr.get_method("hsic", lite0).attribute(chelsea)
    assert a.shape == (1, 1, 224, 224) and torch.isfinite(a).all() and a.max() > 0
