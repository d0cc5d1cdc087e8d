"""Figure helpers of an evaluation: distinct method styles and a readable legend."""
from __future__ import annotations

import matplotlib
import numpy as np

from fisherattr.bench import plots


def test_every_method_gets_its_own_colour_up_to_forty() -> None:
    methods = [f"m{i:02d}" for i in range(40)]
    styles = plots.method_styles(methods)
    colours = {tuple(np.round(s["color"], 6)) for s in styles.values()}
    assert len(colours) == 40
    # the style of a method does not depend on the order it is given in
    assert plots.method_styles(list(reversed(methods)))["m07"] == styles["m07"]


def test_many_methods_share_one_legend_outside_the_axes(tmp_path) -> None:
    names = [f"method-{i}" for i in range(25)]
    agg = {m: {"randomisation": {"ssim": [0.5, 0.4 - i / 100, 0.3], "layers": ["a", "b", "c"]}}
           for i, m in enumerate(names)}
    captured = {}
    real_save = plots.save_figure

    def keep(path, fig):
        captured["fig"] = fig
        captured["legends"] = (len(fig.legends), [ax.get_legend() for ax in fig.axes])
        return real_save(path, fig)

    plots.save_figure = keep
    try:
        out = plots.randomisation_plot({"aggregates": agg}, tmp_path / "r.png")
    finally:
        plots.save_figure = real_save
    assert out is not None and out.stat().st_size > 0
    n_fig_legends, axis_legends = captured["legends"]
    assert n_fig_legends == 1 and all(lg is None for lg in axis_legends)
    labels = [t.get_text() for t in captured["fig"].legends[0].get_texts()]
    assert sorted(labels) == sorted(names)

    few = {m: agg[m] for m in names[:3]}
    plots.save_figure = keep
    try:
        plots.randomisation_plot({"aggregates": few}, tmp_path / "r3.png")
    finally:
        plots.save_figure = real_save
    n_fig_legends, axis_legends = captured["legends"]
    assert n_fig_legends == 0 and axis_legends[0] is not None
    assert matplotlib.get_backend().lower() == "agg"
