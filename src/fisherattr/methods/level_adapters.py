"""Level adapters: what maps an image to one raw noise-level value per feature.

- :class:`AdapterUNet`: a small fully convolutional U-Net; ``copies=B`` holds B
  independent parameter sets (grouped convolutions) so that per-image
  optimisation of a batch equals optimising each image alone; the last layer is
  zero-initialised with a bias ``init_value`` (the strategy's "almost no noise").
  The amortised mode trains one shared copy (:mod:`.level_training`).
- :class:`DirectLevels`: per-feature raw values as free parameters (the default
  of per-image optimisation).
- :func:`smooth_raw`: Gaussian smoothing of the raw values before the level map,
  so neighbouring features share their level (the ``smooth_sigma`` option).
- :func:`save_adapter` / :func:`load_adapter`: safetensors + a JSON config.

Example:
    >>> import torch
    >>> net = AdapterUNet(width=4, copies=2, init_value=-5.0)
    >>> net(torch.rand(2, 3, 10, 12)).shape
    torch.Size([2, 3, 10, 12])
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UsageError
from .paths.blur import gaussian_blur

ADAPTER_CONFIG = "adapter.json"
ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTERS = ("unet", "direct")

class _GroupConv(nn.Module):
    """``copies`` independent convolutions; ``copies == 1`` is a plain conv on any batch."""

    def __init__(self, copies: int, cin: int, cout: int, k: int, generator: torch.Generator,
                 zero: bool = False, bias: float = 0.0) -> None:
        super().__init__()
        self.copies, self.cin, self.cout, self.pad = copies, cin, cout, k // 2
        w = torch.zeros(cout, cin, k, k)
        if not zero:
            bound = math.sqrt(6.0 / (cin * k * k))  # He-uniform
            w = (torch.rand(cout, cin, k, k, generator=generator) * 2 - 1) * bound
        self.weight = nn.Parameter(w[None].repeat(copies, 1, 1, 1, 1))
        self.bias = nn.Parameter(torch.full((copies, cout), float(bias)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.copies == 1:
            return F.conv2d(x, self.weight[0], self.bias[0], padding=self.pad)
        n, _, h, w = x.shape
        if n != self.copies:
            raise UsageError(f"this adapter holds {self.copies} per-image copies but got {n} images")
        y = F.conv2d(x.reshape(1, n * self.cin, h, w), self.weight.reshape(-1, self.cin, *self.weight.shape[-2:]),
                     self.bias.reshape(-1), padding=self.pad, groups=n)
        return y.reshape(n, self.cout, h, w)


class AdapterUNet(nn.Module):
    """Small fully convolutional U-Net: [0,1] image -> one raw level per feature.

    One 3x3 convolution at full resolution, two down-sampling stages (average
    pooling, two 3x3 convolutions each), nearest up-sampling with skip
    connections, SiLU (about 0.2 GMAC at 224x224 with width 8); the last
    1x1 convolution is zero-initialised with bias ``init_value`` so that every
    feature starts at the strategy's "almost no noise" level. Any image size works.

    Args:
        in_channels, out_channels: image channels in, level channels out.
        width: channels of the first stage (then 2x).
        copies: independent parameter sets (one per image for per-image optimisation).
        init_value: the output at initialisation.
        seed: initialisation seed (all copies start identical).

    Example:
        >>> AdapterUNet(width=4)(torch.rand(1, 3, 16, 16)).unique()
        tensor([-5.], grad_fn=<Unique2Backward0>)
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, width: int = 8, copies: int = 1,
                 init_value: float = -5.0, seed: int = 0) -> None:
        super().__init__()
        if width < 1 or copies < 1:
            raise UsageError(f"adapter width and copies must be >= 1, got {width}, {copies}")
        self.config = {"in_channels": in_channels, "out_channels": out_channels, "width": width,
                       "init_value": float(init_value)}
        g = torch.Generator().manual_seed(int(seed))
        w1, w2 = width, 2 * width

        def conv(cin: int, cout: int, k: int = 3, **kw: Any) -> _GroupConv:
            return _GroupConv(copies, cin, cout, k, g, **kw)

        self.enc1 = nn.ModuleList([conv(in_channels, w1)])
        self.enc2 = nn.ModuleList([conv(w1, w2), conv(w2, w2)])
        self.mid = nn.ModuleList([conv(w2, w2), conv(w2, w2)])
        self.dec2 = conv(2 * w2, w2)
        self.dec1 = conv(w2 + w1, w1)
        self.out = conv(w1, out_channels, 1, zero=True, bias=init_value)

    @staticmethod
    def _run(layers: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        for layer in layers:
            x = F.silu(layer(x))
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images * 2 - 1
        e1 = self._run(self.enc1, x)
        e2 = self._run(self.enc2, F.avg_pool2d(e1, 2, ceil_mode=True))
        m = self._run(self.mid, F.avg_pool2d(e2, 2, ceil_mode=True))
        d2 = F.silu(self.dec2(torch.cat([e2, F.interpolate(m, size=e2.shape[-2:], mode="nearest")], 1)))
        d1 = F.silu(self.dec1(torch.cat([e1, F.interpolate(d2, size=e1.shape[-2:], mode="nearest")], 1)))
        return self.out(d1)


class DirectLevels(nn.Module):
    """Per-feature raw levels as free parameters (the ``adapter="direct"`` option).

    ``share_channels=True`` holds one value per pixel (``[B,1,H,W]``), broadcast to
    every channel of the image.

    Example:
        >>> DirectLevels((2, 3, 4, 4), init_value=-5.0)(torch.rand(2, 3, 4, 4)).shape
        torch.Size([2, 3, 4, 4])
        >>> DirectLevels((2, 3, 4, 4), share_channels=True).raw.shape
        torch.Size([2, 1, 4, 4])
    """

    def __init__(self, shape: Tuple[int, ...], init_value: float = -5.0, share_channels: bool = False) -> None:
        super().__init__()
        self.shape = tuple(shape)
        own = (shape[0], 1, *shape[2:]) if share_channels else tuple(shape)
        self.raw = nn.Parameter(torch.full(own, float(init_value)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.raw.expand(self.shape)


def make_adapter(kind: str, images: torch.Tensor, init_value: float, width: int = 8, seed: int = 0,
                 copies: Optional[int] = None, share_channels: bool = False) -> nn.Module:
    """Per-image adapter for ``images`` (``copies`` defaults to the batch size)."""
    b, c = images.shape[:2]
    if kind == "unet":
        return AdapterUNet(c, 1 if share_channels else c, width, copies or b, init_value, seed).to(images.device)
    if kind == "direct":
        return DirectLevels(tuple(images.shape), init_value, share_channels).to(images.device)
    raise UsageError(f"adapter must be one of {', '.join(ADAPTERS)}, got {kind!r}")


HIDDEN_LR_FACTOR = 0.1


def param_groups(net: nn.Module, lr: float) -> List[Dict[str, Any]]:
    """Adam groups: the U-Net's hidden layers learn ``HIDDEN_LR_FACTOR`` times slower than its output layer.

    With one learning rate every hidden weight moves by ``lr`` in the same direction
    as soon as the zero-initialised output layer lets gradient through, and the
    output jumps by many units in one step; the levels then saturate at full noise
    where the sigmoid has no gradient left.
    """
    if not isinstance(net, AdapterUNet):
        return [{"params": list(net.parameters()), "lr": lr}]
    out = list(net.out.parameters())
    ids = {id(p) for p in out}
    hidden = [p for p in net.parameters() if id(p) not in ids]
    return [{"params": out, "lr": lr}, {"params": hidden, "lr": lr * HIDDEN_LR_FACTOR}]


def smooth_raw(raw: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian smoothing (std ``sigma`` pixels) of raw levels ``[B,C,H,W]``, per channel.

    Normalised convolution: the blur of the values divided by the blur of ones, so
    that features near the border average only over features inside the image
    (no pull towards zero at the edges). ``sigma <= 0`` returns ``raw`` itself.

    Example:
        >>> r = torch.full((1, 1, 8, 8), -5.0)
        >>> torch.allclose(smooth_raw(r, 1.5), r)   # a constant stays constant, edges included
        True
    """
    if sigma <= 0:
        return raw
    ones = torch.ones((1, 1, *raw.shape[-2:]), dtype=raw.dtype, device=raw.device)
    return gaussian_blur(raw, float(sigma)) / gaussian_blur(ones, float(sigma))


def save_adapter(adapter: AdapterUNet, folder: str | os.PathLike, meta: Optional[Dict[str, Any]] = None) -> Path:
    """Write ``adapter.safetensors`` and ``adapter.json`` (architecture + ``meta``) into ``folder``."""
    from safetensors.torch import save_file

    if not isinstance(adapter, AdapterUNet) or adapter.out.copies != 1:
        raise UsageError("only a shared (copies=1) AdapterUNet can be saved")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in adapter.state_dict().items()}
    save_file(state, str(folder / ADAPTER_WEIGHTS))
    (folder / ADAPTER_CONFIG).write_text(json.dumps({"kind": "unet", **adapter.config, **(meta or {})}, indent=2))
    return folder


def load_adapter(folder: str | os.PathLike, device: torch.device | str = "cpu") -> Tuple[AdapterUNet, Dict[str, Any]]:
    """Load an adapter saved by :func:`save_adapter`; returns (adapter, config)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"explainer folder {folder} does not exist")
    if not (folder / ADAPTER_CONFIG).exists():
        raise UsageError(f"explainer folder {folder} has no {ADAPTER_CONFIG} (train one with fisherattr train-explainer)")
    if not (folder / ADAPTER_WEIGHTS).exists():
        raise UsageError(f"explainer folder {folder} has no {ADAPTER_WEIGHTS}")
    cfg = json.loads((folder / ADAPTER_CONFIG).read_text())
    net = AdapterUNet(cfg["in_channels"], cfg["out_channels"], cfg["width"], 1, cfg["init_value"])
    net.config["smooth_sigma"] = float(cfg.get("smooth_sigma", 0.0))
    net.load_state_dict(load_file(str(folder / ADAPTER_WEIGHTS)))
    return net.to(device).eval(), cfg


__all__ = ["ADAPTERS", "AdapterUNet", "DirectLevels", "HIDDEN_LR_FACTOR", "load_adapter", "make_adapter",
           "param_groups", "save_adapter", "smooth_raw"]
