"""Memory layout of image batches: when channels-last is worth it (one rule for the whole package).

On the CPU, convolutions over large images run faster in channels-last layout; small
images run as fast or slower. The values are the same either way (up to float rounding).

Example:
    >>> import torch
    >>> use_channels_last("auto", torch.zeros(1, 3, 224, 224)), use_channels_last("auto", torch.zeros(1, 3, 64, 64))
    (True, False)
"""
from __future__ import annotations

import torch

from .errors import UsageError

MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
#: ``memory_format="auto"`` picks channels-last on the CPU for images at least this large (pixels per side)
CHANNELS_LAST_MIN_SIDE = 128


def use_channels_last(memory_format: str, images: torch.Tensor) -> bool:
    """Whether a network should get ``images`` in channels-last layout (``memory_format`` one of
    :data:`MEMORY_FORMATS`).

    ``"auto"``: on the CPU for images of at least :data:`CHANNELS_LAST_MIN_SIDE` pixels a side.
    Measured on the 2-core CPU (2 threads): EfficientNet-Lite0 at 224 px, forward + input
    gradient, 49 -> 32 ms per image (batch 2); the shipped noise-map denoiser at 224 px,
    forward, about 1.5x faster; the 64 px synthetic CNNs 3.4 -> 4.3 ms and 4.0 -> 4.0 ms
    (slower or equal, hence the size rule). Other devices keep their layout under ``"auto"``
    (not measured).
    """
    check_memory_format(memory_format)
    if memory_format != "auto":
        return memory_format == "channels_last"
    return images.device.type == "cpu" and images.dim() == 4 and min(images.shape[-2:]) >= CHANNELS_LAST_MIN_SIDE


def check_memory_format(memory_format: str) -> None:
    """UsageError unless ``memory_format`` is one of :data:`MEMORY_FORMATS`."""
    if memory_format not in MEMORY_FORMATS:
        raise UsageError(f"memory_format must be one of {', '.join(MEMORY_FORMATS)}, got {memory_format!r}")


def channels_last_if_large(x: torch.Tensor) -> torch.Tensor:
    """``x`` in channels-last layout when ``use_channels_last("auto", x)``, else unchanged."""
    return x.contiguous(memory_format=torch.channels_last) if use_channels_last("auto", x) else x


__all__ = ["CHANNELS_LAST_MIN_SIDE", "MEMORY_FORMATS", "channels_last_if_large", "check_memory_format",
           "use_channels_last"]

