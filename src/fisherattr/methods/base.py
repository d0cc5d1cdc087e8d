"""The method contract shared by every attribution method.

A method is built with the classifier and options, then called as
``attribute(images, target=None) -> Tensor[B, C, H, W]`` (``[B, 1, H, W]`` for
methods defined per pixel). Images are float tensors in [0, 1]; the classifier
owns its normalisation. Input checks, target resolution, device handling,
seeding and the copy of the caller's tensor live here, once.
"""
from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn

from ..batching import check_batch_size, gradient_batch_size, resolve_batch_size
from ..errors import InputError, UsageError

Target = Union[None, int, Sequence[int], torch.Tensor]


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU if it has none)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def check_images(images: torch.Tensor, channels: Optional[int] = 3, tol: float = 1e-4) -> None:
    """Raise :class:`InputError` unless ``images`` is a finite float ``[B,C,H,W]`` in [0,1]."""
    if not isinstance(images, torch.Tensor):
        raise InputError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4:
        raise InputError(f"images must have shape [B,C,H,W]; got rank {images.dim()} shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise InputError(f"images must be a float tensor in [0,1]; got dtype {images.dtype}")
    if images.shape[0] == 0 or images.shape[2] == 0 or images.shape[3] == 0:
        raise InputError(f"images must be non-empty; got shape {tuple(images.shape)}")
    if channels is not None and images.shape[1] != channels:
        raise InputError(f"images must have {channels} channels; got {images.shape[1]}")
    if not torch.isfinite(images).all():
        raise InputError("images contain NaN or infinite values")
    lo, hi = float(images.min()), float(images.max())
    if lo < -tol or hi > 1 + tol:
        raise InputError(f"images must be in [0,1] (pixel space); got values in [{lo:.3g}, {hi:.3g}]")


def resolve_target(logits: torch.Tensor, target: Target) -> torch.Tensor:
    """Turn ``target`` (None = top-1, int, sequence or [B] tensor) into a long ``[B]`` tensor."""
    b, k = logits.shape[0], logits.shape[1]
    if target is None:
        return logits.argmax(dim=1)
    if isinstance(target, bool):
        raise InputError(f"target must be an int class index, got {target!r}")
    if isinstance(target, str) or (isinstance(target, (list, tuple)) and any(isinstance(v, str) for v in target)):
        raise InputError(f"target must be class indices, got the name {target!r}; "
                         "turn a name into an index with model.class_index(name)")
    if isinstance(target, int):
        t = torch.full((b,), target, dtype=torch.long, device=logits.device)
    else:
        try:
            t = torch.as_tensor(target, device=logits.device)
        except (TypeError, ValueError, RuntimeError):
            raise InputError(f"target must be an int, a sequence of ints or a tensor, "
                             f"got {type(target).__name__}") from None
        if t.is_floating_point():
            raise InputError("target must hold integer class indices")
        t = t.long().reshape(-1)
        if t.numel() == 1 and b > 1:
            t = t.expand(b).clone()
        if t.numel() != b:
            raise InputError(f"target has {t.numel()} entries for a batch of {b} images")
    if (t < 0).any() or (t >= k).any():
        bad = t[(t < 0) | (t >= k)][0].item()
        raise InputError(f"target {bad} is outside the model's classes 0..{k - 1}")
    return t


def check_finite_options(method: str, options: Dict[str, Any]) -> None:
    """Raise :class:`UsageError` if an option is (or holds) a NaN or infinite number.

    Example:
        >>> check_finite_options("fda", {"beta": 0.1, "steps": 10})
        >>> check_finite_options("fda", {"beta": float("nan")})
        Traceback (most recent call last):
        ...
        fisherattr.errors.UsageError: method 'fda': option beta=nan is not a finite number
    """
    def finite(v: Any) -> bool:
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return True
        if isinstance(v, (list, tuple)):
            return all(finite(e) for e in v)
        if isinstance(v, torch.Tensor):
            return not v.is_floating_point() or bool(torch.isfinite(v).all())
        if isinstance(v, (int, float)) or hasattr(v, "__float__") and not isinstance(v, nn.Module):
            try:
                return math.isfinite(float(v))
            except (TypeError, ValueError, OverflowError):
                return True
        return True

    for key, value in options.items():
        if not finite(value):
            raise UsageError(f"method {method!r}: option {key}={value!r} is not a finite number")


#: Messages of torch errors raised when an input is smaller than a layer needs.
_SIZE_ERROR = re.compile(r"size|smaller|too small|padding|kernel|more than 1 value|shapes cannot be multiplied", re.I)


def minimum_input_size(model: nn.Module, channels: int, device: torch.device, start: int,
                       largest: int = 1024) -> Optional[int]:
    """The smallest square side (>= ``start``) the model runs on, by trying sizes; None if none up to ``largest``."""
    def runs(side: int) -> bool:
        try:
            with torch.no_grad():
                model(torch.zeros(1, channels, side, side, device=device))
        except RuntimeError:
            return False
        return True

    lo, hi = start - 1, max(start, 2)
    while not runs(hi):  # double until it runs; then bisect between the last failure and it
        lo, hi = hi, hi * 2
        if hi > largest:
            return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if runs(mid) else (mid, hi)
    return hi


def check_logits(out: torch.Tensor, batch: int) -> None:
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != batch:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InputError(f"the model must return logits of shape [B, classes] = [{batch}, K]; got {shape}")


class AttributionMethod(ABC):
    """Base class: validation, target, device and seed handling around ``_attribute``.

    Subclasses implement ``_attribute(images, target) -> Tensor`` where
    ``images`` is a private copy on the model's device and ``target`` a long
    ``[B]`` tensor. Randomness must come from :meth:`generator` (or
    :meth:`generators` for one stream per image, which makes batched results
    equal to single-image results).

    Example:
        >>> class Ones(AttributionMethod):
        ...     def _attribute(self, images, target):
        ...         return torch.ones_like(images)
    """

    method_name: str = "base"
    #: True when the method's map is defined per pixel ([B,1,H,W]).
    per_pixel: bool = False

    def __init__(self, model: nn.Module, *, seed: int = 0, internal_batch_size: Optional[int] = None,
                 progress: bool = False) -> None:
        if not isinstance(model, nn.Module):
            raise UsageError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        check_batch_size(internal_batch_size, "internal_batch_size")
        self.model = model
        self.seed = int(seed)
        # None: automatic, from the image size and device (fisherattr.batching): forward_batch
        # for forward-only calls, gradient_batch for forward+backward calls
        self.internal_batch_size = None if internal_batch_size is None else int(internal_batch_size)
        self.progress = bool(progress)

    # ------------------------------------------------------------------ public
    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    def options(self) -> dict:
        """Public options of this instance (for summaries)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and k != "model"
                and isinstance(v, (int, float, str, bool, type(None), list, tuple))}

    def attribute(self, images: torch.Tensor, target: Target = None) -> torch.Tensor:
        """Attribution for ``images`` ([B,3,H,W] in [0,1]) towards ``target`` (None = top-1)."""
        check_images(images, channels=getattr(self.model, "in_channels", 3))
        x = images.detach().to(self.device, dtype=torch.float32).clone().clamp_(0, 1)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                try:
                    logits = self.model(x)
                except RuntimeError as e:
                    raise self._size_error(x, e) from None
            check_logits(logits, x.shape[0])
            t = resolve_target(logits, target)
            out = self._attribute(x, t)
        finally:
            self.model.train(was_training)
        return out.detach()

    # --------------------------------------------------------------- helpers
    def _size_error(self, x: torch.Tensor, error: RuntimeError) -> BaseException:
        """An :class:`InputError` naming the minimum size when ``x`` is too small for the model, else ``error``."""
        if not _SIZE_ERROR.search(str(error)):
            return error
        side = minimum_input_size(self.model, x.shape[1], x.device, start=min(x.shape[2], x.shape[3]) + 1)
        if side is None:
            return error
        return InputError(f"images of {x.shape[2]}x{x.shape[3]} pixels are too small for this model; "
                          f"it needs at least {side}x{side}")

    def forward_batch(self, images: torch.Tensor) -> int:
        """Images per forward-only model call: ``internal_batch_size``, or automatic when None."""
        return resolve_batch_size(self.internal_batch_size, images, device=self.device)

    def gradient_batch(self, images: torch.Tensor) -> int:
        """Images (or path points) per forward+backward call: ``internal_batch_size``, or automatic when None."""
        if self.internal_batch_size is not None:
            return self.internal_batch_size
        return gradient_batch_size(images, device=self.device)

    def generator(self, device: Optional[torch.device] = None, offset: int = 0) -> torch.Generator:
        g = torch.Generator(device=device or self.device)
        g.manual_seed(self.seed + offset)
        return g

    def generators(self, n: int, device: Optional[torch.device] = None) -> List[torch.Generator]:
        """One identically seeded stream per image: image i of a batch sees what it would alone."""
        return [self.generator(device) for _ in range(n)]

    @abstractmethod
    def _attribute(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The method itself: ``images`` is a private copy on the model's device."""
