"""From the run's records to the canonical ``results.json``.

``results.json`` holds: ``settings`` (model, data, methods, metrics, preset,
target rule, seed, batch size, sizes, options), ``versions``, ``images`` (name,
kind, label, target, annotations), ``columns`` (metric, column, higher is
better), ``per_image[method][image][column]``, ``summary[method][column]``
(``value`` shown in tables, ``mean``, ``sem`` = standard error, ``n`` used,
``skipped`` with ``reasons``), ``aggregates`` (mean insertion/deletion curves,
PIC curves, randomisation SSIM per layer, Sensitivity-N per N),
``wall_times`` (seconds per image: attribution and each metric) and ``failures``.

:func:`partial_results` builds the same dictionary from the records of a run that
is still going (or was stopped), over the images every method has finished.

PIC columns (``sic``, ``aic``) follow Kapishnikov 2019: ``value`` is the AUC of
the median (SIC) / mean (AIC) of the per-image curves; ``mean`` is the mean of
per-image AUCs, for reference.
"""
from __future__ import annotations

import math
import platform
import time
import warnings
from collections import Counter
from typing import Any, Dict, List, Optional

import numpy as np

from ..data.mosaics import MosaicSample
from ..io_utils import write_json
from ..metrics.pic import aggregate_curves, curve_auc, pic_curve
from ..metrics.suite import get_metric

RESULTS = "results.json"


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(float(v))


def mean_sem(values: List[float]) -> Dict[str, Optional[float]]:
    """Mean and standard error of the mean (None when undefined)."""
    v = np.asarray([x for x in values if _finite(x)], dtype=np.float64)
    if v.size == 0:
        return {"mean": None, "sem": None, "n": 0}
    sem = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else None
    return {"mean": float(v.mean()), "sem": sem, "n": int(v.size)}


def versions() -> Dict[str, str]:
    import torch

    import fisherattr

    out = {"fisherattr": fisherattr.__version__, "torch": torch.__version__, "numpy": np.__version__,
           "python": platform.python_version()}
    for lib in ("captum", "scipy", "skimage", "diffusers"):
        try:
            out[lib] = __import__(lib).__version__
        except Exception:  # noqa: BLE001
            pass
    return out


def _mean_curves(curves: List[List[float]]) -> Optional[List[float]]:
    if not curves:
        return None
    n = Counter(len(c) for c in curves).most_common(1)[0][0]
    arr = np.asarray([[np.nan if v is None else v for v in c] for c in curves if len(c) == n], dtype=np.float64)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
        return np.nanmean(arr, axis=0).tolist()


def summarise(records: List[dict], methods: List[str], metrics: List[str], images: List[str],
              mosaics: Optional[set] = None) -> Dict[str, Any]:
    """Per-image values, summaries, aggregated curves and wall times from the records.

    ``mosaics``: names of the mosaic images (only mosaic metrics apply to them, and only to them).
    """
    mosaics = mosaics or set()
    by = {(r["image"], r["method"], r["metric"]): r for r in records}
    columns = [(m, c, h) for m in metrics for c, h in zip(get_metric(m).columns, get_metric(m).higher)]
    per_image: Dict[str, Dict[str, Dict[str, Any]]] = {m: {} for m in methods}
    summary: Dict[str, Dict[str, Any]] = {}
    aggregates: Dict[str, Dict[str, Any]] = {}
    walls: Dict[str, Dict[str, Dict[str, float]]] = {m: {} for m in methods}
    for meth in methods:
        for img in images:
            row, times = {}, {}
            att = by.get((img, meth, "_attribution"))
            if att is not None and "seconds" in att:
                times["attribution"] = att["seconds"]
            for m in metrics:
                rec = by.get((img, meth, m))
                if rec is None:
                    continue
                if "seconds" in rec:
                    times[m] = rec["seconds"]
                if "outcome" in rec:
                    for c, v in rec["outcome"].get("values", {}).items():
                        row[c] = v
            if row:
                per_image[meth][img] = row
            if times:
                walls[meth][img] = times
        summary[meth] = {}
        for metric, col, _ in columns:
            vals, reasons = [], Counter()
            for img in images:
                rec = by.get((img, meth, metric))
                if rec is None:
                    if (get_metric(metric).needs == "mosaic") != (img in mosaics):
                        continue
                    att = by.get((img, meth, "_attribution"))
                    if att is not None and "error" in att:
                        reasons[f"attribution failed: {att['error']}"] += 1
                    else:
                        reasons["not computed"] += 1
                    continue
                if "error" in rec:
                    reasons[f"error: {rec['error']}"] += 1
                    continue
                out = rec["outcome"]
                v = out.get("values", {}).get(col)
                if _finite(v):
                    vals.append(float(v))
                else:
                    reasons[out.get("skip") or (out.get("extra") or {}).get(f"{col}_skip") or "undefined (NaN)"] += 1
            s = mean_sem(vals)
            s["value"] = s["mean"]
            s["skipped"] = int(sum(reasons.values()))
            s["reasons"] = dict(reasons)
            summary[meth][col] = s
        aggregates[meth] = _aggregates(by, meth, metrics, images, summary[meth])
    return {"columns": [{"metric": m, "column": c, "higher_is_better": h} for m, c, h in columns],
            "per_image": per_image, "summary": summary, "aggregates": aggregates, "wall_times": walls}


