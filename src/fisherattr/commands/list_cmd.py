"""``fisherattr list [methods|models|samples|metrics|presets]``: what this install offers.

Read from :mod:`fisherattr.catalog` (plain data, checked against the registries
by the tests), so listing takes a fraction of a second: nothing imports torch.

Example:
    fisherattr list                # everything, briefly
    fisherattr list methods        # family, cost class, output shape; * = explain's defaults
    fisherattr list models         # which work here and which need a library
"""
from __future__ import annotations

import argparse
from typing import List

NAME = "list"
HELP = "List the available methods, models, sample photos, metrics or insertion/deletion presets."
WHAT = ("methods", "models", "samples", "metrics", "presets")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", nargs="?", choices=WHAT, default=None, help="what to list (default: all of it)")


def methods_table() -> List[str]:
    from ..catalog import COST_CLASSES, IG_NOTE, METHODS
    from .explain import DEFAULT_METHODS

    lines = [f"{'method':22s} {'family':12s} {'cost':7s} {'output':8s} description"]
    for name, info in sorted(METHODS.items()):
        mark = " *" if name in DEFAULT_METHODS else ""
        lines.append(f"{name + mark:22s} {info.family:12s} {info.cost:7s} {info.shape:8s} {info.summary}")
    lines += ["", "* run by `fisherattr explain` when --methods is not given.",
              "output: [C,H,W] = one value per colour channel and pixel, [1,H,W] = one per pixel (or cell/region).",
              "cost (CPU, 224 px): " + "; ".join(f"{k} = {v}" for k, v in COST_CLASSES.items()) + ".",
              "note: " + IG_NOTE,
              "options: -o METHOD.KEY=VALUE with any keyword of the method's class (docs/explain.md)."]
    return lines


def models_table() -> List[str]:
    from ..catalog import MODEL_FORMS, MODEL_LIBRARIES, MODELS, library_available

    lines = [f"{'model':22s} {'here':34s} description"]
    for name, desc in MODELS.items():
        lines.append(f"{name:22s} {'available':34s} {desc}")
    for _, (module, desc) in MODEL_LIBRARIES.items():
        here = "available" if library_available(module) else f"needs {module} (not installed)"
        lines.append(f"{module + ':<name>':22s} {here:34s} {desc}")
    for form, desc in MODEL_FORMS:
        lines.append(f"{form:22s} {'available':34s} {desc}")
    lines += ["", "Your own nn.Module in Python: fisherattr.Classifier(net, mean, std, classes, input_size) "
                  "(README, 'Your own model')."]
    return lines


def samples_table() -> List[str]:
    from ..catalog import OPTIONAL_SAMPLES, SAMPLES, sample_names

    both = {**SAMPLES, **OPTIONAL_SAMPLES}
    return [f"{k:14s} {both[k]}" for k in sample_names()]


def metrics_table() -> List[str]:
    from ..catalog import METRICS

    lines = [f"{'metric':15s} {'needs':8s} description"]
    lines += [f"{k:15s} {needs:8s} {desc}" for k, (needs, desc) in METRICS.items()]
    lines += ["", "needs: none = any image; region/mask/boxes = an annotation; mosaic = 2x2 mosaics; "
                  "method = recomputes the attribution."]
    return lines


def presets_table() -> List[str]:
    from ..catalog import INSDEL_PRESETS

    return [f"insertion/deletion presets (--preset): {', '.join(INSDEL_PRESETS)}; "
            "see docs/evaluation.md"]


_TABLES = {"methods": methods_table, "models": models_table, "samples": samples_table,
           "metrics": metrics_table, "presets": presets_table}


def run(args: argparse.Namespace) -> int:
    if args.what is not None:
        print("\n".join(_TABLES[args.what]()))
        return 0
    for i, what in enumerate(WHAT):
        if i:
            print()
        print(f"== {what} (fisherattr list {what}) ==")
        print("\n".join(_TABLES[what]()))
    return 0
