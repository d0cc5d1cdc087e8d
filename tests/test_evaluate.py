"""``fisherattr evaluate`` / ``report``: results files, metric selection, and loss-free resume after a kill."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fisherattr.bench.report import render
from fisherattr.bench.runner import EvalConfig, Evaluation, resolve_metrics
from fisherattr.bench.store import ResultStore
from fisherattr.data.dataset import Sample
from fisherattr.errors import UsageError

PLUGIN = textwrap.dedent('''
    """Test plugin: a colour classifier and a gradient method that logs every call."""
    import os
    import time

    import torch
    import torch.nn as nn

    from fisherattr.methods import AttributionMethod, register
    from fisherattr.models import Classifier


    class ColourNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            with torch.no_grad():
                w = torch.zeros(4, 3)
                w[0, 0] = w[1, 1] = w[2, 2] = 40.0
                w[3, :] = -40.0 / 3
                self.conv.weight.copy_(w.view(4, 3, 1, 1))
                self.conv.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 5.0]))
            self.pool = nn.AdaptiveAvgPool2d(1)

        def forward(self, x):
            return self.pool(self.conv(x)).flatten(1)


    def make_model():
        return Classifier(ColourNet(), classes=["red", "green", "blue", "dark"], input_size=(16, 16),
                          name="colour")


    @register("{name}")
    class Counting(AttributionMethod):
        """Gradient x input that appends one line per call to $FA_TEST_LOG."""

        def _attribute(self, images, target):
            with open(os.environ["FA_TEST_LOG"], "a") as f:
                f.write("call\\n")
            time.sleep(float(os.environ.get("FA_TEST_DELAY", "0")))
            x = images.clone().requires_grad_(True)
            out = self.model(x).gather(1, target.view(-1, 1)).sum()
            return (torch.autograd.grad(out, x)[0] * images).detach()
''')

COLOURS = {"red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1), "red2": (0.9, 0.1, 0),
           "green2": (0.1, 0.9, 0.1), "dark": None}


def make_data(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, c in COLOURS.items():
        a = np.zeros((16, 16, 3), np.uint8)
        m = np.zeros((16, 16), np.uint8)
        if c is not None:
            a[4:12, 2:10] = np.array(c) * 255
            m[4:12, 2:10] = 255
            Image.fromarray(m).save(folder / f"{name}.mask.png")
        Image.fromarray(a).save(folder / f"{name}.png")


def plugin(tmp_path: Path, module: str, method: str) -> Path:
    (tmp_path / f"{module}.py").write_text(PLUGIN.replace("{name}", method))
    return tmp_path


@pytest.fixture
def env_setup(tmp_path, monkeypatch):
    make_data(tmp_path / "data")
    plugin(tmp_path, "fa_plugin_inproc", "test-counting-inproc")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("FA_TEST_LOG", str(tmp_path / "calls.log"))
    import importlib

    mod = importlib.import_module("fa_plugin_inproc")
    return tmp_path, mod


def calls(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_in_process_run_writes_every_file_and_report_rerenders(env_setup):
    tmp, mod = env_setup
    out = tmp / "ev"
    cfg = EvalConfig(methods=["test-counting-inproc"], out=str(out), model=mod.make_model(),
                     data=f"folder:{tmp / 'data'}", progress=False,
                     metric_options={"randomisation": {"steps": 1}, "sensitivity_n": {"points": 3, "n_subsets": 6},
                                     "mu_fidelity": {"n_subsets": 6}})
    ev = Evaluation(cfg)
    assert ev.metrics[0] == "mnim" and "ehr" in ev.metrics and "seg_ratio" in ev.metrics
    assert "box_ratio" not in ev.metrics  # masks only, no boxes
    assert len(ev.mosaics) == 1 and sorted(ev.mosaics[0].cells) == [0, 1, 2, 3]
    assert ev.run() == 0
    # 6 images + 4 mosaic cells, each attributed once, + one randomised re-attribution per image
    assert calls(tmp / "calls.log") == 10 + 6
    res = json.loads((out / "results.json").read_text())
    assert res["settings"]["methods"] == ["test-counting-inproc"]
    summ = res["summary"]["test-counting-inproc"]
    assert summ["ehr"]["n"] == 5 and summ["ehr"]["reasons"] == {"no mask or boxes": 1}
    assert summ["grid_pointing"]["n"] == 1
    # gradient x input puts each colour's mass in its own cell; the dark cell is black, so x * grad = 0 there
    rec = ResultStore(out).get("mosaic-000", "test-counting-inproc", "grid_pointing")
    per_cell = dict(zip(ev.mosaics[0].cells, rec["outcome"]["curves"]["per_cell"]))
    assert min(per_cell[0], per_cell[1], per_cell[2]) > 0.9 and per_cell[3] == 0.0
    assert summ["difauc"]["n"] == 6 and float(summ["difauc"]["sem"]) >= 0.0
    per = res["per_image"]["test-counting-inproc"]
    assert set(per) == {*COLOURS, "mosaic-000"}
    assert abs(summ["mnim"]["mean"] - np.mean([per[k]["mnim"] for k in COLOURS])) < 1e-12
    assert res["wall_times"]["test-counting-inproc"]["red"]["attribution"] >= 0
    for f in ("results.md", "results.csv", "per_image.csv", "figures/insertion_deletion.png",
              "figures/randomisation_ssim.png", "figures/qualitative_grid.png", "figures/pic_curves.png"):
        assert (out / f).exists(), f
    md = (out / "results.md").read_text()
    assert "| test-counting-inproc |" in md and "EHR ↑" in md and "MNIM ↓" in md
    (out / "results.md").unlink()
    render(out)
    assert (out / "results.md").read_text() == md
    # a second run with the same --out recomputes nothing
    n_records = len((out / "records.jsonl").read_text().splitlines())
    assert Evaluation(cfg).run() == 0
    assert calls(tmp / "calls.log") == 16
    assert len((out / "records.jsonl").read_text().splitlines()) == n_records
    # ... but refuses to mix in results made with other settings
    cfg.seed = 1
    with pytest.raises(UsageError, match="seed"):
        Evaluation(cfg)


def test_metric_selection_follows_annotations_and_presets():
    plain = [Sample("a", torch.zeros(1, 3, 4, 4))]
    masked = [Sample("a", torch.zeros(1, 3, 4, 4), mask=torch.ones(4, 4, dtype=torch.bool))]
    boxed = [Sample("a", torch.zeros(1, 3, 4, 4), boxes=[(0, 0, 2, 2)])]
    assert not {"ehr", "pointing_game", "wsl", "seg_ratio", "box_ratio"} & set(resolve_metrics(None, None, plain))
    assert {"ehr", "seg_ratio", "pointing_game", "wsl"} <= set(resolve_metrics(None, None, masked))
    assert "box_ratio" in resolve_metrics(None, None, boxed) and "seg_ratio" not in resolve_metrics(None, None, boxed)
    assert resolve_metrics(None, "inputiba", masked) == ["mnim", "insdel", "ehr", "seg_ratio"]
    assert resolve_metrics(None, "idgi", plain) == ["insdel", "pic"]
    assert resolve_metrics(["ehr", "mnim"], None, plain) == ["mnim", "ehr"]
    with pytest.raises(UsageError):
        resolve_metrics(["nope"], None, plain)


def test_store_ignores_a_torn_last_line(tmp_path):
    st = ResultStore(tmp_path)
    st.append({"image": "a", "method": "m", "metric": "x", "outcome": {}})
    with open(st.path, "ab") as f:
        f.write(b'{"image": "b", "meth')  # killed mid-write
    st2 = ResultStore(tmp_path)
    assert len(st2.records()) == 1
    st2.append({"image": "c", "method": "m", "metric": "x", "outcome": {}})
    assert {r["image"] for r in ResultStore(tmp_path).records()} == {"a", "c"}


def test_cli_list_metrics_and_usage_errors(capsys, tmp_path):
    from fisherattr.cli import main

    assert main(["list", "metrics"]) == 0
    names = capsys.readouterr().out.split()
    assert {"mnim", "insdel", "pic", "ehr", "grid_pointing", "randomisation"} <= set(names)
    assert main(["evaluate", "--methods", "saliency", "--metrics", "nope", "--data", "samples",
                 "--model", "nope:nothing", "--out", str(tmp_path / "x")]) == 2
    assert main(["report", str(tmp_path / "missing")]) == 2


def test_interrupted_run_resumes_without_recomputing_or_losing_results(tmp_path):
    make_data(tmp_path / "data")
    plugin(tmp_path, "fa_plugin_sub", "test-counting-sub")
    out, log = tmp_path / "ev", tmp_path / "calls.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
           "FA_TEST_LOG": str(log), "FA_TEST_DELAY": "0.4", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "fisherattr.cli", "evaluate", "--import", "fa_plugin_sub",
           "--model", "fa_plugin_sub:make_model", "--methods", "test-counting-sub", "--data", str(tmp_path / "data"),
           "--metrics", "mnim,insdel,ehr,seg_ratio", "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    records = out / "records.jsonl"
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if records.exists() and records.read_text().count('"_attribution"') >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before it could be interrupted: {proc.stderr.read()!r}"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    first_lines = records.read_text().splitlines()
    done_before = [json.loads(line) for line in first_lines if line.strip().endswith("}")]
    cached = {p.name: p.stat().st_mtime_ns for p in (out / "attributions" / "test-counting-sub").glob("*.npy")}
    calls_before = calls(log)
    assert 2 <= len(cached) < 6 and calls_before <= len(cached) + 1

    env["FA_TEST_DELAY"] = "0"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    # nothing already on disk was recomputed: old attribution files untouched, one call per missing image
    for name, mtime in cached.items():
        assert (out / "attributions" / "test-counting-sub" / name).stat().st_mtime_ns == mtime
    assert calls(log) - calls_before == 6 - len(cached)
    # nothing was lost: every finished record of the first run is still there, none duplicated
    final = [json.loads(line) for line in records.read_text().splitlines() if line.strip().endswith("}")]
    for rec in done_before:
        assert rec in final
    keys = [(r["image"], r["method"], r["metric"]) for r in final]
    assert len(keys) == len(set(keys))
    res = json.loads((out / "results.json").read_text())
    assert res["summary"]["test-counting-sub"]["mnim"]["n"] == 6
    assert res["summary"]["test-counting-sub"]["seg_ratio"]["n"] == 5


def test_parallel_workers_split_the_work_and_match_a_serial_run(env_setup):
    tmp, mod = env_setup
    opts = {"randomisation": {"steps": 1}, "sensitivity_n": {"points": 3, "n_subsets": 6},
            "mu_fidelity": {"n_subsets": 6}}

    def config(out: str, **kw) -> EvalConfig:
        return EvalConfig(methods=["test-counting-inproc"], out=str(tmp / out), model=mod.make_model(),
                          data=f"folder:{tmp / 'data'}", progress=False, metric_options=opts,
                          plugins=["fa_plugin_inproc"], **kw)

    assert Evaluation(config("serial")).run() == 0
    serial_calls = calls(tmp / "calls.log")
    assert Evaluation(config("parallel", workers=2)).run() == 0
    # every attribution computed once, by one worker or the other; none by the collecting pass
    assert calls(tmp / "calls.log") - serial_calls == serial_calls
    shard_files = sorted(p.name for p in (tmp / "parallel").glob("records.shard-*.jsonl"))
    assert shard_files == ["records.shard-1-of-2.jsonl", "records.shard-2-of-2.jsonl"]
    images = [{json.loads(line)["image"] for line in (tmp / "parallel" / f).read_text().splitlines()}
              for f in shard_files]
    assert images[0] and images[1] and not images[0] & images[1]
    assert not (tmp / "parallel" / "records.jsonl").exists()
    a = json.loads((tmp / "serial" / "results.json").read_text())["per_image"]
    b = json.loads((tmp / "parallel" / "results.json").read_text())["per_image"]
    assert a == b
    # one share alone computes only its items and writes no results
    ev = Evaluation(config("one-share", shard=(1, 3)))
    assert ev.run() == 0 and not (tmp / "one-share" / "results.json").exists()
    done = {r["image"] for r in ev.store.records()}
    assert done == {ev.samples[i].name for i in (1, 4)}  # items 1 and 4 of 7 (the mosaic is item 6)
    with pytest.raises(UsageError, match="shard"):
        Evaluation(config("bad", shard=(3, 3)))


def test_store_keeps_a_success_over_a_later_failure(tmp_path):
    ResultStore(tmp_path, shard=(0, 2)).append({"image": "a", "method": "m", "metric": "x", "outcome": {"v": 1}})
    ResultStore(tmp_path).append({"image": "a", "method": "m", "metric": "x", "error": "boom"})
    ResultStore(tmp_path).append({"image": "b", "method": "m", "metric": "x", "error": "boom"})
    ResultStore(tmp_path, shard=(1, 2)).append({"image": "b", "method": "m", "metric": "x", "outcome": {"v": 2}})
    st = ResultStore(tmp_path)
    assert st.get("a", "m", "x")["outcome"] == {"v": 1} and st.get("b", "m", "x")["outcome"] == {"v": 2}


def _children(pid: int) -> list:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the worker processes")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_workers_stop_when_the_parent_is_killed(tmp_path, sig):
    make_data(tmp_path / "data")
    plugin(tmp_path, "fa_plugin_kill", "test-counting-kill")
    log = tmp_path / "calls.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
           "FA_TEST_LOG": str(log), "FA_TEST_DELAY": "60", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "fisherattr.cli", "evaluate", "--import", "fa_plugin_kill",
           "--model", "fa_plugin_kill:make_model", "--methods", "test-counting-kill", "--data", str(tmp_path / "data"),
           "--metrics", "mnim", "--workers", "2", "--out", str(tmp_path / "ev"), "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and calls(log) < 2:  # both workers are computing
            time.sleep(0.1)
        workers = _children(proc.pid)
        workers = [w for w in workers if "spawn_main" in Path(f"/proc/{w}/cmdline").read_text(errors="replace")]
        assert len(workers) == 2 and proc.poll() is None
        proc.send_signal(sig)
        proc.wait(timeout=30)
        deadline = time.time() + 20
        while time.time() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.2)
        assert not any(_alive(w) for w in workers), "worker processes outlived their parent"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_methods_all_means_every_registered_method() -> None:
    from fisherattr.commands.explain import parse_methods
    from fisherattr.methods.registry import list_methods

    names, explicit = parse_methods(["all"])
    assert explicit and names == list_methods() and len(names) >= 25
    names, _ = parse_methods(["saliency,ALL"])  # no duplicates, order kept
    assert names[0] == "saliency" and sorted(names) == sorted(list_methods())


def test_report_summarises_an_unfinished_run_over_its_finished_images(tmp_path, capsys) -> None:
    from fisherattr.cli import main

    def rec(img, meth, metric, **values):
        if metric == "_attribution":
            return {"image": img, "method": meth, "metric": metric, "seconds": 0.5}
        return {"image": img, "method": meth, "metric": metric, "seconds": 0.1,
                "outcome": {"values": values, "curves": {}, "extra": {}, "skip": None}}

    shard1, shard2 = [], []
    for i, img in enumerate(["i1", "i2"]):
        for meth, base in (("a", 0.2), ("b", 0.6)):
            shard1 += [rec(img, meth, "_attribution"), rec(img, meth, "mnim", mnim=base + i / 10),
                       rec(img, meth, "ehr", ehr=1 - base - i / 10)]
    shard2 += [rec("i3", "a", "_attribution"), rec("i3", "a", "mnim", mnim=0.0), rec("i3", "a", "ehr", ehr=1.0),
               rec("i3", "b", "_attribution"), rec("i3", "b", "mnim", mnim=0.0)]  # b's ehr not yet done
    shard2 += [rec("mosaic-000", "a", "grid_pointing", grid_pointing=0.75)]  # b not yet done: not counted
    (tmp_path / "records.shard-1-of-2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in shard1))
    (tmp_path / "records.shard-2-of-2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in shard2) + '{"torn')
    (tmp_path / "run.json").write_text(json.dumps({"model": "m", "data": "synthetic:3", "seed": 0,
                                                   "target": "auto", "preset": None}))
    assert main(["report", str(tmp_path), "--columns", "mnim,ehr"]) == 0
    out, err = capsys.readouterr()
    assert "partial: 2 finished items (4 started)" in err
    rows = [r.split("|") for r in out.splitlines()[2:]]
    # means over i1 and i2 only: a's MNIM (0.2 + 0.3) / 2, b's (0.6 + 0.7) / 2; lower MNIM first
    assert [r[1].strip() for r in rows] == ["a", "b"]
    assert [r[2].strip() for r in rows] == ["0.250", "0.650"] and [r[3].strip() for r in rows] == ["0.750", "0.350"]
    # the full render works on it too and says the table is partial; a finished run is not called partial
    assert main(["report", str(tmp_path), "--no-figures"]) == 0
    md = (tmp_path / "results.md").read_text()
    assert "Partial: the run has not finished" in md and "2 images;" in md
    (tmp_path / "results.json").write_text(json.dumps({"settings": {"methods": ["a"]}, "columns": [
        {"metric": "mnim", "column": "mnim", "higher_is_better": False}], "summary": {"a": {"mnim": {"value": 0.5}}}}))
    capsys.readouterr()
    assert main(["report", str(tmp_path), "--columns", "mnim"]) == 0
    out, err = capsys.readouterr()
    assert "0.500" in out and "partial" not in err
    assert main(["report", str(tmp_path / "empty"), "--columns", "mnim"]) != 0
    assert "no results.json and no records" in capsys.readouterr().err


def test_shares_split_every_method_evenly():
    """With 4 methods on 2 shares each share computes every method on half the images
    (dealing in reading order gave one share all of methods 1 and 3)."""
    from collections import Counter

    from fisherattr.bench.runner import share_of

    for methods, shares in ((4, 2), (3, 2), (2, 4), (4, 4), (1, 3)):
        items = 4 * shares
        per = Counter((share_of(i, m, shares), m) for i in range(items) for m in range(methods))
        assert set(per.values()) == {items // shares}, (methods, shares, per)
        # one image's methods spread over min(methods, shares) different shares
        assert all(len({share_of(i, m, shares) for m in range(methods)}) == min(methods, shares) for i in range(items))
