"""The noise-map denoiser: a small fully convolutional U-Net ``eps_hat(z, lam_map)``.

It predicts the noise in ``z = sqrt(sigmoid(lam))*x + sqrt(sigmoid(-lam))*eps``
(``x`` in diffusion space [-1, 1]) from ``z`` and a **per-feature** log-SNR map
``lam`` ([B,C,H,W]; one level per image, [B], is broadcast). This is the score
model behind pixelwise integration (METHODS.md 1.6) for DiffIB and FDA.

Pre-conditioning (an eps-space version of Karras et al. 2022): with
``a2 = sigmoid(lam)``, ``s2 = sigmoid(-lam)`` and a data variance ``v``,

    eps_hat = c_skip * z + c_out * F(c_in * z, lam)
    c_skip = s / (a2 v + s2),  c_out = sqrt(a2 v / (a2 v + s2)),  c_in = 1 / sqrt(a2 v + s2)

``c_skip * z`` is the exact MMSE predictor for zero-mean white Gaussian data of
variance ``v`` and ``c_out`` is its error's standard deviation, so the network
``F`` (whose last layer starts at zero) only learns a unit-variance correction,
and an untrained model already is that Gaussian denoiser.

Training (:func:`train_noise_map_denoiser`): random crops (random scale and
horizontal flips) from a set of photos, per-feature levels from
:func:`sample_log_snr_maps` covering ``[-10, 10]``, loss ``mean (eps_hat - eps)^2``,
Adam with cosine decay, an exponential moving average of the weights (the saved
model), resumable checkpoints. Saved as ``model.safetensors`` + ``config.json``.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UsageError
from ..layout import channels_last_if_large
from .base import ScoreModel

#: The log-SNR range the training levels cover (and the model is valid on).
DEFAULT_LOG_SNR_RANGE: Tuple[float, float] = (-10.0, 10.0)

#: scikit-image photos used by ``--data samples``: disjoint from the photos the
#: default jobs explain (``fisherattr.data.DEFAULT_SAMPLES``; note that
#: scikit-image's ``cat`` *is* ``chelsea`` and is therefore left out).
TRAINING_PHOTOS: Tuple[str, ...] = (
    "camera", "coins", "hubble_deep_field", "immunohistochemistry", "retina", "colorwheel",
    "brick", "grass", "gravel", "moon", "page", "text", "clock", "cell", "logo",
)


# --------------------------------------------------------------------------- network
class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.bias)
        with torch.no_grad():
            self.conv2.weight.mul_(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.silu(self.conv1(F.silu(x))))
        return self.skip(x) + h


class NoiseMapUNet(nn.Module):
    """The raw network ``F(z_in, level_features) -> [B,C,H,W]`` (two downsamplings).

    The level map enters at every scale (average-pooled), so the network sees the
    local noise level wherever it looks. Input sizes need not be multiples of 4
    (reflect padding is added and removed).

    Example:
        >>> net = NoiseMapUNet(width=8)
        >>> net(torch.randn(2, 3, 10, 13), torch.zeros(2, 3, 10, 13)).shape
        torch.Size([2, 3, 10, 13])
    """

    def __init__(self, channels: int = 3, width: int = 32) -> None:
        super().__init__()
        c, w = channels, width
        self.channels, self.width = c, w
        self.inp = nn.Conv2d(2 * c, w, 3, padding=1)
        self.enc0 = _ResBlock(w, w)
        self.enc1 = _ResBlock(w + c, 2 * w)
        self.mid = _ResBlock(2 * w + c, 4 * w)
        self.mid2 = _ResBlock(4 * w, 4 * w)
        self.up1 = nn.Conv2d(4 * w, 2 * w, 3, padding=1)
        self.dec1 = _ResBlock(4 * w + c, 2 * w)
        self.up0 = nn.Conv2d(2 * w, w, 3, padding=1)
        self.dec0 = _ResBlock(2 * w + c, w)
        self.out = nn.Conv2d(w, c, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, z: torch.Tensor, lev: torch.Tensor) -> torch.Tensor:
        h0, w0 = z.shape[-2:]
        ph, pw = (-h0) % 4, (-w0) % 4
        if ph or pw:
            mode = "reflect" if min(h0, w0) > max(ph, pw) else "replicate"
            z = F.pad(z, (0, pw, 0, ph), mode=mode)
            lev = F.pad(lev, (0, pw, 0, ph), mode="replicate")
        lev1 = F.avg_pool2d(lev, 2)
        lev2 = F.avg_pool2d(lev1, 2)
        e0 = self.enc0(self.inp(torch.cat([z, lev], 1)))
        e1 = self.enc1(torch.cat([F.avg_pool2d(e0, 2), lev1], 1))
        m = self.mid2(self.mid(torch.cat([F.avg_pool2d(e1, 2), lev2], 1)))
        d1 = self.up1(F.interpolate(m, scale_factor=2.0, mode="nearest"))
        d1 = self.dec1(torch.cat([d1, e1, lev1], 1))
        d0 = self.up0(F.interpolate(d1, scale_factor=2.0, mode="nearest"))
        d0 = self.dec0(torch.cat([d0, e0, lev], 1))
        out = self.out(F.silu(d0))
        return out[..., :h0, :w0]


# --------------------------------------------------------------------------- score model
@dataclass
class DenoiserConfig:
    """Architecture and pre-conditioning of a :class:`NoiseMapDenoiser` (saved as JSON)."""

    channels: int = 3
    width: int = 24
    data_var: float = 0.25
    log_snr_range: Tuple[float, float] = DEFAULT_LOG_SNR_RANGE
    training: Dict = field(default_factory=dict)


def _broadcast_levels(log_snr: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    lam = torch.as_tensor(log_snr, dtype=z.dtype, device=z.device)
    if lam.dim() == 0:
        lam = lam.expand(z.shape[0])
    if lam.dim() == 1:
        if lam.shape[0] != z.shape[0]:
            raise UsageError(f"log_snr has {lam.shape[0]} levels for a batch of {z.shape[0]}")
        lam = lam.view(-1, 1, 1, 1)
    if lam.dim() != 4:
        raise UsageError(f"log_snr must be a scalar, [B] or [B,C,H,W]; got shape {tuple(lam.shape)}")
    return lam.expand_as(z)


class NoiseMapDenoiser(ScoreModel):
    """Eps-predictor conditioned on a per-feature log-SNR map (any image size).

    Example:
        >>> den = NoiseMapDenoiser(DenoiserConfig(width=8))
        >>> z, lam = torch.randn(2, 3, 16, 16), torch.full((2, 3, 16, 16), 0.5)
        >>> den.predict_eps(z, lam).shape, den.predict_eps(z, torch.tensor([0.0, 1.0])).shape
        (torch.Size([2, 3, 16, 16]), torch.Size([2, 3, 16, 16]))
    """

    accepts_level_map = True

    def __init__(self, config: Optional[DenoiserConfig] = None) -> None:
        super().__init__()
        self.config = config or DenoiserConfig()
        self.channels = int(self.config.channels)
        self.resolution = None
        self.log_snr_range = tuple(float(v) for v in self.config.log_snr_range)
        self.net = NoiseMapUNet(self.channels, int(self.config.width))

    def coefficients(self, lam: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(c_skip, c_out, c_in)`` of the pre-conditioning at log-SNR ``lam``."""
        v = float(self.config.data_var)
        a2, s2 = torch.sigmoid(lam), torch.sigmoid(-lam)
        var_z = a2 * v + s2
        return s2.sqrt() / var_z, (a2 * v / var_z).sqrt(), var_z.rsqrt()

    def predict_eps(self, z: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
        lam = _broadcast_levels(log_snr, z)
        c_skip, c_out, c_in = self.coefficients(lam)
        lo, hi = self.log_snr_range
        lev = (lam.clamp(lo, hi) - 0.5 * (lo + hi)) / (0.5 * (hi - lo))  # in [-1, 1]
        # same values; channels-last is about 1.5x faster for large images on the CPU (fisherattr.layout)
        eps_net = self.net(channels_last_if_large(c_in * z), channels_last_if_large(lev)).contiguous()
        return c_skip * z + c_out * eps_net

    # ---------------------------------------------------------------- persistence
    def save(self, directory: Union[str, os.PathLike]) -> Path:
        """Write ``model.safetensors`` and ``config.json`` into ``directory``."""
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, str(d / "model.safetensors"))
        cfg = asdict(self.config)
        cfg["log_snr_range"] = list(self.log_snr_range)
        cfg["format"] = "fisherattr-noise-map-denoiser/1"
        (d / "config.json").write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
        return d


