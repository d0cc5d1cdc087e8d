"""Train a small diffusers ``UNet2DModel`` VP model (eps prediction, DDPM schedule) on the synthetic world.

The network is a plain convolutional U-Net (``DownBlock2D``/``UpBlock2D`` only, no
attention), so it is trained on random ``crop x crop`` patches of the generated
images (4x cheaper at the default 32 of 64) and applies unchanged to full
images of any size divisible by ``2**(levels-1)``. Images live in diffusion space
``2*x - 1``. The schedule is diffusers' ``DDPMScheduler`` with 1000 linear betas
1e-4..0.02 (= continuous VP with b_min 0.1, b_max 20, METHODS.md 1.1). The
result is saved in the standard ``DDPMPipeline`` layout (``model_index.json``,
``unet/``, ``scheduler/``), loadable offline with
``UNet2DModel.from_pretrained(path, subfolder="unet")``,
``DDPMScheduler.from_pretrained(path, subfolder="scheduler")`` or
``DDPMPipeline.from_pretrained(path)``.

Example:
    >>> unet, sched, stats = train_diffusers_vp(VPTrainConfig(steps=1, batch=2, train_images=4,
    ...                                                       widths=(8, 16), eval_images=2), progress=False)
    >>> unet.config.sample_size, sched.config.num_train_timesteps
    (64, 1000)
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..errors import UsageError


@dataclass
class VPTrainConfig:
    """Options of :func:`train_diffusers_vp` (defaults = the shipped model)."""

    steps: int = 800
    batch: int = 16
    lr: float = 2e-3
    seed: int = 0
    size: int = 64
    crop: int = 32
    classes: int = 8
    widths: Sequence[int] = (16, 32, 64)
    layers_per_block: int = 1
    train_images: int = 4000
    eval_images: int = 64
    data_seed: int = 0
    num_train_timesteps: int = 1000

    def validate(self) -> None:
        for name in ("steps", "batch", "train_images", "eval_images", "layers_per_block"):
            if int(getattr(self, name)) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")
        down = 2 ** (len(self.widths) - 1)
        for name in ("size", "crop"):
            v = getattr(self, name)
            if v < down or v % down:
                raise UsageError(f"{name} must be a positive multiple of {down} (2**(levels-1)), got {v}")
        if self.crop > self.size:
            raise UsageError(f"crop must be <= size, got crop={self.crop}, size={self.size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UsageError(f"lr must be a positive number, got {self.lr}")


def build_unet(cfg: VPTrainConfig) -> "UNet2DModel":  # noqa: F821 - diffusers imported lazily
    """The small attention-free ``UNet2DModel`` of ``cfg``."""
    from diffusers import UNet2DModel

    n = len(cfg.widths)
    return UNet2DModel(sample_size=cfg.size, in_channels=3, out_channels=3, layers_per_block=cfg.layers_per_block,
                       block_out_channels=tuple(int(w) for w in cfg.widths), down_block_types=("DownBlock2D",) * n,
                       up_block_types=("UpBlock2D",) * n, norm_num_groups=min(8, int(min(cfg.widths))))


def build_scheduler(num_train_timesteps: int = 1000) -> "DDPMScheduler":  # noqa: F821
    """DDPM linear-beta schedule, eps prediction (the VP SDE with b_min 0.1, b_max 20 at T=1000)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule="linear", beta_start=1e-4,
                         beta_end=0.02, prediction_type="epsilon", clip_sample=True)


def _images(n: int, cfg: VPTrainConfig, split: str) -> torch.Tensor:
    from ..data.synthetic import make_batch

    return make_batch(range(n), cfg.size, cfg.data_seed, split, cfg.classes)[0].mul(2).sub(1)


@torch.no_grad()
def eps_mse(unet: torch.nn.Module, scheduler, x0: torch.Tensor, timesteps: torch.Tensor,
            generator: torch.Generator) -> Tuple[float, float]:
    """(model eps MSE, zero-predictor eps MSE) on diffusion-space images ``x0`` at integer ``timesteps``.

    The zero predictor's MSE is the noise's second moment (about 1); a useful
    model is well below it.
    """
    noise = torch.randn(x0.shape, generator=generator)
    xt = scheduler.add_noise(x0, noise, timesteps)
    pred = unet(xt, timesteps).sample
    return float(F.mse_loss(pred, noise)), float(noise.pow(2).mean())


