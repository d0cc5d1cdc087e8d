"""Development measurements for FDA / DiffIB on photos that are NOT the six reported samples.

The dev photos are the scikit-image photos ``train-explainer --data samples`` uses
(camera, coins, clock, ...; none is one of the six sample photos). Prints per photo
and on average: DifAUC (``inputiba`` preset), the held probability under fresh noise,
and the wall time as a ratio to Captum IG-200 timed on the same photo in this process.

Example:
    python benchmarks/tune_photos.py --method fda --photos camera,coins,clock -o fda.steps=60
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ig200_seconds  # noqa: E402
from tune_levels import held_probability, held_threshold, report  # noqa: E402

import fisherattr  # noqa: E402
from fisherattr.commands.explain import parse_options  # noqa: E402
from fisherattr.commands.train_explainer import dev_photo  # noqa: E402
from fisherattr.metrics.insertion_deletion import insertion_deletion  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="fda")
    ap.add_argument("--photos", default="camera,coins,clock,brick")
    ap.add_argument("--option", "-o", action="append", default=[])
    ap.add_argument("--no-ig", action="store_true", help="skip the IG-200 reference timing")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    model = fisherattr.load_classifier("efficientnet_lite0")
    opts = parse_options(args.option, [args.method]).get(args.method, {})
    method = fisherattr.get_method(args.method, model, **opts)
    rows = []
    for name in args.photos.split(","):
        x = dev_photo(name, 224)
        with torch.no_grad():
            target = int(model(x).argmax(1))
        t0 = time.perf_counter()
        a = method.attribute(x, target)
        sec = time.perf_counter() - t0
        ref = float("nan") if args.no_ig else ig200_seconds(model, x, target)
        d = float(insertion_deletion(model, x, a, target=target).difauc[0])
        p, need = held_probability(method, x, target), held_threshold(method, x, target)
        row = dict(photo=name, difauc=d, sec=sec, ratio=sec / ref, p=p, promised=need, held=float(p >= need - 0.05))
        rows.append(row)
        print(json.dumps(row), flush=True)
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in ("difauc", "sec", "ratio", "p", "held")}
    mean.update(method=args.method, options=opts, photos=args.photos)
    report(mean, args.json)


if __name__ == "__main__":
    main()
