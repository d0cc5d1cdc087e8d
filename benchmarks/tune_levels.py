"""Development measurements for FDA / DiffIB on the synthetic world (tuning only; never on reported images).

Dev images are synthetic test indices >= 1000 (``--start 1000``) or the ``val`` split; the
reported images are test 0-499. For each method configuration it prints, over the images:
EHR, pointing game, AUC of the levels against the object mask (1 = the object kept clean),
the share of images whose target keeps probability >= keep_prob - 0.05 under fresh noise
(64 draws), all-zero maps, the penalty change over the last 10% of steps and seconds per image.

Example:
    python benchmarks/tune_levels.py --start 1000 --n 16 --method fda -o keep_prob=0.8 -o smooth_sigma=1
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

import fisherattr
from fisherattr.commands.explain import parse_value
from fisherattr.data import synthetic
from fisherattr.metrics.localisation import ehr, pointing_game, roc_auc
from fisherattr.methods.registry import accepted_options, method_class


def held_probability(method, image: torch.Tensor, target: int, draws: int = 64, seed: int = 123) -> float:
    """Mean probability of ``target`` under ``draws`` fresh perturbations at the method's last levels."""
    strategy = method.make_strategy(image)
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn((draws, *image.shape[1:]), generator=g)
    with torch.no_grad():
        xp = strategy.perturb(image * 2 - 1, method.last_levels, eps)
        p = torch.softmax(method.model(((xp + 1) / 2).clamp(0, 1)), 1)[:, target]
    return float(p.mean())


def held_threshold(method, image: torch.Tensor, target: int) -> float:
    """The probability the method promised to keep: ``keep_prob`` (times the clean probability with
    ``constraint="relative"``); 0.5 with a fixed beta."""
    if method.keep_prob is None:
        return 0.5
    if getattr(method, "constraint", "absolute") != "relative":
        return float(method.keep_prob)
    with torch.no_grad():
        return float(method.keep_prob) * float(torch.softmax(method.model(image), 1)[0, target])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="synthetic-robust")
    ap.add_argument("--method", default="fda")
    ap.add_argument("--start", type=int, default=1000)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--split", default="test")
    ap.add_argument("--option", "-o", action="append", default=[])
    ap.add_argument("--json", default=None, help="append one JSON line with the summary to this file")
    ap.add_argument("--rows", default=None, help="append one JSON line per image to this file")
    args = ap.parse_args()
    if args.split == "test" and args.start < 1000:
        print("note: test indices < 1000 are the reported images: measure there, never tune there")
    model = fisherattr.load_classifier(args.model)
    params = accepted_options(method_class(args.method))
    opts = {}
    for item in args.option:
        k, v = item.split("=", 1)
        opts[k] = parse_value(v, params[k].default, f"{args.method}.{k}")
    method = fisherattr.get_method(args.method, model, **opts)
    rows = []
    for s in synthetic.load_samples(args.n, size=64, split=args.split, start=args.start):
        x = s.image
        target = int(model(x).argmax(1))
        t0 = time.perf_counter()
        a = method.attribute(x, target)
        sec = time.perf_counter() - t0
        mask = torch.as_tensor(s.mask)[None]
        heat = a.abs().sum(1)
        lv = method.last_levels.mean(1)[0].flatten().numpy()
        noise = lv if args.method.startswith("fda") else -lv  # higher = more noise
        pen = method.last_history.get("penalty", [])
        k = max(1, len(pen) // 10)
        conv = (pen[-k - 1] - pen[-1]) / abs(pen[-k - 1]) if len(pen) > k and pen[-k - 1] else float("nan")
        kp = held_threshold(method, x, target)
        p = held_probability(method, x, target)
        rows.append(dict(ehr=float(ehr(a, mask)[0]) if float(heat.max()) > 0 else float("nan"),
                         pointing=float(pointing_game(a, mask)[0]),
                         level_auc=roc_auc(-noise, mask.flatten().numpy()),
                         held=float(p >= kp - 0.05), p=p, zero=float(float(heat.max()) == 0), conv=conv, sec=sec,
                         correct=float(target == s.label)))
        if args.rows:
            hist = method.last_history
            detail = dict(image=s.name, promised=kp, verified=bool((hist.get("verified") or [True])[0]),
                          feasible=bool((hist.get("feasible") or [True])[0]),
                          beta_final=float((hist.get("beta_final") or [float("nan")])[0]), **rows[-1],
                          method=args.method, options=opts)
            with open(args.rows, "a") as f:
                f.write(json.dumps(detail) + "\n")

    summary = {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}
    summary.update(method=args.method, model=args.model, start=args.start, n=args.n, split=args.split, options=opts)
    report(summary, args.json)


def report(summary: dict, path: str | None) -> None:
    """Print the summary as one JSON line and append it to ``path`` (if given)."""
    print(json.dumps(summary))
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