def load_noise_map_denoiser(path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu"
                            ) -> NoiseMapDenoiser:
    """Load a denoiser saved by :meth:`NoiseMapDenoiser.save` (a directory or its ``model.safetensors``).

    Example:
        >>> den = load_noise_map_denoiser(default_denoiser_path())  # doctest: +SKIP
    """
    from safetensors.torch import load_file

    p = Path(path)
    d = p.parent if p.is_file() else p
    weights, cfg_file = d / "model.safetensors", d / "config.json"
    if not weights.exists() or not cfg_file.exists():
        raise UsageError(f"{d}: not a noise-map denoiser (needs model.safetensors and config.json)")
    raw = json.loads(cfg_file.read_text(encoding="utf-8"))
    cfg = DenoiserConfig(channels=int(raw["channels"]), width=int(raw["width"]), data_var=float(raw["data_var"]),
                         log_snr_range=tuple(raw["log_snr_range"]), training=raw.get("training", {}))
    den = NoiseMapDenoiser(cfg)
    den.net.load_state_dict(load_file(str(weights)))
    return den.to(device).eval().requires_grad_(False)


def default_denoiser_path() -> Optional[Path]:
    """The shipped photo denoiser (``fisherattr/assets/denoiser_photos``), or None if absent."""
    d = Path(__file__).resolve().parent.parent / "assets" / "denoiser_photos"
    return d if (d / "model.safetensors").exists() and (d / "config.json").exists() else None


