"""Dev experiment (round 6): nested constraints. Does averaging the maps solved at several keep_prob
values rank pixels better (DifAUC, `inputiba` preset) than the one map at the default?

Usage: python nested.py METHOD  -> rows in nested-rows.jsonl beside this script (8 dev photos of round 5).
Dev photos only; none is one of the six reported samples.
"""
import json
import sys
import time
from pathlib import Path

import torch

import fisherattr
from fisherattr.metrics.insertion_deletion import insertion_deletion
from references import PHOTOS, photo

HERE = Path(__file__).resolve().parent
KEEPS = [0.3, 0.6, 0.9]


def ranks(a: torch.Tensor) -> torch.Tensor:
    """Per-pixel rank in [0,1] of the channel-summed map (ties broken by order)."""
    s = a.sum(1, keepdim=True).flatten()
    r = torch.empty_like(s)
    r[s.argsort()] = torch.linspace(0, 1, s.numel())
    return r.view(1, 1, *a.shape[-2:])


def main() -> None:
    name = sys.argv[1]
    torch.set_num_threads(1)
    model = fisherattr.load_classifier()
    methods = {k: fisherattr.get_method(name, model, keep_prob=k) for k in KEEPS}
    for n in PHOTOS:
        x = photo(n)
        with torch.no_grad():
            target = int(model(x).argmax(1))
        maps, sec = {}, 0.0
        for k, m in methods.items():
            t0 = time.perf_counter()
            maps[f"k{k}"] = m.attribute(x, target).sum(1, keepdim=True)
            sec += time.perf_counter() - t0
        maps["sum"] = sum(maps[f"k{k}"] for k in KEEPS)
        maps["norm-sum"] = sum(maps[f"k{k}"] / maps[f"k{k}"].sum().clamp_min(1e-12) for k in KEEPS)
        maps["rank-mean"] = sum(ranks(maps[f"k{k}"]) for k in KEEPS) / len(KEEPS)
        maps["rank-mean-0.6-0.9"] = (ranks(maps["k0.6"]) + ranks(maps["k0.9"])) / 2
        for tag, a in maps.items():
            r = insertion_deletion(model, x, a, target=target)
            row = dict(method=name, variant=tag, photo=n, difauc=float(r.difauc[0]), ins=float(r.insertion[0]),
                       dele=float(r.deletion[0]), sec_all_three=sec)
            print(json.dumps(row), flush=True)
            with open(HERE / "nested-rows.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
