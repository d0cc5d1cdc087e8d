"""``fisherattr explain`` in-process: outputs, summary.json, exit codes, bad inputs, partial failures.

The classifier is a tiny CNN given to ``--model`` as ``module:function`` (this
file); the methods are two toy methods registered for the duration of a test,
so the command is tested without depending on which real methods are installed.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from fisherattr import cli, load_image
from fisherattr.commands import explain as explain_cmd
from fisherattr.methods import registry
from fisherattr.methods.base import AttributionMethod
from fisherattr.metrics.insertion_deletion import insertion_deletion
from fisherattr.models import Classifier

SPEC = "test_cli_explain:tiny_classifier"


# -------------------------------------------------------------- toy models
class _Net(nn.Module):
    def __init__(self, out: str = "logits") -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.fc = nn.Linear(6, 4)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        self.out = out

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y = self.fc(torch.relu(self.conv(z)).mean(dim=(2, 3)))
        if self.out == "flat":
            return y.sum(1)
        if self.out == "nan":
            return y * float("nan")
        return y


def tiny_classifier() -> Classifier:
    return Classifier(_Net(), mean=(0.5,) * 3, std=(0.25,) * 3, classes=["zero", "one", "two", "three"],
                      input_size=(16, 16), name="tiny4")


def flat_classifier() -> Classifier:
    return Classifier(_Net("flat"), input_size=(16, 16), name="flat")


def nan_classifier() -> Classifier:
    return Classifier(_Net("nan"), input_size=(16, 16), name="nan")


# ------------------------------------------------------------- toy methods
class ToyGrad(AttributionMethod):
    """scale * input * gradient of the target logit (or NaN / an error on dark images, on request)."""

    def __init__(self, model: nn.Module, *, steps: int = 10, scale: float = 1.0, flag: bool = False,
                 mode: str = "grad", seed: int = 0, internal_batch_size: int = 16, progress: bool = False) -> None:
        super().__init__(model, seed=seed, internal_batch_size=internal_batch_size, progress=progress)
        self.steps, self.scale, self.flag, self.mode = steps, scale, flag, mode

    def _attribute(self, images, target):
        if self.mode == "nan":
            return torch.full_like(images, float("nan"))
        if self.mode == "fail-dark" and images.mean() < 0.2:
            raise RuntimeError("image too dark for this method")
        if self.mode == "interrupt-dark" and images.mean() < 0.2:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C while this image was explained
        x = images.requires_grad_(True)
        (g,) = torch.autograd.grad(self.model(x).gather(1, target[:, None]).sum(), x)
        return self.scale * x.detach() * g


class ToyPixel(AttributionMethod):
    """Per-pixel brightness."""

    per_pixel = True

    def _attribute(self, images, target):
        return images.mean(1, keepdim=True)


@pytest.fixture
def toys():
    registry._load_all()
    registry.register("toy-grad", "toy-gradient")(ToyGrad)
    registry.register("toy-pixel")(ToyPixel)
    yield
    for name in ("toy-grad", "toy-pixel"):
        registry._REGISTRY.pop(name, None)
    registry._ALIASES.pop("toy-gradient", None)


def run(argv, capsys=None):
    rc = cli.main(["explain", *argv])
    out = capsys.readouterr() if capsys is not None else None
    return rc, out


def write_png(path, value: float, size=(20, 24)) -> str:
    Image.fromarray(np.full((*size, 3), int(value * 255), np.uint8)).save(path)
    return str(path)


def no_temp_files(folder) -> bool:
    return not [f for _, _, fs in os.walk(folder) for f in fs if f.endswith(".tmp")]


# ------------------------------------------------------------------- tests
def test_explain_outputs_and_summary(tmp_path, toys, capsys):
    out = tmp_path / "out"
    rc, io = run(["chelsea", "coffee", "--model", SPEC, "--method", "toy-grad,toy-pixel", "--size", "16",
                  "--out", str(out), "--option", "toy-gradient.steps=3", "--option", "toy-grad.scale=0.5",
                  "-o", "toy-grad.flag=yes", "-o", "toy-grad.mode=grad", "--seed", "7"], capsys)
    assert rc == 0, io.err
    model = tiny_classifier()
    s = json.loads((out / "summary.json").read_text())
    assert s["model"] == "tiny4" and s["status"] == "ok" and s["failures"] == [] and s["metric_preset"] == "inputiba"
    opts = s["methods"]["toy-grad"]["options"]
    assert opts["steps"] == 3 and opts["scale"] == 0.5 and opts["flag"] is True and opts["seed"] == 7
    assert s["methods"]["toy-pixel"]["per_pixel"] is True
    for name in ("chelsea", "coffee"):
        x = load_image(name, size=16)
        with torch.no_grad():
            probs = model(x).softmax(1)[0]
        rec = s["images"][name]
        assert rec["predicted"]["index"] == int(probs.argmax())
        assert rec["predicted"]["name"] == model.classes[int(probs.argmax())]
        assert rec["predicted"]["probability"] == pytest.approx(float(probs.max()), abs=1e-5)
        assert rec["target"]["index"] == rec["predicted"]["index"]
        # the saved map is the method's map, and the DifAUC is the metric's on it
        a = np.load(out / name / "toy-grad.npy")
        direct = ToyGrad(model, scale=0.5).attribute(x)
        assert a.shape == (3, 16, 16) and np.allclose(a, direct[0].numpy(), atol=1e-6)
        r = insertion_deletion(model, x, direct, preset="inputiba")
        assert rec["methods"]["toy-grad"]["difauc"] == pytest.approx(float(r.difauc[0]), abs=1e-5)
        assert rec["methods"]["toy-grad"]["seconds"] >= 0
        assert np.load(out / name / "toy-pixel.npy").shape == (1, 16, 16)
        with Image.open(out / name / "toy-grad.png") as im:
            assert im.size == (16, 16)
        assert (out / name / "input.png").exists()
    assert s["per_method"]["toy-grad"]["images"] == 2
    with Image.open(out / "grid.png") as im:
        assert im.size[0] > im.size[1]
    assert no_temp_files(out)
    assert "toy-grad" in io.out and "DifAUC" in io.out


def test_metrics_none_and_default_methods(tmp_path, toys, monkeypatch, capsys):
    monkeypatch.setattr(explain_cmd, "DEFAULT_METHODS", ["not-installed", "toy-pixel"])
    out = tmp_path / "o"
    rc, io = run(["chelsea", "--model", SPEC, "--size", "16", "--out", str(out), "--metrics", "none"], capsys)
    assert rc == 0, io.err
    s = json.loads((out / "summary.json").read_text())
    assert list(s["methods"]) == ["toy-pixel"] and s["metric_preset"] is None
    assert "difauc" not in s["images"]["chelsea"]["methods"]["toy-pixel"]


def test_targets(tmp_path, toys, capsys):
    for spec, index in (("3", 3), ("two", 2), ("auto", None)):
        out = tmp_path / f"t{spec}"
        rc, io = run(["chelsea", "--model", SPEC, "-m", "toy-pixel", "--size", "16", "--out", str(out),
                      "--target", spec, "--metrics", "idgi"], capsys)
        assert rc == 0, io.err
        rec = json.loads((out / "summary.json").read_text())["images"]["chelsea"]
        assert rec["target"]["index"] == (rec["predicted"]["index"] if index is None else index)
        assert rec["methods"]["toy-pixel"]["deletion"] is None          # idgi: insertion only (NaN -> null)
        assert "insertion_ratio" in rec["methods"]["toy-pixel"]


@pytest.mark.parametrize("extra,message", [
    (["--target", "4"], "--target 4 is outside the model's classes 0..3"),
    (["--target", "-1"], "outside"),
    (["--target", "giraffe"], "unknown class name 'giraffe'"),
    (["-m", "nope"], "unknown method 'nope'"),
    (["-o", "toy-grad.stepz=3"], "has no option 'stepz'"),
    (["-o", "toy-grad.steps=many"], "toy-grad.steps: cannot read 'many' as int"),
    (["-o", "toy-grad.flag=maybe"], "toy-grad.flag"),
    (["-o", "toy-pixel.seed=1", "-m", "toy-grad"], "'toy-pixel' is not among the methods run"),
    (["-o", "steps=3"], "expected METHOD.KEY=VALUE"),
    (["--device", "tpu"], "--device"),
    (["--model", "no_such_module:f"], "cannot import module 'no_such_module'"),
    (["--model", "test_cli_explain:flat_classifier"], "must return logits [B, classes]"),
])
def test_usage_errors_exit_2_with_one_line(tmp_path, toys, capsys, extra, message):
    out = tmp_path / "o"
    argv = ["chelsea", "--model", SPEC, "-m", "toy-grad", "--size", "16", "--out", str(out)]
    rc, io = run(argv + extra, capsys)
    assert rc == 2
    assert message in io.err and len(io.err.strip().splitlines()) == 1, io.err
    assert not out.exists()                                              # nothing written


def test_bad_single_image_files(tmp_path, toys, capsys):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    for path, message in ((tmp_path / "missing.png", "missing.png: no such file"),
                          (text, "notes.png: not a readable image"), (empty, "empty.jpg: empty file")):
        rc, io = run([str(path), "--model", SPEC, "-m", "toy-grad", "--out", str(tmp_path / "o")], capsys)
        assert rc == 2 and message in io.err and len(io.err.strip().splitlines()) == 1, io.err
    assert not (tmp_path / "o").exists()


def test_partial_failure_other_images_still_processed(tmp_path, toys, capsys):
    bright, dark = write_png(tmp_path / "bright.png", 0.9), write_png(tmp_path / "dark.png", 0.05)
    out = tmp_path / "o"
    rc, io = run([bright, str(tmp_path / "gone.png"), dark, "--model", SPEC, "-m", "toy-grad,toy-pixel",
                  "-o", "toy-grad.mode=fail-dark", "--out", str(out)], capsys)
    assert rc == 1
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "partial"
    fails = {(f["image"], f["method"]): f["error"] for f in s["failures"]}
    assert set(fails) == {("gone", None), ("dark", "toy-grad")}
    assert "no such file" in fails[("gone", None)] and "too dark" in fails[("dark", "toy-grad")]
    assert (out / "bright" / "toy-grad.npy").exists() and (out / "dark" / "toy-pixel.npy").exists()
    assert not (out / "dark" / "toy-grad.npy").exists()
    assert np.load(out / "bright" / "toy-grad.npy").shape == (3, 16, 16)   # the model's input size
    assert "dark / toy-grad: RuntimeError: image too dark" in io.err
    assert (out / "grid.png").exists() and no_temp_files(out)


def test_nan_attribution_and_nan_model_are_recorded(tmp_path, toys, capsys):
    out = tmp_path / "a"
    rc, io = run(["chelsea", "--model", SPEC, "-m", "toy-grad,toy-pixel", "-o", "toy-grad.mode=nan",
                  "--out", str(out)], capsys)
    assert rc == 1
    s = json.loads((out / "summary.json").read_text())
    assert [(f["method"], "NaN" in f["error"]) for f in s["failures"]] == [("toy-grad", True)]
    assert "toy-pixel" in s["images"]["chelsea"]["methods"]
    out = tmp_path / "b"
    rc, io = run(["chelsea", "coffee", "--model", "test_cli_explain:nan_classifier", "-m", "toy-pixel",
                  "--out", str(out)], capsys)
    assert rc == 1
    s = json.loads((out / "summary.json").read_text())
    assert len(s["failures"]) == 2 and all("NaN" in f["error"] for f in s["failures"])


@pytest.mark.parametrize("text,default,expected", [
    ("50", 10, 50), ("0.5", 1.0, 0.5), ("1", 1.0, 1.0), ("off", True, False), ("abc", "x", "abc"),
    ("1,2", (0, 0), (1, 2)), ("3", None, 3), ("2.5", None, 2.5), ("none", None, None), ("true", None, True),
    ("word", None, "word"),
])
def test_option_typing(text, default, expected):
    got = explain_cmd.parse_value(text, default, "m.k")
    assert got == expected and type(got) is type(expected)


def test_real_model_saliency_one_photo(tmp_path, capsys):
    import fisherattr

    if "saliency" not in fisherattr.list_methods():
        pytest.skip("saliency is not registered on this install")
    out = tmp_path / "real"
    rc, io = run(["chelsea", "--method", "saliency", "--metrics", "none", "--out", str(out)], capsys)
    assert rc == 0, io.err
    s = json.loads((out / "summary.json").read_text())
    assert s["model"] == "efficientnet_lite0"
    assert s["images"]["chelsea"]["predicted"]["index"] in (281, 282, 285)    # tabby / tiger cat / Egyptian cat
    assert np.load(out / "chelsea" / "saliency.npy").shape == (3, 224, 224)


# ------------------------------------------------- incremental outputs, progress
def test_each_image_is_written_when_done_and_an_interrupt_keeps_them(tmp_path, toys, capsys):
    bright, dark = write_png(tmp_path / "bright.png", 0.9), write_png(tmp_path / "dark.png", 0.05)
    out = tmp_path / "o"
    rc, io = run([bright, dark, "--model", SPEC, "-m", "toy-pixel,toy-grad", "-o", "toy-grad.mode=interrupt-dark",
                  "--preset", "none", "--out", str(out)], capsys)
    assert rc == 130 and "interrupted" in io.err
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "interrupted" and s["grid"] == "grid.png"
    assert set(s["images"]["bright"]["methods"]) == {"toy-pixel", "toy-grad"}  # the finished image
    assert set(s["images"]["dark"]["methods"]) == {"toy-pixel"}  # the map finished before the interrupt
    assert (out / "bright" / "toy-grad.npy").exists() and (out / "dark" / "toy-pixel.npy").exists()
    assert (out / "grid.png").exists() and no_temp_files(out)
    assert "1 finished image(s) kept" in io.err


def test_progress_lines_in_a_log_and_quiet(tmp_path, toys, capsys):
    rc, io = run(["chelsea", "coffee", "--model", SPEC, "--size", "16", "-m", "toy-pixel,toy-grad",
                  "--preset", "none", "--out", str(tmp_path / "a")], capsys)
    assert rc == 0, io.err
    lines = [line for line in io.err.splitlines() if line.startswith("explain: ")]
    assert [line.split(" (")[0] for line in lines if " maps " in line] == [
        "explain: 1/4 maps", "explain: 2/4 maps", "explain: 3/4 maps", "explain: 4/4 maps"]
    assert any(line.startswith("explain: chelsea done (1/2 images") for line in lines)
    assert lines[0].startswith("explain: 2 image(s) x 2 method(s)")  # at once, before the first map
    assert "elapsed" in lines[1] and "ETA" in lines[1]
    rc, io = run(["chelsea", "--model", SPEC, "--size", "16", "-m", "toy-pixel", "--preset", "none", "--quiet",
                  "--out", str(tmp_path / "b")], capsys)
    assert rc == 0 and io.err == ""


def test_old_flag_names_still_work(tmp_path, toys, capsys):
    out = tmp_path / "o"
    rc, io = run(["chelsea", "--model", SPEC, "--size", "16", "--method", "toy-pixel", "--metrics", "quick",
                  "--metric-batch-size", "3", "--no-progress", "--out", str(out)], capsys)
    assert rc == 0, io.err
    assert json.loads((out / "summary.json").read_text())["metric_preset"] == "quick"
    assert io.err == ""
    rc, io = run(["chelsea", "--model", SPEC, "--batch-size", "0", "--out", str(out)], capsys)
    assert rc == 2 and "--batch-size must be >= 1" in io.err
