"""On-disk state of an evaluation run, built so that an interrupted run resumes losslessly.

Layout of the output folder:

- ``attributions/<method>/<image>.npy``: each attribution, written atomically
  (temporary name + ``os.replace``): a file that exists is complete.
- ``images/<image>.png``: the input as the model saw it (for the qualitative grid).
- ``run.json``: the settings every cached value depends on (model, data,
  size, seed, target rule, preset, options); resuming with other settings is refused.
- ``records.jsonl``: one JSON object per finished (image, method, metric)
  result (and per attribution, ``metric = "_attribution"``, with its wall time),
  appended and ``fsync``-ed one line at a time. A torn last line left by a
  kill is ignored on reading and never merged with the next record.
- ``records.shard-K-of-N.jsonl``: the same, written by worker K of N of a
  parallel run (``--workers``/``--shard``); every store reads all record files,
  and a successful record is never replaced by a failure of the same item.

Example:
    >>> import tempfile
    >>> st = ResultStore(tempfile.mkdtemp())
    >>> st.append({"image": "a", "method": "m", "metric": "mnim", "outcome": {}})
    >>> st.has("a", "m", "mnim"), len(ResultStore(st.root).records())
    (True, 1)
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch

from ..io_utils import save_npy, save_png

RECORDS = "records.jsonl"
SETTINGS = "run.json"


def shard_records_name(shard: Tuple[int, int]) -> str:
    """File name of worker ``shard = (k, n)``'s records (k counted from 0)."""
    return f"records.shard-{shard[0] + 1}-of-{shard[1]}.jsonl"


def run_lock(root: str | os.PathLike, shard: Optional[Tuple[int, int]] = None):
    """The lock one ``evaluate`` process holds on its folder (one per share for ``--shard`` runs).

    A second run into the same folder is refused with its holder's PID; shares of one
    run (``--shard K/N``, different K) may still share the folder.
    """
    from ..outdir import LOCK_NAME, FolderLock

    name = LOCK_NAME if shard is None else f"{LOCK_NAME}.shard-{shard[0] + 1}-of-{shard[1]}"
    return FolderLock(root, name=name, what="evaluate" if shard is None else f"evaluate --shard {shard[0] + 1}/{shard[1]}")


def safe_name(name: str) -> str:
    """A file-system-safe version of an image or method name."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._") or "x"


class ResultStore:
    """Attribution cache and append-only result records under ``root``.

    ``shard = (k, n)``: this store appends to worker k's own records file, so that
    n processes can share one folder; it still reads every worker's records.
    """

    def __init__(self, root: str | os.PathLike, shard: Optional[Tuple[int, int]] = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / (shard_records_name(shard) if shard else RECORDS)
        self._done: Dict[Tuple[str, str, str], dict] = {}
        for rec in self._read():
            self._keep(rec)

    def _keep(self, rec: dict) -> None:
        key = (rec["image"], rec["method"], rec["metric"])
        old = self._done.get(key)
        if old is None or "error" in old or "error" not in rec:
            self._done[key] = rec

    def check_settings(self, settings: dict) -> None:
        """Record the run's settings on first use; refuse to resume a folder made with other settings."""
        from ..errors import UsageError
        from ..io_utils import _jsonable, write_json

        p = self.root / SETTINGS
        want = json.loads(json.dumps(_jsonable(settings)))
        if p.exists():
            have = json.loads(p.read_text(encoding="utf-8"))
            diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
            if diff:
                k = diff[0]
                raise UsageError(f"{self.root} holds a run with other settings ({k}: {have.get(k)!r} there, "
                                 f"{want.get(k)!r} now); use another --out or the same settings to resume")
        elif any(f.stat().st_size > 0 for f in self.record_files()):
            raise UsageError(f"{self.root} holds results of unknown settings (no {SETTINGS}); use another --out")
        else:
            write_json(p, want)

    # --------------------------------------------------------------- records
    def record_files(self) -> List[Path]:
        """Every records file in the folder: the workers' first, the main one last."""
        shards = sorted(self.root.glob("records.shard-*.jsonl"))
        main = self.root / RECORDS
        return shards + ([main] if main.exists() else [])

    def _read(self) -> Iterator[dict]:
        for path in self.record_files():
            yield from self._read_file(path)

    @staticmethod
    def _read_file(path: Path) -> Iterator[dict]:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # torn line of a killed run
                if isinstance(rec, dict) and {"image", "method", "metric"} <= rec.keys():
                    yield rec

    def records(self) -> List[dict]:
        """The latest record per (image, method, metric)."""
        return list(self._done.values())

    def has(self, image: str, method: str, metric: str) -> bool:
        return (image, method, metric) in self._done

    def get(self, image: str, method: str, metric: str) -> Optional[dict]:
        return self._done.get((image, method, metric))

    def append(self, record: dict) -> None:
        """Append one record durably (flush + fsync), starting a new line if the file was torn."""
        from ..io_utils import _jsonable

        line = json.dumps(_jsonable(record), allow_nan=False)
        with open(self.path, "a+b") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")
            f.write(line.encode("utf-8") + b"\n")
            f.flush()
            os.fsync(f.fileno())
        self._keep(json.loads(line))

    # ---------------------------------------------------------- attributions
    def attribution_path(self, method: str, image: str) -> Path:
        return self.root / "attributions" / safe_name(method) / f"{safe_name(image)}.npy"

    def load_attribution(self, method: str, image: str) -> Optional[torch.Tensor]:
        p = self.attribution_path(method, image)
        if not p.exists():
            return None
        try:
            return torch.from_numpy(np.load(p, allow_pickle=False)).unsqueeze(0)
        except (ValueError, OSError):
            return None

    def save_attribution(self, method: str, image: str, attribution: torch.Tensor) -> Path:
        """Save ``[1,C,H,W]`` as ``[C,H,W]`` float32, atomically."""
        return save_npy(self.attribution_path(method, image), attribution[0].detach().cpu().float().numpy())

    def image_path(self, image: str) -> Path:
        return self.root / "images" / f"{safe_name(image)}.png"

    def save_image(self, image: str, x: torch.Tensor) -> None:
        p = self.image_path(image)
        if not p.exists():
            a = (x[0].detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
            save_png(p, a)
