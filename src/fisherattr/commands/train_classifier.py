"""``fisherattr train-classifier --data synthetic --out DIR``: train the small CNN on the synthetic world.

The training set is a fixed block of generated images (``--train-images``, from
the ``train`` split) held in memory as uint8 and augmented with the eight
flips/quarter-turns (every class is invariant under them), and optionally
(``--noise-augment P``) with the perturbation FDA and DiffIB apply: a fraction P
of each batch is pushed through the VP SDE with a random, smooth map of
per-pixel times (see :func:`vp_noise_augment`). A classifier trained without it
loses its prediction when the *background* alone gets mild noise, which leaves
those explainers nowhere to put noise (docs/synthetic.md). The reported
accuracy is on ``--test-images`` images of the disjoint ``test`` split. The
model is saved with :func:`fisherattr.models.save_classifier` and loads back
with ``fisherattr.load_classifier(DIR)``.

Example (the shipped model, see ``assets/synthetic/README.md``)::

    fisherattr train-classifier --data synthetic --out src/fisherattr/assets/synthetic/classifier --seed 0
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Optional, Tuple

from ..errors import UsageError
from ..progress import progress_bar, progress_iter

if TYPE_CHECKING:  # imported where used, so that `fisherattr --help` starts fast
    import torch

NAME = "train-classifier"
HELP = "Train the small CNN on the procedural synthetic world and save it (safetensors + classifier.json)."
BUILDER = "fisherattr.models.small_cnn:build_small_cnn"


@dataclass
class TrainConfig:
    """Options of :func:`train_synthetic_classifier` (defaults = the shipped model)."""

    steps: int = 800
    batch: int = 48
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    size: int = 64
    classes: int = 8
    train_images: int = 16000
    test_images: int = 512
    data_seed: int = 0
    noise_augment: float = 0.0
    noise_max_t: float = 1.0

    def validate(self) -> None:
        for name in ("steps", "batch", "size", "train_images", "test_images"):
            if int(getattr(self, name)) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.size < 16:
            raise UsageError(f"--size must be >= 16, got {self.size}")
        if not 0.0 <= self.noise_augment <= 1.0:
            raise UsageError(f"--noise-augment must be in [0, 1], got {self.noise_augment}")
        if not 0.0 < self.noise_max_t <= 1.0:
            raise UsageError(f"--noise-max-t must be in (0, 1], got {self.noise_max_t}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UsageError(f"--lr must be a positive number, got {self.lr}")
        from ..data.synthetic import MAX_CLASSES, MIN_CLASSES

        if not MIN_CLASSES <= self.classes <= MAX_CLASSES:
            raise UsageError(f"--classes must be in {MIN_CLASSES}..{MAX_CLASSES}, got {self.classes}")


def _generate_uint8(n: int, cfg: TrainConfig, split: str, progress: bool) -> Tuple["torch.Tensor", "torch.Tensor"]:
    import torch

    from ..data.synthetic import generate

    imgs = torch.empty(n, 3, cfg.size, cfg.size, dtype=torch.uint8)
    labels = torch.empty(n, dtype=torch.long)
    for i in progress_iter(range(n), desc=f"generating {split}", unit="image", enabled=progress, min_interval=10,
                           leave=False):
        img, label, _ = generate(i, cfg.size, cfg.data_seed, split, cfg.classes)
        imgs[i] = torch.from_numpy(img).permute(2, 0, 1)
        labels[i] = label
    return imgs, labels


def _dihedral(x: "torch.Tensor", g: "torch.Generator") -> "torch.Tensor":
    """Apply one random element of the 8 flips/quarter-turns per image."""
    import torch

    k = torch.randint(0, 8, (x.shape[0],), generator=g)
    out = x.clone()
    for e in range(8):
        sel = k == e
        if sel.any():
            y = torch.rot90(x[sel], e % 4, dims=(-2, -1))
            out[sel] = y.flip(-1) if e >= 4 else y
    return out


def vp_noise_augment(x: "torch.Tensor", fraction: float, max_t: float, g: "torch.Generator",
                     cells: int = 4) -> "torch.Tensor":
    """Perturb a random ``fraction`` of the images ``[B,3,H,W]`` (in [0,1]) through the VP SDE.

    Each chosen image gets per-pixel times ``t = T * field`` with ``T ~ U(0, max_t)``
    and ``field`` either 1 everywhere (half of them) or a smooth random field in
    [0, 1] (uniform values on a ``cells x cells`` grid, bilinearly upsampled), so
    the classifier sees both uniform and spatially varying noise, as the level
    maps of FDA/DiffIB produce. ``x' = alpha(t) x + sigma(t) eps`` in diffusion
    space ``2x - 1``, clamped back to [0, 1]. No mask is used.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.full((4, 3, 8, 8), 0.5)
        >>> bool((vp_noise_augment(x, 0.0, 1.0, g) == x).all())
        True
    """
    import torch

    with torch.no_grad():
        return _vp_noise_augment(x, fraction, max_t, g, cells)


def _vp_noise_augment(x: "torch.Tensor", fraction: float, max_t: float, g: "torch.Generator",
                      cells: int) -> "torch.Tensor":
    import torch
    import torch.nn.functional as F

    from ..sde import VPSchedule

    b = x.shape[0]
    chosen = torch.rand(b, generator=g) < fraction
    if not chosen.any():
        return x
    xs = x[chosen]
    n = xs.shape[0]
    field = F.interpolate(torch.rand(n, 1, cells, cells, generator=g), size=xs.shape[-2:], mode="bilinear",
                          align_corners=False)
    uniform = torch.rand(n, generator=g) < 0.5
    field[uniform] = 1.0
    t = (torch.rand(n, 1, 1, 1, generator=g) * max_t * field).clamp_min(1e-4).expand_as(xs)
    eps = torch.randn(xs.shape, generator=g)
    out = x.clone()
    out[chosen] = ((VPSchedule().perturb(xs * 2 - 1, t, eps) + 1) / 2).clamp(0, 1)
    return out


def accuracy(model: "torch.nn.Module", images: "torch.Tensor", labels: "torch.Tensor", batch: int = 256) -> float:
    """Top-1 accuracy of a [0,1]-input classifier on uint8 or float images."""
    import torch

    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = images[i:i + batch]
            x = x.float() / 255.0 if x.dtype == torch.uint8 else x
            correct += int((model(x).argmax(1) == labels[i:i + batch]).sum())
    return correct / max(1, len(images))


def train_synthetic_classifier(cfg: TrainConfig, out: Optional[str | Path] = None,
                               progress: bool = True) -> Tuple["torch.nn.Module", Dict[str, float]]:
    """Train :func:`~fisherattr.models.small_cnn.build_small_cnn` on the synthetic world.

    Returns the :class:`~fisherattr.models.Classifier` (eval mode) and stats
    (``test_accuracy``, ``train_seconds``); saves it to ``out`` if given.

    Example:
        >>> clf, stats = train_synthetic_classifier(TrainConfig(steps=2, batch=4, train_images=8,
        ...                                                     test_images=8), progress=False)
        >>> sorted(stats)
        ['final_loss', 'parameters', 'test_accuracy', 'train_seconds']
    """
    import torch
    import torch.nn.functional as F

    from ..data.synthetic import MEAN, STD, class_names
    from ..models import Classifier, save_classifier
    from ..models.small_cnn import build_small_cnn

    cfg.validate()
    torch.manual_seed(cfg.seed)  # the network's initialisation
    g = torch.Generator().manual_seed(cfg.seed)
    net = build_small_cnn(classes=cfg.classes)
    model = Classifier(net, MEAN, STD, class_names(cfg.classes), (cfg.size, cfg.size), name="synthetic-small-cnn")
    train_x, train_y = _generate_uint8(cfg.train_images, cfg, "train", progress)
    test_x, test_y = _generate_uint8(cfg.test_images, cfg, "test", progress)

    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.15)
    t0 = time.perf_counter()
    loss_ema = float("nan")
    bar = progress_bar(cfg.steps, desc="training", unit="step", enabled=progress, min_interval=10)
    for step in range(cfg.steps):
        model.train()
        idx = torch.randint(0, cfg.train_images, (cfg.batch,), generator=g)
        x = _dihedral(train_x[idx], g).float().div_(255.0)
        if cfg.noise_augment > 0:
            x = vp_noise_augment(x, cfg.noise_augment, cfg.noise_max_t, g)
        loss = F.cross_entropy(model(x), train_y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        lv = float(loss.detach())
        loss_ema = lv if math.isnan(loss_ema) else 0.95 * loss_ema + 0.05 * lv
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss_ema:.3f}")
        bar.update(1)
    bar.close()
    seconds = time.perf_counter() - t0
    model.eval()
    stats = {"test_accuracy": accuracy(model, test_x, test_y), "train_seconds": round(seconds, 1),
             "final_loss": round(loss_ema, 4), "parameters": sum(p.numel() for p in net.parameters())}
    if out is not None:
        save_classifier(model, out, builder=BUILDER, builder_kwargs={"classes": cfg.classes},
                        extra={"training": {"data": "synthetic", **asdict(cfg)}, "stats": stats})
    return model, stats


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    p.add_argument("--data", required=True, help="training data; only 'synthetic' (the procedural world) is supported")
    p.add_argument("--out", required=True, help="output folder (classifier.json + model.safetensors)")
    p.add_argument("--steps", type=int, default=d.steps, help=f"optimiser steps (default {d.steps})")
    p.add_argument("--batch", type=int, default=d.batch, help=f"batch size (default {d.batch})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate, one-cycle AdamW (default {d.lr})")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of initialisation and batch order (default 0)")
    p.add_argument("--data-seed", type=int, default=d.data_seed, help="seed of the generated world (default 0)")
    p.add_argument("--size", type=int, default=d.size, help=f"image size (default {d.size})")
    p.add_argument("--classes", type=int, default=d.classes, help=f"number of classes, 6..10 (default {d.classes})")
    p.add_argument("--train-images", type=int, default=d.train_images,
                   help=f"generated training images kept in memory (default {d.train_images})")
    p.add_argument("--test-images", type=int, default=d.test_images,
                   help=f"held-out test images for the reported accuracy (default {d.test_images})")
    p.add_argument("--noise-augment", type=float, default=d.noise_augment, metavar="P",
                   help="fraction of each batch perturbed through the VP SDE with random smooth per-pixel times "
                        "(robustness to the perturbations of FDA/DiffIB; default 0 = clean training)")
    p.add_argument("--noise-max-t", type=float, default=d.noise_max_t,
                   help=f"largest VP time of that augmentation, in (0, 1] (default {d.noise_max_t})")


def run(args: argparse.Namespace) -> int:
    if args.data != "synthetic":
        raise UsageError(f"--data must be 'synthetic', got {args.data!r}")
    cfg = TrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed, size=args.size,
                      classes=args.classes, train_images=args.train_images, test_images=args.test_images,
                      data_seed=args.data_seed, noise_augment=args.noise_augment, noise_max_t=args.noise_max_t)
    _, stats = train_synthetic_classifier(cfg, args.out, progress=not getattr(args, "quiet", False))
    print(json.dumps({"out": str(args.out), **stats}))
    return 0
