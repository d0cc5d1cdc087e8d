"""IG, Guided IG and Blur IG agree with PAIR ``saliency`` 0.2.1 (issue 17).

Same model (the synthetic 64 px CNN), image, target (its logit), baseline and
steps. Targets: IG ``rule='pair'`` rel. L2 <= 1e-4; Guided IG (default
``selection='all'``) Pearson r >= 0.999; Blur IG (both sigma schedules) r >= 0.999.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fisherattr.methods.paths import IG, BlurIG, GuidedIG

from reference_support import one_thread  # noqa: F401  (autouse)
from reference_support import numpy_1_names, pair_model_function, synthetic_images, synthetic_model

saliency = pytest.importorskip("saliency.core", reason="needs the 'reference' extra (saliency==0.2.1)")


@pytest.fixture(scope="module")
def setup():
    model = synthetic_model()
    x = synthetic_images(2)[1]
    target = int(model(x).argmax(1))
    return model, x, target, x[0].permute(1, 2, 0).numpy().astype(np.float64)


def _hwc(a: torch.Tensor) -> np.ndarray:
    return a[0].permute(1, 2, 0).double().numpy()


def _rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _r(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_ig_pair_rule_matches_pair_integrated_gradients(setup):
    model, x, target, xv = setup
    ref = saliency.IntegratedGradients().GetMask(xv.astype(np.float32), pair_model_function(model, target),
                                                 x_steps=33, x_baseline=np.zeros_like(xv, np.float32),
                                                 batch_size=33)
    ours = _hwc(IG(model, steps=32, rule="pair").attribute(x, target=target))
    assert _rel_l2(ours, ref) <= 1e-4
    # the left Riemann sum is a different estimator: measurably apart at 32 steps
    left = _hwc(IG(model, steps=32, rule="left").attribute(x, target=target))
    assert _rel_l2(left, ref) > 1e-3


def test_guided_ig_default_matches_pair_guided_ig(setup):
    model, x, target, xv = setup
    with numpy_1_names():
        ref = saliency.GuidedIG().GetMask(xv, pair_model_function(model, target), x_steps=32,
                                          x_baseline=np.zeros_like(xv), fraction=0.25, max_dist=0.02)
    ours = _hwc(GuidedIG(model, steps=32).attribute(x, target=target))
    assert _r(ours, ref) >= 0.999, _r(ours, ref)
    assert _rel_l2(ours, ref) <= 1e-2, _rel_l2(ours, ref)


@pytest.mark.parametrize("sqrt", [False, True])
def test_blur_ig_matches_pair_blur_ig(setup, sqrt):
    model, x, target, xv = setup
    # batch_size=1: PAIR 0.2.1 weights a whole batch by the sigma difference of its last step, which only
    # matters for the uneven sqrt schedule; one point per call is the method as the paper defines it
    ref = saliency.BlurIG().GetMask(xv.astype(np.float32), pair_model_function(model, target), max_sigma=8,
                                    steps=24, grad_step=0.01, sqrt=sqrt, batch_size=1)
    ours = _hwc(BlurIG(model, max_sigma=8, steps=24, sqrt=sqrt).attribute(x, target=target))
    assert _r(ours, ref) >= 0.999, _r(ours, ref)
