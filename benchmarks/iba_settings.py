"""DifAUC of IBA and InputIBA with the official IBA settings against the previous ones (issue 17).

Issue 17 aligned our bottleneck with the official IBA package: ``std`` clamped
to at least ``min_std = 0.01`` and the bottleneck output multiplied by the
active-neuron mask. Before, ``std`` was clamped at 1e-5 and nothing was masked.
This script runs both settings on the sample photos and scores every map by
insertion/deletion under the ``inputiba`` preset (100 steps of 1%, black,
softmax, trapezoid).

- ``iba``: the settings are its options: ``min_std=0.01, mask_output=True``
  (official, the default) against ``min_std=1e-5, mask_output=False``.
- ``input-iba``: its feature stage is the same bottleneck (``fit_feature_bottleneck``
  with the defaults), and its GAN stage clamps ``std`` at ``MIN_STD``. InputIBA
  has no options for these, so the previous setting is restored here for the
  duration of the run: feature stage ``min_std=1e-5, mask_output=False``, GAN
  stage without a clamp (as before issue 17).

It also reports, per bottleneck layer, how many features each rule can touch:
the share of estimated stds below 0.01 and of inactive neurons (active in
<= 1% of the estimation samples). Where both are zero the two settings are the
same computation, and the maps must agree exactly.

Results go to the terminal and, after every photo, to ``OUT/iba_settings.json``.

Run:  python benchmarks/iba_settings.py --threads 1 [--images chelsea,coffee] [--methods iba,input-iba]
      [--out docs/results/iba-settings]
"""
from __future__ import annotations

import contextlib
import datetime
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import default_setup, timed  # noqa: E402

import fisherattr  # noqa: E402
import fisherattr.methods.input_iba as input_iba  # noqa: E402
from fisherattr.methods.bottleneck import MIN_STD, load_or_estimate  # noqa: E402
from fisherattr.metrics.insertion_deletion import insertion_deletion  # noqa: E402

METHODS = ("iba", "input-iba")
PREVIOUS_MIN_STD = 1e-5
#: setting name -> IBA options
SETTINGS: Dict[str, Dict] = {
    "official": {"min_std": MIN_STD, "mask_output": True},
    "previous": {"min_std": PREVIOUS_MIN_STD, "mask_output": False},
}


@contextlib.contextmanager
def input_iba_setting(setting: str) -> Iterator[None]:
    """InputIBA with the ``previous`` rules while inside (``official`` = its code as it is)."""
    if setting == "official":
        yield
        return
    fit, min_std = input_iba.fit_feature_bottleneck, input_iba.MIN_STD
    input_iba.fit_feature_bottleneck = functools.partial(fit, **SETTINGS["previous"])
    input_iba.MIN_STD = 0.0          # the GAN stage's clamp_min(0) leaves a (positive) std as it is
    try:
        yield
    finally:
        input_iba.fit_feature_bottleneck, input_iba.MIN_STD = fit, min_std


def build(model, method: str, setting: str):
    opts = SETTINGS[setting] if method == "iba" else {}
    return fisherattr.get_method(method, model, progress=False, **opts)


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except OSError:
        return ""


def main(argv=None) -> int:
    args, model, images = default_setup(argv, out={"default": "docs/results/iba-settings"},
                                        methods={"default": ",".join(METHODS)})
    methods = [m for m in args.methods.split(",") if m]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    layers = {m: build(model, m, "official").layer for m in methods}
    report = {
        "command": "python benchmarks/iba_settings.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": datetime.date.today().isoformat(), "commit": git_commit(), "torch": torch.__version__,
        "machine": platform.machine(), "threads": args.threads, "model": args.model, "preset": "inputiba",
        "settings": {"official": "min_std 0.01, z *= active neurons (the default)",
                     "previous": "min_std 1e-5, no masking (before issue 17)"},
        "layers": layers, "estimates": {}, "images": {},
    }
    for layer in sorted(set(layers.values())):
        secs, est = timed(lambda: load_or_estimate(model, layer, (224, 224), progress=True))
        report["estimates"][layer] = {
            "feature_shape": list(est.feature_shape), "samples": est.n, "seconds_once": round(secs, 1),
            "std_min": float(est.std.min()), "share_std_below_0.01": float((est.std < MIN_STD).float().mean()),
            "share_inactive": float((est.active == 0).float().mean())}
        print(f"estimate {layer}: {report['estimates'][layer]}", flush=True)

    for name, x in images.items():
        with torch.no_grad():
            target = int(model(x).argmax())
        res: Dict[str, Dict] = {}
        for m in methods:
            maps = {}
            for setting in SETTINGS:
                with input_iba_setting(setting if m == "input-iba" else "official"):
                    secs, a = timed(lambda: build(model, m, setting).attribute(x, target=target))
                maps[setting] = a
                s = insertion_deletion(model, x, a, target=target, preset="inputiba")
                res[f"{m}/{setting}"] = {"difauc": round(float(s.difauc[0]), 4),
                                         "insertion": round(float(s.insertion[0]), 4),
                                         "deletion": round(float(s.deletion[0]), 4), "seconds": round(secs, 1)}
                print(f"{name:18s} {m:10s} {setting:9s} DifAUC {res[f'{m}/{setting}']['difauc']:.4f}  "
                      f"ins {s.insertion[0]:.4f}  del {s.deletion[0]:.4f}  ({secs:.0f} s)", flush=True)
            diff = (maps["official"] - maps["previous"]).abs().max()
            res[f"{m}/max_abs_map_difference"] = float(diff)
        report["images"][name] = {"target": target, "class": model.class_name(target), "results": res}
        keys = [k for k in res if not k.endswith("max_abs_map_difference")]
        report["mean_difauc"] = {k: round(statistics.mean(img["results"][k]["difauc"]
                                                          for img in report["images"].values()), 4) for k in keys}
        report["n_images"] = len(report["images"])
        (out / "iba_settings.json").write_text(json.dumps(report, indent=2))

    print(f"\nDifAUC (inputiba preset), {args.model}, {report['n_images']} photos")
    cols = [f"{m}/{s}" for m in methods for s in SETTINGS]
    print(f"{'photo':18s} " + " ".join(f"{c:>20s}" for c in cols) + "   max |map difference|")
    for name, img in report["images"].items():
        diffs = ", ".join(f"{m} {img['results'][f'{m}/max_abs_map_difference']:.2g}" for m in methods)
        print(f"{name:18s} " + " ".join(f"{img['results'][c]['difauc']:20.4f}" for c in cols) + f"   {diffs}")
    print(f"{'mean':18s} " + " ".join(f"{report['mean_difauc'][c]:20.4f}" for c in cols))
    print(f"written {out / 'iba_settings.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
