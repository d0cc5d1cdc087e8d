"""The command line as a whole: fast start, the same flag names everywhere, list and report output."""
from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from fisherattr import cli


def _subparsers() -> dict:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _option(p: argparse.ArgumentParser, flag: str) -> argparse.Action:
    return next(a for a in p._actions if flag in a.option_strings)


#: The arguments each command requires, so that a parse can test the others.
_REQUIRED = {"evaluate": ["--out", "x"], "train-explainer": ["--out", "x"], "train-denoiser": ["--out", "x"],
             "estimate-bottleneck": ["--out", "x"], "make-synthetic": ["--n", "1", "--out", "x"],
             "train-classifier": ["--data", "synthetic", "--out", "x"], "report": ["dir"]}


def _parse(name: str, p: argparse.ArgumentParser, argv: list) -> argparse.Namespace:
    return p.parse_args([*_REQUIRED.get(name, []), *argv])


def test_help_and_list_do_not_import_heavy_libraries():
    code = ("import sys, contextlib, io\n"
            "from fisherattr import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    cli.build_parser().format_help()\n"
            "    for what in ([], ['methods'], ['models'], ['samples'], ['metrics'], ['presets']):\n"
            "        assert cli.main(['list', *what]) == 0\n"
            "heavy = [m for m in ('torch', 'captum', 'diffusers', 'skimage', 'scipy', 'matplotlib', 'numpy')\n"
            "         if m in sys.modules]\n"
            "print(','.join(heavy))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_every_command_has_quiet_and_the_old_no_progress():
    for name, p in _subparsers().items():
        quiet, old = _option(p, "--quiet"), _option(p, "--no-progress")
        assert "-q" in quiet.option_strings and quiet.dest == old.dest == "quiet", name
        assert old.help == argparse.SUPPRESS, name
        assert _parse(name, p, ["--no-progress"]).quiet is True, name
        assert _parse(name, p, ["-q"]).quiet is True and _parse(name, p, []).quiet is False, name


@pytest.mark.parametrize("command", ["explain", "evaluate", "train-explainer"])
def test_methods_flag_and_aliases(command):
    p = _subparsers()[command]
    action = _option(p, "--methods")
    assert {"--methods", "--method", "-m"} <= set(action.option_strings)
    for flag in ("--methods", "--method", "-m"):
        ns = _parse(command, p, [flag, "fda"])
        assert getattr(ns, action.dest) in ("fda", ["fda"]), (command, flag)


def test_explain_preset_and_batch_size_match_evaluate():
    subs = _subparsers()
    explain, evaluate = subs["explain"], subs["evaluate"]
    assert _option(explain, "--preset").dest == _option(evaluate, "--preset").dest == "preset"
    assert _option(explain, "--batch-size").dest == _option(evaluate, "--batch-size").dest == "batch_size"
    assert explain.parse_known_args(["--metrics", "idgi"])[0].preset == "idgi"  # old name, hidden
    assert explain.parse_known_args([])[0].preset == "inputiba"
    assert explain.parse_known_args(["--metric-batch-size", "8"])[0].batch_size == 8
    assert _option(explain, "--metrics").help == argparse.SUPPRESS
    for name in ("explain", "evaluate", "train-explainer"):
        assert "METHOD.KEY=VALUE" in _option(subs[name], "--option").metavar, name


def test_train_explainer_takes_method_key_value_options():
    from fisherattr.commands.train_explainer import parse_options

    assert parse_options(["fda.beta=2", "fda.steps=40"], "fda") == {"beta": 2.0, "steps": 40}
    assert parse_options(["beta=2"], "fda") == {"beta": 2}
    from fisherattr import UsageError

    with pytest.raises(UsageError, match="not among the methods run"):
        parse_options(["diffib.beta=2"], "fda")


def test_train_denoiser_help_defaults_are_the_config_defaults():
    from fisherattr.commands.train_denoiser import _DEFAULTS
    from fisherattr.scores.noise_map import TrainConfig

    d = TrainConfig()
    assert _DEFAULTS == {k: getattr(d, k) for k in _DEFAULTS}


def test_list_methods_plain_text_with_defaults_cost_and_shape(capsys):
    assert cli.main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    assert "``" not in out and ":class:" not in out
    rows = {line.split()[0]: line for line in out.splitlines() if line and not line.startswith(("method", " "))}
    assert rows["fda"].split()[1] == "*" and "[C,H,W]" in rows["fda"] and " medium " in rows["fda"]
    assert "*" not in rows["rise"].split()[:2] and " slow " in rows["rise"] and "[1,H,W]" in rows["rise"]
    assert " fast " in rows["gradcam"]
    assert "ig and integrated-gradients compute the same" in out


def test_list_models_says_what_needs_a_library(capsys, monkeypatch):
    from fisherattr import catalog

    monkeypatch.setattr(catalog, "library_available", lambda m: m == "timm")
    assert cli.main(["list", "models"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "needs torchvision" in rows["torchvision:<name>"] and "available" in rows["timm:<name>"]
    assert "available" in rows["efficientnet_lite0"] and "Classifier(" in out


def test_report_prints_the_ranked_table(tmp_path, capsys):
    out = tmp_path / "ev"
    rc = cli.main(["evaluate", "--model", "synthetic", "--data", "synthetic:3", "--methods", "gradcam,saliency",
                   "--metrics", "insdel", "--mosaics", "0", "--out", str(out), "-q"])
    assert rc == 0
    capsys.readouterr()
    assert cli.main(["report", str(out), "--no-figures"]) == 0
    text = capsys.readouterr().out
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| method | Insertion ↑ | Deletion ↓ | DifAUC ↑")
    import json

    res = json.loads((out / "results.json").read_text())
    dif = {m: res["summary"][m]["difauc"]["value"] for m in ("gradcam", "saliency")}
    ranked = [row.split("|")[1].strip() for row in table[1:]]
    assert ranked == sorted(dif, key=lambda m: -dif[m])  # best DifAUC first
    assert "±" in table[1]