def _aggregates(by: dict, meth: str, metrics: List[str], images: List[str], summ: Dict[str, Any]) -> Dict[str, Any]:
    agg: Dict[str, Any] = {}
    outs = {m: [by[(i, meth, m)]["outcome"] for i in images
                if (i, meth, m) in by and "outcome" in by[(i, meth, m)]] for m in metrics}
    if outs.get("insdel"):
        o = outs["insdel"]
        agg["insdel"] = {"fractions": o[0]["curves"].get("fractions"),
                         "insertion": _mean_curves([x["curves"]["insertion"] for x in o if "insertion" in x["curves"]]),
                         "deletion": _mean_curves([x["curves"]["deletion"] for x in o if "deletion" in x["curves"]])}
    if outs.get("pic"):
        sic, aic = [], []
        for x in outs["pic"]:
            c, e = x["curves"], x.get("extra", {})
            info = c.get("info")
            if e.get("sic_skip") is None and info and all(_finite(v) for v in c["sic_points"]):
                sic.append(pic_curve(info, c["sic_points"]))
            if e.get("aic_skip") is None and info and all(_finite(v) for v in c["aic_points"]):
                aic.append(pic_curve(info, c["aic_points"]))
        sic_curve, aic_curve = aggregate_curves(sic, "median"), aggregate_curves(aic, "mean")
        agg["pic"] = {"sic_curve": sic_curve.tolist(), "aic_curve": aic_curve.tolist(),
                      "sic_images": len(sic), "aic_images": len(aic)}
        for col, curve in (("sic", sic_curve), ("aic", aic_curve)):
            if col in summ:
                auc = curve_auc(curve)
                summ[col]["value"] = auc if math.isfinite(auc) else None
    if outs.get("randomisation"):
        o = outs["randomisation"]
        n = Counter(len(x["curves"]["layers"]) for x in o).most_common(1)[0][0]
        agg["randomisation"] = {"layers": next(x["curves"]["layers"] for x in o if len(x["curves"]["layers"]) == n),
                                "ssim": _mean_curves([x["curves"]["ssim"] for x in o]),
                                "spearman": _mean_curves([x["curves"]["spearman"] for x in o])}
    if outs.get("sensitivity_n"):
        o = outs["sensitivity_n"]
        n = Counter(len(x["curves"]["ns"]) for x in o).most_common(1)[0][0]
        agg["sensitivity_n"] = {"ns": next(x["curves"]["ns"] for x in o if len(x["curves"]["ns"]) == n),
                                "correlation": _mean_curves([x["curves"]["correlation"] for x in o])}
    return agg


