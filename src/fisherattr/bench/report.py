"""Render ``results.md``, ``results.csv``, ``per_image.csv`` and the figures from ``results.json``.

Example:
    >>> render("evaluation_out")          # doctest: +SKIP
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Dict, List

from ..errors import UsageError
from ..io_utils import write_text
from .results import RESULTS

LABELS = {"insertion": "Insertion", "deletion": "Deletion", "difauc": "DifAUC", "insertion_ratio": "Ins. ratio",
          "mnim": "MNIM", "sensitivity_n": "Sens-N", "mu_fidelity": "mu-Fid", "completeness_gap": "Compl. gap",
          "ssim": "Rand. SSIM", "spearman": "Rand. Spearman", "sic": "SIC", "aic": "AIC", "ehr": "EHR",
          "box_ratio": "Box-Ratio", "seg_ratio": "Seg-Ratio", "pointing_game": "Pointing", "wsl_auc": "WSL AUC",
          "wsl_f1": "WSL F1", "wsl_mae": "WSL MAE", "grid_pointing": "Grid pointing"}


def load_results(root: str | os.PathLike, partial: bool = False) -> Dict[str, Any]:
    """``root/results.json``; or, when the run has not finished (no results.json) or ``partial`` is set,
    a summary of its records so far (:func:`~fisherattr.bench.results.partial_results`)."""
    p = Path(root) / RESULTS
    if partial or not p.exists():
        from .results import partial_results

        return partial_results(root)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UsageError(f"{p}: not valid JSON ({e})") from None


def _fmt(s: Dict[str, Any], n_total: int) -> str:
    v = s.get("value")
    if v is None:
        return "-"
    txt = f"{v:.3f}"
    if s.get("sem") is not None and s.get("value") == s.get("mean"):
        txt += f" ± {s['sem']:.3f}"
    if s.get("n", 0) != n_total:
        txt += f" (n={s.get('n', 0)})"
    return txt


def markdown(res: Dict[str, Any]) -> str:
    """The results table (rows = methods), like the papers', plus skips, timings and settings."""
    st = res["settings"]
    cols = res["columns"]
    n_img = sum(1 for d in res["images"] if d["kind"] == "image")
    n_mos = sum(1 for d in res["images"] if d["kind"] == "mosaic")
    lines = [f"# Evaluation: {st['model']} on `{st['data']}`", "",
             f"{n_img} images" + (f" + {n_mos} mosaics" if n_mos else "") +
             f"; insertion/deletion preset `{st['preset']}`; target rule `{st['target_rule']}`; seed {st['seed']}.",
             "Cells: mean ± standard error over images (n shown when some images were skipped); "
             "SIC/AIC: AUC of the median/mean curve. Arrows: which way is better.", ""]
    if res.get("partial"):
        lines[2:2] = [f"**Partial: the run has not finished.** This table covers the {res['partial']['images']} "
                      f"items every method has finished ({res['partial']['started']} started so far).", ""]
    head = ["method"] + [f"{LABELS.get(c['column'], c['column'])} {'↑' if c['higher_is_better'] else '↓'}"
                         for c in cols] + ["s / image"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in st["methods"]:
        summ = res["summary"].get(m, {})
        cells = []
        for c in cols:
            n_total = n_mos if c["metric"] == "grid_pointing" else n_img
            cells.append(_fmt(summ.get(c["column"], {}), n_total))
        att = [t["attribution"] for t in res["wall_times"].get(m, {}).values() if "attribution" in t]
        cells.append(f"{sum(att) / len(att):.2f}" if att else "-")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    skips = [(m, col, r, k) for m, summ in res["summary"].items() for col, s in summ.items()
             for r, k in s.get("reasons", {}).items()]
    if skips:
        lines += ["", "## Skipped", "", "| method | column | reason | images |", "|---|---|---|---|"]
        lines += [f"| {m} | {col} | {r} | {k} |" for m, col, r, k in skips]
    if res.get("failures"):
        lines += ["", "## Failures", ""] + [f"- {f['image']} / {f['method']} / {f['metric']}: {f['error']}"
                                            for f in res["failures"]]
    lines += ["", "## Wall time (seconds per image, mean)", "", "| method | attribution | metrics |", "|---|---|---|"]
    for m, per in res["wall_times"].items():
        att = [t.get("attribution") for t in per.values() if "attribution" in t]
        met = [sum(v for k, v in t.items() if k != "attribution") for t in per.values()]
        lines.append(f"| {m} | {sum(att) / len(att):.2f} | {sum(met) / max(1, len(met)):.2f} |" if att
                     else f"| {m} | - | {sum(met) / max(1, len(met)):.2f} |")
    lines += ["", "## Settings", "", "```json", json.dumps(st, indent=1), "```",
              "", f"Versions: {', '.join(f'{k} {v}' for k, v in res['versions'].items())}", ""]
    return "\n".join(lines)


def compact_table(res: Dict[str, Any], columns: List[str], sort: str | None = None, sem: bool = False) -> str:
    """A markdown table of chosen columns (keys of ``results.json``'s ``columns``), best first by ``sort``.

    Example:
        >>> print(compact_table(load_results("eval"), ["ehr", "seg_ratio"], sort="ehr"))  # doctest: +SKIP
    """
    known = {c["column"]: c for c in res["columns"]}
    for c in columns + ([sort] if sort else []):
        if c not in known:
            raise UsageError(f"unknown column {c!r}; this evaluation has: {', '.join(known)}")
    if not columns:
        raise UsageError("no column given")
    sort = sort or columns[0]
    up = known[sort]["higher_is_better"]

    def value(m: str, c: str):
        return res["summary"].get(m, {}).get(c, {}).get("value")

    methods = list(res["settings"]["methods"])
    methods.sort(key=lambda m: (value(m, sort) is None, -(value(m, sort) or 0) if up else (value(m, sort) or 0)))
    head = ["method"] + [f"{LABELS.get(c, c)} {'↑' if known[c]['higher_is_better'] else '↓'}" for c in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in methods:
        cells = []
        for c in columns:
            s = res["summary"].get(m, {}).get(c, {})
            if sem:
                cells.append(_fmt(s, s.get("n", 0)))  # value ± sem, as in results.md
            else:
                cells.append("-" if s.get("value") is None else f"{s['value']:.3f}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_csv(res: Dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["method", "metric", "column", "higher_is_better", "value", "mean", "sem", "n", "skipped"])
    for m in res["settings"]["methods"]:
        for c in res["columns"]:
            s = res["summary"].get(m, {}).get(c["column"], {})
            w.writerow([m, c["metric"], c["column"], c["higher_is_better"], s.get("value"), s.get("mean"),
                        s.get("sem"), s.get("n"), s.get("skipped")])
    return buf.getvalue()


def per_image_csv(res: Dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["method", "image", "column", "value"])
    for m, per in res["per_image"].items():
        for img, row in per.items():
            for col, v in row.items():
                w.writerow([m, img, col, v])
    return buf.getvalue()


def render(root: str | os.PathLike, figures: bool = True, partial: bool = False) -> List[Path]:
    """Write md/csv (and figures) next to ``results.json``; returns the paths written.

    An unfinished run (no results.json, or ``partial``) is summarised from its records so far.
    """
    from .plots import all_figures

    root = Path(root)
    res = load_results(root, partial=partial)
    out = [write_text(root / "results.md", markdown(res)), write_text(root / "results.csv", summary_csv(res)),
           write_text(root / "per_image.csv", per_image_csv(res))]
    if figures:
        out += all_figures(res, root)
    return out
