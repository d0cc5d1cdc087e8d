"""Shared benchmark helpers: the reference run every benchmark prints ratios against.

The reference is Captum's Integrated Gradients with 200 steps (black baseline)
on the same image, in the same process, after one untimed warm-up call, with the
internal batch the library's gradient methods use by default
(:func:`fisherattr.batching.gradient_batch_size`: 8 at 224 px on a CPU, 16 on a
GPU). It is the fastest setting measured on this CPU: with EfficientNet-Lite0 at
224 and one thread, internal batch 50 took 37-50 s against 17 s for batch 16
(2026-11-23), and forward + input gradient costs 66 ms per image at batch 8
against 100 ms at 16 (2026-12-01, `bench_batch_size.py`, load 3.8). Until
2026-12-01 the reference used batch 16; ratios measured before then are against
that slower reference and flatter the method by up to about 1.3-1.5x.
"""
from __future__ import annotations

import argparse
import time
from typing import Callable, Dict, List, Tuple

import torch

import fisherattr
from fisherattr.data import DEFAULT_SAMPLES


def timed(fn: Callable[[], object]) -> Tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


_warm: set = set()


def reference_batch(x: torch.Tensor) -> int:
    """The reference's internal batch for images like ``x`` (the library's automatic gradient batch)."""
    from fisherattr.batching import gradient_batch_size

    return gradient_batch_size(x)


def ig200(model: torch.nn.Module, x: torch.Tensor, target: int) -> Tuple[float, torch.Tensor]:
    """Captum IG-200 on ``x``: (wall seconds, map); warmed up once per model and image size."""
    from captum.attr import IntegratedGradients

    run = lambda: IntegratedGradients(model).attribute(  # noqa: E731
        x, target=target, n_steps=200, internal_batch_size=reference_batch(x))
    key = (id(model), tuple(x.shape))
    if key not in _warm:
        run()
        _warm.add(key)
    return timed(run)


def ig200_seconds(model: torch.nn.Module, x: torch.Tensor, target: int) -> float:
    """Wall time of Captum IG-200 on ``x`` (the reference)."""
    return ig200(model, x, target)[0]


def default_setup(argv: List[str] | None = None, **extra: Dict) -> Tuple[argparse.Namespace, torch.nn.Module, Dict[str, torch.Tensor]]:
    """Parse ``--images``/``--model``/``--threads`` and load the model and images."""
    p = argparse.ArgumentParser()
    p.add_argument("--images", default=",".join(DEFAULT_SAMPLES))
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--threads", type=int, default=2)
    for k, v in extra.items():
        p.add_argument(f"--{k}", **v)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = fisherattr.load_classifier(args.model)
    images = {n: fisherattr.load_image(n) for n in args.images.split(",")}
    return args, model, images
