"""``fisherattr train-denoiser``: train the noise-map denoiser (DiffIB / pixelwise FDA).

Example::

    fisherattr train-denoiser --data samples --out runs/denoiser        # ~15 min on 2 CPU cores
    fisherattr train-denoiser --data samples --out runs/denoiser --resume
"""
from __future__ import annotations

import argparse

NAME = "train-denoiser"
HELP = "Train the noise-map denoiser eps_hat(z, log-SNR map) on a folder of photos or the offline sample set."


#: The defaults of :class:`fisherattr.scores.noise_map.TrainConfig` (repeated here so that ``--help``
#: does not import torch; tests/test_cli_common.py checks they agree).
_DEFAULTS = {"size": 48, "steps": 2000, "batch": 12, "lr": 2e-3, "width": 24, "seed": 0}


def add_arguments(p: argparse.ArgumentParser) -> None:
    import types

    d = types.SimpleNamespace(**_DEFAULTS)
    p.add_argument("--data", default="samples",
                   help="a folder of images, or 'samples' (scikit-image photos disjoint from the explained ones)")
    p.add_argument("--out", required=True, help="output folder (model.safetensors, config.json, checkpoint.pt)")
    p.add_argument("--size", type=int, default=d.size, help=f"training crop side (default {d.size})")
    p.add_argument("--steps", type=int, default=d.steps, help=f"optimiser steps (default {d.steps})")
    p.add_argument("--batch", type=int, default=d.batch, help=f"crops per step (default {d.batch})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"Adam learning rate, cosine decay (default {d.lr})")
    p.add_argument("--width", type=int, default=d.width, help=f"U-Net base width (default {d.width})")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of crops, levels and noise (default 0)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..errors import UsageError
    from ..scores.noise_map import TrainConfig, load_training_photos, train_noise_map_denoiser

    if args.threads < 0:
        raise UsageError(f"--threads must be >= 0, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(size=args.size, steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed,
                      width=args.width)
    photos = load_training_photos(args.data)
    print(f"train-denoiser: {len(photos)} photos from {args.data!r}; {cfg.steps} steps of {cfg.batch} "
          f"crops {cfg.size}x{cfg.size}; log-SNR range {list(cfg.log_snr_range)}")
    train_noise_map_denoiser(photos, args.out, cfg, resume=args.resume,
                             progress=not getattr(args, "quiet", False), data_name=args.data, device=args.device)
    print(f"saved {args.out}/model.safetensors and {args.out}/config.json")
    return 0
