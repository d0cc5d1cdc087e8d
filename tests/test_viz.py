"""Heat maps, overlays, grids (fisherattr.viz) and the atomic writers they use (fisherattr.io_utils)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from fisherattr import io_utils, viz


def block_map(h=32, w=40, c=3) -> torch.Tensor:
    a = torch.zeros(c, h, w)
    a[:, 4:12, 20:30] = 1.0
    return a


def test_heatmap_is_hot_in_the_block_only():
    heat = viz.heatmap(block_map())
    assert heat.shape == (32, 40) and heat.min() >= 0 and heat.max() <= 1
    assert np.allclose(heat[4:12, 20:30], 1.0)
    heat[4:12, 20:30] = 0
    assert np.allclose(heat, 0.0)


def test_robust_normalisation_ignores_one_extreme_pixel():
    a = block_map()
    a[:, 0, 0] = 1000.0                                    # one pixel, < 1% of the image
    heat = viz.heatmap(a, percentile=99)
    assert np.allclose(heat[4:12, 20:30], 1.0)             # the block is not washed out
    assert viz.heatmap(a, percentile=100)[5, 25] == pytest.approx(1 / 1000)


def test_signs():
    a = torch.zeros(1, 4, 4)
    a[0, 0, 0], a[0, 3, 3] = 2.0, -2.0
    assert viz.heatmap(a, "positive")[0, 0] == 1 and viz.heatmap(a, "positive")[3, 3] == 0
    assert viz.heatmap(a, "negative")[3, 3] == 1 and viz.heatmap(a, "negative")[0, 0] == 0
    assert viz.heatmap(a, "absolute")[3, 3] == 1
    allm = viz.heatmap(a, "all", percentile=100)
    assert allm[0, 0] == 1 and allm[3, 3] == 0 and allm[1, 1] == 0.5
    assert np.all(viz.heatmap(torch.zeros(3, 4, 4)) == 0)   # an all-zero map does not divide by zero
    with pytest.raises(ValueError, match="sign"):
        viz.heatmap(a, "both")


def test_overlay_shapes_dtypes_and_hot_colour():
    img = torch.full((1, 3, 32, 40), 0.5)
    out = viz.overlay(img, block_map().unsqueeze(0), alpha=1.0)
    assert out.shape == (32, 40, 3) and out.dtype == np.uint8
    r, b = out[..., 0].astype(int), out[..., 2].astype(int)
    assert (r[4:12, 20:30] > 100).all() and (b[4:12, 20:30] < 50).all()      # jet: hot = red
    assert (b[20:, :10] > 100).all() and (r[20:, :10] < 50).all()            # cold = blue
    same = viz.overlay(img, block_map(), alpha=0.0)
    assert np.all(same == 128)                                               # alpha 0: the image itself
    per_pixel = viz.overlay(img, block_map(c=1), alpha=0.5)                  # [1,H,W] maps work too
    assert per_pixel.shape == (32, 40, 3)
    hwc = viz.overlay(np.full((32, 40, 3), 128, np.uint8), block_map().numpy())
    assert hwc.shape == (32, 40, 3)
    with pytest.raises(ValueError, match="32x40"):
        viz.overlay(img, torch.zeros(3, 16, 16))


def test_save_overlay_and_grid_png(tmp_path):
    img = torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(0))
    p = viz.save_overlay(tmp_path / "o.png", img, block_map(24, 24))
    with Image.open(p) as im:
        assert im.size == (24, 24) and im.mode == "RGB"
    panel = viz.overlay(img, block_map(24, 24))
    fig = viz.comparison_grid([img, img], [[panel, None], [panel, panel]], ["m1", "m2"], ["a", "b"],
                              path=tmp_path / "grid.png")
    assert len(fig.axes) == 6
    assert fig.axes[2].get_title() == "m2\n(failed)" and fig.axes[3].get_title() == "b"
    with Image.open(tmp_path / "grid.png") as im:
        assert im.size[0] > im.size[1] > 50
    assert sorted(f.name for f in tmp_path.iterdir()) == ["grid.png", "o.png"]   # no temp files left
    with pytest.raises(ValueError, match="panels"):
        viz.comparison_grid([img], [[panel]], ["m1", "m2"])


def test_atomic_writes_leave_old_file_on_error(tmp_path):
    p = tmp_path / "x.json"
    io_utils.write_json(p, {"a": float("nan"), "t": torch.tensor([1.5, float("inf")]), "n": np.float32(2)})
    assert json.loads(p.read_text()) == {"a": None, "t": [1.5, None], "n": 2.0}
    with pytest.raises(RuntimeError):
        with io_utils.atomic_open(p, "w") as f:
            f.write("half")
            raise RuntimeError("crash")
    assert json.loads(p.read_text())["n"] == 2.0                    # the old content survives
    assert [f.name for f in tmp_path.iterdir()] == ["x.json"]       # the temp file is gone
    mask = os.umask(0)
    os.umask(mask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~mask                 # not mkstemp's private 0600
    q = io_utils.save_npy(tmp_path / "m.npy", torch.arange(6.0).view(2, 3))
    assert np.array_equal(np.load(q), np.arange(6.0).reshape(2, 3))
