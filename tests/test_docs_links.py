"""README and docs: every relative link points at a file of the repository; no design notes outside it."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)\s]*)?\)")


def _markdown_files():
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "benchmarks").rglob("*.md"))]


def test_relative_links_resolve():
    missing = []
    for f in _markdown_files():
        for target in LINK.findall(f.read_text(encoding="utf-8")):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            if not (f.parent / target).exists():
                missing.append(f"{f.relative_to(ROOT)} -> {target}")
    assert not missing, "dangling links: " + "; ".join(missing)


def test_no_pointer_to_files_outside_the_repository():
    # EVALUATION.md was a design note that never shipped; the protocols are in docs/evaluation.md
    offenders = [str(f.relative_to(ROOT)) for f in [*_markdown_files(), *(ROOT / "src").rglob("*.py")]
                 if "EVALUATION.md" in f.read_text(encoding="utf-8")]
    assert not offenders, offenders
