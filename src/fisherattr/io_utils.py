"""Atomic file writes: write to a temporary name in the same folder, then ``os.replace``.

A reader (or a crashed run) never sees a half-written file: either the old
file, or the complete new one.

Example:
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> p = write_json(os.path.join(d, "a.json"), {"x": 1})
    >>> open(p).read().strip().startswith("{")
    True
"""
from __future__ import annotations

import json
import math
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np


def _create_temp(path: Path) -> tuple[int, Path]:
    """Create a new, unique temporary file next to ``path``, opened for writing.

    Created with mode 0o666 so that the kernel applies the process umask (and any
    default ACL) exactly as for a plain ``open()``; the umask itself is never touched
    (changing it, even briefly, races with other threads creating files).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # O_EXCL: never reuses (or follows a link at) an existing name
            continue
    raise FileExistsError(f"cannot create a temporary file next to {path}")


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success it replaces ``path``, on error it is removed."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open supports modes 'w' and 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_open(path, "w") as f:
        f.write(text)
    return Path(path)


def _jsonable(obj: Any) -> Any:
    """Tensors, numpy values and non-finite floats -> plain JSON (NaN/inf become null)."""
    if hasattr(obj, "detach") and hasattr(obj, "tolist"):      # torch.Tensor
        obj = obj.detach().cpu().tolist()
    elif isinstance(obj, np.ndarray):
        obj = obj.tolist()
    elif isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Strict JSON (NaN and infinities written as null), indented, atomically."""
    return write_text(path, json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n")


def save_npy(path: str | os.PathLike, array: Any) -> Path:
    """``np.save`` to exactly ``path`` (no ``.npy`` appended), atomically."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    with atomic_open(path, "wb") as f:
        np.save(f, np.asarray(array), allow_pickle=False)
    return Path(path)


def save_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Save a uint8 ``[H,W,3]`` (or ``[H,W]``) array as PNG, atomically."""
    from PIL import Image

    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ValueError(f"save_png expects a uint8 array, got {a.dtype}")
    with atomic_open(path, "wb") as f:
        Image.fromarray(a).save(f, format="PNG")
    return Path(path)


def save_figure(path: str | os.PathLike, fig: Any, dpi: int = 100) -> Path:
    """Save a matplotlib figure as PNG, atomically."""
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight")
    return Path(path)


__all__ = ["atomic_open", "save_figure", "save_npy", "save_png", "write_bytes", "write_json", "write_text"]
