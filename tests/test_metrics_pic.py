"""PIC (AIC/SIC): the curve construction by hand, a two-threshold case computed by hand, skips."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

from fisherattr.metrics.common import trapezoid
from fisherattr.metrics.pic import (interpolated_reference, ms_ssim, pic, pic_curve, gaussian_reference,
                                    webp_size)
from fisherattr.models import Classifier


def sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def test_pic_curve_running_max_and_auc_by_hand():
    c = pic_curve([0.2, 0.6], [0.5, 0.3], n_points=1000)
    # points (0,0) (0.2,.5) (0.6,.5 after running max) (1,1): area .05 + .2 + .3
    assert abs(trapezoid(c) - 0.55) < 1e-3
    assert np.all(np.diff(c) >= 0)
    # PAIR: the running max is taken in threshold order, then the points are sorted by info
    c2 = pic_curve([0.6, 0.2], [0.3, 0.5], n_points=1001)   # points (0.2, .5) and (0.6, .3)
    assert abs(c2[200] - 0.5) < 1e-12 and abs(c2[600] - 0.3) < 1e-12
    assert abs(trapezoid(c2) - (0.05 + 0.4 * 0.4 + 0.4 * 0.65)) < 1e-9


class ToyNet(nn.Module):
    """s = 8*mean_P(ch0) - 2 - 2*mean_Q(ch1); logits [s, 0]. P = row 0, Q = first 5 pixels of row 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = 8 * x[:, 0, 0, :].mean(1) - 2 - 2 * x[:, 1, 1, :5].mean(1)
        return torch.stack([s, torch.zeros_like(s)], 1)


def test_pic_two_thresholds_by_hand():
    model = Classifier(ToyNet(), classes=["a", "b"]).eval()
    x = torch.zeros(1, 3, 10, 10)
    x[0, 0, 0, :] = 1.0
    x[0, 1] = 0.5
    amap = torch.zeros(1, 1, 10, 10)
    amap[0, 0, 0, :5] = 3  # 5 pixels of P first,
    amap[0, 0, 1, :5] = 2  # then Q,
    amap[0, 0, 0, 5:] = 1  # then the rest of P

    def info(bokeh, orig, ref):
        return float(np.abs(bokeh - ref).sum() / np.abs(orig - ref).sum())

    r = pic(model, x, amap, target=0, reference=lambda im: np.zeros_like(im), information=info,
            thresholds=[0.05, 0.10], n_points=1000)
    # black reference: s=-2; original: s=8-2-1=5; 5 px of P: s=2; + Q: s=1
    p_ref, p_orig = sig(-2), sig(5)
    a = (sig(2) - p_ref) / (p_orig - p_ref)
    b = (sig(1) - p_ref) / (p_orig - p_ref)
    # information: 5 px of P carry 5*(1+.5) of the 60 units; + Q adds 5*.5
    assert np.allclose(r.info[0], [7.5 / 60, 10 / 60])
    assert np.allclose(r.sic_points[0], [a, b])
    assert np.allclose(r.aic_points[0], [1.0, 1.0])
    x1, x2 = 7.5 / 60, 10 / 60
    sic_by_hand = x1 * a / 2 + (x2 - x1) * a + (1 - x2) * (a + 1) / 2  # running max keeps a at x2
    aic_by_hand = x1 / 2 + (1 - x1)
    assert abs(r.sic_auc - sic_by_hand) < 1e-3
    assert abs(r.aic_auc - aic_by_hand) < 1e-3
    assert r.model_calls == 4  # reference, two bokeh images, original
    assert r.skips() == {"sic": {}, "aic": {}}


def test_pic_skips_low_confidence_and_counts_reasons():
    class Flat(nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0], 2)

    model = Classifier(Flat(), classes=["a", "b"]).eval()
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    r = pic(model, x, torch.rand(2, 1, 12, 12), target=0)
    assert r.sic_skip == r.aic_skip == ["prediction below 0.8 or not the target"] * 2
    assert r.skips()["sic"] == {"prediction below 0.8 or not the target": 2}
    assert np.isnan(r.sic_auc)


def test_references_are_less_informative_than_a_photo():
    from fisherattr import load_image

    img = load_image("chelsea", size=64)[0].permute(1, 2, 0).double().numpy()
    ref = interpolated_reference(img, seed=0)
    assert ref.shape == img.shape and np.all(np.isfinite(ref))
    # kept pixels and corners are exact
    assert np.allclose(ref[0, 0], img[0, 0], atol=1e-9) and np.allclose(ref[-1, -1], img[-1, -1], atol=1e-9)
    assert webp_size(ref) < webp_size(img)
    assert webp_size(gaussian_reference(img)) < webp_size(img)
    assert interpolated_reference(img, seed=0).tobytes() == ref.tobytes()


def test_ms_ssim_identity_and_degradation():
    g = np.random.default_rng(0)
    a = g.random((64, 64, 3))
    assert abs(ms_ssim(a, a) - 1.0) < 1e-9
    noisy = np.clip(a + 0.1 * g.standard_normal(a.shape), 0, 1)
    noisier = np.clip(a + 0.4 * g.standard_normal(a.shape), 0, 1)
    assert 1.0 > ms_ssim(a, noisy) > ms_ssim(a, noisier)
