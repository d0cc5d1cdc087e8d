"""DifAUC (``inputiba`` preset) of IBA, InputIBA, HSIC-Attribution and RISE beside Captum IG-200.

For each sample photo: Captum Integrated Gradients with 200 steps (black
baseline, internal batch 16: the reference of ``_common.py``) gives both the
IG map and the reference wall time; each method then runs with its defaults
and is timed; every map is scored by insertion/deletion under the
``inputiba`` preset (100 steps of 1%, black, softmax, trapezoid). The
bottleneck estimates for IBA/InputIBA (1000 samples, cached) are made once and
timed apart. Results are printed and written as JSON (after every image, so a
partial run keeps what it measured).

Run:  python benchmarks/bench_bottlenecks.py --images chelsea,coffee,rocket --out outputs/bench_bottlenecks.json
      (``--rise-masks N`` / ``--hsic-designs N`` shorten the two sampling methods on a slow machine;
      the JSON records any such override)
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import default_setup, ig200, timed  # noqa: E402

import fisherattr  # noqa: E402
from fisherattr.methods.bottleneck import load_or_estimate  # noqa: E402
from fisherattr.metrics.insertion_deletion import insertion_deletion  # noqa: E402

METHODS = ("iba", "input-iba", "hsic", "rise")


def main(argv=None) -> int:
    args, model, images = default_setup(argv, out={"default": "outputs/bench_bottlenecks.json"},
                                        methods={"default": ",".join(METHODS)},
                                        **{"rise-masks": {"type": int, "default": None},
                                           "hsic-designs": {"type": int, "default": None},
                                           "layer": {"default": None}})
    overrides = {"rise": {"n_masks": args.rise_masks} if args.rise_masks else {},
                 "hsic": {"designs": args.hsic_designs} if args.hsic_designs else {}}
    if args.layer:
        overrides["iba"] = overrides["input-iba"] = {"layer": args.layer}
    methods = [m for m in args.methods.split(",") if m]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    layers = {m: fisherattr.get_method(m, model, **overrides.get(m, {})).layer
              for m in methods if m in ("iba", "input-iba")}
    t_est = {}
    for layer in sorted(set(layers.values())):  # estimated (or read from the cache) outside the timed runs
        t_est[layer], _ = timed(lambda: load_or_estimate(model, layer, (224, 224), progress=True))
        print(f"bottleneck estimate for {layer}: {t_est[layer]:.1f} s (once; cached afterwards)", flush=True)
    report = {"model": args.model, "layers": layers, "preset": "inputiba", "threads": args.threads,
              "overrides": overrides, "estimate_seconds_once": t_est, "images": {}}
    for name, x in images.items():
        with torch.no_grad():
            target = int(model(x).argmax())
        t_ig, a_ig = ig200(model, x, target)
        rows = {"ig-200": {"seconds": t_ig, "map": a_ig}}
        for m in methods:
            method = fisherattr.get_method(m, model, progress=False, **overrides.get(m, {}))
            secs, a = timed(lambda: method.attribute(x, target=target))
            rows[m] = {"seconds": secs, "map": a}
        res = {}
        for m, r in rows.items():
            ins = insertion_deletion(model, x, r["map"], target=target, preset="inputiba")
            res[m] = {"seconds": round(r["seconds"], 2), "time_vs_ig200": round(r["seconds"] / t_ig, 3),
                      "insertion": round(float(ins.insertion[0]), 4), "deletion": round(float(ins.deletion[0]), 4),
                      "difauc": round(float(ins.difauc[0]), 4)}
            print(f"{name:12s} {m:10s} time {r['seconds']:7.1f} s ({r['seconds'] / t_ig:5.2f} x IG-200)  "
                  f"ins {res[m]['insertion']:.3f}  del {res[m]['deletion']:.3f}  DifAUC {res[m]['difauc']:.3f}",
                  flush=True)
        report["images"][name] = {"target": target, "class": model.class_name(target), "results": res}
        summary = {}
        for m in rows:
            vals = [img["results"][m] for img in report["images"].values()]
            summary[m] = {k: round(statistics.mean(v[k] for v in vals), 4)
                          for k in ("difauc", "insertion", "deletion", "time_vs_ig200")}
        report["mean_over_images"] = summary
        report["n_images"] = len(report["images"])
        out.write_text(json.dumps(report, indent=2))
    print("\nmean over", report.get("n_images", 0), "images:")
    for m, s in report.get("mean_over_images", {}).items():
        print(f"  {m:10s} DifAUC {s['difauc']:.3f}  ins {s['insertion']:.3f}  del {s['deletion']:.3f}  "
              f"time {s['time_vs_ig200']:.2f} x IG-200")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
