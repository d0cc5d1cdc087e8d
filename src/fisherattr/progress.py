"""Progress for long commands: a tqdm bar on a terminal, one plain line per step in a log.

tqdm redraws one line with carriage returns, which a log file or a CI console
shows as nothing (or as one endless line) until the job ends. :func:`progress_bar`
returns a tqdm bar when the stream is a terminal and a :class:`LineProgress`
otherwise, which prints ``desc: done/total (pct) item elapsed 0:12 ETA 0:36``
as a new line after each step (at most one line per ``min_interval`` seconds,
and always the last one). Both offer ``update``, ``set_postfix_str``, ``write``
and ``close`` and work as context managers; ``enabled=False`` (the commands'
``--quiet``) gives a bar that prints nothing.

Example:
    >>> import io
    >>> out = io.StringIO()
    >>> with progress_bar(2, "explain", unit="image", stream=out) as bar:
    ...     bar.set_postfix_str("chelsea")
    ...     bar.update(1)
    ...     bar.update(1)
    >>> out.getvalue().splitlines()[0].startswith("explain: 1/2 images (50%) chelsea elapsed ")
    True
"""
from __future__ import annotations

import sys
import time
from typing import IO, Any, Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")


def format_seconds(seconds: float) -> str:
    """``75.4`` -> ``"1:15"``; ``3725`` -> ``"1:02:05"``."""
    s = int(round(max(0.0, seconds)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def is_terminal(stream: Optional[IO[str]]) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # a closed stream
        return False


class LineProgress:
    """A progress counter that prints one self-contained line per step (for logs).

    Args:
        total: number of steps (``None``: unknown, no percentage or ETA).
        desc: label at the start of each line.
        unit: what a step is (pluralised with an ``s``).
        stream: where the lines go (default ``sys.stderr``).
        min_interval: least seconds between two lines (0 = a line per step);
            the final step always prints.
        enabled: ``False`` prints nothing.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> bar = LineProgress(4, "evaluate", unit="step", stream=out)
        >>> bar.update(4)
        >>> out.getvalue().split(" elapsed")[0]
        'evaluate: 4/4 steps (100%)'
    """

    def __init__(self, total: Optional[int], desc: str = "", unit: str = "item",
                 stream: Optional[IO[str]] = None, min_interval: float = 0.0, enabled: bool = True,
                 initial: int = 0, clock=time.monotonic) -> None:
        self.total = None if total is None else int(total)
        self.desc, self.unit = desc, unit
        self.stream = stream
        self.min_interval = float(min_interval)
        self.enabled = enabled
        self.clock = clock
        self.n = int(initial)
        self._initial = int(initial)
        self._start = clock()
        self._last_print: Optional[float] = None
        self.postfix = ""

    # -------------------------------------------------------------- output
    def _out(self) -> IO[str]:
        return self.stream if self.stream is not None else sys.stderr

    def line(self) -> str:
        """The current status line (without printing it)."""
        elapsed = self.clock() - self._start
        count = self.total if self.total is not None else self.n
        unit = self.unit if count == 1 else self.unit + "s"
        if self.total:
            head = f"{self.n}/{self.total} {unit} ({100 * self.n / self.total:.0f}%)"
        else:
            head = f"{self.n} {unit}"
        parts = [f"{self.desc}: {head}" if self.desc else head]
        if self.postfix:
            parts.append(self.postfix)
        parts.append(f"elapsed {format_seconds(elapsed)}")
        done = self.n - self._initial
        if self.total and 0 < done and self.n < self.total:
            parts.append(f"ETA {format_seconds(elapsed / done * (self.total - self.n))}")
        return " ".join(parts)

    def write(self, text: str) -> None:
        """Print a message on its own line (the counterpart of ``tqdm.write``)."""
        print(text, file=self._out(), flush=True)

    # ------------------------------------------------------------- counting
    def update(self, n: int = 1) -> None:
        self.n += int(n)
        if not self.enabled:
            return
        now = self.clock()
        last = self.total is not None and self.n >= self.total
        if last or self._last_print is None or now - self._last_print >= self.min_interval:
            self._last_print = now
            print(self.line(), file=self._out(), flush=True)

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:  # noqa: ARG002 - tqdm's signature
        self.postfix = str(text)

    def set_postfix(self, ordered_dict: Optional[dict] = None, refresh: bool = True,  # noqa: ARG002
                    **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_description(self, desc: str = "", refresh: bool = True) -> None:  # noqa: ARG002
        self.desc = str(desc)

    def close(self) -> None:
        pass

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress_bar(total: Optional[int], desc: str = "", unit: str = "item", enabled: bool = True,
                 stream: Optional[IO[str]] = None, min_interval: float = 0.0, **tqdm_kwargs: Any):
    """A tqdm bar on a terminal, a :class:`LineProgress` otherwise (or when disabled).

    ``min_interval`` applies to the line mode only (seconds between lines);
    ``tqdm_kwargs`` (e.g. ``position``, ``leave``, ``initial``) go to tqdm only,
    except ``initial`` which both take.
    """
    out = stream if stream is not None else sys.stderr
    if enabled and is_terminal(out):
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, file=out, dynamic_ncols=True, **tqdm_kwargs)
    return LineProgress(total, desc, unit=unit, stream=stream, min_interval=min_interval, enabled=enabled,
                        initial=int(tqdm_kwargs.get("initial", 0)))


def progress_iter(iterable: Iterable[T], total: Optional[int] = None, desc: str = "", unit: str = "item",
                  enabled: bool = True, stream: Optional[IO[str]] = None,
                  min_interval: float = 0.0, **tqdm_kwargs: Any) -> Iterator[T]:
    """Iterate ``iterable`` while counting it on :func:`progress_bar`.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> [i for i in progress_iter(range(3), desc="steps", stream=out)]
        [0, 1, 2]
        >>> len(out.getvalue().splitlines())
        3
    """
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    bar = progress_bar(total, desc, unit=unit, enabled=enabled, stream=stream, min_interval=min_interval,
                       **tqdm_kwargs)
    try:
        for item in iterable:
            yield item
            bar.update(1)
    finally:
        bar.close()


def echo(text: str, stream: Optional[IO[str]] = None) -> None:
    """Print a message without breaking a tqdm bar on a terminal (``tqdm.write``), plainly otherwise."""
    out = stream if stream is not None else sys.stderr
    if is_terminal(out):
        from tqdm.auto import tqdm

        tqdm.write(text, file=out)
    else:
        print(text, file=out, flush=True)


__all__ = ["LineProgress", "echo", "format_seconds", "is_terminal", "progress_bar", "progress_iter"]
