"""The pointing game agrees with Quantus 0.6.0 ``PointingGame`` (issue 17).

Quantus counts a hit when the map's maximum lies inside the mask (no
tolerance); ours with ``tolerance=0`` must give the same hits on random maps
and random boxes.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from fisherattr.metrics.localisation import pointing_game

quantus = pytest.importorskip("quantus", reason="needs the 'reference' extra (quantus==0.6.0)")


def test_pointing_game_matches_quantus():
    g = np.random.default_rng(0)
    n = 24
    a = g.random((n, 1, 32, 32)).astype(np.float32)
    s = np.zeros((n, 1, 32, 32), np.float32)
    for i in range(n):
        y0, x0 = g.integers(0, 16, size=2)
        s[i, 0, y0:y0 + 16, x0:x0 + 16] = 1
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 4)).eval()
    x = g.random((n, 3, 32, 32)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = quantus.PointingGame(disable_warnings=True, display_progressbar=False)(
            model=net, x_batch=x, y_batch=np.zeros(n, int), a_batch=a, s_batch=s, device="cpu")
    ours = pointing_game(torch.from_numpy(a), torch.from_numpy(s[:, 0] > 0), tolerance=0.0)
    ref = np.asarray(ref, dtype=np.float64)
    assert 0 < ref.sum() < n                                  # both outcomes occur
    assert np.array_equal(ours.numpy(), ref)
