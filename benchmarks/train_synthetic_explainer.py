"""Train an amortised FDA / DiffIB explainer on the synthetic world's ``train`` split.

The synthetic world has what the papers assume (a classifier trained on it, exact object
masks) and, unlike the ten dev photos, thousands of training images. Train here, then
measure on dev test images (indices >= 1000) with ``tune_levels.py``:

    python benchmarks/train_synthetic_explainer.py --method fda --out runs/fda-synth --n 2000 --steps 2000
    python benchmarks/tune_levels.py --method fda --start 1000 --n 100 -o mode=amortised -o explainer=runs/fda-synth
"""
from __future__ import annotations

import argparse
import json
import time

import torch

import fisherattr
from fisherattr.data import synthetic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="fda")
    ap.add_argument("--model", default="synthetic-robust")
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=2000, help="training images (train split, from index 0)")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--keep-prob", type=float, default=None, help="training constraint (default: the method's)")
    ap.add_argument("--dual-lr", type=float, default=None,
                    help="step of log beta per visit of a training image (default: the method's dual_lr)")
    args = ap.parse_args()
    model = fisherattr.load_classifier(args.model)
    method = fisherattr.get_method(args.method, model,
                                   **({} if args.dual_lr is None else {"dual_lr": args.dual_lr}))
    images = torch.cat([s.image for s in synthetic.load_samples(args.n, size=64, split="train")])
    t0 = time.perf_counter()
    folder, hist = method.train_explainer(images, args.out, steps=args.steps, batch=args.batch, lr=args.lr,
                                          keep_prob=args.keep_prob)
    k = max(1, args.steps // 10)
    print(json.dumps(dict(method=args.method, out=str(folder), n=args.n, steps=args.steps, batch=args.batch,
                          lr=args.lr, dual_lr=method.dual_lr, keep_prob=args.keep_prob,
                          sec=time.perf_counter() - t0,
                          beta_final_median=sorted(hist["beta_final"])[len(hist["beta_final"]) // 2],
                          ce_last_tenth=sum(hist["ce"][-k:]) / k, penalty_last_tenth=sum(hist["penalty"][-k:]) / k,
                          penalty_first_tenth=sum(hist["penalty"][:k]) / k)))


if __name__ == "__main__":
    main()
