"""Run attribution methods x metrics over a data set, resumably (see :mod:`fisherattr.bench.store`).

One pass over ``(sample, method)`` pairs: the attribution is loaded from the
cache or computed and saved, then every metric not yet recorded is computed
and its result appended. Mosaics (for the grid pointing game) get one
attribution per cell, towards that cell's class. One tqdm bar counts
attributions and metric results. At the end :func:`fisherattr.bench.results.build_results`
writes ``results.json`` and :func:`fisherattr.bench.report.render` the rest.

Parallel runs: ``workers = n`` starts n processes (each with its share of the
CPU threads); worker k takes every n-th (image, method) pair and writes
its own records file in the shared output folder. The parent then makes the
ordinary serial pass, which finds everything cached (and retries what failed),
and writes the results. ``shard = (k, n)`` runs one worker's share only: that
way the shares can also run on separate machines sharing the folder.
``executor = "ray"`` computes the items on Ray actors instead, the driver alone
writing the records (:mod:`fisherattr.bench.ray_executor`), before the same pass.

Example:
    >>> cfg = EvalConfig(model="efficientnet_lite0", methods=["saliency"], data="samples", out="ev")  # doctest: +SKIP
    >>> Evaluation(cfg).run()                                                                        # doctest: +SKIP
"""
from __future__ import annotations

import importlib
import time
import traceback
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from ..batching import check_batch_size
from ..data.dataset import Sample
from ..data.mosaics import MosaicSample, build_mosaics
from ..data.sources import load_data, parse_spec
from ..errors import UsageError
from ..metrics.suite import (LOCALISATION, NO_ANNOTATION, PRESET_METRICS, MetricContext, Outcome, get_metric,
                             list_metrics)
from ..progress import progress_bar
from .store import ResultStore

TARGET_RULES = ("auto", "top1", "label")


@dataclass
class EvalConfig:
    """Settings of one evaluation run (the ``fisherattr evaluate`` options)."""

    methods: List[str]
    out: str
    model: Union[str, nn.Module, None] = None
    data: str = "samples"
    metrics: Optional[List[str]] = None
    preset: Optional[str] = None
    limit: Optional[int] = None
    seed: int = 0
    batch_size: Optional[int] = None       # images per metric model call; None = automatic
    target: str = "auto"
    size: Optional[int] = None
    mosaics: Optional[int] = None          # None = automatic, 0 = none
    mosaic_threshold: float = 0.25
    method_options: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    metric_options: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    device: Optional[str] = None
    progress: bool = True
    workers: int = 1                       # processes; > 1 = parallel shares, then a collecting pass
    shard: Optional[Tuple[int, int]] = None  # (k, n): run worker k's share of n only (k from 0)
    plugins: List[str] = field(default_factory=list)  # modules to import in worker processes
    executor: str = "local"                # "local": --workers processes; "ray": Ray actors (bench.ray_executor)
    ray_address: Optional[str] = None      # None: start a local Ray instance; "auto" / "ray://...": join a cluster
    gpus_per_worker: float = 0.0           # Ray only: GPUs reserved by each actor
    cpus_per_worker: Optional[float] = None  # Ray only: CPUs per actor (None: this machine's threads / workers)
    allow_download: bool = False           # torchvision:/timm: weights may be fetched (load_classifier)
    trust_code: bool = False               # run code the model files name or are (load_classifier)


def import_plugins(modules: List[str]) -> None:
    """Import user modules that register methods or metrics (``--import``)."""
    for m in modules:
        try:
            importlib.import_module(m)
        except ImportError as e:
            raise UsageError(f"--import {m}: cannot import ({e})") from None


