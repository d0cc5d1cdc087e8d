"""diffusers score models (``UNet2DModel``) behind :class:`ScoreModel`, and :func:`load_score_model`.

- :class:`DiffusersVP`: a ``UNet2DModel`` trained with a DDPM-family scheduler
  (``DDPMScheduler``, ``DDIMScheduler``, ...; any ``beta_schedule``); predictions
  ``epsilon`` (default), ``v_prediction`` or ``sample`` are converted to eps. A
  log-SNR is mapped to the continuous timestep with the same ``alpha_bar`` by
  interpolating the scheduler's table (the UNet takes float timesteps).
- :class:`DiffusersVE`: a ``UNet2DModel`` with a ``ScoreSdeVeScheduler`` (NCSN++
  style, predicts the score, time input = sigma). Score-SDE VE models are trained on
  [0, 1] images (``data_range="unit"``, default): a diffusion-space level
  ``sigma`` is ``sigma / 2`` there. ``eps_hat = -sigma * score``.

Both take one noise level per image and need their training resolution. The
resolution rule when the classifier's size differs: error by default; FDA with
``score_resize=True`` (grid integration) resizes the image to the score model's
size for the information curve and resizes the per-feature curve back, scaling
by the area ratio so the total information is unchanged.

Loading is offline by default: ``from_pretrained(path)`` reads a local folder
(a pipeline folder with ``unet/`` and ``scheduler/``, or a folder with the UNet's
``config.json`` and ``scheduler_config.json``); a hub id is fetched only with
``allow_download=True``.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch
import torch.nn as nn

from ..errors import UsageError
from .base import ScoreModel

PREDICTIONS = ("epsilon", "v_prediction", "sample")


def _resolution(unet: nn.Module) -> Tuple[int, int]:
    size = unet.config.sample_size
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _scalar_levels(log_snr: torch.Tensor, z: torch.Tensor, name: str) -> torch.Tensor:
    lam = torch.as_tensor(log_snr, dtype=z.dtype, device=z.device)
    if lam.dim() == 0:
        lam = lam.expand(z.shape[0])
    if lam.dim() != 1:
        raise UsageError(f"{name} takes one noise level per image; use integration='grid'")
    return lam


class DiffusersVP(ScoreModel):
    """VP eps-predictor from a diffusers ``UNet2DModel`` and its DDPM-family scheduler table.

    Args:
        unet: the ``UNet2DModel``.
        alphas_cumprod: the scheduler's ``alpha_bar`` table (``[T]``).
        prediction_type: ``"epsilon"``, ``"v_prediction"`` or ``"sample"``.

    Example:
        >>> sm = DiffusersVP.from_pretrained("path/to/ddpm-folder")   # doctest: +SKIP
        >>> eps = sm.predict_eps(z, torch.zeros(len(z)))               # doctest: +SKIP
    """

    sde = "vp"

    def __init__(self, unet: nn.Module, alphas_cumprod: torch.Tensor, prediction_type: str = "epsilon") -> None:
        super().__init__()
        if prediction_type not in PREDICTIONS:
            raise UsageError(f"prediction_type {prediction_type!r} is not supported; use one of {PREDICTIONS}")
        self.unet = unet.eval().requires_grad_(False)
        ab = torch.as_tensor(alphas_cumprod, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
        lam = torch.log(ab) - torch.log1p(-ab)  # decreasing in the timestep
        self.register_buffer("_lam_table", lam.flip(0).float())  # ascending
        self.prediction_type = prediction_type
        self.channels = int(unet.config.in_channels)
        self.resolution = _resolution(unet)
        self.log_snr_range = (float(lam.min()), float(lam.max()))

    def timestep(self, lam: torch.Tensor) -> torch.Tensor:
        """Continuous timestep whose table log-SNR equals ``lam`` (clamped to the table)."""
        table = self._lam_table.to(lam)
        n = table.numel()
        lam = lam.clamp(float(table[0]), float(table[-1]))
        idx = (torch.searchsorted(table, lam.contiguous()) - 1).clamp(0, n - 2)
        frac = (lam - table[idx]) / (table[idx + 1] - table[idx])
        pos_ascending = idx.to(lam.dtype) + frac
        return (n - 1) - pos_ascending

    def predict_eps(self, z: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
        lam = _scalar_levels(log_snr, z, type(self).__name__)
        out = self.unet(z, self.timestep(lam)).sample
        if self.prediction_type == "epsilon":
            return out
        a = torch.sqrt(torch.sigmoid(lam)).view(-1, 1, 1, 1)
        s = torch.sqrt(torch.sigmoid(-lam)).view(-1, 1, 1, 1)
        if self.prediction_type == "v_prediction":  # v = a eps - s x  =>  eps = a v + s z
            return a * out + s * z
        return (z - a * out) / s  # sample (x0) prediction

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str, allow_download: bool = False,
                        device: Union[str, torch.device] = "cpu") -> "DiffusersVP":
        """Load from a local folder (or the hub with ``allow_download=True``)."""
        unet, sched_cfg, sched = _load_parts(path_or_hub_id, allow_download)
        if "ScoreSdeVe" in sched_cfg.get("_class_name", ""):
            raise UsageError(f"{path_or_hub_id} is a VE (ScoreSdeVeScheduler) model; load it with DiffusersVE "
                             "(or use sde='ve')")
        if not hasattr(sched, "alphas_cumprod"):
            raise UsageError(f"{path_or_hub_id}: scheduler {sched_cfg.get('_class_name')} has no alphas_cumprod table")
        return cls(unet, sched.alphas_cumprod, sched_cfg.get("prediction_type", "epsilon")).to(device)


class DiffusersVE(ScoreModel):
    """VE score model from a diffusers ``UNet2DModel`` + ``ScoreSdeVeScheduler`` config.

    Args:
        unet: the ``UNet2DModel`` (time input = sigma, output = score).
        sigma_min, sigma_max: the scheduler's range, in the model's data space.
        data_range: ``"unit"`` (trained on [0,1], the Score-SDE convention) or ``"diffusion"`` ([-1,1]).

    Example:
        >>> sm = DiffusersVE.from_pretrained("path/to/ncsnpp-folder")  # doctest: +SKIP
        >>> sm.ve_sigmas                                               # diffusion-space range  # doctest: +SKIP
    """

    sde = "ve"

    def __init__(self, unet: nn.Module, sigma_min: float = 0.01, sigma_max: float = 50.0,
                 data_range: str = "unit") -> None:
        super().__init__()
        if data_range not in ("unit", "diffusion"):
            raise UsageError(f"data_range must be 'unit' or 'diffusion', got {data_range!r}")
        if not 0 < sigma_min < sigma_max:
            raise UsageError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.unet = unet.eval().requires_grad_(False)
        self.data_range = data_range
        self.scale = 0.5 if data_range == "unit" else 1.0  # diffusion-space sigma -> model sigma
        self.ve_sigmas = (float(sigma_min) / self.scale, float(sigma_max) / self.scale)
        self.channels = int(unet.config.in_channels)
        self.resolution = _resolution(unet)
        self.log_snr_range = (-2 * math.log(self.ve_sigmas[1]), -2 * math.log(self.ve_sigmas[0]))

    def predict_eps(self, z: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
        lam = _scalar_levels(log_snr, z, type(self).__name__)
        sigma = torch.exp(-0.5 * lam)
        x_t = z * torch.sqrt(1 + sigma ** 2).view(-1, 1, 1, 1)  # VE form, diffusion space
        if self.data_range == "unit":
            x_t = (x_t + 1) / 2
        sigma_m = sigma * self.scale
        score = self.unet(x_t, sigma_m).sample
        return -sigma_m.view(-1, 1, 1, 1) * score

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str, allow_download: bool = False, data_range: str = "unit",
                        device: Union[str, torch.device] = "cpu") -> "DiffusersVE":
        """Load from a local folder (or the hub with ``allow_download=True``)."""
        unet, cfg, _ = _load_parts(path_or_hub_id, allow_download)
        if "ScoreSdeVe" not in cfg.get("_class_name", ""):
            raise UsageError(f"{path_or_hub_id} has scheduler {cfg.get('_class_name')!r}, not ScoreSdeVeScheduler; "
                             "load it with DiffusersVP (or use sde='vp')")
        return cls(unet, cfg.get("sigma_min", 0.01), cfg.get("sigma_max", 1348.0), data_range).to(device)


def _scheduler_config(folder: Path) -> Tuple[Optional[Path], Optional[str]]:
    for sub in ("scheduler", ""):
        p = folder / sub / "scheduler_config.json" if sub else folder / "scheduler_config.json"
        if p.exists():
            return p, sub or None
    return None, None


def _unet_subfolder(folder: Path) -> Optional[str]:
    if (folder / "unet" / "config.json").exists():
        return "unet"
    if (folder / "config.json").exists():
        return None
    raise UsageError(f"{folder}: no UNet2DModel found (need config.json, or unet/config.json)")


def _load_parts(spec: str, allow_download: bool) -> Tuple[nn.Module, Dict[str, Any], Any]:
    import diffusers

    folder = Path(os.path.expanduser(str(spec)))
    if folder.is_dir():
        cfg_path, sched_sub = _scheduler_config(folder)
        if cfg_path is None:
            raise UsageError(f"{folder}: no scheduler_config.json (or scheduler/scheduler_config.json); "
                             "a diffusers score model needs its scheduler config")
        unet = diffusers.UNet2DModel.from_pretrained(str(folder), subfolder=_unet_subfolder(folder),
                                                     local_files_only=True, low_cpu_mem_usage=False)
        cfg = json.loads(cfg_path.read_text())
        source, kw = str(folder), {"subfolder": sched_sub, "local_files_only": True}
    else:
        if not allow_download:
            raise UsageError(f"score model {spec!r} is not a local folder; downloads are off "
                             "(pass allow_download=True to fetch a hub id)")
        try:
            unet = diffusers.UNet2DModel.from_pretrained(spec, subfolder="unet")
        except Exception:  # noqa: BLE001 - a bare UNet repo has no unet/ subfolder
            unet = diffusers.UNet2DModel.from_pretrained(spec)
        from huggingface_hub import hf_hub_download

        try:
            cfg_file = hf_hub_download(spec, "scheduler_config.json", subfolder="scheduler")
        except Exception:  # noqa: BLE001
            cfg_file = hf_hub_download(spec, "scheduler_config.json")
        cfg = json.loads(Path(cfg_file).read_text())
        source, kw = None, {}
    cls_name = cfg.get("_class_name", "DDPMScheduler")
    sched_cls = getattr(diffusers, cls_name, None)
    if sched_cls is None:
        raise UsageError(f"{spec}: unknown scheduler class {cls_name!r}")
    sched = sched_cls.from_config(cfg)
    return unet, cfg, sched


def load_score_model(spec: Union[str, os.PathLike, ScoreModel], allow_download: bool = False,
                     device: Union[str, torch.device] = "cpu") -> ScoreModel:
    """A score model from a spec.

    - a :class:`ScoreModel`: returned as is;
    - ``"gaussian"``: the training-free :class:`~fisherattr.scores.gaussian.GaussianPrior`;
    - a folder with a diffusers UNet and scheduler config: :class:`DiffusersVE` if the
      scheduler is a ``ScoreSdeVeScheduler``, else :class:`DiffusersVP`;
    - a folder saved by the noise-map denoiser (``config.json`` with its format tag):
      ``fisherattr.scores.noise_map.load_noise_map_denoiser``;
    - a hub id: only with ``allow_download=True``.

    Example:
        >>> load_score_model("gaussian").accepts_level_map
        False
    """
    if isinstance(spec, ScoreModel):
        return spec.to(device)
    text = str(spec)
    if text.strip().lower() in ("gaussian", "gaussian-prior"):
        from .gaussian import GaussianPrior

        return GaussianPrior.default().to(device)
    folder = Path(os.path.expanduser(text))
    if folder.is_dir():
        cfg_file = folder / "config.json"
        cfg = json.loads(cfg_file.read_text()) if cfg_file.exists() else {}
        if str(cfg.get("format", "")).startswith("fisherattr-noise-map-denoiser"):
            try:
                from .noise_map import load_noise_map_denoiser
            except ImportError as e:
                raise UsageError(f"{folder} is a noise-map denoiser but its loader is unavailable: {e}") from None
            return load_noise_map_denoiser(folder, device=device)
        sched_cfg, _ = _scheduler_config(folder)
        if sched_cfg is None:
            raise UsageError(f"{folder} is not a score model: no scheduler_config.json (diffusers) and no "
                             "noise-map denoiser config.json")
        kind = json.loads(sched_cfg.read_text()).get("_class_name", "")
        cls = DiffusersVE if "ScoreSdeVe" in kind else DiffusersVP
        return cls.from_pretrained(str(folder), device=device)
    if folder.exists():
        raise UsageError(f"score model {text!r} is a file; give the folder that holds the model")
    looks_like_hub = text.count("/") == 1 and not text.startswith((".", "/", "~"))
    if looks_like_hub and allow_download:
        _, cfg, _ = _load_parts(text, True)
        cls = DiffusersVE if "ScoreSdeVe" in cfg.get("_class_name", "") else DiffusersVP
        return cls.from_pretrained(text, allow_download=True, device=device)
    raise UsageError(f"score model {text!r}: no such folder" + (" (hub ids need allow_download=True)"
                                                                 if looks_like_hub else ""))


__all__ = ["DiffusersVE", "DiffusersVP", "load_score_model"]
