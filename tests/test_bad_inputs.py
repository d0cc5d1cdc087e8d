"""The bad-input and security catalogue of issue 18, run through the command line.

Every row runs ``fisherattr`` in-process (``fisherattr.cli.main``) on the shipped
synthetic 64 px classifier with the cheapest method (saliency, no metric), and
asserts the exit code (0 done, 1 some items failed, 2 usage error), that an error
is one line naming the problem, and what is (and is not) written to ``--out``.
Rows 1-10 are the findings of the issue; the rest are the inputs that already
behaved and must keep doing so.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from fisherattr import cli, get_method, load_classifier
from fisherattr.errors import UsageError
from fisherattr.models import Classifier, imagenet_classes, save_classifier

FAST = ["--model", "synthetic", "-m", "saliency", "--preset", "none", "--quiet"]


def run(capsys, *argv: str):
    """``fisherattr *argv`` in-process: (exit code, stdout, stderr)."""
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def explain(capsys, out: Path, *images, extra=()):
    return run(capsys, "explain", *images, *FAST, "--out", out, *extra)


def one_line_error(err: str, *needles: str) -> str:
    """The single error line of a usage error (progress lines aside), checked for ``needles``."""
    lines = [ln for ln in err.strip().splitlines() if "error" in ln]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def files(folder: Path) -> set:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def accounted(folder: Path) -> set:
    """Files ``summary.json`` accounts for: its own, the grid and report, and each explained image's files."""
    s = json.loads((folder / "summary.json").read_text())
    out = {"summary.json", "grid.png", "report.html"} & files(folder)
    for name, rec in s["images"].items():
        if "methods" in rec:
            out.add(f"{name}/input.png")
            for r in rec["methods"].values():
                out |= {r["attribution"], r["overlay"]}
    return out


def png(path: Path, a: np.ndarray, **save) -> Path:
    Image.fromarray(a).save(path, **save)
    return path


