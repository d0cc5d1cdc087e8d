"""``fisherattr evaluate``: methods x metrics over a data set, resumable, with tables and figures.

Outputs in ``--out``: ``attributions/<method>/<image>.npy`` (cache), ``images/``,
``records.jsonl`` (one line per finished result; a rerun with the same ``--out``
resumes and recomputes nothing already there), ``results.json`` (canonical),
``results.csv``, ``per_image.csv``, ``results.md``, ``figures/*.png``, ``masks/`` (ground-truth
regions) and ``report.html`` (one self-contained page: table, gallery, curves; see ``bench/html_report.py``).

Example:
    fisherattr evaluate --methods saliency,integrated-gradients --data samples --out eval
    fisherattr evaluate --model synthetic --data synthetic:64 --preset inputiba --methods fda,iba --out ev
    fisherattr evaluate --data synthetic:64 --methods fda,ig --executor ray --workers 4 --out ev   # Ray actors
"""
from __future__ import annotations

import argparse
from typing import Any, Dict, List

from ..errors import UsageError
from .model_flags import add_model_flags, model_kwargs

NAME = "evaluate"
HELP = "Measure attribution methods with faithfulness and localisation metrics over a data set."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help="classifier name or path (default: efficientnet_lite0; the shipped synthetic "
                        "classifier for --data synthetic)")
    p.add_argument("--methods", "--method", "-m", action="append", default=None, metavar="M[,M2...]",
                   help="methods to evaluate (comma-separated or repeated; 'all' = every registered method; "
                        "default: the explain defaults installed)")
    p.add_argument("--metrics", default=None, metavar="X[,Y...]",
                   help="metrics (see `fisherattr list metrics`; default: every metric the data allows, "
                        "or the preset's set)")
    p.add_argument("--data", default="samples",
                   help="samples | synthetic[:N] | imagenet:IMGDIR[,XMLDIR] | fss:DIR | folder:DIR | DIR "
                        "(default: samples)")
    p.add_argument("--limit", type=int, default=None, help="use at most N images")
    p.add_argument("--preset", default=None, choices=["inputiba", "rise", "samp", "idgi"],
                   help="paper protocol: insertion/deletion preset and that paper's metric set "
                        "(default: inputiba's insertion/deletion, every metric the data allows)")
    p.add_argument("--seed", type=int, default=0, help="seed for methods and metrics (default 0)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="images per model call inside metrics (default: automatic; on a CPU as many as "
                        "fit four 224x224 images, on a GPU 64)")
    p.add_argument("--target", default="auto", choices=["auto", "top1", "label"],
                   help="auto: the label when known, else top-1 (default)")
    p.add_argument("--size", type=int, default=None, help="image size (default: the model's input size)")
    p.add_argument("--mosaics", type=int, default=None,
                   help="number of 2x2 mosaics for the grid pointing game (default: automatic; 0 = none)")
    p.add_argument("--mosaic-threshold", type=float, default=0.25,
                   help="minimum top-1 probability of an image alone to enter a mosaic (default 0.25)")
    p.add_argument("--option", "-o", action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="a method option (e.g. integrated-gradients.n_steps=50); repeatable")
    p.add_argument("--metric-option", action="append", default=[], metavar="METRIC.KEY=VALUE",
                   help="a metric setting (e.g. mnim.grid=16, randomisation.steps=4, pic.information=msssim)")
    p.add_argument("--import", dest="plugins", action="append", default=[], metavar="MODULE",
                   help="import a module that registers extra methods or metrics; repeatable")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the model's device)")
    p.add_argument("--workers", type=int, default=1,
                   help="parallel worker processes sharing the CPU threads (default 1); each takes every N-th "
                        "(image, method) pair and the run then collects their results")
    p.add_argument("--shard", default=None, metavar="K/N",
                   help="compute only share K of N (1 <= K <= N) into --out, without writing results; "
                        "run the N shares anywhere, then once without --shard to collect")
    p.add_argument("--executor", default="local", choices=["local", "ray"],
                   help="local: --workers processes on this machine (default); ray: --workers Ray actors, on "
                        "this machine or a cluster (needs `pip install fisherattr[ray]`)")
    p.add_argument("--address", default=None, metavar="ADDR",
                   help="with --executor ray: join this Ray cluster ('auto' or ray://HOST:10001; default: start "
                        "a local Ray instance)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, metavar="G",
                   help="with --executor ray: GPUs per worker (fractions share a GPU; default 0)")
    p.add_argument("--cpus-per-worker", type=float, default=None, metavar="C",
                   help="with --executor ray: CPUs (torch threads) per worker (default: this machine's threads "
                        "/ --workers)")
    p.add_argument("--out", required=True, help="output folder (reused to resume an interrupted run)")
    add_model_flags(p)


def parse_metric_options(items: List[str]) -> Dict[str, Dict[str, Any]]:
    """``["mnim.grid=16"]`` -> ``{"mnim": {"grid": 16}}`` (metric names validated)."""
    from ..metrics import get_metric
    from .explain import parse_value

    out: Dict[str, Dict[str, Any]] = {}
    for item in items:
        key, eq, value = item.partition("=")
        metric, dot, opt = key.strip().rpartition(".")
        if not eq or not dot or not metric or not opt:
            raise UsageError(f"--metric-option {item!r}: expected METRIC.KEY=VALUE (e.g. mnim.grid=16)")
        out.setdefault(get_metric(metric).name, {})[opt] = parse_value(value, None, key)
    return out


def parse_shard(text: str) -> tuple:
    """``"2/4"`` -> ``(1, 4)`` (worker index from 0, count)."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard {text!r}: expected K/N, e.g. 1/2") from None
    if not (n >= 1 and 1 <= k <= n):
        raise UsageError(f"--shard {text!r}: need 1 <= K <= N")
    return k - 1, n


def run(args: argparse.Namespace) -> int:
    """Check ``--out`` and hold its lock (one run per folder) before anything is loaded."""
    from ..bench.store import run_lock
    from ..outdir import check_output_dir

    check_output_dir(args.out)
    with run_lock(args.out, parse_shard(args.shard) if args.shard else None):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from ..bench.runner import EvalConfig, Evaluation, import_plugins
    from .explain import parse_methods, parse_options

    import_plugins(args.plugins)
    methods, _ = parse_methods(args.methods)
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be >= 1, got {args.limit}")
    metrics = [m for m in (args.metrics or "").split(",") if m.strip()] or None
    shard = parse_shard(args.shard) if args.shard else None
    if args.executor != "ray":
        given = [o for o, v in (("--address", args.address), ("--gpus-per-worker", args.gpus_per_worker),
                                ("--cpus-per-worker", args.cpus_per_worker)) if v]
        if given:
            raise UsageError(f"{given[0]} needs --executor ray")
    cfg = EvalConfig(**model_kwargs(args), methods=methods, out=args.out, model=args.model, data=args.data, metrics=metrics,
                     preset=args.preset, limit=args.limit, seed=args.seed, batch_size=args.batch_size,
                     target=args.target, size=args.size, mosaics=args.mosaics,
                     mosaic_threshold=args.mosaic_threshold,
                     method_options={k: v for k, v in parse_options(args.option, methods).items() if v},
                     metric_options=parse_metric_options(args.metric_option), device=args.device,
                     progress=not getattr(args, "quiet", False), workers=args.workers, shard=shard,
                     plugins=list(args.plugins), executor=args.executor, ray_address=args.address,
                     gpus_per_worker=args.gpus_per_worker, cpus_per_worker=args.cpus_per_worker)
    ev = Evaluation(cfg)
    failures = ev.run()
    if shard is not None:
        print(f"share {args.shard} done in {args.out}; run again without --shard to collect the results")
        return 1 if failures else 0
    from ..bench.html_report import write_report

    write_report(args.out)  # report.html: ranked table, gallery, curves, settings
    print(f"results: {args.out}/report.html, results.md, results.json, results.csv, figures/")
    md = (ev.store.root / "results.md").read_text(encoding="utf-8").split("\n## ")[0]
    print(md)
    return 1 if failures else 0