# --------------------------------------------------------------------------- training data
def load_training_photos(source: str = "samples", max_side: int = 320) -> List[torch.Tensor]:
    """Photos for training, each ``[C,H,W]`` in diffusion space [-1, 1].

    ``source`` is ``"samples"`` (:data:`TRAINING_PHOTOS`, scikit-image, offline;
    grayscale replicated to RGB) or a folder searched recursively for images.
    Each photo is resized (antialiased) so its shorter side is at most ``max_side``,
    close to the scale of the 224-pixel crops explained later.
    """
    from PIL import Image

    from ..data.images import array_to_pil, open_image_file, to_rgb_array

    pils: List[Image.Image] = []
    if source == "samples":
        import skimage.data as skd

        for name in TRAINING_PHOTOS:
            try:
                arr = getattr(skd, name)()
            except Exception:  # noqa: BLE001  (a photo missing from this install is skipped)
                continue
            pils.append(array_to_pil(arr[0] if isinstance(arr, tuple) else arr))
    else:
        root = Path(source)
        if not root.is_dir():
            raise UsageError(f"--data {source}: not a folder (or 'samples')")
        exts = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
        # skip the evaluation layout's sidecar masks (<stem>.mask.png, FSS-1000's N.png beside N.jpg)
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in exts and not p.name.endswith(".mask.png"))
        photos = {p.with_suffix("") for p in files if p.suffix.lower() != ".png"}
        for f in files:
            if f.suffix.lower() == ".png" and f.with_suffix("") in photos:
                continue
            pils.append(open_image_file(f))
    if not pils:
        raise UsageError(f"--data {source}: no readable images")
    out = []
    for im in pils:
        im = Image.fromarray(to_rgb_array(im))
        scale = max_side / min(im.size)
        if scale < 1:
            im = im.resize((max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale))), Image.LANCZOS)
        a = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0
        out.append(a * 2 - 1)
    return out


def random_crops(photos: Sequence[torch.Tensor], n: int, size: int, generator: torch.Generator,
                 min_scale: float = 0.4) -> torch.Tensor:
    """``n`` random crops ``[n,C,size,size]``: random photo, scale in [min_scale, 1] (log-uniform), h-flip."""
    out = []
    for _ in range(n):
        img = photos[int(torch.randint(len(photos), (1,), generator=generator))]
        h, w = img.shape[-2:]
        u = float(torch.rand((), generator=generator))
        scale = math.exp(math.log(min_scale) * u)  # crop side = size / scale (zooming out)
        side = min(h, w, max(size, round(size / scale)))
        top = int(torch.randint(h - side + 1, (1,), generator=generator))
        left = int(torch.randint(w - side + 1, (1,), generator=generator))
        crop = img[:, top:top + side, left:left + side].unsqueeze(0)
        if side != size:
            crop = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False,
                                 antialias=side > size)
        if float(torch.rand((), generator=generator)) < 0.5:
            crop = crop.flip(-1)
        out.append(crop)
    return torch.cat(out).clamp_(-1, 1)


