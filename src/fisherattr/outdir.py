"""Output folders: checked before any work, earlier runs cleared on request, one writer at a time.

- :func:`check_output_dir`: a one-line :class:`UsageError` when ``--out`` is a file,
  has a file in its way or cannot be written; nothing is created.
- :class:`RunFolder`: the files an earlier run of a command left in a folder; a new
  run refuses such a folder unless told to overwrite, and then removes exactly those
  files (never anything it did not write), so that the folder holds only what the
  new run's summary lists.
- :class:`FolderLock`: an exclusive lock on a folder for one process (``flock``; the
  operating system drops it when the process dies, so a stale lock file is simply
  taken over); a second process gets a one-line error naming the holder's PID.

Example:
    >>> import tempfile
    >>> out = check_output_dir(tempfile.mkdtemp() + "/run", "--out")
    >>> with FolderLock(out, what="evaluate"):
    ...     (out / ".fisherattr.lock").exists()
    True
    >>> out.exists()   # created for the lock, removed again because it stayed empty
    False
"""
from __future__ import annotations

import errno
import json
import os
import socket
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

from .errors import UsageError

try:  # POSIX; elsewhere the lock falls back to a PID file
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".fisherattr.lock"


def check_output_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """``path`` as a Path if it is, or can be made, a writable folder; else a one-line :class:`UsageError`.

    Creates nothing: the nearest existing ancestor must be a folder this process may write.
    """
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise UsageError(f"{flag} {p}: is a file, not a folder")
    q = p
    while not q.exists():
        if q.is_symlink():
            raise UsageError(f"{flag} {p}: {q} is a broken link")
        q = q.parent
    if not q.is_dir():
        raise UsageError(f"{flag} {p}: {q} is a file, so the folder cannot be made")
    if not os.access(q, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {p}: {q} is not writable")
    return p


class RunFolder:
    """The output folder of a command whose runs are made of top-level files and per-item folders.

    Args:
        path: the folder (``--out``).
        top: names of the run's top-level files (e.g. ``summary.json``, ``grid.png``).
        marker: the file every per-item folder holds (e.g. ``input.png``); those folders'
            ``.npy``/``.png``/``.json`` files belong to the run.
        summary: the top-level JSON file that lists the run's outputs (paths relative to the folder).

    Example:
        >>> import tempfile
        >>> run = RunFolder(tempfile.mkdtemp(), top=("summary.json",), marker="input.png")
        >>> run.check(overwrite=False).earlier_files()
        []
    """

    SUFFIXES = (".npy", ".png", ".json", ".html")

    def __init__(self, path: str | os.PathLike, top: Sequence[str], marker: str,
                 summary: Optional[str] = "summary.json", flag: str = "--out") -> None:
        self.path = Path(path).expanduser()
        self.top, self.marker, self.summary, self.flag = tuple(top), marker, summary, flag
        self.overwrite = False

    def check(self, overwrite: bool) -> "RunFolder":
        """Refuse (one line) a folder that cannot be written, or that holds an earlier run unless ``overwrite``."""
        check_output_dir(self.path, self.flag)
        self.overwrite = bool(overwrite)
        found = self.earlier_files()
        if found and not overwrite:
            raise UsageError(f"{self.flag} {self.path} holds an earlier run ({len(found)} files, e.g. "
                             f"{found[0].relative_to(self.path)}); pass --overwrite to replace it, "
                             "or choose another folder")
        return self

    def earlier_files(self) -> List[Path]:
        """Files of an earlier run in the folder: its top-level files, its item folders' outputs,
        what its summary lists, and temporary files left by an interrupted write."""
        if not self.path.is_dir():
            return []
        found = {self.path / n for n in self.top}
        found |= set(self.path.glob(".*.tmp"))
        for sub in self.path.iterdir():
            if sub.is_dir() and not sub.is_symlink() and (sub / self.marker).is_file():
                found |= {f for f in sub.iterdir() if f.suffix in self.SUFFIXES or
                          (f.name.startswith(".") and f.suffix == ".tmp")}
        found |= set(self._listed())
        return sorted(f for f in found if f.is_file() or f.is_symlink())

    def _listed(self) -> Iterable[Path]:
        """Paths the earlier summary names (strings ending in a known suffix, inside the folder)."""
        if not self.summary or not (self.path / self.summary).is_file():
            return []
        try:
            data = json.loads((self.path / self.summary).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        out, stack, root = [], [data], self.path.resolve()
        while stack:
            v = stack.pop()
            if isinstance(v, dict):
                stack.extend(v.values())
            elif isinstance(v, list):
                stack.extend(v)
            elif isinstance(v, str) and v.endswith(self.SUFFIXES) and not os.path.isabs(v):
                p = self.path / v
                if _inside(p.resolve(), root):
                    out.append(p)
        return out

    def clear(self) -> int:
        """With ``overwrite``: remove the earlier run's files (and item folders left empty); returns the count."""
        if not self.overwrite:
            return 0
        files = self.earlier_files()
        for f in files:
            try:
                f.unlink()
            except FileNotFoundError:
                pass
            except OSError as e:
                raise UsageError(f"{self.flag} {self.path}: cannot remove {f} ({e.strerror})") from None
        for d in {f.parent for f in files} - {self.path}:
            try:
                d.rmdir()  # only when empty: a user's own files stay
            except OSError:
                pass
        return len(files)


def _inside(path: Path, root: Path) -> bool:
    return path.is_relative_to(root)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except OSError:
        return False
    return True


def _read(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 200).decode("utf-8", "replace").strip()


#: Locks this process holds: path -> [fd, count] (re-entrant within one process).
_HELD: Dict[str, List[int]] = {}


class FolderLock:
    """An exclusive, per-process lock on ``folder`` (created if missing; removed on release if left empty).

    A second process that asks for it gets a :class:`UsageError` naming the holder's PID.
    The lock is an ``flock`` on ``folder/.fisherattr.lock`` (``name``): the system releases it
    when the holder dies, so a lock file left by a killed run is taken over. Re-entrant
    within one process. Where ``flock`` is missing the file's PID decides (a dead PID is stale).

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> with FolderLock(d, what="evaluate"):
        ...     with FolderLock(d):   # the same process may take it again
        ...         (Path(d) / LOCK_NAME).exists()
        True
    """

    def __init__(self, folder: str | os.PathLike, name: str = LOCK_NAME, what: str = "run",
                 flag: str = "--out") -> None:
        self.folder = Path(folder).expanduser()
        self.path = self.folder / name
        self.what, self.flag = what, flag
        self._created = False

    @property
    def _key(self) -> str:
        return str(self.path.resolve())

    def acquire(self) -> "FolderLock":
        if not self.folder.is_dir():
            check_output_dir(self.folder, self.flag)
            try:
                self.folder.mkdir(parents=True)
                self._created = True
            except FileExistsError:
                pass
            except OSError as e:
                raise UsageError(f"{self.flag} {self.folder}: cannot create the folder ({e.strerror})") from None
        held = _HELD.get(self._key)
        if held is not None:
            held[1] += 1
            return self
        fd = self._lock_file() if fcntl is not None else self._pid_file()
        _HELD[self._key] = [fd, 1]
        return self

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise UsageError(f"{self.flag} {self.folder}: cannot create {self.path.name} ({e.strerror})") from None

    def _refuse(self, holder: str) -> UsageError:
        return UsageError(f"{self.flag} {self.folder} is in use by another {self.what} run ({holder}); "
                          f"wait for it to finish or use another {self.flag}")

    def _lock_file(self) -> int:
        for _ in range(20):
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = _read(fd)
                os.close(fd)
                if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                    raise self._refuse(f"PID {holder.split('@')[0]}" if holder else "PID unknown") from None
                return self._pid_file()  # a file system without flock
            try:  # the holder we waited for may have removed the file: lock the one now in place
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._write_pid(fd)
                return fd
            os.close(fd)
        raise self._refuse("lock file keeps changing")

    def _pid_file(self) -> int:
        fd = self._open()
        text = _read(fd)
        pid, _, host = text.partition("@")
        if pid.isdigit() and int(pid) != os.getpid() and (host != socket.gethostname() or _pid_alive(int(pid))):
            os.close(fd)
            raise self._refuse(f"PID {pid}" + (f" on {host}" if host != socket.gethostname() else ""))
        self._write_pid(fd)  # no holder, or a dead one: take over
        return fd

    @staticmethod
    def _write_pid(fd: int) -> None:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}@{socket.gethostname()}\n".encode())

    def release(self) -> None:
        held = _HELD.get(self._key)
        if held is None:
            return
        held[1] -= 1
        if held[1] > 0:
            return
        del _HELD[self._key]
        try:
            self.path.unlink()  # while still locked: a waiting process re-checks the file it locked
        except FileNotFoundError:
            pass
        os.close(held[0])
        if self._created:
            try:
                self.folder.rmdir()
            except OSError:
                pass

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


__all__ = ["FolderLock", "LOCK_NAME", "RunFolder", "check_output_dir"]
