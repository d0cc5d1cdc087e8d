"""Wall time per method per image on EfficientNet-Lite0 (224x224), as a ratio to Captum IG-200.

The reference (Captum IntegratedGradients, 200 steps, black baseline, the
automatic gradient batch: 8 at 224 px on a CPU; see ``_common.py``) is timed on every image in the same process, so
the ratio is comparable across machines and loads. Methods are built once
(outside the timing); each attribution is timed once per image, after one
untimed warm-up call of the method on the first image (``--no-warmup`` skips it).

Usage:
    python benchmarks/bench_methods.py                                  # all methods, all samples
    python benchmarks/bench_methods.py --methods saliency,integrated-gradients --images chelsea --difauc
    python benchmarks/bench_methods.py --methods fda --option fda.steps=50 --json bench.json
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import default_setup, ig200_seconds, timed  # noqa: E402

import fisherattr  # noqa: E402
from fisherattr.commands.explain import parse_options  # noqa: E402
from fisherattr.methods.registry import accepted_options, canonical_name, method_class  # noqa: E402


def main(argv: List[str] | None = None) -> int:
    args, model, images = default_setup(
        argv,
        methods={"default": None, "help": "comma-separated methods (default: all registered)"},
        option={"action": "append", "default": [], "help": "METHOD.KEY=VALUE, typed like the default"},
        difauc={"action": "store_true", "help": "also compute DifAUC (inputiba preset) per map"},
        seed={"type": int, "default": 0},
        no_warmup={"action": "store_true"},
        json={"default": None, "help": "write the results to this JSON file"},
    )
    names = ([canonical_name(m) for m in args.methods.split(",") if m.strip()] if args.methods
             else fisherattr.list_methods())
    options = parse_options(args.option, names)
    methods = {}
    for m in names:
        opts = dict(options[m])
        if "seed" in accepted_options(method_class(m)):
            opts.setdefault("seed", args.seed)
        methods[m] = fisherattr.get_method(m, model, **opts)
    print(f"model {getattr(model, 'name', args.model)}, threads {torch.get_num_threads()}, "
          f"{len(images)} image(s), {len(methods)} method(s)", flush=True)

    first = next(iter(images.values()))
    if not args.no_warmup:
        with torch.no_grad():
            model(first)
        for m, meth in methods.items():
            try:
                meth.attribute(first)
            except Exception as e:  # noqa: BLE001 - reported in the table below
                print(f"warm-up {m}: {type(e).__name__}: {e}", flush=True)

    rows: List[Dict[str, Any]] = []
    for img_name, x in images.items():
        with torch.no_grad():
            target = int(model(x).argmax(1))
        ref = ig200_seconds(model, x, target)
        print(f"{img_name}: target {target} ({model.class_name(target)}), Captum IG-200 {ref:.2f} s", flush=True)
        for m, meth in methods.items():
            row: Dict[str, Any] = {"image": img_name, "method": m, "ig200_seconds": ref}
            try:
                seconds, a = timed(lambda: meth.attribute(x, target=target))
                row.update(seconds=seconds, ratio=seconds / ref)
                if args.difauc:
                    from fisherattr.metrics.insertion_deletion import insertion_deletion

                    row["difauc"] = float(insertion_deletion(model, x, a, target=target).difauc[0])
            except Exception as e:  # noqa: BLE001 - one failing method does not stop the benchmark
                row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            rows.append(row)
            print(f"  {m:24s} " + (f"{row['seconds']:8.2f} s  x{row['ratio']:.3f} IG-200"
                                    + (f"  DifAUC {row['difauc']:.3f}" if "difauc" in row else "")
                                    if "seconds" in row else f"failed: {row['error']}"), flush=True)

    print()
    head = f"{'method':24s} {'s/image':>9s} {'x IG-200':>9s}" + (f" {'DifAUC':>7s}" if args.difauc else "") + "  images"
    print(head)
    print("-" * len(head))
    summary = {}
    for m in methods:
        ok = [r for r in rows if r["method"] == m and "seconds" in r]
        if not ok:
            print(f"{m:24s} {'failed':>9s}")
            continue
        mean = lambda k: sum(r[k] for r in ok) / len(ok)  # noqa: E731
        summary[m] = {"seconds": mean("seconds"), "ratio": mean("ratio"), "images": len(ok)}
        line = f"{m:24s} {mean('seconds'):9.2f} {mean('ratio'):9.3f}"
        if args.difauc:
            summary[m]["difauc"] = mean("difauc")
            line += f" {mean('difauc'):7.3f}"
        print(line + f"  {len(ok)}")
    refs = {r["image"]: r["ig200_seconds"] for r in rows}
    print(f"Captum IG-200 reference: mean {sum(refs.values()) / max(1, len(refs)):.2f} s/image")
    if args.json:
        from fisherattr.io_utils import write_json

        write_json(args.json, {"model": getattr(model, "name", args.model), "threads": torch.get_num_threads(),
                               "rows": rows, "per_method": summary, "ig200_seconds": refs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