def sample_log_snr_maps(n: int, channels: int, size: int, generator: torch.Generator,
                        log_snr_range: Tuple[float, float] = DEFAULT_LOG_SNR_RANGE) -> torch.Tensor:
    """Per-feature training levels ``[n,C,size,size]`` covering ``log_snr_range``.

    Mixture, per sample: 1/3 one uniform level for the whole image (what grid
    integration asks for); 1/3 a smooth random field (a 2x2..8x8 Gaussian grid,
    bicubically upsampled) mapped onto a random sub-interval ``[l1, l2]`` of the
    range, with small per-channel offsets (what the optimised DiffIB/FDA maps
    look like, and their scaled copies in pixelwise quadrature); 1/3 the same
    field with independent per-feature jitter of up to +-3 added (sharp edges).
    Marginally every level in the range is drawn (uniform endpoints), so the
    model is trained over the whole range the integrals use, not just around 0.
    """
    lo, hi = log_snr_range
    kinds = torch.randint(3, (n,), generator=generator)
    maps = []
    for k in kinds.tolist():
        ends = lo + (hi - lo) * torch.rand(2, generator=generator)
        if k == 0:
            m = torch.full((1, channels, size, size), float(ends[0]))
        else:
            g = int(torch.randint(2, 9, (1,), generator=generator))
            field_ = torch.randn(1, 1, g, g, generator=generator)
            field_ = F.interpolate(field_, size=(size, size), mode="bicubic", align_corners=False)
            field_ = field_ + 0.2 * torch.randn(1, channels, 1, 1, generator=generator)
            fmin, fmax = field_.amin(), field_.amax()
            field_ = (field_ - fmin) / (fmax - fmin + 1e-8)
            l1, l2 = float(ends.min()), float(ends.max())
            m = l1 + (l2 - l1) * field_
            if k == 2:
                m = m + 3.0 * (2 * torch.rand(1, channels, size, size, generator=generator) - 1)
        maps.append(m)
    return torch.cat(maps).clamp_(lo, hi)


