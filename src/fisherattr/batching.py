"""How many images to send through a classifier in one forward-only call.

On a CPU, a forward pass of a convolutional classifier is limited by memory
traffic, not arithmetic: once a batch's activations no longer fit the caches,
each image gets slower. Measured on this project's 2-core machine with
EfficientNet-Lite0 at 224 px (one thread): 55-65 ms per image in batches of
1-4, 90 ms in batches of 8, 112 ms at 16 and 187 ms at 64; the 64 px synthetic
CNN runs at ~3.3 ms per image whatever the batch. So on a CPU the batch holds
at most :data:`PIXEL_BUDGET` pixels (four 224x224 images); on a GPU, where
large batches pay, it is the cap.

Gradient passes (forward + backward) are much less sensitive (198-233 ms per
image for batches of 2-16 in the same test), so gradient methods keep their
fixed ``internal_batch_size``.

Example:
    >>> import torch
    >>> forward_batch_size(torch.zeros(1, 3, 224, 224)), forward_batch_size(torch.zeros(1, 3, 64, 64))
    (4, 32)
"""
from __future__ import annotations

from typing import Optional

import torch

#: Pixels per forward-only batch on a CPU (four 224x224 images).
PIXEL_BUDGET = 4 * 224 * 224


def forward_batch_size(images: torch.Tensor, cap: int = 64, device: Optional[torch.device] = None) -> int:
    """Images per forward-only call for images shaped like ``images`` (``[..., H, W]``).

    On CUDA (or any non-CPU device): ``cap``. On a CPU: the largest power of two
    ``<= cap`` whose batch holds at most :data:`PIXEL_BUDGET` pixels, at least 1.
    """
    dev = torch.device(device) if device is not None else images.device
    cap = max(1, int(cap))
    if dev.type != "cpu":
        return cap
    pixels = int(images.shape[-2]) * int(images.shape[-1])
    n = 1
    while n * 2 <= cap and n * 2 * pixels <= PIXEL_BUDGET:
        n *= 2
    return n


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
