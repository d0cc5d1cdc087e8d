"""``fisherattr estimate-bottleneck``: per-feature statistics of a hidden layer for IBA / InputIBA.

Example::

    fisherattr estimate-bottleneck --model efficientnet_lite0 --layer net._blocks.4 \\
        --data samples --samples 1000 --out lite0-blocks4.safetensors
    # then: get_method("iba", model, estimate="lite0-blocks4.safetensors")
"""
from __future__ import annotations

import argparse

from .model_flags import add_model_flags, model_kwargs

NAME = "estimate-bottleneck"
HELP = "Estimate a layer's per-feature mean/std (Welford) for IBA and InputIBA, and save it (safetensors)."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="efficientnet_lite0", help="classifier name or path (default: %(default)s)")
    p.add_argument("--layer", default=None,
                   help="dotted module name (default: IBA's documented layer, net._blocks.4 for "
                        "EfficientNet-Lite0; InputIBA's default there is net._blocks.7)")
    p.add_argument("--data", default="samples",
                   help="a folder of images, or 'samples' (shipped photos with random crops/flips)")
    p.add_argument("--samples", type=int, default=1000, help="number of images (default: %(default)s)")
    p.add_argument("--size", type=int, default=None, help="square image size (default: the model's input size)")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random crops (default: %(default)s)")
    p.add_argument("--device", default=None, help="torch device (default: cpu)")
    p.add_argument("--out", required=True, help="output file (.safetensors; a .json sidecar is written beside it)")
    add_model_flags(p)


def run(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from ..methods.bottleneck import default_layer, estimate_layer
    from ..models import load_classifier

    if args.samples < 2:
        raise UsageError(f"--samples must be >= 2, got {args.samples}")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    from pathlib import Path

    from ..outdir import check_output_dir

    if Path(args.out).is_dir():
        raise UsageError(f"--out {args.out}: is a folder; give a .safetensors file name")
    check_output_dir(Path(args.out).expanduser().parent)
    model = load_classifier(args.model, device=args.device, **model_kwargs(args))
    layer = args.layer or default_layer(model)
    if args.size is not None:
        if args.size < 8:
            raise UsageError(f"--size must be >= 8, got {args.size}")
        size = (args.size, args.size)
    else:
        size = tuple(model.input_size) if getattr(model, "input_size", None) else (224, 224)
    est = estimate_layer(model, layer, args.data, args.samples, size, batch_size=args.batch_size, seed=args.seed,
                         progress=not getattr(args, "quiet", False))
    path = est.save(args.out)
    print(f"saved {layer} statistics over {est.n} images, features {list(est.feature_shape)}, "
          f"{int(est.active.sum())}/{est.active.numel()} active -> {path}")
    return 0
