"""``load_classifier(name)``: every way a user can name a classifier.

Names:
- ``efficientnet_lite0`` (default): offline ImageNet EfficientNet-Lite0.
- ``synthetic`` / ``synthetic-robust``: the shipped small CNNs of the synthetic world
  (the second trained with VP-noise augmentation; see docs/synthetic.md).
- ``torchvision:<name>`` / ``timm:<name>``: when those libraries import; weights come
  from the local cache only unless ``allow_download=True``.
- a TorchScript file (``.pt``/``.pth``/``.ts``): assumed to take [0,1] images unless a
  sidecar ``<file>.json`` gives ``mean``/``std``/``classes``/``input_size``.
- a directory saved by :func:`save_classifier` (``classifier.json`` + ``model.safetensors``).
- ``module:function``: any importable callable returning an ``nn.Module`` (a
  :class:`Classifier` is used as is; anything else is assumed to take [0,1] images).
"""
from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

import torch
import torch.nn as nn

from ..errors import UsageError
from .classifier import Classifier, imagenet_classes

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_MODEL = "efficientnet_lite0"
CONFIG_NAME = "classifier.json"
WEIGHTS_NAME = "model.safetensors"


def _lite0(**_: Any) -> Classifier:
    from .efficientnet_lite import build_efficientnet_lite0

    return build_efficientnet_lite0()


def _synthetic(robust: bool = False) -> Classifier:
    from ..data.synthetic import default_classifier_path, robust_classifier_path

    return _from_folder(robust_classifier_path() if robust else default_classifier_path())


_BUILTIN: Dict[str, Callable[..., Classifier]] = {"efficientnet_lite0": _lite0, "synthetic": _synthetic,
                                                  "synthetic-robust": lambda: _synthetic(robust=True)}


def available_models() -> list[str]:
    """What ``load_classifier`` accepts, for listings and error messages."""
    out = list(_BUILTIN)
    for lib in ("torchvision", "timm"):
        try:
            importlib.import_module(lib)
            out.append(f"{lib}:<name>")
        except Exception:  # noqa: BLE001 - any import failure means "not available here"
            pass
    out += ["<path to TorchScript file>", "<folder saved by save_classifier>", "<module:function>"]
    return out


def _torchvision(name: str, allow_download: bool) -> Classifier:
    try:
        import torchvision.models as tvm
    except Exception as e:  # noqa: BLE001
        raise UsageError(f"torchvision is not importable here ({e}); it is needed for 'torchvision:{name}'") from None
    try:
        weights = tvm.get_model_weights(name).DEFAULT
    except Exception:  # noqa: BLE001
        raise UsageError(f"torchvision has no model {name!r}") from None
    fname = os.path.basename(weights.url)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / fname
    if not cached.exists() and not allow_download:
        raise UsageError(f"weights for torchvision:{name} are not in the local cache ({cached}); "
                         "pass allow_download=True (CLI: --allow-download) to fetch them")
    net = tvm.get_model(name, weights=weights)
    classes = list(weights.meta.get("categories") or imagenet_classes()[0])
    return Classifier(net.eval(), IMAGENET_MEAN, IMAGENET_STD, classes, (224, 224), name=f"torchvision:{name}")


def _timm(name: str, allow_download: bool) -> Classifier:
    try:
        import timm
    except Exception as e:  # noqa: BLE001
        raise UsageError(f"timm is not importable here ({e}); it is needed for 'timm:{name}'") from None
    if not allow_download:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load_weights = True  # from the local cache; the hub only when allow_download (offline flag above)
    try:
        net = timm.create_model(name, pretrained=load_weights)
    except Exception as e:  # noqa: BLE001
        raise UsageError(f"cannot load timm:{name} ({e}); weights must be in the local cache "
                         "unless allow_download=True") from None
    cfg = net.pretrained_cfg
    size = tuple(cfg.get("input_size", (3, 224, 224))[1:])
    return Classifier(net.eval(), cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD),
                      imagenet_classes()[0] if cfg.get("num_classes", 1000) == 1000 else None, size,
                      name=f"timm:{name}")


def _sidecar(path: Path) -> Dict[str, Any]:
    side = path.with_suffix(path.suffix + ".json")
    return json.loads(side.read_text()) if side.exists() else {}


def _wrap(net: nn.Module, meta: Dict[str, Any], name: str) -> Classifier:
    return Classifier(net.eval(), meta.get("mean", (0.0,) * 3), meta.get("std", (1.0,) * 3),
                      meta.get("classes"), meta.get("input_size"), name=name)


