"""``fisherattr explain``: attribution maps, overlays, a comparison grid and DifAUC for some images.

Outputs in ``--out``:
- ``<image>/input.png``: the image as the model saw it (after resizing);
- ``<image>/<method>.npy``: the attribution (``[C,H,W]`` float32; ``[1,H,W]`` for per-pixel methods);
- ``<image>/<method>.png``: its heat-map overlay;
- ``grid.png``: rows = images, columns = methods (each map with its colour bar and DifAUC);
- ``report.html``: one self-contained page (ranked table, gallery, settings; ``fisherattr.bench.html_report``);
- ``summary.json``: model, prediction, target, per-method options, wall time and
  insertion/deletion scores (``inputiba`` by default), and the failures with reasons.

A folder that holds an earlier run is refused unless ``--overwrite``, which removes
that run's files first: the folder never holds maps its ``summary.json`` does not list.
Every file is written under a temporary name and moved into place. Exit code:
0 all done, 1 some image/method failed (the rest is still written), 2 usage error.

Example:
    fisherattr explain chelsea coffee --methods saliency,integrated-gradients --out outputs
    fisherattr explain cat.jpg -m fda -o fda.steps=50 --target "tabby" --preset quick --out out

Each image's files, ``grid.png`` and ``summary.json`` (``"status": "running"``)
are written as soon as that image is done, so an interrupted run keeps every
finished image (``"status": "interrupted"``). Progress goes to stderr: a bar on
a terminal, one line per map in a log (``--quiet`` silences it).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from ..catalog import INSDEL_PRESETS
from ..errors import UsageError
from ..outdir import RunFolder
from ..progress import echo, format_seconds, progress_bar
from .model_flags import add_model_flags, model_kwargs

if TYPE_CHECKING:  # torch is imported where it is used, so that `fisherattr --help` starts fast
    import torch

NAME = "explain"
HELP = "Explain images with attribution methods: maps (.npy), overlays, a grid, DifAUC and summary.json."

#: Methods run when ``--method`` is not given (those registered on this install).
DEFAULT_METHODS = ["fda", "diffib", "samp++", "idgi-ig", "integrated-gradients", "saliency", "gradcam"]
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
#: Top-level files of a run (besides one folder per image holding ``input.png``).
EXPLAIN_FILES = ("summary.json", "grid.png", "report.html")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="*", help="image files or sample photo names (default: the shipped samples)")
    p.add_argument("--methods", "--method", "-m", dest="methods", action="append", default=None,
                   metavar="M[,M2...]",
                   help="methods to run (repeat or comma-separate; 'all' = every registered method; default: "
                        f"{', '.join(DEFAULT_METHODS)} when installed; see `fisherattr list methods`)")
    p.add_argument("--model", default=None, help="classifier name or path (default: efficientnet_lite0)")
    p.add_argument("--target", default="auto", help="auto (top-1), a class index, or a class name")
    p.add_argument("--out", default="outputs", help="output folder (default: outputs)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier run in --out (its files are removed first; default: refuse)")
    add_model_flags(p)
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--seed", type=int, default=0, help="seed passed to every method (default 0)")
    p.add_argument("--size", type=int, default=None,
                   help="resize images to SIZE x SIZE (shorter side + centre crop; default: the model's input size)")
    p.add_argument("--preset", default="inputiba", choices=[*INSDEL_PRESETS, "none"],
                   help="insertion/deletion preset for DifAUC, or none to skip the metric (default: inputiba; "
                        "quick = the same curves with 5%% steps, 5x cheaper)")
    p.add_argument("--metrics", dest="preset", choices=[*INSDEL_PRESETS, "none"], default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)  # the old name of --preset
    p.add_argument("--batch-size", type=int, default=None,
                   help="images per model call in the metric (default: automatic; on a CPU as many as fit "
                        "four 224x224 images, on a GPU 64)")
    p.add_argument("--metric-batch-size", dest="batch_size", type=int, default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)  # the old name of --batch-size
    p.add_argument("--option", "-o", action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="a method option, typed like its default (e.g. fda.steps=50); repeatable")


# ----------------------------------------------------------------- parsing
def parse_value(text: str, default: Any, where: str) -> Any:
    """Convert ``text`` to the type of ``default`` (bool/int/float/str/tuple; guessed when the default is None)."""
    low = text.strip().lower()
    try:
        if isinstance(default, bool):
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError("expected true or false")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            if low in ("none", "null"):  # e.g. fda.keep_prob=none; the method decides whether None is allowed
                return None
            return _finite(float(text), text, where)
        if isinstance(default, str):
            return text
        if isinstance(default, (tuple, list)):
            elem = default[0] if len(default) else None
            parts = [parse_value(s, elem, where) for s in text.split(",") if s.strip()]
            return type(default)(parts)
    except UsageError:
        raise
    except ValueError as e:
        raise UsageError(f"--option {where}: cannot read {text!r} as {type(default).__name__} ({e})") from None
    if low in ("none", "null"):
        return None
    if low in _TRUE + _FALSE and low not in ("0", "1"):
        return low in _TRUE
    for conv in (int, float):
        try:
            value = conv(text)
        except ValueError:
            continue
        return _finite(value, text, where)
    return text


def _finite(value: Any, text: str, where: str) -> Any:
    """``value`` unless it is a NaN or infinite float (never a valid setting)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"--option {where}: {text!r} is not a finite number")
    return value