def resolve_metrics(requested: Optional[List[str]], preset: Optional[str], samples: List[Sample]) -> List[str]:
    """The metric names to run: explicit ones, the preset's set, or the defaults for this data.

    Defaults: every metric that needs no annotation, the grid pointing game (on
    mosaics), and the localisation metrics the data's annotations allow.
    """
    has_mask = any(s.mask is not None for s in samples)
    has_boxes = any(bool(s.boxes) for s in samples)

    def available(name: str) -> bool:
        needs = get_metric(name).needs
        return {"region": has_mask or has_boxes, "mask": has_mask, "boxes": has_boxes}.get(needs, True)

    if requested:
        names = [get_metric(n).name for n in requested]
    elif preset:
        names = [n for n in PRESET_METRICS[preset] if available(n)]
    else:
        names = list(NO_ANNOTATION) + ["grid_pointing"] + [n for n in LOCALISATION if available(n)]
    order = {n: i for i, n in enumerate(list_metrics())}
    if "mnim" in names:  # box/seg ratios reuse MNIM's N: compute it first
        names.sort(key=lambda n: (n != "mnim", order.get(n, 99)))
    return list(dict.fromkeys(names))


def _default_model(data: str) -> str:
    kind, _, _ = parse_spec(data)
    if kind == "synthetic":
        try:
            from ..data.synthetic import default_classifier_path

            p = default_classifier_path()
            if p.exists():
                return str(p)
        except ImportError:
            pass
    return "efficientnet_lite0"


def load_model(config: EvalConfig) -> Tuple[Optional[str], nn.Module]:
    """``(name or None, classifier in eval mode on config.device)`` for ``config.model``."""
    from ..models import as_classifier, load_classifier

    if isinstance(config.model, nn.Module):
        name, model = None, as_classifier(config.model)
    else:
        name = config.model or _default_model(config.data)
        model = load_classifier(name, allow_download=config.allow_download, trust_code=config.trust_code)
    if config.device:
        model = model.to(torch.device(config.device))
    return name, model.eval()


def _first_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0] if msg else ''}"


def share_of(item: int, method: int, shares: int) -> int:
    """The share (0-based, of ``shares``) that computes pair (item, method).

    Method ``m`` of item ``i`` goes to share ``(i + m) % shares``: one image's methods
    spread over different shares, and each method visits every share in turn, so a slow
    method (FDA next to Grad-CAM) is split evenly whatever the number of methods. (Dealing
    pairs in reading order, ``(i * M + m) % N``, sent every FDA item to one of two workers
    when M = 4: 73 s against 13 s of work on ``synthetic:16``.)

    Example:
        >>> [share_of(i, 3, 2) for i in range(4)]
        [1, 0, 1, 0]
    """
    return (int(item) + int(method)) % int(shares)


