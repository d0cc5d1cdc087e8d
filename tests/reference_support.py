"""Helpers for the equivalence tests against the authors' reference code (issue 17).

PAIR ``saliency`` 0.2.1 was written for numpy 1.x: it calls ``np.trapz`` and
``np.quantile(..., interpolation=...)``, both renamed in numpy 2 (to
``np.trapezoid`` and ``method=``, same semantics). :func:`numpy_1_names`
restores the old names for the duration of a test; nothing else of the
reference code is changed.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, List

import numpy as np
import pytest
import torch

from fisherattr import load_classifier
from fisherattr.data.synthetic import load_samples
from fisherattr.models import Classifier


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Run the reference comparisons on one torch thread (restored after): they make many small
    sequential model calls, which a second thread only slows down on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@contextlib.contextmanager
def numpy_1_names() -> Iterator[None]:
    """Temporarily provide ``np.trapz`` and ``np.quantile(interpolation=...)`` for PAIR's code."""
    quantile = np.quantile
    had_trapz = hasattr(np, "trapz")

    def quantile_compat(a, q, *args, interpolation=None, **kw):
        if interpolation is not None:
            kw["method"] = interpolation
        return quantile(a, q, *args, **kw)

    np.quantile = quantile_compat
    if not had_trapz:
        np.trapz = np.trapezoid
    try:
        yield
    finally:
        np.quantile = quantile
        if not had_trapz:
            del np.trapz


def synthetic_model() -> Classifier:
    """The shipped synthetic 64 px CNN, in eval mode."""
    return load_classifier("synthetic").eval()


def synthetic_images(n: int) -> List[torch.Tensor]:
    """The first ``n`` synthetic test images, each ``[1,3,64,64]`` (8-bit values in [0,1])."""
    return [s.image for s in load_samples(n)]


def pair_model_function(model: Classifier, target: int, dtype=torch.float32):
    """A PAIR ``call_model_function`` returning the target logit's input gradient for ``[B,H,W,C]`` arrays."""
    from saliency.core.base import INPUT_OUTPUT_GRADIENTS

    def call(x, call_model_args=None, expected_keys=None):
        t = torch.tensor(np.asarray(x), dtype=dtype).permute(0, 3, 1, 2).requires_grad_(True)
        out = model(t)[:, target].sum()
        (g,) = torch.autograd.grad(out, t)
        return {INPUT_OUTPUT_GRADIENTS: g.permute(0, 2, 3, 1).detach().numpy()}

    return call


def gkern(klen: int = 11, nsig: float = 5.0) -> torch.Tensor:
    """RISE's and ExplainAttr's blur kernel, restated: a centred delta through
    ``scipy.ndimage.gaussian_filter``, one copy per channel (``[3,3,klen,klen]`` conv weight)."""
    import numpy as np
    from scipy.ndimage import gaussian_filter

    d = np.zeros((klen, klen))
    d[klen // 2, klen // 2] = 1
    k = torch.from_numpy(gaussian_filter(d, nsig)).float()
    w = torch.zeros(3, 3, klen, klen)
    for c in range(3):
        w[c, c] = k
    return w
