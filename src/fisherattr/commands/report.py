"""``fisherattr report DIR``: re-render results.md, results.csv and the figures from DIR/results.json,
and print the ranked table (mean ± standard error, best first by DifAUC).

Examples:
    fisherattr report eval
    fisherattr report eval --columns ehr,seg_ratio,difauc --sort ehr     # a compact table on stdout
    fisherattr report eval --columns ehr --partial   # a run still going: its finished images so far
    fisherattr report outputs --html                 # only report.html (explain or evaluate folders)

A folder without results.json (a run still going, or stopped) is summarised from
its records so far, over the images every method has finished.
"""
from __future__ import annotations

import argparse

NAME = "report"
HELP = "Re-render the tables and figures of an evaluation folder and print its ranked table."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="an evaluation output folder (with results.json)")
    p.add_argument("--no-figures", action="store_true", help="tables only")
    p.add_argument("--columns", default=None, metavar="C1,C2",
                   help="print a compact markdown table of these columns (e.g. ehr,seg_ratio,difauc) "
                        "to stdout instead of re-rendering the files")
    p.add_argument("--sort", default=None, metavar="C", help="with --columns: sort by this column, best first "
                   "(default: the first column)")
    p.add_argument("--sem", action="store_true", help="with --columns: add ± standard errors")
    p.add_argument("--html", action="store_true",
                   help="write DIR/report.html (one self-contained page: table, gallery, curves, settings) and "
                        "nothing else; DIR may also be an `explain` output folder")
    p.add_argument("--max-images", type=int, default=12, metavar="N", help="with --html: gallery images (default 12)")
    p.add_argument("--partial", action="store_true",
                   help="summarise the records so far even if results.json exists (automatic when it does not)")


def run(args: argparse.Namespace) -> int:
    import sys

    from ..bench.report import compact_table, load_results, render

    if args.html:
        from ..bench.html_report import write_report
        from ..errors import UsageError

        if args.max_images < 0:
            raise UsageError(f"--max-images must be >= 0, got {args.max_images}")
        print(write_report(args.dir, max_images=args.max_images))
        return 0
    partial = args.partial  # without results.json, load_results summarises the records anyway
    if args.columns is not None or args.sort is not None:
        cols = [c.strip() for c in (args.columns or args.sort or "").split(",") if c.strip()]
        res = load_results(args.dir, partial=partial)
        if res.get("partial"):
            print(f"partial: {res['partial']['images']} finished items ({res['partial']['started']} started); "
                  "the run has not finished", file=sys.stderr)
        print(compact_table(res, cols, sort=args.sort, sem=args.sem))
        return 0
    for path in render(args.dir, figures=not args.no_figures, partial=partial):
        print(path)
    res = load_results(args.dir, partial=partial)
    cols = [c["column"] for c in res["columns"]]
    if cols:  # the ranked table: every column, best first by DifAUC when measured (else the first column)
        print()
        print(compact_table(res, cols, sort="difauc" if "difauc" in cols else cols[0], sem=True))
    return 0
