"""The README's Python snippets run as printed (in a scratch folder, matplotlib without a display)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _block(marker: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    found = [b for b in blocks if marker in b]
    assert len(found) == 1, f"expected one README snippet containing {marker!r}, found {len(found)}"
    return found[0]


def test_own_model_snippet(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(_block("fisherattr.Classifier(net"), "README own model", "exec"), ns)  # noqa: S102
    model, maps = ns["model"], ns["maps"]
    assert model.class_index("dog") == 1 and tuple(maps.shape) == (1, 3, 224, 224)


@pytest.mark.slow
def test_what_you_get_snippet_shows_a_map(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(_block("show_attribution"), "README what you get", "exec"), ns)  # noqa: S102
    assert tuple(ns["maps"].shape) == (1, 1, 224, 224)
    assert (tmp_path / "chelsea-gradcam.png").stat().st_size > 10_000
    exec(compile(_block("insertion_deletion(model, x, maps"), "README metric", "exec"), ns)  # noqa: S102
