"""Small helpers shared by the Captum-backed baselines.

- :func:`quiet_captum` silences Captum's routine notices (hooks being set,
  ``requires_grad`` switched on, internal batch size adjusted) so that a run's
  output stays readable; real warnings still come through.
- :func:`seeded_global_rng` runs a block under a fixed seed for the parts of
  Captum that draw from the *global* torch RNG (NoiseTunnel, LIME,
  KernelSHAP), and restores the caller's RNG state afterwards, so that the
  caller sees no change and a method is deterministic under its ``seed``.
- :func:`baseline_image` turns the ``baseline`` option into a tensor.
- :func:`image_chunks` splits a batch for memory-bounded loops.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Iterator, Tuple

import torch

from ..errors import UsageError
from ..models import normalized_zero

#: Values of the ``baseline`` option shared by IG, DeepLIFT, occlusion, LIME and KernelSHAP.
BASELINES = ("black", "mean")

_ROUTINE = (
    r"Input Tensor \d+ did not already require gradients",
    r"Setting forward, backward hooks and attributes on non-linear",
    r"Setting backward hooks on ReLU activations",
    r"Internal batch size cannot be less than the number of input examples",
    r"Using a non-full backward hook when the forward contains multiple autograd Nodes",
)


@contextlib.contextmanager
def quiet_captum() -> Iterator[None]:
    """Hide Captum's routine notices inside the block (other warnings pass through).

    Example:
        >>> with quiet_captum():
        ...     pass
    """
    with warnings.catch_warnings():
        for pattern in _ROUTINE:
            warnings.filterwarnings("ignore", message=f".*{pattern}")
        yield


@contextlib.contextmanager
def seeded_global_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the global torch RNG (CPU, and ``device`` if CUDA) inside the block; restore it after.

    Example:
        >>> before = torch.random.get_rng_state()
        >>> with seeded_global_rng(3, torch.device("cpu")):
        ...     a = torch.rand(2)
        >>> torch.equal(before, torch.random.get_rng_state())
        True
    """
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.random.default_generator.manual_seed(seed)
        if devices:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)  # this device only: the one fork_rng restores
        yield


def check_baseline(value: str) -> str:
    """Validate the ``baseline`` option (``"black"`` or ``"mean"``)."""
    key = str(value).strip().lower()
    if key not in BASELINES:
        raise UsageError(f"baseline must be one of {', '.join(BASELINES)}; got {value!r}")
    return key


def baseline_image(model: torch.nn.Module, images: torch.Tensor, kind: str) -> torch.Tensor:
    """The reference image in [0,1] space: black (zeros) or the model's mean colour."""
    if kind == "mean":
        return normalized_zero(model, images)
    return torch.zeros_like(images)


def image_chunks(images: torch.Tensor, target: torch.Tensor, size: int) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """Consecutive ``(images, target)`` slices of at most ``size`` images."""
    for i in range(0, images.shape[0], size):
        yield images[i:i + size], target[i:i + size]


def positive_int(name: str, value: object, minimum: int = 1) -> int:
    """``int(value)`` if it is an integer >= ``minimum``, else :class:`UsageError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int,)) and not (
            isinstance(value, float) and float(value).is_integer()):
        raise UsageError(f"{name} must be an integer >= {minimum}; got {value!r}")
    if int(value) < minimum:
        raise UsageError(f"{name} must be >= {minimum}; got {value!r}")
    return int(value)


def positive_float(name: str, value: object, allow_zero: bool = False) -> float:
    """``float(value)`` if it is a finite number > 0 (or >= 0), else :class:`UsageError`."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a number; got {value!r}") from None
    if not (v == v and abs(v) != float("inf")) or v < 0 or (v == 0 and not allow_zero):
        raise UsageError(f"{name} must be {'>= 0' if allow_zero else '> 0'}; got {value!r}")
    return v