class Evaluation:
    """One evaluation run over ``config``; :meth:`run` returns the number of failures."""

    def __init__(self, config: EvalConfig) -> None:
        from ..methods.registry import canonical_name

        self.cfg = config
        if config.preset is not None and config.preset not in PRESET_METRICS:
            raise UsageError(f"unknown --preset {config.preset!r}; choose one of {', '.join(PRESET_METRICS)}")
        if config.target not in TARGET_RULES:
            raise UsageError(f"--target must be one of {', '.join(TARGET_RULES)}, got {config.target!r}")
        check_batch_size(config.batch_size, "--batch-size")
        if int(config.workers) < 1:
            raise UsageError(f"--workers must be >= 1, got {config.workers}")
        if config.shard is not None:
            k, n = config.shard
            if not (n >= 1 and 0 <= k < n):
                raise UsageError(f"--shard must be K/N with 1 <= K <= N, got {k + 1}/{n}")
        if config.executor == "ray":
            from .ray_executor import check_ray_config

            check_ray_config(config)
        elif config.executor != "local":
            raise UsageError(f"--executor must be local or ray, got {config.executor!r}")
        self.methods = list(dict.fromkeys(canonical_name(m) for m in config.methods))
        if not self.methods:
            raise UsageError("--methods: no method given")
        self.model_name, self.model = load_model(config)
        size = config.size or (self.model.input_size[0] if getattr(self.model, "input_size", None) else 224)
        self.size = int(size)
        self.samples = load_data(config.data, size=self.size, limit=config.limit, seed=config.seed)
        self.metrics = resolve_metrics(config.metrics, config.preset, self.samples)
        self.mosaics: List[MosaicSample] = []
        if "grid_pointing" in self.metrics and config.mosaics != 0:
            self.mosaics = build_mosaics(self.model, self.samples, n=config.mosaics, seed=config.seed,
                                         threshold=config.mosaic_threshold)
        if not self.mosaics and not config.metrics:  # not asked for explicitly: drop what cannot run
            self.metrics = [m for m in self.metrics if get_metric(m).needs != "mosaic"]
        self.store = ResultStore(config.out, shard=config.shard)
        self.store.check_settings(self.fingerprint())
        self._methods: Dict[str, Any] = {}
        self.failures: List[dict] = []

    @classmethod
    def for_items(cls, config: EvalConfig, model_name: Optional[str], model: nn.Module, size: int,
                  methods: List[str], metrics: List[str], store: Any) -> "Evaluation":
        """An evaluation without data, for :meth:`process_image` / :meth:`process_mosaic` calls only.

        Used by remote workers (:mod:`fisherattr.bench.ray_executor`): the items arrive one at a
        time and ``store`` is an in-memory stand-in for :class:`ResultStore` (same methods).
        """
        ev = cls.__new__(cls)
        ev.cfg, ev.model_name, ev.model, ev.size = config, model_name, model, int(size)
        ev.methods, ev.metrics, ev.samples, ev.mosaics = list(methods), list(metrics), [], []
        ev.store, ev._methods, ev.failures = store, {}, []
        return ev

    # ------------------------------------------------------------ helpers
    def fingerprint(self) -> Dict[str, Any]:
        """Settings that decide every cached value: a resumed run must share them."""
        model = self.model_name or f"{type(self.model).__name__}:{getattr(self.model, 'name', '')}"
        return {"model": model, "data": self.cfg.data, "size": self.size, "seed": self.cfg.seed,
                "target": self.cfg.target, "preset": self.cfg.preset, "method_options": self.cfg.method_options,
                "metric_options": self.cfg.metric_options, "mosaic_threshold": self.cfg.mosaic_threshold}

    def make_method(self, name: str) -> Callable[[nn.Module], Any]:
        from ..methods.registry import accepted_options, get_method, method_class

        opts = dict(self.cfg.method_options.get(name, {}))
        if "seed" in accepted_options(method_class(name)):
            opts.setdefault("seed", self.cfg.seed)
        return lambda model: get_method(name, model, **opts)

    def method(self, name: str) -> Any:
        if name not in self._methods:
            self._methods[name] = self.make_method(name)(self.model)
        return self._methods[name]

    def target_for(self, s: Sample, top1: int) -> int:
        k = len(getattr(self.model, "classes", []) or [])
        label_ok = s.label is not None and (k == 0 or 0 <= int(s.label) < k)
        if self.cfg.target == "label":
            if not label_ok:
                raise UsageError(f"--target label: image {s.name!r} has no usable label")
            return int(s.label)
        if self.cfg.target == "auto" and label_ok:
            return int(s.label)
        return top1

    def attribution(self, method: str, image: str, x: torch.Tensor, target: int) -> Tuple[torch.Tensor, bool]:
        """Cached attribution or a fresh one (recorded with its wall time); bool = computed now."""
        a = self.store.load_attribution(method, image)
        if a is not None and a.shape[-2:] == x.shape[-2:]:
            return a, False
        t0 = time.perf_counter()
        a = self.method(method).attribute(x, target).detach().cpu().float()
        seconds = time.perf_counter() - t0
        self.store.save_attribution(method, image, a)
        self.store.append({"image": image, "method": method, "metric": "_attribution", "seconds": seconds,
                           "target": target, "shape": list(a.shape[1:])})
        return a, True

    def _fail(self, image: str, method: str, metric: str, e: BaseException) -> None:
        msg = _first_line(e)
        self.failures.append({"image": image, "method": method, "metric": metric, "error": msg})
        self.store.append({"image": image, "method": method, "metric": metric, "error": msg})
        tqdm.write(f"failed: {image} / {method} / {metric}: {msg}")
        if self.cfg.progress:
            tqdm.write("".join(traceback.format_exception_only(type(e), e)).strip())

    def _run_metric(self, name: str, ctx: MetricContext, image: str, method: str, target: int) -> None:
        rec = self.store.get(image, method, name)
        if rec is not None and "error" not in rec:
            ctx.previous[name] = Outcome.from_json(rec["outcome"])
            return
        t0 = time.perf_counter()
        try:
            out = get_metric(name).compute(ctx)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:  # noqa: BLE001 - one failed metric must not stop the run
            self._fail(image, method, name, e)
            return
        ctx.previous[name] = out
        self.store.append({"image": image, "method": method, "metric": name, "target": target,
                           "seconds": time.perf_counter() - t0, "outcome": out.to_json()})

    # ---------------------------------------------------------------- run
    def mine(self, item: int, method: int) -> bool:
        """Whether pair (item, method) belongs to this process's share (items: images, then mosaics).

        See :func:`share_of`.
        """
        if self.cfg.shard is None:
            return True
        k, n = self.cfg.shard
        return share_of(item, method, n) == k

    def run(self) -> int:
        """Compute everything missing, then write results and figures (a shard only computes)."""
        from .html_report import save_mask
        from .results import build_results
        from .report import render

        started = time.time()
        if self.cfg.executor == "ray":
            from .ray_executor import run_ray

            run_ray(self)  # computes every missing item on Ray actors; the pass below finds them stored
        elif int(self.cfg.workers) > 1 and self.cfg.shard is None:
            run_workers(self.cfg)
            self.store = ResultStore(self.cfg.out)  # now holding the workers' records too
        items = list(enumerate(self.samples + self.mosaics))
        work = {i: [m for j, m in enumerate(self.methods) if self.mine(i, j)] for i, _ in items}
        samples = [(s, work[i]) for i, s in items[:len(self.samples)] if work[i]]
        mosaics = [(s, work[i]) for i, s in items[len(self.samples):] if work[i]]
        plain, grid = self.metric_groups()
        total = sum(len(ms) for _, ms in samples) * (1 + len(plain))
        total += sum(len(ms) * (len(mo.cells) + len(grid)) for mo, ms in mosaics)
        with torch.no_grad():
            top1 = [int(self.model(s.image.to(self._device())).argmax(1)[0]) for s, _ in samples]
        desc, position = "evaluate", None
        if self.cfg.shard is not None:
            desc, position = f"worker {self.cfg.shard[0] + 1}/{self.cfg.shard[1]}", self.cfg.shard[0]
        quiet_pass = self.cfg.executor == "ray"  # after Ray's bar over the items, this pass only collects
        bar = progress_bar(total, desc, unit="step", enabled=self.cfg.progress and not quiet_pass, min_interval=10,
                           position=position)  # a tqdm bar on a terminal, a line every 10 s in a log
        try:
            for (s, methods), t1 in zip(samples, top1):
                self.store.save_image(s.name, s.image)
                save_mask(self.store.root, s.name, s.region())  # the report's ground-truth outline
                target = self.target_for(s, t1)
                for m in methods:
                    bar.set_postfix_str(f"{s.name} / {m}", refresh=False)
                    self.process_image(s, m, target, bar.update)
            for mo, methods in mosaics:
                self.store.save_image(mo.name, mo.image)
                for m in methods:
                    self.process_mosaic(mo, m, bar.update)
        finally:
            bar.close()
        if self.cfg.shard is not None:
            return len(self.failures)
        build_results(self, wall_seconds=time.time() - started)
        render(self.cfg.out)
        return len(self.failures)

    def metric_groups(self) -> Tuple[List[str], List[str]]:
        """``(per-image metrics, mosaic metrics)`` of this run."""
        plain = [m for m in self.metrics if get_metric(m).needs != "mosaic"]
        return plain, [m for m in self.metrics if get_metric(m).needs == "mosaic"]

    def process_image(self, s: Sample, method: str, target: int, step: Callable[[int], Any] = lambda n: None) -> None:
        """One (image, method) item: the attribution (cached or computed), then each metric not yet recorded.

        ``step(n)`` reports progress (1 per attribution and per metric).
        """
        plain, _ = self.metric_groups()
        try:
            a, _ = self.attribution(method, s.name, s.image, target)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:  # noqa: BLE001
            self._fail(s.name, method, "_attribution", e)
            step(1 + len(plain))
            return
        step(1)
        ctx = self._context(s, a, target, method)
        for name in plain:
            self._run_metric(name, ctx, s.name, method, target)
            step(1)

    def process_mosaic(self, mo: MosaicSample, method: str, step: Callable[[int], Any] = lambda n: None) -> None:
        """One (mosaic, method) item: one attribution per cell towards its class, then the mosaic metrics."""
        _, grid = self.metric_groups()
        cells: List[torch.Tensor] = []
        try:
            for k, c in enumerate(mo.cells):
                cells.append(self.attribution(method, f"{mo.name}__cell{k}", mo.image, int(c))[0])
                step(1)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:  # noqa: BLE001
            self._fail(mo.name, method, "_attribution", e)
            step(len(mo.cells) - len(cells) + len(grid))
            return
        ctx = self._context(mo, cells[0], int(mo.cells[0]), method)
        ctx.cell_attributions = cells
        for name in grid:
            self._run_metric(name, ctx, mo.name, method, int(mo.cells[0]))
            step(1)

    def _device(self) -> torch.device:
        return next((p.device for p in self.model.parameters()), torch.device("cpu"))

    def _context(self, s: Sample, a: torch.Tensor, target: int, method: str) -> MetricContext:
        return MetricContext(model=self.model, image=s.image, attribution=a, target=target, sample=s,
                             method=self.method(method), make_method=self.make_method(method),
                             preset=self.cfg.preset or "inputiba", seed=self.cfg.seed,
                             batch_size=self.cfg.batch_size, options=self.cfg.metric_options)


