"""``fisherattr.progress``: one line per step in a log, a tqdm bar on a terminal, nothing when quiet."""
from __future__ import annotations

import io

from fisherattr.progress import LineProgress, format_seconds, progress_bar, progress_iter


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_format_seconds():
    assert [format_seconds(s) for s in (0, 59.4, 75.4, 3725, -3)] == ["0:00", "0:59", "1:15", "1:02:05", "0:00"]


def test_one_line_per_step_with_elapsed_and_eta():
    out, clock = io.StringIO(), FakeClock()
    bar = LineProgress(4, "explain", unit="map", stream=out, clock=clock)
    clock.t = 10.0
    bar.set_postfix_str("chelsea/fda")
    bar.update(1)
    clock.t = 20.0
    bar.update(1)
    clock.t = 50.0
    bar.update(2)
    assert out.getvalue().splitlines() == [
        "explain: 1/4 maps (25%) chelsea/fda elapsed 0:10 ETA 0:30",  # 10 s per map so far, 3 to go
        "explain: 2/4 maps (50%) chelsea/fda elapsed 0:20 ETA 0:20",
        "explain: 4/4 maps (100%) chelsea/fda elapsed 0:50",
    ]


def test_min_interval_throttles_but_prints_the_last_step():
    out, clock = io.StringIO(), FakeClock()
    bar = LineProgress(5, "evaluate", unit="step", stream=out, min_interval=10, clock=clock)
    for t in (1, 2, 3, 12, 13):
        clock.t = t
        bar.update(1)
    lines = out.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == ["evaluate: 1/5 steps", "evaluate: 4/5 steps",
                                                         "evaluate: 5/5 steps"]


def test_unknown_total_and_postfix_dict():
    out = io.StringIO()
    bar = LineProgress(None, "training", unit="step", stream=out)
    bar.set_postfix(loss="0.123")
    bar.update(3)
    assert out.getvalue().startswith("training: 3 steps loss=0.123 elapsed ")
    assert "ETA" not in out.getvalue()


def test_disabled_prints_nothing_but_still_counts():
    out = io.StringIO()
    bar = progress_bar(3, "explain", enabled=False, stream=out)
    bar.update(3)
    assert out.getvalue() == "" and bar.n == 3
    assert list(progress_iter(range(3), enabled=False, stream=out)) == [0, 1, 2] and out.getvalue() == ""


def test_terminal_gets_tqdm_and_log_gets_lines():
    from tqdm.auto import tqdm

    tty_bar = progress_bar(2, "x", stream=FakeTTY())
    try:
        assert isinstance(tty_bar, tqdm)
    finally:
        tty_bar.close()
    assert isinstance(progress_bar(2, "x", stream=io.StringIO()), LineProgress)
    out = io.StringIO()
    assert list(progress_iter(iter("ab"), desc="letters", stream=out)) == ["a", "b"]
    assert [line.split(" elapsed")[0] for line in out.getvalue().splitlines()] == ["letters: 1 item",
                                                                                     "letters: 2 items"]