def build_results(ev: Any, wall_seconds: float) -> Dict[str, Any]:
    """Write ``results.json`` for a finished :class:`~fisherattr.bench.runner.Evaluation`."""
    cfg = ev.cfg
    names = [s.name for s in ev.samples] + [m.name for m in ev.mosaics]
    images = []
    for s in ev.samples + ev.mosaics:
        is_mosaic = isinstance(s, MosaicSample)
        d = {"name": s.name, "kind": "mosaic" if is_mosaic else "image", "label": s.label,
             "mask": s.mask is not None, "boxes": len(s.boxes)}
        if is_mosaic:
            d.update(cells=list(s.cells), sources=list(s.sources))
        images.append(d)
    res = {
        "settings": {"model": ev.model_name or getattr(ev.model, "name", "model"), "data": cfg.data,
                     "methods": ev.methods, "metrics": ev.metrics, "preset": cfg.preset or "inputiba",
                     "preset_given": cfg.preset is not None, "target_rule": cfg.target, "seed": cfg.seed,
                     "batch_size": cfg.batch_size, "limit": cfg.limit, "size": ev.size,
                     "mosaics": len(ev.mosaics), "method_options": cfg.method_options,
                     "metric_options": cfg.metric_options},
        "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_seconds_this_session": wall_seconds,
        "images": images,
        "failures": ev.failures,
    }
    res.update(summarise(ev.store.records(), ev.methods, ev.metrics, names, {m.name for m in ev.mosaics}))
    write_json(ev.store.root / RESULTS, res)
    return res


def partial_results(root: Any) -> Dict[str, Any]:
    """``results.json``-like summary of an unfinished run in folder ``root``, from its records so far.

    Only *complete* images count: those where every method that has records has
    a record (value, skip or error) for every metric seen on images of the same
    kind (plain image or mosaic), or a failed attribution. The dictionary has
    ``partial = {"images": complete, "started": images with any record}``.

    Example:
        >>> res = partial_results("syn500")                        # doctest: +SKIP
        >>> res["partial"]                                         # doctest: +SKIP
        {'images': 212, 'started': 214}
    """
    import json
    from pathlib import Path

    from ..errors import UsageError
    from .store import SETTINGS, ResultStore

    root = Path(root)
    if not root.is_dir() or not any(root.glob("records*.jsonl")):
        raise UsageError(f"{root}: no results.json and no records (run `fisherattr evaluate --out {root}` first)")
    records = ResultStore(root).records()
    settings = json.loads((root / SETTINGS).read_text(encoding="utf-8")) if (root / SETTINGS).exists() else {}
    methods: Dict[str, None] = {}
    metrics: Dict[str, None] = {}
    have: Dict[str, Dict[str, set]] = {}  # image -> method -> metrics recorded (insertion-ordered images)
    failed_attr = set()
    mosaics: set = set()
    for r in records:
        methods.setdefault(r["method"], None)
        if r["metric"] == "_attribution":
            if "error" in r:
                failed_attr.add((r["image"], r["method"]))
            continue
        metrics.setdefault(r["metric"], None)
        have.setdefault(r["image"], {}).setdefault(r["method"], set()).add(r["metric"])
        if get_metric(r["metric"]).needs == "mosaic":
            mosaics.add(r["image"])
    wanted: Dict[bool, set] = {False: set(), True: set()}  # metrics seen on plain images / on mosaics
    for img, per in have.items():
        for done in per.values():
            wanted[img in mosaics] |= done
    complete = [img for img, per in have.items()
                if all((img, m) in failed_attr or per.get(m, set()) >= wanted[img in mosaics] for m in methods)]
    done_set = set(complete)
    res: Dict[str, Any] = {
        "settings": {"model": settings.get("model", "?"), "data": settings.get("data", "?"),
                     "methods": list(methods), "metrics": list(metrics), "preset": settings.get("preset") or "inputiba",
                     "target_rule": settings.get("target", "?"), "seed": settings.get("seed", "?"),
                     "size": settings.get("size"), "method_options": settings.get("method_options", {}),
                     "metric_options": settings.get("metric_options", {})},
        "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "images": [{"name": n, "kind": "mosaic" if n in mosaics else "image"} for n in complete],
        "failures": [{"image": r["image"], "method": r["method"], "metric": r["metric"], "error": r["error"]}
                     for r in records if "error" in r and r["image"] in done_set],
        "partial": {"images": len(complete), "started": len(have)},
    }
    res.update(summarise(records, list(methods), list(metrics), complete, mosaics & done_set))
    return res
