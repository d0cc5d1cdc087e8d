"""Benchmark of the path methods on the sample photos with EfficientNet-Lite0.

For every photo (target = top-1) it runs Captum IG-200 (the reference time),
``ig``, ``guided-ig``, ``blur-ig`` and their IDGI versions, ``samp`` and
``samp++`` with default options, and reports

- the ``idgi`` insertion preset (AUC of the probability and of the probability
  ratio) for each IDGI variant beside its base path;
- the ``samp`` preset (deletion / insertion, logit ratio, mean of points) for
  IG, SAMP and SAMP++;
- completeness gaps (IDGI: probability; IG / Guided IG / Blur IG: logit);
- wall times: IDGI overhead over its base path, SAMP++ against Captum IG-200.

Usage:
    python benchmarks/bench_paths.py --images chelsea,coffee,rocket --threads 2 --out outputs/bench_paths.json
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Dict, List

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import default_setup, ig200_seconds, timed  # noqa: E402

import fisherattr  # noqa: E402
from fisherattr.methods.paths import gaussian_blur  # noqa: E402
from fisherattr.metrics.insertion_deletion import insertion_deletion  # noqa: E402

PAIRS = [("ig", "idgi-ig"), ("guided-ig", "idgi-guided-ig"), ("blur-ig", "idgi-blur-ig")]
SAMP_SET = ["ig", "samp", "samp++"]
QUICK = {**{m: dict(steps=4) for pair in PAIRS for m in pair},
         "samp": dict(pixels_per_step=224 * 56), "samp++": dict(pixels_per_step=224 * 56, eta=0.2)}


def score(model, x, t, kind):
    with torch.no_grad():
        out = model(x)
        out = out.softmax(1) if kind == "probability" else out
        return float(out[0, t])


def start_point(name: str, x: torch.Tensor) -> torch.Tensor:
    return gaussian_blur(x, 50.0) if "blur" in name else torch.zeros_like(x)


def mean(v: List[float]) -> float:
    return sum(v) / max(1, len(v))


def sem(v: List[float]) -> float:
    if len(v) < 2:
        return float("nan")
    m = mean(v)
    return (sum((a - m) ** 2 for a in v) / (len(v) - 1) / len(v)) ** 0.5


def rule_overhead(model, x: torch.Tensor, t: int, repeats: int = 20) -> Dict[str, float]:
    """Seconds per segment of the IDGI and Riemann rules alone (no model passes), on one real segment."""
    from fisherattr.methods.paths import IDGI, Riemann, ScoreFunction, StraightLinePath

    seg = next(iter(StraightLinePath(steps=200).segments(x, ScoreFunction(model, torch.tensor([t]), "probability"))))
    out = {}
    for rule in (IDGI(), Riemann()):
        seconds, _ = timed(lambda: [rule(seg) for _ in range(repeats)])
        out[rule.name] = seconds / repeats
    return out


def summarise(rows: Dict[str, Dict[str, list]], args, names: List[str]) -> Dict:
    summary = {m: {k: {"mean": mean(v), "sem": sem(v), "values": v} for k, v in d.items()} for m, d in rows.items()}
    ratios = {f"{idgi} / {base} time": sum(rows[idgi]["seconds"]) / sum(rows[base]["seconds"]) for base, idgi in PAIRS}
    ratios["samp++ / captum-ig-200 time"] = sum(rows["samp++"]["seconds"]) / sum(rows["captum-ig-200"]["seconds"])
    ratios["samp / captum-ig-200 time"] = sum(rows["samp"]["seconds"]) / sum(rows["captum-ig-200"]["seconds"])
    return {"quick": args.quick, "model": args.model, "images": names, "threads": args.threads,
            "methods": summary, "ratios": ratios}


def main(argv=None) -> Dict:
    args, model, images = default_setup(argv, out=dict(default="outputs/bench_paths.json"),
                                        batch=dict(type=int, default=None,
                                                   help="internal_batch_size of every method (default: automatic)"),
                                        quick=dict(action="store_true",
                                                   help="few steps (checks the script, not the methods)"))
    rows: Dict[str, Dict[str, list]] = {}

    def put(method: str, key: str, value: float) -> None:
        rows.setdefault(method, {}).setdefault(key, []).append(value)

    done: List[str] = []
    for name, x in images.items():
        with torch.no_grad():
            t = int(model(x).argmax(1))
        put("captum-ig-200", "seconds", ig200_seconds(model, x, t))
        maps = {}
        for method in [m for pair in PAIRS for m in pair] + ["samp", "samp++"]:
            m = fisherattr.get_method(method, model, internal_batch_size=args.batch,
                                      **(QUICK[method] if args.quick else {}))
            seconds, maps[method] = timed(lambda: m.attribute(x, target=t))
            put(method, "seconds", seconds)
            if method in dict(PAIRS) or method in dict(PAIRS).values():
                kind = "probability" if method.startswith("idgi") else "logit"
                gap = score(model, x, t, kind) - score(model, start_point(method, x), t, kind)
                put(method, "completeness_gap", abs(float(maps[method].sum()) - gap) / abs(gap))
            if method.startswith("samp"):  # sum(A) ~ (f(x) - f(zero)) + (f(x) - f(blur)), logit
                sm = fisherattr.get_method(method, model)
                ends = [sm.baseline_image(x, "deletion"), sm.baseline_image(x, "insertion")]
                gap = sum(score(model, x, t, "logit") - score(model, e, t, "logit") for e in ends)
                put(method, "completeness_gap", abs(float(maps[method].sum()) - gap) / abs(gap))
            print(f"{name:12s} {method:15s} {seconds:7.1f} s", flush=True)
        for method in [m for pair in PAIRS for m in pair]:
            r = insertion_deletion(model, x, maps[method], target=t, preset="idgi")
            put(method, "idgi_insertion", float(r.insertion[0]))
            put(method, "idgi_insertion_ratio", float(r.extras["insertion_ratio"][0]))
        for method in SAMP_SET:
            r = insertion_deletion(model, x, maps[method], target=t, preset="samp")
            put(method, "samp_deletion", float(r.deletion[0]))
            put(method, "samp_insertion", float(r.insertion[0]))

        result = summarise(rows, args, done + [name])
        done.append(name)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))  # after every image, so partial runs keep their numbers

    x = next(iter(images.values()))
    with torch.no_grad():
        t = int(model(x).argmax(1))
    per_segment = rule_overhead(model, x, t)
    result["rule_seconds_per_segment"] = per_segment
    Path(args.out).write_text(json.dumps(result, indent=2))
    summary, ratios = result["methods"], result["ratios"]
    print(f"\n{len(images)} images ({', '.join(images)}), {args.model}, {args.threads} threads\n")
    print("| method | idgi ins. AUC | idgi ins. ratio AUC | samp del. | samp ins. | completeness gap | s/image |")
    print("|---|---|---|---|---|---|---|")
    for m, d in summary.items():
        cell = lambda k: f"{d[k]['mean']:.3f} ± {d[k]['sem']:.3f}" if k in d else ""
        print(f"| {m} | {cell('idgi_insertion')} | {cell('idgi_insertion_ratio')} | {cell('samp_deletion')} | "
              f"{cell('samp_insertion')} | {cell('completeness_gap')} | {d['seconds']['mean']:.1f} |")
    print()
    for k, v in ratios.items():
        print(f"{k}: {v:.3f}")
    print("rule cost per segment (no model passes): " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in per_segment.items()))
    return result


if __name__ == "__main__":
    main()
