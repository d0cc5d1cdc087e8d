"""The ``fisherattr`` command.

Each sub-command lives in its own module under ``fisherattr.commands`` and
exposes ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
Exit codes: 0 success, 1 some items failed, 2 usage error.

Command modules import torch and the like inside ``run`` (never at module
level), so that ``fisherattr --help`` and ``fisherattr list`` start in well
under a second. Options shared by every command are added here, once:
``--quiet``/``-q`` (no progress output; ``--no-progress`` is its old name).
"""
from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
from typing import List, Optional

from .errors import UsageError

_COMMAND_MODULES = (
    "explain", "evaluate", "report", "list_cmd", "train_denoiser", "train_explainer",
    "estimate_bottleneck", "make_synthetic", "train_classifier",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit code 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """The options every sub-command has, spelled the same everywhere."""
    p.add_argument("--quiet", "-q", action="store_true",
                   help="no progress output (errors and the final table are still printed)")
    p.add_argument("--no-progress", dest="quiet", action="store_true", help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fisherattr", description="Explain image classifiers and measure the explanations.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"fisherattr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in _COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"fisherattr.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"fisherattr.commands.{name}":
                continue
            raise
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        add_common_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for key, value in vars(args).items():  # argparse's float() reads "nan" and "inf": never a valid setting
        if isinstance(value, float) and not math.isfinite(value):
            print(f"fisherattr {args.command}: error: --{key.replace('_', '-')}: {value} is not a finite number",
                  file=sys.stderr)
            return 2
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except UsageError as e:
        print(f"fisherattr {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        try:
            sys.stdout = open(os.devnull, "w")  # no second error when Python flushes at exit
        except OSError:
            pass
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