def train_diffusers_vp(cfg: VPTrainConfig, out: Optional[str | Path] = None,
                       progress: bool = True) -> Tuple[torch.nn.Module, object, Dict[str, float]]:
    """Train the eps-prediction U-Net on the synthetic world; save a ``DDPMPipeline`` folder to ``out``.

    Returns ``(unet, scheduler, stats)``; ``stats`` holds the held-out eps MSE of
    the model and of the zero predictor at t in {50, 200, 500, 800} (test split).
    """
    cfg.validate()
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    unet, sched = build_unet(cfg), build_scheduler(cfg.num_train_timesteps)
    data = _images(cfg.train_images, cfg, "train")
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.0)
    lr_sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    t0 = time.perf_counter()
    ema = float("nan")
    unet.train()
    bar = tqdm(range(cfg.steps), desc="training diffusers VP", disable=not progress)
    for step in bar:
        idx = torch.randint(0, cfg.train_images, (cfg.batch,), generator=g)
        oy, ox = (int(v) for v in torch.randint(0, cfg.size - cfg.crop + 1, (2,), generator=g))
        x0 = data[idx, :, oy:oy + cfg.crop, ox:ox + cfg.crop]
        k = int(torch.randint(0, 4, (1,), generator=g))
        x0 = torch.rot90(x0, k, dims=(-2, -1))
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, cfg.num_train_timesteps, (cfg.batch,), generator=g)
        loss = F.mse_loss(unet(sched.add_noise(x0, noise, t), t).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        lr_sched.step()
        lv = float(loss.detach())
        ema = lv if math.isnan(ema) else 0.98 * ema + 0.02 * lv
        if step % 10 == 0:
            bar.set_postfix(loss=f"{ema:.4f}")
    unet.eval()
    stats: Dict[str, float] = {"train_seconds": round(time.perf_counter() - t0, 1), "final_loss": round(ema, 5),
                               "parameters": sum(p.numel() for p in unet.parameters())}
    test = _images(cfg.eval_images, cfg, "test")
    ge = torch.Generator().manual_seed(1234)
    for tv in (50, 200, 500, 800):
        m, z = eps_mse(unet, sched, test, torch.full((len(test),), tv), ge)
        stats[f"eps_mse_t{tv}"], stats[f"zero_mse_t{tv}"] = round(m, 5), round(z, 5)
    if out is not None:
        save_vp(unet, sched, out)
        import json

        (Path(out) / "training.json").write_text(json.dumps({"config": {**asdict(cfg), "widths": list(cfg.widths)},
                                                             "stats": stats}, indent=2))
    return unet, sched, stats


def save_vp(unet: torch.nn.Module, scheduler, out: str | Path) -> Path:
    """Save in the ``DDPMPipeline`` layout (safetensors weights)."""
    from diffusers import DDPMPipeline

    out = Path(out)
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(str(out), safe_serialization=True)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m fisherattr.scores.diffusers_train --out DIR [--steps --batch --lr --seed ...]``."""
    import argparse
    import json

    d = VPTrainConfig()
    p = argparse.ArgumentParser(prog="python -m fisherattr.scores.diffusers_train", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    for name in ("steps", "batch", "seed", "size", "crop", "classes", "train_images", "eval_images", "data_seed"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(d, name))
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--widths", type=int, nargs="+", default=list(d.widths))
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    cfg = VPTrainConfig(steps=a.steps, batch=a.batch, lr=a.lr, seed=a.seed, size=a.size, crop=a.crop,
                        classes=a.classes, widths=tuple(a.widths), train_images=a.train_images,
                        eval_images=a.eval_images, data_seed=a.data_seed)
    _, _, stats = train_diffusers_vp(cfg, a.out, progress=not a.quiet)
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
