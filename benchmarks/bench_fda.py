"""FDA on EfficientNet-Lite0 at 224: time vs Captum IG-200, peak memory, DifAUC vs IG/Saliency, a settings sweep,
and the amortised explainer.

Usage (each part is optional; keep runs small on shared CPUs)::

    python benchmarks/bench_fda.py --parts time,difauc --images chelsea,coffee
    python benchmarks/bench_fda.py --parts sweep --images chelsea
    python benchmarks/bench_fda.py --parts amortised --train_steps 100

Prints Markdown tables; ``--json FILE`` also writes the numbers.
"""
from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import default_setup, ig200_seconds, timed  # noqa: E402

import fisherattr  # noqa: E402
from fisherattr.metrics.insertion_deletion import insertion_deletion  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def difauc(model, x, maps) -> float:
    return float(insertion_deletion(model, x, maps, preset="inputiba").difauc.mean())


def part_time(model, images, opts) -> List[Dict[str, Any]]:
    rows = []
    for name, x in images.items():
        with torch.no_grad():
            target = int(model(x).argmax())
        before = peak_rss_mb()  # FDA first, so the process peak is FDA's, not IG's (batches of 50)
        fda = fisherattr.get_method("fda", model, **opts)
        sec, maps = timed(lambda: fda.attribute(x, target))
        fda_peak = peak_rss_mb()
        ig = ig200_seconds(model, x, target)
        rows.append({"image": name, "fda_s": sec, "ig200_s": ig, "ratio": sec / ig,
                     "peak_rss_mb": fda_peak, "rss_growth_mb": fda_peak - before,
                     "difauc": difauc(model, x, maps)})
        print(f"| {name} | {sec:.1f} | {ig:.1f} | {sec / ig:.2f} | {fda_peak:.0f} | {fda_peak - before:.0f} |",
              flush=True)
    return rows


def part_difauc(model, images, opts) -> List[Dict[str, Any]]:
    rows = []
    methods = [("fda", opts), ("integrated-gradients", {"internal_batch_size": 50}), ("saliency", {})]
    for name, x in images.items():
        row: Dict[str, Any] = {"image": name}
        for m, o in methods:
            sec, maps = timed(lambda: fisherattr.get_method(m, model, **o).attribute(x))
            row[m] = difauc(model, x, maps)
            row[m + "_s"] = sec
        rows.append(row)
        print(f"| {name} | " + " | ".join(f"{row[m]:.3f}" for m, _ in methods) + " |", flush=True)
    return rows


SWEEP = [
    {},
    {"beta": 0.3}, {"beta": 3.0}, {"beta": 10.0},
    {"nodes": 8}, {"nodes": 32},
    {"steps": 30}, {"steps": 100},
    {"noise_draws": 1}, {"noise_draws": 4},
    {"adapter": "direct", "lr": 0.1},
    {"lr": 0.02},
    {"quadrature": "trapezoid", "nodes": 8},
]


def part_sweep(model, images, opts, sweep=SWEEP) -> List[Dict[str, Any]]:
    rows = []
    for change in sweep:
        o = {**opts, **change}
        vals, secs = [], []
        for name, x in images.items():
            sec, maps = timed(lambda: fisherattr.get_method("fda", model, **o).attribute(x))
            vals.append(difauc(model, x, maps))
            secs.append(sec)
        row = {"change": json.dumps(change) if change else "(defaults)", "difauc": sum(vals) / len(vals),
               "seconds": sum(secs) / len(secs)}
        rows.append(row)
        print(f"| {row['change']} | {row['difauc']:.3f} | {row['seconds']:.1f} |", flush=True)
    return rows


def part_amortised(model, images, opts, steps: int, out: str) -> Dict[str, Any]:
    from fisherattr.commands.train_explainer import load_training_images

    train = load_training_images("samples", 224)
    fda = fisherattr.get_method("fda", model, **opts)
    t_train, _ = timed(lambda: fda.train_explainer(train, out, steps=steps, batch=2, lr=1e-3, progress=False))
    am = fisherattr.get_method("fda", model, mode="amortised", explainer=out, **opts)
    res = {"train_images": train.shape[0], "train_steps": steps, "train_s": t_train}
    for name, x in images.items():
        am.attribute(x)  # warm-up
        sec, maps = timed(lambda: am.attribute(x))
        res[name] = {"forward_s": sec, "difauc": difauc(model, x, maps)}
        print(f"| {name} | {sec:.2f} | {res[name]['difauc']:.3f} |", flush=True)
    return res


def main(argv=None) -> int:
    args, model, images = default_setup(argv, parts={"default": "time,difauc"}, json={"default": ""},
                                        steps={"type": int, "default": None},
                                        train_steps={"type": int, "default": 100},
                                        explainer_out={"default": "/tmp/fda_bench_explainer"})
    opts: Dict[str, Any] = {}
    if args.steps is not None:
        opts["steps"] = args.steps
    parts = args.parts.split(",")
    out: Dict[str, Any] = {"threads": args.threads, "model": args.model, "options": opts}
    print(f"threads={args.threads}; images: {', '.join(images)}")
    if "time" in parts:
        print("\n| image | FDA s | IG-200 s | ratio | peak RSS MB | FDA growth MB |\n|---|---|---|---|---|---|")
        out["time"] = part_time(model, images, opts)
    if "difauc" in parts:
        print("\n| image | FDA | IG | Saliency |\n|---|---|---|---|")
        out["difauc"] = part_difauc(model, images, opts)
    if "sweep" in parts:
        print("\n| change | DifAUC | s/image |\n|---|---|---|")
        out["sweep"] = part_sweep(model, images, opts)
    if "amortised" in parts:
        print("\n| image | forward s | DifAUC |\n|---|---|---|")
        out["amortised"] = part_amortised(model, images, opts, args.train_steps, args.explainer_out)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
