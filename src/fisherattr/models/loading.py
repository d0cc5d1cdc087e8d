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

Trust rule: a model file can be a program. Nothing a data file names is imported or
called, and no TorchScript program is loaded, unless the caller passes
``trust_code=True`` (CLI: ``--trust-model-code``). Without it a folder may only name
one of fisherattr's own architectures (:data:`TRUSTED_BUILDERS`), and its
``companions`` must be paths inside the folder. Weights are read with safetensors
(no pickle). A ``module:function`` name typed by the caller is the caller's own code
and needs no flag.
"""
from __future__ import annotations

import importlib
import json
import os
import zipfile
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
#: How a user opts in to running code named by model files (in error messages).
TRUST_HINT = "pass trust_code=True (CLI: --trust-model-code) if you trust it"
#: Companion roles that name models (loaded as folders); other roles name data.
MODEL_ROLES = ("score_model", "denoiser")
_COMPANION_NAMES = ("gaussian", "gaussian-prior")
_ASSETS = Path(__file__).resolve().parents[1] / "assets"


def efficientnet_lite0_net(num_classes: int = 1000) -> nn.Module:
    """The bare EfficientNet-Lite0 network (no weights, one activation module per use): a folder builder.

    Example:
        >>> net = efficientnet_lite0_net(num_classes=10)   # doctest: +SKIP
    """
    from efficientnet_lite_pytorch import EfficientNet

    from .efficientnet_lite import untangle_activations

    return untangle_activations(EfficientNet.from_name("efficientnet-lite0", num_classes=int(num_classes)))


def _small_cnn_net(**kwargs: Any) -> nn.Module:
    from .small_cnn import build_small_cnn

    return build_small_cnn(**kwargs)


#: ``classifier.json`` builders that need no trust: fisherattr's own architectures, by their
#: ``module:function`` name (the value is what is called; nothing is imported by name).
TRUSTED_BUILDERS: Dict[str, Callable[..., nn.Module]] = {
    "fisherattr.models.small_cnn:build_small_cnn": _small_cnn_net,
    "fisherattr.models.loading:efficientnet_lite0_net": efficientnet_lite0_net,
}


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
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UsageError(f"cannot load timm:{name} ({first}); weights must be in the local cache "
                         "unless allow_download=True (CLI: --allow-download)") from None
    cfg = net.pretrained_cfg
    size = tuple(cfg.get("input_size", (3, 224, 224))[1:])
    return Classifier(net.eval(), cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD),
                      imagenet_classes()[0] if cfg.get("num_classes", 1000) == 1000 else None, size,
                      name=f"timm:{name}")


def _read_json(path: Path) -> Dict[str, Any]:
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{path}: not a readable JSON file ({type(e).__name__})") from None
    if not isinstance(cfg, dict):
        raise UsageError(f"{path}: expected a JSON object, got {type(cfg).__name__}")
    return cfg


def _sidecar(path: Path) -> Dict[str, Any]:
    side = path.with_suffix(path.suffix + ".json")
    return _read_json(side) if side.exists() else {}


def _torchscript(path: Path, trust_code: bool) -> Classifier:
    """A TorchScript file: a program, so loaded only with ``trust_code``."""
    if not zipfile.is_zipfile(path):
        raise UsageError(f"{path}: not a TorchScript file (not a zip archive)")
    if not trust_code:
        raise UsageError(f"{path}: a TorchScript file is a program and loading it runs its code; {TRUST_HINT}")
    try:
        net = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:  # noqa: BLE001
        raise UsageError(f"{path}: not a TorchScript file ({str(e).splitlines()[0]})") from None
    return _wrap(net, _sidecar(path), path.name)


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


def _builder(cfg: Dict[str, Any], cfg_path: Path, trust_code: bool) -> Callable[..., nn.Module]:
    """The callable named by ``builder``: one of :data:`TRUSTED_BUILDERS`, anything else only when trusted."""
    spec = cfg.get("builder")
    if not isinstance(spec, str) or ":" not in spec:
        raise UsageError(f"{cfg_path}: field 'builder' must be a 'module:function' string, got {spec!r}")
    if spec in TRUSTED_BUILDERS:
        return TRUSTED_BUILDERS[spec]
    if not trust_code:
        raise UsageError(f"{cfg_path}: field 'builder' names {spec!r}, which is not one of fisherattr's own "
                         f"architectures; loading it would import and run that code; {TRUST_HINT}")
    return _import_callable(spec)


def _build(build: Callable[..., nn.Module], kwargs: Dict[str, Any], weights: Path, cfg_path: Path) -> nn.Module:
    """Call the builder, first without memory (meta device) to check the network is no larger than its weights."""
    from safetensors import safe_open

    def call() -> nn.Module:
        try:
            net = build(**kwargs)
        except (TypeError, ValueError, UsageError) as e:
            raise UsageError(f"{cfg_path}: field 'builder_kwargs' does not fit the builder ({e})") from None
        if not isinstance(net, nn.Module):
            raise UsageError(f"{cfg_path}: the builder returned {type(net).__name__}, not a torch.nn.Module")
        return net

    try:
        with safe_open(str(weights), framework="pt") as f:
            stored = sum(int(torch.Size(f.get_slice(k).get_shape()).numel()) for k in f.keys())
    except Exception as e:  # noqa: BLE001 - a damaged weights file
        raise UsageError(f"{weights}: not a readable safetensors file ({type(e).__name__})") from None
    with torch.device("meta"):
        wanted = sum(t.numel() for t in call().state_dict().values())
    if wanted > stored:
        raise UsageError(f"{cfg_path}: field 'builder_kwargs' describes a network of {wanted:,} values "
                         f"but {WEIGHTS_NAME} holds {stored:,}")
    return call()


def _from_folder(folder: Path, trust_code: bool = False) -> Classifier:
    from safetensors.torch import load_file

    cfg_path = folder / CONFIG_NAME
    if not cfg_path.exists():
        raise UsageError(f"{folder} is not a saved classifier: {CONFIG_NAME} is missing")
    cfg = _read_json(cfg_path)
    build = _builder(cfg, cfg_path, trust_code)
    kwargs = cfg.get("builder_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise UsageError(f"{cfg_path}: field 'builder_kwargs' must be an object, got {type(kwargs).__name__}")
    weights = folder / WEIGHTS_NAME
    if not weights.exists():
        raise UsageError(f"{folder}: {WEIGHTS_NAME} is missing")
    companions = _companions(cfg.get("companions") or {}, folder, trust_code)  # checked before anything runs
    net = _build(build, kwargs, weights, cfg_path)
    try:
        net.load_state_dict(load_file(str(weights)))
    except RuntimeError as e:
        raise UsageError(f"{weights}: does not fit the network of {CONFIG_NAME} "
                         f"({str(e).strip().splitlines()[0]})") from None
    model = _wrap(net, cfg, cfg.get("name", folder.name))
    model.companions = companions
    return model


def _inside(path: Path, root: Path) -> bool:
    return path.is_relative_to(root)


def _companions(raw: Dict[str, Any], folder: Path, trust_code: bool = False) -> Dict[str, str]:
    """``classifier.json`` companions, role -> model name, path or data spec.

    Paths are relative to the folder and must stay inside it (folders shipped with
    fisherattr: inside its assets) unless ``trust_code``: no ``..`` out, no absolute
    or ``~`` paths. Model roles (:data:`MODEL_ROLES`) take a path or ``gaussian``;
    other roles (``estimate_data``) a data spec such as ``synthetic``, or a ``./`` path.
    """
    cfg_path = folder / CONFIG_NAME
    if not isinstance(raw, dict):
        raise UsageError(f"{cfg_path}: 'companions' must be an object of role -> path")
    here = folder.resolve()
    root = _ASSETS if _inside(here, _ASSETS) else here
    out = {}
    for role, value in raw.items():
        role, value = str(role), str(value)
        is_path = value.startswith((".", "~", "/", "\\")) or os.path.isabs(value) or (
            role in MODEL_ROLES and value.strip().lower() not in _COMPANION_NAMES)
        if not is_path:
            out[role] = value
            continue
        target = Path(os.path.expanduser(value)) if value.startswith("~") else folder / value
        target = target.resolve()
        if not trust_code and (value.startswith("~") or os.path.isabs(value) or not _inside(target, root)):
            raise UsageError(f"{cfg_path}: field 'companions.{role}' = {value!r} points outside the model folder; "
                             f"{TRUST_HINT}")
        out[role] = str(target)
    return out


def load_classifier(name: str = DEFAULT_MODEL, device: Optional[str | torch.device] = None,
                    allow_download: bool = False, trust_code: bool = False) -> Classifier:
    """Load a classifier by name (see the module docstring) in eval mode.

    ``allow_download``: torchvision/timm weights may be fetched (else the local cache only).
    ``trust_code``: run code that a model file names or is (a folder's ``builder`` outside
    :data:`TRUSTED_BUILDERS`, companions outside the folder, a TorchScript file).

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
            model = _from_folder(path, trust_code)
        elif path.is_file():
            model = _torchscript(path, trust_code)
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