def _exit_with_parent(parent_pid: int, interval: float = 2.0) -> None:
    """Stop this process (from a daemon thread) as soon as the parent process is gone."""
    import os
    import threading

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent_pid:
                os._exit(1)  # orphaned: the parent was killed; records on disk are complete lines

    threading.Thread(target=watch, name="fisherattr-parent-watch", daemon=True).start()


def _worker(config: EvalConfig, shard: Tuple[int, int], threads: int, parent_pid: int) -> None:
    """Entry point of one worker process (spawned): its share of the run, no results files."""
    _exit_with_parent(parent_pid)
    torch.set_num_threads(threads)
    import_plugins(config.plugins)
    cfg = replace(config, shard=shard, workers=1)
    Evaluation(cfg).run()


def _terminate_on_sigterm() -> Callable[[], None]:
    """Turn SIGTERM into KeyboardInterrupt in the main thread (so workers are stopped); returns an undo."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, old)


def run_workers(config: EvalConfig) -> None:
    """Run ``config.workers`` worker processes to completion, sharing the CPU threads between them."""
    import multiprocessing as mp

    n = int(config.workers)
    threads = max(1, torch.get_num_threads() // n)
    ctx = mp.get_context("spawn")
    import os

    procs = [ctx.Process(target=_worker, args=(config, (k, n), threads, os.getpid()),
                         name=f"fisherattr-worker-{k + 1}") for k in range(n)]
    tqdm.write(f"evaluate: {n} worker processes, {threads} thread(s) each")
    undo = _terminate_on_sigterm()
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join()
        undo()
    bad = [p.name for p in procs if p.exitcode != 0]
    if bad:
        tqdm.write(f"evaluate: {', '.join(bad)} stopped early; the collecting pass computes what is missing")
