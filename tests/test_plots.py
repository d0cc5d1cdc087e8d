"""Figure helpers of an evaluation: distinct method styles and a readable legend."""
from __future__ import annotations

import numpy as np

from fisherattr.bench import plots


def test_every_method_gets_its_own_colour_up_to_forty() -> None:
    methods = [f"m{i:02d}" for i in range(40)]
    styles = plots.method_styles(methods)
    colours = {tuple(np.round(s["color"], 6)) for s in styles.values()}
    assert len(colours) == 40
    # the style of a method does not depend on the order it is given in
    assert plots.method_styles(list(reversed(methods)))["m07"] == styles["m07"]


def test_many_methods_share_one_legend_outside_the_axes(tmp_path, monkeypatch) -> None:
    names = [f"method-{i}" for i in range(25)]
    agg = {m: {"randomisation": {"ssim": [0.5, 0.4 - i / 100, 0.3], "layers": ["a", "b", "c"]}}
           for i, m in enumerate(names)}
    captured = {}
    real_save = plots.save_figure

    def keep(path, fig):
        captured["fig"] = fig
        captured["legends"] = (len(fig.legends), [ax.get_legend() for ax in fig.axes])
        return real_save(path, fig)

    monkeypatch.setattr(plots, "save_figure", keep)
    out = plots.randomisation_plot({"aggregates": agg}, tmp_path / "r.png")
    assert out is not None and out.stat().st_size > 0
    n_fig_legends, axis_legends = captured["legends"]
    assert n_fig_legends == 1 and all(lg is None for lg in axis_legends)
    labels = [t.get_text() for t in captured["fig"].legends[0].get_texts()]
    assert sorted(labels) == sorted(names)

    # three methods: a legend inside the axis, none on the figure
    plots.randomisation_plot({"aggregates": {m: agg[m] for m in names[:3]}}, tmp_path / "r3.png")
    n_fig_legends, axis_legends = captured["legends"]
    assert n_fig_legends == 0
    assert [t.get_text() for t in axis_legends[0].get_texts()] == names[:3]


def test_compact_table_sorts_best_first_in_each_columns_direction() -> None:
    import pytest

    from fisherattr.bench.report import compact_table
    from fisherattr.errors import UsageError

    res = {"settings": {"methods": ["a", "b", "c"]},
           "columns": [{"metric": "ehr", "column": "ehr", "higher_is_better": True},
                       {"metric": "mnim", "column": "mnim", "higher_is_better": False}],
           "summary": {"a": {"ehr": {"value": 0.2, "sem": 0.01}, "mnim": {"value": 0.9}},
                       "b": {"ehr": {"value": 0.7, "mean": 0.7, "sem": 0.02, "n": 3}, "mnim": {"value": 0.3}},
                       "c": {"ehr": {"value": None}, "mnim": {"value": 0.1}}}}
    rows = compact_table(res, ["ehr", "mnim"]).splitlines()[2:]
    assert [r.split("|")[1].strip() for r in rows] == ["b", "a", "c"]  # higher EHR first, missing last
    assert rows[2].split("|")[2].strip() == "-"
    rows = compact_table(res, ["ehr", "mnim"], sort="mnim", sem=True).splitlines()
    assert [r.split("|")[1].strip() for r in rows[2:]] == ["c", "b", "a"]  # lower MNIM first
    assert "0.700 ± 0.020" in rows[3]
    with pytest.raises(UsageError, match="unknown column"):
        compact_table(res, ["wsl_auc"])


def test_report_table_piped_into_a_closed_pipe_exits_quietly(tmp_path) -> None:
    import json
    import subprocess
    import sys

    methods = [f"m{i}" for i in range(3000)]  # enough lines to overflow the pipe buffer
    res = {"settings": {"methods": methods},
           "columns": [{"metric": "ehr", "column": "ehr", "higher_is_better": True}],
           "summary": {m: {"ehr": {"value": i / 3000}} for i, m in enumerate(methods)}}
    (tmp_path / "results.json").write_text(json.dumps(res))
    p = subprocess.Popen([sys.executable, "-m", "fisherattr.cli", "report", str(tmp_path), "--columns", "ehr"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = p.stdout.readline()
    p.stdout.close()  # like `| head -1`
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 0 and first.startswith(b"| method") and "Traceback" not in err, err


def test_qualitative_grid_draws_colour_bars_and_each_maps_score(tmp_path, monkeypatch) -> None:
    from PIL import Image

    from fisherattr.io_utils import save_npy

    (tmp_path / "images").mkdir()
    Image.fromarray(np.full((16, 16, 3), 100, np.uint8)).save(tmp_path / "images" / "im0.png")
    a = np.zeros((3, 16, 16), np.float32)
    a[:, 2:6, 2:6] = 1.0
    save_npy(tmp_path / "attributions" / "m1" / "im0.npy", a)              # m2 has no map: a failed cell
    res = {"settings": {"methods": ["m1", "m2"]}, "images": [{"name": "im0", "kind": "image"}],
           "columns": [{"metric": "insdel", "column": "difauc", "higher_is_better": True}],
           "per_image": {"m1": {"im0": {"difauc": 0.4321}}}}
    captured = {}
    real_save = plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda path, fig: captured.setdefault("fig", fig) and real_save(path, fig))
    assert plots.qualitative_grid(res, tmp_path, tmp_path / "g.png") is not None
    titles = [ax.get_title() for ax in captured["fig"].axes]
    texts = [t.get_text() for ax in captured["fig"].axes for t in ax.texts]
    assert titles[:3] == ["im0", "m1", "m2\n(failed)"] and len(titles) == 4   # + m1's colour bar
    assert texts == ["DifAUC 0.432"]