def noise_images(x: torch.Tensor, lam: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """``z = sqrt(sigmoid(lam)) * x + sqrt(sigmoid(-lam)) * eps`` (VP, per feature)."""
    return torch.sigmoid(lam).sqrt() * x + torch.sigmoid(-lam).sqrt() * eps


# --------------------------------------------------------------------------- training
@dataclass
class TrainConfig:
    """Options of :func:`train_noise_map_denoiser` (defaults: the shipped photo denoiser)."""

    size: int = 48
    steps: int = 2000
    batch: int = 12
    lr: float = 2e-3
    seed: int = 0
    width: int = 24
    ema: float = 0.995
    checkpoint_every: int = 200
    log_snr_range: Tuple[float, float] = DEFAULT_LOG_SNR_RANGE


def _checkpoint_path(out_dir: Path) -> Path:
    return out_dir / "checkpoint.pt"


def train_noise_map_denoiser(photos: Sequence[torch.Tensor], out_dir: Union[str, os.PathLike],
                             config: Optional[TrainConfig] = None, resume: bool = False,
                             progress: bool = True, data_name: str = "", device: str = "cpu",
                             stop_after: Optional[int] = None) -> NoiseMapDenoiser:
    """Train a :class:`NoiseMapDenoiser` on ``photos`` and save it (EMA weights) to ``out_dir``.

    A checkpoint (``checkpoint.pt``: weights, EMA, optimiser, step, RNG state;
    plain tensors, loaded with ``weights_only=True``) is written every
    ``checkpoint_every`` steps; ``resume=True`` continues from it and gives the
    same result as an uninterrupted run. ``stop_after`` ends this run after that
    many total steps (checkpoint written, nothing else saved; for time-sliced runs).

    Example:
        >>> photos = [torch.rand(3, 40, 40) * 2 - 1]
        >>> den = train_noise_map_denoiser(photos, "/tmp/den", TrainConfig(size=16, steps=2, batch=2, width=4),
        ...                                progress=False)  # doctest: +SKIP
    """
    from ..progress import progress_bar

    cfg = config or TrainConfig()
    for name in ("size", "steps", "batch", "width", "checkpoint_every"):
        if int(getattr(cfg, name)) < 1:
            raise UsageError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if not cfg.lr > 0:
        raise UsageError(f"lr must be > 0, got {cfg.lr}")
    if not photos:
        raise UsageError("no training photos")
    small = min(min(p.shape[-2:]) for p in photos)
    if small < cfg.size:
        raise UsageError(f"size {cfg.size} is larger than the smallest training photo side ({small})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    channels = int(photos[0].shape[0])
    den_cfg = DenoiserConfig(channels=channels, width=cfg.width, log_snr_range=tuple(cfg.log_snr_range))
    with torch.random.fork_rng(devices=[]):  # seeded initialisation, global RNG left untouched
        torch.manual_seed(cfg.seed)
        model = NoiseMapDenoiser(den_cfg).to(device)
    ema = NoiseMapDenoiser(den_cfg).to(device)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    start, losses = 0, []
    ckpt = _checkpoint_path(out)
    if resume and ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        if int(state["width"]) != cfg.width or int(state["seed"]) != cfg.seed:
            raise UsageError(f"--resume: checkpoint in {out} was made with other options (width/seed)")
        model.net.load_state_dict(state["net"])
        ema.net.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["rng"])
        start, losses = int(state["step"]), [float(v) for v in state["losses"].tolist()]

    def lr_at(step: int) -> float:
        warm = min(1.0, (step + 1) / 100)
        return cfg.lr * warm * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))

    def save_checkpoint(step: int) -> None:
        tmp = ckpt.with_suffix(".tmp")
        torch.save({"net": model.net.state_dict(), "ema": ema.net.state_dict(), "opt": opt.state_dict(),
                    "rng": gen.get_state(), "step": step, "width": cfg.width, "seed": cfg.seed,
                    "losses": torch.tensor(losses, dtype=torch.float64)}, tmp)
        os.replace(tmp, ckpt)

    t0 = time.perf_counter()
    model.train()
    # a bar on a terminal, a line every 10 s in a log
    bar = progress_bar(cfg.steps, "train-denoiser", unit="step", enabled=progress, min_interval=10, initial=start)
    for step in range(start, cfg.steps):
        x = random_crops(photos, cfg.batch, cfg.size, gen).to(device)
        lam = sample_log_snr_maps(cfg.batch, channels, cfg.size, gen, cfg.log_snr_range).to(device)
        eps = torch.randn(x.shape, generator=gen).to(device)
        loss = F.mse_loss(model.predict_eps(noise_images(x, lam, eps), lam), eps)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            decay = min(cfg.ema, (1 + step) / (10 + step))
            for pe, pm in zip(ema.net.parameters(), model.net.parameters()):
                pe.lerp_(pm, 1 - decay)
        losses.append(float(loss.detach()))
        if progress:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        bar.update(1)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps or step + 1 == stop_after:
            save_checkpoint(step + 1)
        if stop_after is not None and step + 1 >= stop_after and step + 1 < cfg.steps:
            bar.close()
            return ema.eval()
    bar.close()
    ema.config.training = {
        "data": data_name, "size": cfg.size, "steps": cfg.steps, "batch": cfg.batch, "lr": cfg.lr,
        "seed": cfg.seed, "ema": cfg.ema, "final_loss_mean50": float(np.mean(losses[-50:])) if losses else None,
        "seconds_this_run": round(time.perf_counter() - t0, 1),
        "level_distribution": "sample_log_snr_maps: 1/3 uniform per image, 1/3 smooth field on a random "
                              "sub-interval, 1/3 smooth field + per-feature jitter; range "
                              f"[{cfg.log_snr_range[0]}, {cfg.log_snr_range[1]}]",
    }
    ema.save(out)
    return ema.eval().requires_grad_(False)


@torch.no_grad()
def eps_mmse_curve(model: ScoreModel, images: torch.Tensor, levels: Iterable[float], draws: int = 4,
                   seed: int = 0) -> torch.Tensor:
    """Mean eps-MSE of ``model`` on ``images`` ([B,C,H,W] in [-1,1]) at each uniform log-SNR level.

    Example:
        >>> den = NoiseMapDenoiser(DenoiserConfig(width=4))
        >>> eps_mmse_curve(den, torch.zeros(1, 3, 8, 8), [-5.0, 5.0], draws=1).shape
        torch.Size([2])
    """
    gen = torch.Generator().manual_seed(seed)
    out = []
    for lev in levels:
        err = 0.0
        for _ in range(draws):
            eps = torch.randn(images.shape, generator=gen).to(images.device)
            lam = torch.full((images.shape[0],), float(lev), device=images.device)
            z = noise_images(images, lam.view(-1, 1, 1, 1), eps)
            err += float(((model.predict_eps(z, lam) - eps) ** 2).mean())
        out.append(err / draws)
    return torch.tensor(out)
