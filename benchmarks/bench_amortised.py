"""Amortised FDA / DiffIB: explanation time and DifAUC of a trained adapter on the sample photos.

Train first (dev photos only: ``--data samples`` is the scikit-image photos that are not the six samples):
    fisherattr train-explainer --method fda --data samples --out runs/fda-explainer --steps 300
Then:
    python benchmarks/bench_amortised.py --method fda --explainer runs/fda-explainer
It prints, per sample photo, seconds per explanation (after one warm-up call), DifAUC
(``inputiba``), and the same for the per-image default for comparison (``--per-image``).
"""
from __future__ import annotations

import argparse
import json
import time

import torch

import fisherattr
from fisherattr.data.images import DEFAULT_SAMPLES
from fisherattr.metrics.insertion_deletion import insertion_deletion


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="fda")
    ap.add_argument("--explainer", required=True)
    ap.add_argument("--per-image", action="store_true", help="also run the per-image default on each photo")
    ap.add_argument("--images", default=",".join(DEFAULT_SAMPLES))
    args = ap.parse_args()
    model = fisherattr.load_classifier()
    amortised = fisherattr.get_method(args.method, model, mode="amortised", explainer=args.explainer)
    per_image = fisherattr.get_method(args.method, model) if args.per_image else None
    rows = []
    for i, name in enumerate(args.images.split(",")):
        x = fisherattr.load_image(name)
        with torch.no_grad():
            target = int(model(x).argmax(1))
        if i == 0:
            amortised.attribute(x, target)  # warm-up
        t0 = time.perf_counter()
        a = amortised.attribute(x, target)
        row = dict(photo=name, sec=time.perf_counter() - t0,
                   difauc=float(insertion_deletion(model, x, a, target=target).difauc[0]))
        if per_image is not None:
            t0 = time.perf_counter()
            b = per_image.attribute(x, target)
            row.update(per_image_sec=time.perf_counter() - t0,
                       per_image_difauc=float(insertion_deletion(model, x, b, target=target).difauc[0]))
        rows.append(row)
        print(json.dumps(row), flush=True)
    keys = [k for k in rows[0] if k != "photo"]
    print(json.dumps({"mean": {k: sum(r[k] for r in rows) / len(rows) for k in keys}, "method": args.method}))


if __name__ == "__main__":
    main()