def _import_callable(spec: str) -> Callable[..., Any]:
    mod, _, attr = spec.partition(":")
    try:
        obj = importlib.import_module(mod)
    except ImportError as e:
        raise UsageError(f"cannot import module {mod!r} for model {spec!r}: {e}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"module {mod!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UsageError(f"{spec!r} is not callable")
    return obj


def save_classifier(model: Classifier, folder: str | os.PathLike, builder: str,
                    builder_kwargs: Optional[Dict[str, Any]] = None, extra: Optional[Dict[str, Any]] = None,
                    companions: Optional[Dict[str, str]] = None) -> Path:
    """Save ``model`` as ``classifier.json`` + ``model.safetensors`` in ``folder``.

    ``builder`` is a ``module:function`` that rebuilds the bare network from
    ``builder_kwargs``; the weights are loaded into it by :func:`load_classifier`.
    ``companions`` (role -> path, relative paths starting with ``.``) name the score
    model (``score_model``), denoiser (``denoiser``) and bottleneck estimation data
    (``estimate_data``) that FDA, DiffIB and IBA use for this model by default.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"builder": builder, "builder_kwargs": builder_kwargs or {},
           "mean": model.mean.flatten().tolist(), "std": model.std.flatten().tolist(),
           "classes": model.classes, "input_size": list(model.input_size) if model.input_size else None,
           "name": model.name, **(extra or {})}
    if companions:
        cfg["companions"] = dict(companions)
    state = {k: v.detach().cpu().contiguous() for k, v in model.net.state_dict().items()}
    tmp = folder / (WEIGHTS_NAME + ".tmp")
    save_file(state, str(tmp))
    os.replace(tmp, folder / WEIGHTS_NAME)
    (folder / CONFIG_NAME).write_text(json.dumps(cfg, indent=2))
    for f in (folder / WEIGHTS_NAME, folder / CONFIG_NAME):  # readable like any other file the user saves
        f.chmod(0o644)
    return folder


def _from_folder(folder: Path) -> Classifier:
    from safetensors.torch import load_file

    cfg_path = folder / CONFIG_NAME
    if not cfg_path.exists():
        raise UsageError(f"{folder} is not a saved classifier: {CONFIG_NAME} is missing")
    cfg = json.loads(cfg_path.read_text())
    net = _import_callable(cfg["builder"])(**cfg.get("builder_kwargs", {}))
    if not (folder / WEIGHTS_NAME).exists():
        raise UsageError(f"{folder}: {WEIGHTS_NAME} is missing")
    net.load_state_dict(load_file(str(folder / WEIGHTS_NAME)))
    model = _wrap(net, cfg, cfg.get("name", folder.name))
    model.companions = _companions(cfg.get("companions") or {}, folder)
    return model


def _companions(raw: Dict[str, Any], folder: Path) -> Dict[str, str]:
    """``classifier.json`` companions; values starting with ``.`` are paths relative to the folder."""
    if not isinstance(raw, dict):
        raise UsageError(f"{folder / CONFIG_NAME}: 'companions' must be an object of role -> path")
    out = {}
    for role, value in raw.items():
        value = str(value)
        out[str(role)] = str((folder / value).resolve()) if value.startswith(".") else value
    return out


def load_classifier(name: str = DEFAULT_MODEL, device: Optional[str | torch.device] = None,
                    allow_download: bool = False) -> Classifier:
    """Load a classifier by name (see the module docstring) in eval mode.

    Example:
        >>> model = load_classifier("efficientnet_lite0")   # doctest: +SKIP
        >>> model.classes[285], model.input_size             # doctest: +SKIP
        ('Egyptian cat', (224, 224))
    """
    if isinstance(name, nn.Module):
        model = name if isinstance(name, Classifier) else _wrap(name, {}, type(name).__name__)
    else:
        key = str(name).strip()
        path = Path(key).expanduser()
        if key.lower() in _BUILTIN:
            model = _BUILTIN[key.lower()]()
        elif key.startswith("torchvision:"):
            model = _torchvision(key.split(":", 1)[1], allow_download)
        elif key.startswith("timm:"):
            model = _timm(key.split(":", 1)[1], allow_download)
        elif path.is_dir():
            model = _from_folder(path)
        elif path.is_file():
            try:
                net = torch.jit.load(str(path), map_location="cpu")
            except Exception as e:  # noqa: BLE001
                raise UsageError(f"{path}: not a TorchScript file ({str(e).splitlines()[0]})") from None
            model = _wrap(net, _sidecar(path), path.name)
        elif ":" in key and not os.sep in key.split(":", 1)[0]:
            obj = _import_callable(key)()
            if not isinstance(obj, nn.Module):
                raise UsageError(f"{key!r} returned {type(obj).__name__}, not a torch.nn.Module")
            model = obj if isinstance(obj, Classifier) else _wrap(obj, {}, key)
        else:
            raise UsageError(f"unknown model {name!r}; available: {', '.join(available_models())}")
    if device is not None:
        model = model.to(device)
    return model.eval()
