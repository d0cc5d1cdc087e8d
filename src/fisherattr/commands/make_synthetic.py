"""``fisherattr make-synthetic --n N --out DIR``: write the synthetic world as a folder with masks.

Layout (read by the folder loader of the evaluation code)::

    DIR/<class_name>/<i>.png          the image (RGB, 8 bit)
    DIR/<class_name>/<i>.mask.png     the exact object mask (L, 0 or 255)
    DIR/<class_name>/<i>.boxes.json   [[x0, y0, x1, y1]] (x1/y1 exclusive)

``<i>`` is the image's index in its split, zero-padded to six digits, so the
files are the same images :func:`fisherattr.data.synthetic.load_samples` returns.
``--images-only`` leaves out the sidecars (for tools that read every image in a
folder, e.g. ``fisherattr train-denoiser --data DIR``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import UsageError
from ..progress import progress_iter

NAME = "make-synthetic"
HELP = "Write N procedural images with exact object masks and boxes (class folders + sidecars)."


def write_synthetic(out: str | Path, n: int, size: int = 64, seed: int = 0, split: str = "test",
                    classes: int = 8, progress: bool = False, images_only: bool = False) -> Path:
    """Write images ``0..n-1`` of ``split`` to ``out`` (see the module docstring); returns ``out``.

    Example:
        >>> import tempfile
        >>> d = write_synthetic(tempfile.mkdtemp(), n=2)
        >>> sorted(p.name for p in (d / "disc-solid").iterdir())
        ['000000.boxes.json', '000000.mask.png', '000000.png']
    """
    import numpy as np
    from PIL import Image

    from ..data.synthetic import class_names, scene

    if n < 1:
        raise UsageError(f"--n must be >= 1, got {n}")
    names = class_names(classes)
    out = Path(out)
    for i in progress_iter(range(n), desc="make-synthetic", unit="image", enabled=progress, min_interval=10):
        s = scene(i, size, seed, split, classes)
        folder = out / names[s.label]
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{i:06d}"
        Image.fromarray(s.compose()).save(folder / f"{stem}.png")
        if images_only:
            continue
        Image.fromarray(s.mask.astype(np.uint8) * 255).save(folder / f"{stem}.mask.png")
        (folder / f"{stem}.boxes.json").write_text(json.dumps([list(s.box)]))
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, required=True, help="number of images")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--size", type=int, default=64, help="image size in pixels (default 64)")
    p.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="split (default test)")
    p.add_argument("--classes", type=int, default=8, help="number of classes, 6..10 (default 8)")
    p.add_argument("--images-only", action="store_true", help="write the images without mask/box sidecars")


def run(args: argparse.Namespace) -> int:
    out = write_synthetic(args.out, args.n, args.size, args.seed, args.split, args.classes,
                          progress=args.n > 500 and not getattr(args, "quiet", False), images_only=args.images_only)
    print(f"wrote {args.n} images to {out}")
    return 0
