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


# ------------------------------------------------------------ readable maps
def signed_map() -> torch.Tensor:
    a = torch.zeros(1, 4, 4)
    a[0, 0, 0], a[0, 3, 3] = 2.0, -2.0
    return a


def colours(sign: str) -> np.ndarray:
    n = viz.normalise(signed_map(), sign=sign, percentile=100)
    return viz.colorize(n.values, viz.default_cmap(sign))


def test_sign_modes_map_known_values_to_known_colours():
    dark_red, dark_blue = [128, 0, 0], [0, 0, 128]                      # jet(1), jet(0)
    red, white, blue = [255, 0, 0], [255, 255, 255], [0, 0, 255]        # bwr(1), bwr(0.5), bwr(0)
    pos, neg, ab, al = colours("positive"), colours("negative"), colours("absolute"), colours("all")
    assert pos[0, 0].tolist() == dark_red and pos[3, 3].tolist() == dark_blue and pos[1, 2].tolist() == dark_blue
    assert neg[3, 3].tolist() == dark_red and neg[0, 0].tolist() == dark_blue
    assert ab[0, 0].tolist() == dark_red and ab[3, 3].tolist() == dark_red and ab[1, 1].tolist() == dark_blue
    assert al[0, 0].tolist() == red and al[3, 3].tolist() == blue
    assert np.abs(al[1, 1].astype(int) - white).max() <= 1             # bwr's 256-colour table: (255, 254, 254)
    n = viz.normalise(signed_map(), sign="all", percentile=100)
    assert (n.vmin, n.vmax) == (-2.0, 2.0)                              # the colour bar's ends, in map units


def test_floor_removal_shows_only_the_bump():
    yy, xx = np.mgrid[:64, :64]
    bump = np.exp(-((yy - 20) ** 2 + (xx - 40) ** 2) / (2 * 4.0 ** 2))
    info = 0.76 + bump                                                   # FDA-like: a floor of 0.76 nats/pixel
    far = (yy - 20) ** 2 + (xx - 40) ** 2 > 16 ** 2
    washed = viz.normalise(info, floor=None)                             # no floor: the whole image is coloured
    assert washed.values[far].min() > 0.4
    n = viz.normalise(info)                                              # default floor="min"
    assert n.vmin == pytest.approx(0.76) and n.values[far].max() < 1e-3  # the floor is gone
    assert n.values[20, 40] == pytest.approx(1.0)                        # the bump's top is the hottest colour
    assert n.vmax == pytest.approx(np.percentile(info, 99))
    # a low percentile as the floor: robust to a few pixels below the floor
    dented = info.copy()
    dented[0, :3] = 0.0
    assert np.median(viz.normalise(dented).values[far]) > 0.4            # "min" is fooled by 3 low pixels ...
    assert viz.normalise(dented, floor=1.0).values[far].max() < 1e-3     # ... the 1st percentile is not
    rgb = viz.overlay(np.zeros((64, 64, 3), np.uint8), info, alpha=1.0)
    assert rgb[0, 0].tolist() == [0, 0, 128] and rgb[20, 40].tolist() == [128, 0, 0]
    with pytest.raises(ValueError, match="floor"):
        viz.normalise(info, floor=99.5)
    with pytest.raises(ValueError, match="floor"):
        viz.normalise(info, floor="max")


def test_show_attribution_has_a_colour_bar_in_map_units_a_score_and_a_large_panel(tmp_path):
    yy, xx = np.mgrid[:64, :64]
    info = 0.76 + np.exp(-((yy - 20) ** 2 + (xx - 40) ** 2) / 32.0)
    fig = viz.show_attribution(torch.rand(3, 64, 64), info, title="fda", score=0.2604, score_label="DifAUC")
    img_ax, bar_ax = fig.axes
    assert img_ax.get_title() == "fda"
    assert [t.get_text() for t in img_ax.texts] == ["DifAUC 0.260"]
    ticks = [float(t.get_text()) for t in bar_ax.get_yticklabels()]
    assert ticks == pytest.approx([0.76, np.percentile(info, 99)], abs=5e-3)   # 3 digits
    fig.canvas.draw()
    w, h = img_ax.get_window_extent().size
    assert min(w, h) >= viz.MIN_PANEL_PX
    fig = viz.show_attribution(torch.rand(3, 8, 8), torch.randn(3, 8, 8), sign="all", path=tmp_path / "s.png")
    assert [float(t.get_text()) for t in fig.axes[1].get_yticklabels()][1] == 0.0   # centred on zero
    with Image.open(tmp_path / "s.png") as im:
        assert min(im.size) >= viz.MIN_PANEL_PX
    import fisherattr

    assert fisherattr.show_attribution is viz.show_attribution


def test_grid_draws_maps_with_colour_bars_scores_and_224px_panels():
    img = torch.full((3, 32, 32), 0.5)
    maps = [block_map(32, 32), block_map(32, 32) * -1]
    fig = viz.comparison_grid([img, img], [maps, [maps[0], None]], ["a", "b"], ["r0", "r1"],
                              scores=[[0.5, None], [float("nan"), None]], score_label="DifAUC", sign="all")
    fig.canvas.draw()
    panels = [ax for ax in fig.axes if ax.get_title() in ("a", "b")]
    assert len(panels) == 3 and len(fig.axes) == 2 + 3 + 3 + 1     # 2 images, 3 maps + 3 bars, 1 failed
    assert all(min(ax.get_window_extent().size) >= viz.MIN_PANEL_PX for ax in panels)
    assert [t.get_text() for ax in panels for t in ax.texts] == ["DifAUC 0.500"]   # None and NaN: no label
    r, g, b = panels[1].images[0].get_array()[8, 25].astype(int).tolist()
    assert b > r + 60 and b > g + 60                                     # sign="all": the negative block is blue