def parse_methods(specs: Optional[List[str]]) -> Tuple[List[str], bool]:
    """Canonical method names from ``--methods`` values (or the defaults), and whether they were explicit."""
    from ..methods.registry import canonical_name

    if not specs:
        names = []
        for m in DEFAULT_METHODS:
            try:
                names.append(canonical_name(m))
            except UsageError:
                continue
        if not names:
            raise UsageError(f"none of the default methods ({', '.join(DEFAULT_METHODS)}) is installed; "
                             "choose one with --methods")
        return list(dict.fromkeys(names)), False
    from ..methods.registry import list_methods

    names = []
    for spec in specs:
        for s in spec.split(","):
            if s.strip().lower() == "all":  # every registered method
                names.extend(list_methods())
            elif s.strip():
                names.append(canonical_name(s))
    if not names:
        raise UsageError("--methods: no method given")
    return list(dict.fromkeys(names)), True


def parse_options(items: List[str], methods: List[str]) -> Dict[str, Dict[str, Any]]:
    """``["fda.steps=50", ...]`` -> ``{"fda": {"steps": 50}}``, validated against the constructors."""
    from ..methods.registry import accepted_options, canonical_name, method_class

    out: Dict[str, Dict[str, Any]] = {m: {} for m in methods}
    for item in items:
        key, eq, value = item.partition("=")
        meth, dot, opt = key.strip().rpartition(".")
        if not eq or not dot or not meth or not opt:
            raise UsageError(f"--option {item!r}: expected METHOD.KEY=VALUE (e.g. fda.steps=50)")
        name = canonical_name(meth)
        if name not in out:
            raise UsageError(f"--option {item!r}: method {name!r} is not among the methods run "
                             f"({', '.join(methods)})")
        accepted = accepted_options(method_class(name))
        if opt not in accepted:
            raise UsageError(f"--option {item!r}: method {name!r} has no option {opt!r}; "
                             f"accepted: {', '.join(sorted(accepted)) or '(none)'}")
        default = accepted[opt].default
        out[name][opt] = parse_value(value, None if default is accepted[opt].empty else default, key)
    return out


