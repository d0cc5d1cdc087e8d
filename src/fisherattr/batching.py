"""How many images to send through a classifier in one forward-only call.

On a CPU, a forward pass of a convolutional classifier is limited by memory
traffic, not arithmetic: once a batch's activations no longer fit the caches,
each image gets slower. Measured on this project's 2-core machine with
EfficientNet-Lite0 at 224 px (one thread): 55-65 ms per image in batches of
1-4, 90 ms in batches of 8, 112 ms at 16 and 187 ms at 64; the 64 px synthetic
CNN runs at ~3.3 ms per image whatever the batch. So on a CPU the batch holds
at most :data:`PIXEL_BUDGET` pixels (four 224x224 images); on a GPU, where
large batches pay, it is the cap.

Gradient passes (forward + backward) care less about speed but hold every
activation for the backward pass, so their batch sets the peak memory: Captum
IG-200 on one 224 px photo peaked at 1.88 GB (whole process) with 16 images per
call, 1.12 GB with 8 and 0.80 GB with 4 (2026-12-01), and a batch of 8 was also
faster than 16 (forward + input gradient 66 against 100 ms per image,
`benchmarks/bench_batch_size.py`). So gradient
methods left at ``internal_batch_size=None`` send at most
:data:`GRADIENT_PIXEL_BUDGET` pixels (eight 224x224 images) per call on a CPU,
and 16 images elsewhere.

Example:
    >>> import torch
    >>> forward_batch_size(torch.zeros(1, 3, 224, 224)), forward_batch_size(torch.zeros(1, 3, 64, 64))
    (4, 32)
    >>> gradient_batch_size(torch.zeros(1, 3, 224, 224)), gradient_batch_size(torch.zeros(1, 3, 64, 64))
    (8, 16)
"""
from __future__ import annotations

from typing import Optional

import torch

#: Pixels per forward-only batch on a CPU (four 224x224 images).
PIXEL_BUDGET = 4 * 224 * 224
#: Pixels per forward+backward batch on a CPU (eight 224x224 images).
GRADIENT_PIXEL_BUDGET = 8 * 224 * 224
#: Images per forward+backward batch on other devices, and the most on a CPU.
GRADIENT_CAP = 16


def _batch_within(images: torch.Tensor, budget: int, cap: int, device: Optional[torch.device]) -> int:
    """``cap`` off the CPU; on a CPU the largest power of two ``<= cap`` holding at most ``budget`` pixels (>= 1)."""
    dev = torch.device(device) if device is not None else images.device
    cap = max(1, int(cap))
    if dev.type != "cpu":
        return cap
    pixels = int(images.shape[-2]) * int(images.shape[-1])
    n = 1
    while n * 2 <= cap and n * 2 * pixels <= budget:
        n *= 2
    return n


def forward_batch_size(images: torch.Tensor, cap: int = 64, device: Optional[torch.device] = None) -> int:
    """Images per forward-only call for images shaped like ``images`` (``[..., H, W]``).

    On CUDA (or any non-CPU device): ``cap``. On a CPU: the largest power of two
    ``<= cap`` whose batch holds at most :data:`PIXEL_BUDGET` pixels, at least 1.
    """
    return _batch_within(images, PIXEL_BUDGET, cap, device)


def gradient_batch_size(images: torch.Tensor, cap: int = GRADIENT_CAP, device: Optional[torch.device] = None) -> int:
    """Images (or path points) per forward+backward call for images shaped like ``images``.

    On CUDA (or any non-CPU device): ``cap``. On a CPU: the largest power of two
    ``<= cap`` whose batch holds at most :data:`GRADIENT_PIXEL_BUDGET` pixels, at least 1.
    """
    return _batch_within(images, GRADIENT_PIXEL_BUDGET, cap, device)


def check_batch_size(batch_size: Optional[int], name: str = "batch_size") -> None:
    """``None`` (automatic) or a positive int; else a UsageError naming ``name``."""
    from .errors import UsageError

    if batch_size is not None and int(batch_size) < 1:
        raise UsageError(f"{name} must be >= 1, got {batch_size}")


def resolve_batch_size(batch_size: Optional[int], images: torch.Tensor, cap: int = 64,
                       device: Optional[torch.device] = None) -> int:
    """``batch_size`` if given (validated by the caller), else :func:`forward_batch_size`."""
    if batch_size is None:
        return forward_batch_size(images, cap, device)
    return int(batch_size)
