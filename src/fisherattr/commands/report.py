"""``fisherattr report DIR``: re-render results.md, results.csv and the figures from DIR/results.json.

Example:
    fisherattr report eval
"""
from __future__ import annotations

import argparse

NAME = "report"
HELP = "Re-render the tables and figures of an evaluation folder from its results.json."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="an evaluation output folder (with results.json)")
    p.add_argument("--no-figures", action="store_true", help="tables only")


def run(args: argparse.Namespace) -> int:
    from ..bench.report import render

    for path in render(args.dir, figures=not args.no_figures):
        print(path)
    return 0