def rgb(h: int = 40, w: int = 40, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


# models named on the command line as module:function (this file)
def nan_synthetic() -> Classifier:
    """The synthetic classifier with NaN logits."""
    base = load_classifier("synthetic")

    class NaNNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = base.net

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return self.inner(z) * float("nan")

    return Classifier(NaNNet(), base.mean.flatten().tolist(), base.std.flatten().tolist(), base.classes,
                      base.input_size, name="nan")


def imagenet_tiny() -> Classifier:
    """A small random network with the 1000 ImageNet class names (for name targets)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1000))
    return Classifier(net, classes=imagenet_classes()[0], input_size=(64, 64), name="imagenet-tiny")


# =================================================== the findings
def test_row1_builder_in_model_folder_is_not_run(tmp_path, capsys, monkeypatch):
    """A classifier.json naming subprocess:run: refused before anything runs; nothing written."""
    marker = tmp_path / "pwned"
    folder = save_classifier(Classifier(nn.Linear(1, 1)), tmp_path / "model", builder="subprocess:run",
                             builder_kwargs={"args": ["touch", str(marker)]})
    out = tmp_path / "out"
    rc, _, err = run(capsys, "explain", png(tmp_path / "a.png", rgb()), "--model", folder, "-m", "saliency",
                     "--preset", "none", "--out", out)
    assert rc == 2
    one_line_error(err, "classifier.json", "'builder'", "subprocess:run", "--trust-model-code")
    assert not marker.exists() and not out.exists()
    # the same refusal from evaluate; with the flag the command runs (and so would the builder)
    rc, _, err = run(capsys, "evaluate", "--model", folder, "--data", "synthetic:1", "-m", "saliency",
                     "--out", tmp_path / "ev", "--quiet")
    assert rc == 2 and "--trust-model-code" in one_line_error(err) and not marker.exists()
    rc, _, err = run(capsys, "explain", tmp_path / "a.png", "--model", folder, "-m", "saliency", "--preset", "none",
                     "--out", out, "--trust-model-code")
    assert marker.exists()  # proof that the refusal above is what kept it from running


def test_row1_torchscript_needs_trust(tmp_path, capsys):
    net = torch.jit.script(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2)))
    net.save(str(tmp_path / "m.pt"))
    argv = ["explain", png(tmp_path / "a.png", rgb()), "--model", tmp_path / "m.pt", "-m", "saliency", "--preset", "none",
            "--quiet", "--out", tmp_path / "o2"]
    rc, _, err = run(capsys, *argv)
    assert rc == 2 and not (tmp_path / "o2").exists()
    one_line_error(err, "m.pt", "TorchScript", "--trust-model-code")
    rc, _, err = run(capsys, *argv, "--trust-model-code")
    assert rc == 0 and (tmp_path / "o2" / "a" / "saliency.npy").exists()


def test_row2_long_strip_and_pixel_limit(tmp_path, capsys, monkeypatch):
    strip = png(tmp_path / "strip.png", rgb(20000, 1))
    rc, _, _ = explain(capsys, tmp_path / "out", strip)
    assert rc == 0
    assert Image.open(tmp_path / "out" / "strip" / "input.png").size == (64, 64)
    monkeypatch.setenv("FISHERATTR_MAX_PIXELS", "10000")
    rc, _, err = explain(capsys, tmp_path / "o2", strip)
    assert rc == 2 and not (tmp_path / "o2").exists()
    one_line_error(err, "strip.png", "image too large (20,000 pixels; limit 10,000)", "FISHERATTR_MAX_PIXELS")


@pytest.mark.parametrize("case", ["file", "file-in-the-way", "read-only"])
@pytest.mark.parametrize("command", ["explain", "evaluate"])
def test_row3_unusable_out_is_a_usage_error_before_the_model(tmp_path, capsys, monkeypatch, case, command):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    out = {"file": blocker, "file-in-the-way": blocker / "sub" / "out", "read-only": tmp_path / "ro" / "out"}[case]
    if case == "read-only":
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o555)
        if os.geteuid() == 0:  # root writes anywhere: let the check see what a user would
            real = os.access
            monkeypatch.setattr("fisherattr.outdir.os.access",
                                lambda p, mode, **kw: False if Path(p) == tmp_path / "ro" else real(p, mode, **kw))
    # a model that cannot load: the folder check must come first
    args = (["explain", png(tmp_path / "a.png", rgb()), "-m", "saliency"] if command == "explain"
            else ["evaluate", "--data", "synthetic:1", "-m", "saliency"])
    rc, _, err = run(capsys, *args, "--model", "no-such-model", "--out", out, "--quiet")
    assert rc == 2
    line = one_line_error(err, "--out")
    assert {"file": "is a file, not a folder", "file-in-the-way": "blocker is a file",
            "read-only": "is not writable"}[case] in line
    assert blocker.read_text() == "x" and not (tmp_path / "ro" / "out").exists()


def test_row4_earlier_run_is_refused_then_replaced(tmp_path, capsys):
    out = tmp_path / "out"
    good, other = png(tmp_path / "good.png", rgb()), png(tmp_path / "other.png", rgb(seed=1))
    assert explain(capsys, out, good, other)[0] == 0
    assert {"other/saliency.npy", "good/saliency.npy", "summary.json"} <= files(out)
    (out / "notes.txt").write_text("mine")  # a user's own file is never touched
    other.write_text("now broken")
    rc, _, err = explain(capsys, out, good, other)
    assert rc == 2
    one_line_error(err, "holds an earlier run", "--overwrite")
    assert "other/saliency.npy" in files(out)  # refused: nothing changed
    rc, _, err = explain(capsys, out, good, other, extra=["--overwrite"])
    assert rc == 1  # the broken image fails, the good one is written
    assert files(out) - {"notes.txt"} == accounted(out)  # no stale map of the image that now fails
    assert "other/saliency.npy" not in files(out) and (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("option", ["fda.beta=nan", "fda.beta=inf", "fda.lr=-inf", "fda.t_min=1e999",
                                    "smoothgrad.noise_level=NaN"])
def test_row5_nan_options_are_refused(tmp_path, capsys, option):
    method = option.split(".")[0]
    rc, _, err = run(capsys, "explain", "chelsea", "--model", "synthetic", "-m", method, "-o", option,
                     "--out", tmp_path / "out")
    assert rc == 2 and not (tmp_path / "out").exists()
    one_line_error(err, option.split("=")[0], "is not a finite number")


def test_row5_nan_options_api_and_plain_flags(tmp_path, capsys):
    model = load_classifier("synthetic")
    with pytest.raises(UsageError, match="option noise_level=nan is not a finite number"):
        get_method("smoothgrad", model, noise_level=float("nan"))
    rc, _, err = run(capsys, "evaluate", "--data", "synthetic:1", "-m", "saliency", "--mosaic-threshold", "nan",
                     "--out", tmp_path / "ev")
    assert rc == 2 and not (tmp_path / "ev").exists()
    one_line_error(err, "--mosaic-threshold", "not a finite number")


def test_row6_second_evaluate_is_refused_and_stale_lock_taken_over(tmp_path, capsys):
    from fisherattr.outdir import LOCK_NAME

    out = tmp_path / "ev"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time\nfrom fisherattr.outdir import FolderLock\n"  # run_lock's lock, sans torch
                               f"with FolderLock({str(out)!r}):\n    print('locked', flush=True)\n    time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        rc, _, err = run(capsys, "evaluate", "--model", "synthetic", "--data", "synthetic:1", "-m", "saliency",
                         "--metrics", "completeness", "--out", out, "--quiet")
        assert rc == 2
        one_line_error(err, f"in use by another evaluate run (PID {holder.pid})")
        assert files(out) == {LOCK_NAME}  # the refused run wrote nothing
    finally:
        holder.kill()
        holder.wait()
    # the killed holder left its lock file behind: taken over
    assert (out / LOCK_NAME).read_text().startswith(f"{holder.pid}@")
    rc, _, err = run(capsys, "evaluate", "--model", "synthetic", "--data", "synthetic:1", "-m", "saliency",
                     "--metrics", "completeness", "--out", out, "--quiet")
    assert rc == 0, err
    assert (out / "results.json").exists() and not (out / LOCK_NAME).exists()


def test_row7_ambiguous_class_name(tmp_path, capsys):
    img = png(tmp_path / "a.png", rgb(64, 64))
    base = ["explain", img, "--model", "test_bad_inputs:imagenet_tiny", "-m", "saliency", "--preset", "none",
            "--quiet", "--out", tmp_path / "out"]
    rc, _, err = run(capsys, *base, "--target", "crane")
    assert rc == 2 and not (tmp_path / "out").exists()
    one_line_error(err, "'crane' is ambiguous", "134 = 'crane'", "517 = 'crane'")
    rc, _, err = run(capsys, *base, "--target", "517")
    assert rc == 0 and json.loads((tmp_path / "out" / "summary.json").read_text())["images"]["a"]["target"][
        "index"] == 517


def test_row8_string_target_and_tiny_image_api():
    sal = get_method("saliency", load_classifier("synthetic"))
    with pytest.raises(UsageError, match="target must be class indices, got the name 'crane'"):
        sal.attribute(torch.rand(1, 3, 64, 64), target="crane")
    with pytest.raises(UsageError, match=r"images of 2x2 pixels are too small for this model; it needs at least 8x8"):
        sal.attribute(torch.rand(1, 3, 2, 2))
    assert sal.attribute(torch.rand(1, 3, 8, 8)).shape == (1, 3, 8, 8)  # the size named does run


def test_row9_download_hint_names_a_real_flag(tmp_path, capsys):
    from fisherattr.models import loading

    for hint in ("--allow-download", "--trust-model-code"):
        assert hint in Path(loading.__file__).read_text()
        for command in ("explain", "evaluate", "estimate-bottleneck", "train-explainer"):
            args = cli.build_parser().parse_args([command, hint, "--out", str(tmp_path)])
            assert getattr(args, hint[2:].replace("-", "_")) is True


def test_row10_atomic_write_keeps_umask(tmp_path, monkeypatch):
    from fisherattr.io_utils import write_json

    old = os.umask(0o027)
    try:
        def no_umask(*_):
            raise AssertionError("the process umask must not be touched")

        monkeypatch.setattr(os, "umask", no_umask)
        p = write_json(tmp_path / "a.json", {"x": 1})
    finally:
        monkeypatch.undo()
        os.umask(old)
    assert p.stat().st_mode & 0o777 == 0o640 and json.loads(p.read_text()) == {"x": 1}
    assert os.listdir(tmp_path) == ["a.json"]


# ===================================================== rows that held: keep them
def _bad_file(tmp_path: Path, kind: str) -> Path:
    p = tmp_path / f"{kind}.png"
    if kind == "missing":
        return p
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "truncated":
        full = png(tmp_path / "full.png", rgb(64, 64)).read_bytes()
        p.write_bytes(full[: len(full) // 2])
    elif kind == "text":
        p = tmp_path / "text.jpg"
        p.write_text("this is not an image\n")
    elif kind == "directory":
        p = tmp_path / "dir.png"
        p.mkdir()
    return p


@pytest.mark.parametrize("kind,needle", [("missing", "no such file"), ("empty", "empty file"),
                                         ("truncated", "not a readable image"), ("text", "not a readable image"),
                                         ("directory", "is a directory")])
def test_unreadable_file(tmp_path, capsys, kind, needle):
    out = tmp_path / "out"
    rc, _, err = explain(capsys, out, _bad_file(tmp_path, kind))
    assert rc == 2 and not out.exists()
    one_line_error(err, needle)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "1x1", "exif"])
def test_odd_images_are_explained(tmp_path, capsys, mode):
    a = rgb(30, 50)
    if mode == "1x1":
        p = png(tmp_path / "x.png", a[:1, :1])
    elif mode == "I;16":
        g = np.asarray(Image.fromarray(a).convert("L"), dtype=np.uint16) * 257
        p = tmp_path / "x.png"
        Image.fromarray(g).save(p)
    elif mode == "exif":
        im = Image.fromarray(a)
        exif = im.getexif()
        exif[0x0112] = 6
        p = tmp_path / "x.jpg"
        im.save(p, exif=exif)
    else:
        p = tmp_path / "x.png"
        Image.fromarray(a).convert(mode).save(p)
    rc, _, err = explain(capsys, tmp_path / "out", p)
    assert rc == 0, err
    assert Image.open(tmp_path / "out" / "x" / "input.png").size == (64, 64)
    assert np.load(tmp_path / "out" / "x" / "saliency.npy").shape == (3, 64, 64)


def test_mixed_batch_keeps_the_good_images(tmp_path, capsys):
    out = tmp_path / "out"
    rc, _, err = explain(capsys, out, png(tmp_path / "good.png", rgb()), _bad_file(tmp_path, "text"),
                         _bad_file(tmp_path, "missing"))
    assert rc == 1
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "partial" and len(s["failures"]) == 2
    assert files(out) == accounted(out) and "good/saliency.npy" in files(out)


@pytest.mark.parametrize("target,needle", [("8", "outside the model's classes 0..7"),
                                           ("-1", "outside the model's classes 0..7"),
                                           ("no-such-class", "unknown class name 'no-such-class'")])
def test_bad_targets(tmp_path, capsys, target, needle):
    rc, _, err = explain(capsys, tmp_path / "out", png(tmp_path / "a.png", rgb()), extra=["--target", target])
    assert rc == 2 and not (tmp_path / "out").exists()
    one_line_error(err, needle)


@pytest.mark.parametrize("option,needle", [("saliency.nope=1", "has no option 'nope'"),
                                           ("smoothgrad.noise_level=abc", "cannot read 'abc' as float"),
                                           ("fda", "expected METHOD.KEY=VALUE")])
def test_bad_options(tmp_path, capsys, option, needle):
    method = option.split(".")[0]
    rc, _, err = run(capsys, "explain", "chelsea", "--model", "synthetic", "-m", method, "-o", option,
                     "--out", tmp_path / "out")
    assert rc == 2 and not (tmp_path / "out").exists()
    one_line_error(err, needle)


@pytest.mark.parametrize("device,needle", [("tpu", "--device"), ("cuda:x", "unknown device"),
                                           ("cuda", "CUDA is not available")])
def test_bad_device(tmp_path, capsys, device, needle):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    rc, _, err = explain(capsys, tmp_path / "out", png(tmp_path / "a.png", rgb()), extra=["--device", device])
    assert rc == 2 and not (tmp_path / "out").exists()
    one_line_error(err, needle)


def test_nan_logits(tmp_path, capsys):
    out = tmp_path / "out"
    rc, _, err = run(capsys, "explain", png(tmp_path / "a.png", rgb(64, 64)), "--model",
                     "test_bad_inputs:nan_synthetic", "-m", "saliency", "--preset", "none", "--quiet", "--out", out)
    assert rc == 1 and "NaN or infinite logits" in err and "Traceback" not in err
    s = json.loads((out / "summary.json").read_text())
    assert s["failures"][0]["error"] == "the model returned NaN or infinite logits"
    assert files(out) == accounted(out) and not (out / "a").exists()