def resolve_device(spec: Optional[str]) -> "torch.device":
    import torch

    if spec is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise UsageError(f"--device: unknown device {spec!r}; use cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise UsageError(f"--device: unsupported device {spec!r}; use cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: CUDA is not available on this machine")
    return dev


def resolve_target(spec: str, model: torch.nn.Module, num_classes: int) -> Optional[int]:
    """``auto`` -> None; an index (checked against the classes); a class name via the model's class list."""
    s = spec.strip()
    if s.lower() == "auto":
        return None
    try:
        t = int(s)
    except ValueError:
        if not getattr(model, "classes", None):
            raise UsageError(f"--target {spec!r}: the model has no class names; give a class index") from None
        return int(model.class_index(s))
    if not 0 <= t < num_classes:
        raise UsageError(f"--target {t} is outside the model's classes 0..{num_classes - 1}")
    return t


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


# ---------------------------------------------------------------------- run
class _Run:
    """State of one ``explain`` run: loaded once, then every image x method."""

    def __init__(self, args: argparse.Namespace) -> None:
        import torch

        from .. import data as fdata
        from ..models import DEFAULT_MODEL, load_classifier
        from ..methods.registry import accepted_options, get_method, method_class

        self.args = args
        self.methods, explicit = parse_methods(args.methods)
        self.options = parse_options(args.option, self.methods)
        if args.batch_size is not None and args.batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
        if args.size is not None and args.size < 8:
            raise UsageError(f"--size must be >= 8, got {args.size}")
        self.device = resolve_device(args.device)
        self.out = Path(args.out)
        # before any model loads: writable, and no earlier run whose files the new summary would not list
        self.folder = RunFolder(self.out, top=EXPLAIN_FILES, marker="input.png").check(overwrite=args.overwrite)
        self.failures: List[Dict[str, Any]] = []

        # the model once, then the images; a run where no image loads is a usage error
        model_name = args.model or DEFAULT_MODEL
        try:
            self.model = load_classifier(model_name, device=self.device, **model_kwargs(args))
        except UsageError:
            raise
        except Exception as e:  # noqa: BLE001 - any loader failure is reported on one line
            raise UsageError(f"--model {model_name!r}: cannot load ({_first_line(e)})") from None
        size = args.size or (tuple(self.model.input_size) if self.model.input_size else 224)
        self.images: List[Tuple[str, str, torch.Tensor]] = []
        specs = args.images or list(fdata.DEFAULT_SAMPLES)
        used: Dict[str, int] = {}
        for spec in specs:
            base = fdata.image_name(spec) or "image"
            used[base] = used.get(base, 0) + 1
            name = base if used[base] == 1 else f"{base}-{used[base]}"
            try:
                self.images.append((name, spec, fdata.load_image(spec, size=size)))
            except UsageError as e:
                self._fail(name, None, str(e), echo=False)
            except Exception as e:  # noqa: BLE001 - e.g. a decoder error deep inside PIL
                self._fail(name, None, f"{spec}: {_first_line(e)}", echo=False)
        if not self.images:
            raise UsageError(self.failures[0]["error"] if len(specs) == 1 else
                             f"none of the {len(specs)} images could be read (first: {self.failures[0]['error']})")

        # the model's output shape, once
        try:
            with torch.no_grad():
                probe = self.model(self.images[0][2].to(self.device))
        except Exception as e:  # noqa: BLE001 - e.g. an input size the network cannot take
            raise UsageError(f"--model {model_name!r} failed on {self.images[0][0]!r}: {_first_line(e)}") from None
        if not isinstance(probe, torch.Tensor) or probe.dim() != 2 or probe.shape[0] != 1:
            shape = tuple(probe.shape) if isinstance(probe, torch.Tensor) else type(probe).__name__
            raise UsageError(f"--model {model_name!r}: must return logits [B, classes]; got {shape} for 1 image")
        self.num_classes = int(probe.shape[1])
        self.target = resolve_target(args.target, self.model, self.num_classes)

        # methods, built once
        self.built: Dict[str, Any] = {}
        self.build_errors: Dict[str, str] = {}
        for m in self.methods:
            opts = dict(self.options[m])
            if "seed" in accepted_options(method_class(m)):
                opts.setdefault("seed", args.seed)
            try:
                self.built[m] = get_method(m, self.model, **opts)
            except UsageError as e:
                if explicit:
                    raise UsageError(f"method {m!r}: {e}") from None
                self.build_errors[m] = str(e)
            except Exception as e:  # noqa: BLE001 - a method that cannot start fails alone
                self.build_errors[m] = _first_line(e)

    def _fail(self, image: Optional[str], method: Optional[str], error: str, echo: bool = True) -> None:
        self.failures.append({"image": image, "method": method, "error": error})
        if echo:
            self._echo(self.failures[-1])

    @staticmethod
    def _echo(failure: Dict[str, Any]) -> None:
        where = " / ".join(s for s in (failure["image"], failure["method"]) if s)
        echo(f"fisherattr explain: {where}: {failure['error']}", sys.stderr)

    # ----------------------------------------------------------------- work
    def predict(self, x: "torch.Tensor") -> Dict[str, Any]:
        import torch

        with torch.no_grad():
            logits = self.model(x.to(self.device)).float()
        if logits.shape != (1, self.num_classes):
            raise UsageError(f"the model returned shape {tuple(logits.shape)}, expected (1, {self.num_classes})")
        if not torch.isfinite(logits).all():
            raise UsageError("the model returned NaN or infinite logits")
        probs = logits.softmax(1)[0]
        top = int(probs.argmax())
        t = top if self.target is None else self.target
        name = getattr(self.model, "class_name", str)
        return {"predicted": {"index": top, "name": name(top), "probability": float(probs[top])},
                "target": {"index": t, "name": name(t), "probability": float(probs[t])}}

    def explain_one(self, name: str, x: "torch.Tensor", method: str, target: int) -> Tuple[Dict[str, Any], Any]:
        import torch

        from ..metrics.insertion_deletion import insertion_deletion
        from ..viz import overlay
        from ..io_utils import save_npy, save_png

        meth = self.built[method]
        t0 = time.perf_counter()
        a = meth.attribute(x.to(self.device), target=target)
        seconds = time.perf_counter() - t0
        if not isinstance(a, torch.Tensor) or a.dim() != 4 or a.shape[0] != 1 or a.shape[1] not in (1, 3) \
                or a.shape[2:] != x.shape[2:]:
            shape = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
            raise UsageError(f"attribution has shape {shape}, expected [1, C, {x.shape[2]}, {x.shape[3]}]")
        if not torch.isfinite(a).all():
            raise UsageError("attribution contains NaN or infinite values")
        a = a.detach().float().cpu()
        rec: Dict[str, Any] = {"seconds": round(seconds, 4), "shape": list(a.shape[1:])}
        npy, png = self.out / name / f"{method}.npy", self.out / name / f"{method}.png"
        save_npy(npy, a[0].numpy())
        panel = overlay(x, a)
        save_png(png, panel)
        rec.update(attribution=str(npy.relative_to(self.out)), overlay=str(png.relative_to(self.out)))
        if self.args.preset != "none":
            r = insertion_deletion(self.model, x, a, target=target, preset=self.args.preset,
                                   batch_size=self.args.batch_size)
            rec.update(insertion=float(r.insertion[0]), deletion=float(r.deletion[0]),
                       difauc=float(r.difauc[0]))
            if "insertion_ratio" in r.extras:
                rec["insertion_ratio"] = float(r.extras["insertion_ratio"][0])
        return rec, a[0]  # the grid draws the map itself, with a colour bar and the score

    def run(self) -> int:
        from ..io_utils import save_png
        from ..viz import image_uint8

        self.folder.clear()  # --overwrite: the earlier run's files go before the first new one is written
        for f in self.failures:  # images that could not be read
            self._echo(f)
        self.per_image: Dict[str, Any] = {}
        self.grid_rows: List[list] = []
        self.grid_images: List[Any] = []
        self.grid_names: List[str] = []
        self.started = time.perf_counter()
        quiet = bool(getattr(self.args, "quiet", False))
        if not quiet:
            echo(f"explain: {len(self.images)} image(s) x {len(self.methods)} method(s), preset "
                 f"{self.args.preset}; each image's files, grid.png and summary.json go to {self.out} "
                 "as soon as it is done", sys.stderr)
        bar = progress_bar(len(self.images) * len(self.methods), "explain", unit="map", enabled=not quiet)
        finished = 0
        try:
            for name, spec, x in self.images:
                rec: Dict[str, Any] = {"source": str(spec)}
                self.per_image[name] = rec
                try:
                    rec.update(self.predict(x))
                except UsageError as e:
                    self._fail(name, None, str(e))
                    rec["error"] = str(e)
                    bar.update(len(self.methods))
                    continue
                save_png(self.out / name / "input.png", image_uint8(x))
                target = rec["target"]["index"]
                rec["methods"] = {}
                row = []
                for m in self.methods:
                    bar.set_postfix_str(f"{name}/{m}")
                    panel = None
                    if m in self.build_errors:
                        self._fail(name, m, f"method could not be built: {self.build_errors[m]}")
                    else:
                        try:
                            rec["methods"][m], panel = self.explain_one(name, x, m, target)
                        except KeyboardInterrupt:
                            raise
                        except Exception as e:  # noqa: BLE001 - one failed item must not stop the run
                            self._fail(name, m, str(e) if isinstance(e, UsageError) else _first_line(e))
                    row.append(panel)
                    bar.update(1)
                self.grid_rows.append(row)
                self.grid_images.append(x)
                t = rec["target"]
                self.grid_names.append(f"{name}\n{t['name'][:24]} ({t['probability']:.2f})")
                finished += 1
                self._write_outputs("running")  # this image's files are on disk: the grid and summary follow
                if not quiet:
                    echo(f"explain: {name} done ({finished}/{len(self.images)} images, "
                         f"{format_seconds(time.perf_counter() - self.started)}); "
                         f"updated {self.out / 'summary.json'} and grid.png", sys.stderr)
        except KeyboardInterrupt:
            bar.close()
            self._write_outputs("interrupted")
            echo(f"explain: interrupted; {finished} finished image(s) kept in {self.out}", sys.stderr)
            raise
        bar.close()
        self._write_outputs("partial" if self.failures else "ok")
        self._print_table(self.per_image)
        return 1 if self.failures else 0

    def summary(self, status: str) -> Dict[str, Any]:
        """The content of ``summary.json`` now (``status``: running, interrupted, ok or partial)."""
        from .. import __version__

        preset = self.args.preset
        return {
            "fisherattr_version": __version__, "model": getattr(self.model, "name", self.args.model),
            "device": str(self.device), "seed": self.args.seed, "target_rule": self.args.target,
            "metric_preset": None if preset == "none" else preset,
            "methods": {m: {"options": self.built[m].options() if m in self.built else self.options[m],
                            "per_pixel": bool(getattr(self.built.get(m), "per_pixel", False))}
                        for m in self.methods},
            "images": self.per_image, "per_method": self._per_method(self.per_image),
            "grid": "grid.png" if self.grid_rows else None, "failures": self.failures,
            "status": status if status in ("running", "interrupted") or not self.failures else "partial",
            "wall_seconds": round(time.perf_counter() - self.started, 2),
        }

    def _write_outputs(self, status: str) -> None:
        """Rewrite ``grid.png`` (finished images) and ``summary.json`` (everything so far)."""
        from ..bench.html_report import write_report
        from ..io_utils import write_json
        from ..viz import comparison_grid

        if self.grid_rows:
            scores = [[r["methods"].get(m, {}).get("difauc") for m in self.methods]
                      for r in self.per_image.values() if "methods" in r][:len(self.grid_rows)]
            comparison_grid(self.grid_images, self.grid_rows, self.methods, self.grid_names,
                            path=self.out / "grid.png", scores=scores, score_label="DifAUC")
        write_json(self.out / "summary.json", self.summary(status))
        write_report(self.out)  # report.html: table, gallery, settings (fisherattr.bench.html_report)

    def _per_method(self, per_image: Dict[str, Any]) -> Dict[str, Any]:
        out = {}
        for m in self.methods:
            recs = [r["methods"][m] for r in per_image.values() if m in r.get("methods", {})]
            secs = [r["seconds"] for r in recs]
            dif = [r["difauc"] for r in recs if "difauc" in r and r["difauc"] == r["difauc"]]
            out[m] = {"images": len(recs), "mean_seconds": sum(secs) / len(secs) if secs else None,
                      "mean_difauc": sum(dif) / len(dif) if dif else None}
        return out

    def _print_table(self, per_image: Dict[str, Any]) -> None:
        metric = self.args.preset != "none"
        head = f"{'image':16s} {'target':24s} {'method':22s} {'time[s]':>8s}" + (f" {'DifAUC':>7s}" if metric else "")
        print(head)
        print("-" * len(head))
        for name, rec in per_image.items():
            tname = rec.get("target", {}).get("name", "-")[:24]
            if "methods" not in rec:
                print(f"{name:16s} {tname:24s} {'(failed: ' + rec.get('error', '') + ')'}")
                continue
            for m in self.methods:
                r = rec["methods"].get(m)
                if r is None:
                    print(f"{name:16s} {tname:24s} {m:22s} {'failed':>8s}")
                    continue
                dif = r.get("difauc")
                line = f"{name:16s} {tname:24s} {m:22s} {r['seconds']:8.2f}"
                if metric:
                    line += f" {dif:7.3f}" if isinstance(dif, float) and dif == dif else f" {'-':>7s}"
                print(line)
        print(f"wrote {self.out / 'summary.json'}" + (f"; {len(self.failures)} failure(s)" if self.failures else ""))


def run(args: argparse.Namespace) -> int:
    return _Run(args).run()
