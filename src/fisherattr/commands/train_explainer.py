"""``fisherattr train-explainer``: amortised training of an FDA / DiffIB level adapter.

The adapter (a small U-Net, :mod:`fisherattr.methods.level_explainer`) is trained
once over a set of photos with the method's own per-image loss; afterwards
``get_method(METHOD, model, mode="amortised", explainer=OUT)`` explains an image
with one forward pass.

Example::

    fisherattr train-explainer --method fda --data samples --out runs/fda-explainer --steps 300
    fisherattr train-explainer -m diffib --data photos/ --out runs/diffib-explainer -o diffib.denoiser=runs/den

``--option`` takes ``METHOD.KEY=VALUE`` like every other command (typed like the
option's default); the older ``KEY=VALUE`` form (JSON value) is still read.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict, List

from .model_flags import add_model_flags, model_kwargs

NAME = "train-explainer"
HELP = "Train an amortised FDA/DiffIB explainer (level adapter) over a folder of photos."

#: scikit-image photos used by ``--data samples``: none of them is one of the explained sample photos.
TRAIN_SAMPLES = ("camera", "coins", "brick", "grass", "gravel", "clock", "immunohistochemistry", "retina",
                 "hubble_deep_field", "colorwheel")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--methods", "--method", "-m", dest="method", default="fda", metavar="M",
                   help="fda (default) or diffib: one method with a level adapter")
    p.add_argument("--model", default="efficientnet_lite0", help="classifier (see `fisherattr list models`)")
    p.add_argument("--data", default="samples",
                   help="a folder of images, 'samples' (scikit-image photos that are not the explained samples), "
                        "or comma-separated sample names")
    p.add_argument("--out", required=True, help="output folder (adapter.safetensors + adapter.json)")
    add_model_flags(p)
    p.add_argument("--steps", type=int, default=300, help="Adam steps (default 300)")
    p.add_argument("--batch", type=int, default=4, help="images per step (default 4)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of the output layer (default 1e-3)")
    p.add_argument("--beta", type=float, default=None, help="information weight (default: the method's)")
    p.add_argument("--noise-draws", type=int, default=1, help="noise draws per image and step (default 1)")
    p.add_argument("--size", type=int, default=None, help="image side (default: the model's input size or 224)")
    p.add_argument("--seed", type=int, default=0, help="seed of batches, noise and initialisation")
    p.add_argument("--option", "-o", action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="a method option, typed like its default, repeatable, e.g. -o fda.score_model=gaussian")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")


def parse_options(items: List[str], method: str = "") -> Dict[str, Any]:
    """Method options from ``METHOD.KEY=VALUE`` (typed like the option's default) or ``KEY=VALUE`` (JSON value).

    Example:
        >>> parse_options(["beta=2", "steps=50"])
        {'beta': 2, 'steps': 50}
    """
    from ..errors import UsageError
    from .explain import parse_options as parse_method_options

    out: Dict[str, Any] = {}
    dotted = [i for i in items if "." in i.partition("=")[0]]
    if dotted:
        if not method:
            raise UsageError(f"--option {dotted[0]!r}: no method to apply it to")
        from ..methods.registry import canonical_name

        name = canonical_name(method)
        out.update(parse_method_options(dotted, [name])[name])
    for item in items:
        if item in dotted:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--option needs KEY=VALUE, got {item!r}")
        try:
            out[key.strip().replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip().replace("-", "_")] = value
    return out


def dev_photo(name: str, size: int):
    """One scikit-image photo of :data:`TRAIN_SAMPLES` as ``[1,3,size,size]`` in [0,1] (grey ones as RGB)."""
    import numpy as np
    import skimage.data as data

    from ..data.images import array_to_pil, pil_to_tensor, resize_pil

    arr = np.asarray(getattr(data, name)())
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return pil_to_tensor(resize_pil(array_to_pil(arr[..., :3]), size, "shorter-crop"))


def load_training_images(spec: str, size: int):
    """``[N,3,size,size]`` in [0,1] from a folder, ``samples`` or comma-separated sample names."""
    import torch

    from ..data.images import load_image
    from ..errors import UsageError

    if spec == "samples":
        return torch.cat([dev_photo(name, size) for name in TRAIN_SAMPLES])
    folder = Path(spec)
    if folder.is_dir():
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UsageError(f"--data {spec}: no images ({', '.join(IMAGE_SUFFIXES)}) in the folder")
        return torch.cat([load_image(f, size) for f in files])
    if folder.exists():
        raise UsageError(f"--data {spec}: give a folder of images, 'samples', or sample names")
    return torch.cat([load_image(name.strip(), size) for name in spec.split(",") if name.strip()])


def run(args: argparse.Namespace) -> int:
    import torch

    from .. import get_method, load_classifier
    from ..errors import UsageError
    import math

    from ..methods.level_explainer import TRAIN_KEEP_PROB, LevelMethod


    if args.threads < 0:
        raise UsageError(f"--threads must be >= 0, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in ("steps", "batch", "noise_draws"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    opts = parse_options(args.option, args.method)
    if args.beta is not None:
        opts["beta"] = args.beta
    opts["seed"] = args.seed
    from ..outdir import check_output_dir

    check_output_dir(args.out)
    model = load_classifier(args.model, **model_kwargs(args))
    method = get_method(args.method, model, **opts)
    if not isinstance(method, LevelMethod):
        raise UsageError(f"method {args.method!r} has no level adapter to train; use fda or diffib")
    size = args.size or (model.input_size[0] if getattr(model, "input_size", None) else 224)
    images = load_training_images(args.data, size)
    print(f"train-explainer: {args.method} on {images.shape[0]} images from {args.data!r} at {size}x{size}; "
          f"{args.steps} steps of {args.batch}")
    # an explicit -o METHOD.keep_prob=P is the training constraint too; else TRAIN_KEEP_PROB (0.8)
    train_keep = opts.get("keep_prob")

    out, hist = method.train_explainer(images, args.out, steps=args.steps, batch=args.batch, lr=args.lr,
                                       noise_draws=args.noise_draws, progress=not getattr(args, "quiet", False),
                                       keep_prob=train_keep)
    k = max(1, len(hist["ce"]) // 10)
    held = "" if method.keep_prob is None else \
        f" (the constraint asks for at most {-math.log(float(train_keep or TRAIN_KEEP_PROB)):.3f} above the clean one)"
    print(f"final cross-entropy {sum(hist['ce'][-k:]) / k:.3f}{held}, {method.penalty} penalty "
          f"{sum(hist['penalty'][-k:]) / k:.3f} (means of the last {k} steps)")

    print(f"saved {out}/adapter.safetensors and {out}/adapter.json")
    return 0
