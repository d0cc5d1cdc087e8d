"""``fisherattr report DIR``: re-render results.md, results.csv and the figures from DIR/results.json.

Examples:
    fisherattr report eval
    fisherattr report eval --columns ehr,seg_ratio,difauc --sort ehr     # a compact table on stdout
"""
from __future__ import annotations

import argparse

NAME = "report"
HELP = "Re-render the tables and figures of an evaluation folder from its results.json."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="an evaluation output folder (with results.json)")
    p.add_argument("--no-figures", action="store_true", help="tables only")
    p.add_argument("--columns", default=None, metavar="C1,C2",
                   help="print a compact markdown table of these columns (e.g. ehr,seg_ratio,difauc) "
                        "to stdout instead of re-rendering the files")
    p.add_argument("--sort", default=None, metavar="C", help="with --columns: sort by this column, best first "
                   "(default: the first column)")
    p.add_argument("--sem", action="store_true", help="with --columns: add ± standard errors")


def run(args: argparse.Namespace) -> int:
    from ..bench.report import compact_table, load_results, render

    if args.columns is not None or args.sort is not None:
        cols = [c.strip() for c in (args.columns or args.sort or "").split(",") if c.strip()]
        print(compact_table(load_results(args.dir), cols, sort=args.sort, sem=args.sem))
        return 0
    for path in render(args.dir, figures=not args.no_figures):
        print(path)
    return 0
