"""``fisherattr list methods|models|samples|metrics``."""
from __future__ import annotations

import argparse
import importlib

NAME = "list"
HELP = "List the available methods, models, sample photos or metrics."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=["methods", "models", "samples", "metrics"])


def run(args: argparse.Namespace) -> int:
    if args.what == "methods":
        from .. import list_methods
        from ..methods.registry import method_class

        for name in list_methods():
            doc = (method_class(name).__doc__ or "").strip().splitlines()
            print(f"{name:22s} {doc[0] if doc else ''}")
    elif args.what == "models":
        from ..models import available_models

        print("\n".join(available_models()))
    elif args.what == "samples":
        from ..data import list_samples

        for k, v in list_samples().items():
            print(f"{k:14s} {v}")
    else:
        try:
            metrics = importlib.import_module("fisherattr.metrics")
            names = metrics.list_metrics()
        except (ImportError, AttributeError):
            names = []
        print("\n".join(names) if names else "(no metrics installed)")
    return 0
