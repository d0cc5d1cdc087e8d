"""Dev experiment (round 6, scratch): does a deletion game help FDA's DifAUC on the dev photos?

Deletion game: the least noise (FDA's VP perturbation, per-pixel time t) that makes the target's
probability fall; per pixel the time it needs is the map. Fixed weight, direct smoothed logits,
100 Adam steps, 2 draws per step. Scored alone and summed (each over its own total) with FDA's
default (preservation) map. Not part of the package. Usage: python deletion_game.py
Rows -> deletion-game-rows.jsonl beside this script. Dev photos only.
"""
import json
import time
from pathlib import Path

import torch

import fisherattr
from fisherattr.methods.level_adapters import smooth_raw
from fisherattr.metrics.insertion_deletion import insertion_deletion
from references import PHOTOS, photo

HERE = Path(__file__).resolve().parent
LAM = 2.0


def deletion_map(fda, model, x: torch.Tensor, target: int) -> torch.Tensor:
    strategy = fda.make_strategy(x)
    x_diff = x * 2 - 1
    raw = torch.full((1, 1, *x.shape[-2:]), -4.0, requires_grad=True)
    opt = torch.optim.Adam([raw], lr=0.3)
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        t = fda.t_min + (1 - fda.t_min) * torch.sigmoid(smooth_raw(raw, 1.0)).expand_as(x)
        eps = torch.randn((2, *x.shape[1:]), generator=g)
        xp = strategy.perturb(x_diff.expand(2, -1, -1, -1), t.expand(2, -1, -1, -1), eps)
        p = torch.softmax(model(((xp + 1) / 2).clamp(0, 1)), 1)[:, target].mean()
        loss = p + LAM * t.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return (fda.t_min + (1 - fda.t_min) * torch.sigmoid(smooth_raw(raw, 1.0)))


def main() -> None:
    torch.set_num_threads(1)
    model = fisherattr.load_classifier()
    fda = fisherattr.get_method("fda", model)
    for n in PHOTOS:
        x = photo(n)
        with torch.no_grad():
            target = int(model(x).argmax(1))
        t0 = time.perf_counter()
        keep = fda.attribute(x, target).sum(1, keepdim=True)
        dele = deletion_map(fda, model, x, target)
        sec = time.perf_counter() - t0
        maps = {"keep": keep, "delete": dele,
                "keep+delete": keep / keep.sum().clamp_min(1e-12) + dele / dele.sum().clamp_min(1e-12)}
        for tag, a in maps.items():
            r = insertion_deletion(model, x, a, target=target)
            row = dict(variant=tag, photo=n, difauc=float(r.difauc[0]), ins=float(r.insertion[0]),
                       dele=float(r.deletion[0]), sec=sec, lam=LAM)
            print(json.dumps(row), flush=True)
            with open(HERE / "deletion-game-rows.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
