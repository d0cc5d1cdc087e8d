"""Compute an evaluation's (image, method) items on Ray actors: ``fisherattr evaluate --executor ray``.

The driver (the ``evaluate`` process) builds the :class:`~fisherattr.bench.runner.Evaluation`
as usual (data, classifier, mosaics, output folder), lists the items the folder does
not hold yet (so a rerun resumes), and deals them to ``workers`` long-lived actors,
two in flight per actor. Each actor loads the classifier, the methods and the metrics
once, then runs the very code of a local run
(:meth:`~fisherattr.bench.runner.Evaluation.process_image` /
:meth:`~fisherattr.bench.runner.Evaluation.process_mosaic`) against an in-memory
:class:`ItemStore` seeded with the item's cached attribution and records. It sends
back the new attributions and records; the driver alone writes them to the output
folder, item by item (one writer, no shared file system needed). Images reach the
actors through Ray's object store (put once per image, freed when its items are
done), so only the driver reads the data.

Faults: actors are created with ``max_restarts=-1`` and ``max_task_retries=2``, so
when an actor process dies mid-item Ray starts a new one and runs the item again
(at most 3 tries in all). Only finished items are written, so nothing is recorded
twice; an item that still fails is left to the local collecting pass that follows.
A driver killed outright leaves complete records behind (see
:mod:`fisherattr.bench.store`), and a rerun computes only what is missing.

Ray is imported here only, and only when ``executor="ray"`` is asked for.

Example:
    >>> cfg = EvalConfig(methods=["saliency"], data="synthetic:16", out="ev",
    ...                  executor="ray", workers=2)                       # doctest: +SKIP
    >>> Evaluation(cfg).run()                                             # doctest: +SKIP
"""
from __future__ import annotations

import logging
import math
import os
import time
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Set, Tuple

import torch

from ..errors import UsageError
from ..progress import echo, progress_bar

if TYPE_CHECKING:  # pragma: no cover
    from .runner import EvalConfig, Evaluation

INSTALL_HINT = "pip install fisherattr[ray]"
OBJECT_STORE_BYTES = 256 * 2**20  # local instance: images and attributions in flight only
IN_FLIGHT_PER_WORKER = 2          # one running, one queued: no idle gap while the driver writes
TASK_RETRIES = 2                  # an item whose actor dies is tried again up to twice


def import_ray() -> Any:
    """The ``ray`` module, or a one-line :class:`UsageError` naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise UsageError(f"--executor ray needs the Ray package: {INSTALL_HINT}") from None
    return ray


def check_ray_config(cfg: "EvalConfig") -> None:
    """Validate the Ray settings of ``cfg`` (and that Ray is installed) before anything is loaded."""
    if float(cfg.gpus_per_worker) < 0:
        raise UsageError(f"--gpus-per-worker must be >= 0, got {cfg.gpus_per_worker}")
    if cfg.cpus_per_worker is not None and float(cfg.cpus_per_worker) <= 0:
        raise UsageError(f"--cpus-per-worker must be > 0, got {cfg.cpus_per_worker}")
    import_ray()


def cpus_per_worker(cfg: "EvalConfig") -> float:
    """CPUs each actor reserves (and torch threads it uses): as given, else this machine's threads / workers."""
    if cfg.cpus_per_worker is not None:
        return float(cfg.cpus_per_worker)
    return float(max(1, torch.get_num_threads() // max(1, int(cfg.workers))))


# ------------------------------------------------------------------ items
@dataclass
class ItemSpec:
    """One (image or mosaic, method) item as sent to an actor, with what the output folder already holds.

    ``records``: the stored records the item may reuse, by ``(image, method, metric)``;
    ``attributions``: cached attributions by image name (for a mosaic, one per cell).
    """

    key: int
    kind: str                     # "image" or "mosaic"
    image: str
    method: str
    target: int = -1              # images only (mosaic cells carry their own classes)
    records: Dict[Tuple[str, str, str], dict] = field(default_factory=dict)
    attributions: Dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class ItemResult:
    """What an actor sends back: the store writes of one item, in order, and who did it how fast."""

    key: int
    events: List[Tuple[str, Any]]  # ("attribution", (method, image, tensor)) or ("record", dict)
    seconds: float
    pid: int
    node: str


class ItemStore:
    """In-memory stand-in for :class:`~fisherattr.bench.store.ResultStore` inside an actor.

    Reads come from what the driver sent; writes are collected in :attr:`events`
    for the driver to replay into the real store.

    Example:
        >>> st = ItemStore({("a", "m", "x"): {"outcome": {}}}, {})
        >>> st.has("a", "m", "x"), st.load_attribution("m", "a")
        (True, None)
        >>> st.append({"image": "a", "method": "m", "metric": "y"}); [e[0] for e in st.events]
        ['record']
    """

    def __init__(self, records: Dict[Tuple[str, str, str], dict], attributions: Dict[str, torch.Tensor]) -> None:
        self._done = dict(records)
        self._attributions = dict(attributions)
        self.events: List[Tuple[str, Any]] = []

    def has(self, image: str, method: str, metric: str) -> bool:
        return (image, method, metric) in self._done

    def get(self, image: str, method: str, metric: str) -> Optional[dict]:
        return self._done.get((image, method, metric))

    def append(self, record: dict) -> None:
        self._done[(record["image"], record["method"], record["metric"])] = record
        self.events.append(("record", record))

    def load_attribution(self, method: str, image: str) -> Optional[torch.Tensor]:  # noqa: ARG002 - one method
        return self._attributions.get(image)

    def save_attribution(self, method: str, image: str, attribution: torch.Tensor) -> None:
        self._attributions[image] = attribution
        self.events.append(("attribution", (method, image, attribution.detach().cpu().float())))

    def save_image(self, image: str, x: torch.Tensor) -> None:  # the driver saves the images
        pass


class EvalWorker:
    """The actor: loads the classifier and methods once, then computes items (see the module docstring).

    Example (without Ray, as a plain object):
        >>> w = EvalWorker(cfg, model_name, size, methods, metrics, threads=1)   # doctest: +SKIP
        >>> w.run(sample, ItemSpec(0, "image", sample.name, "saliency", target=3))  # doctest: +SKIP
    """

    def __init__(self, config: "EvalConfig", model_name: Optional[str], size: int, methods: List[str],
                 metrics: List[str], threads: int) -> None:
        from .runner import Evaluation, import_plugins, load_model

        torch.set_num_threads(max(1, int(threads)))
        import_plugins(config.plugins)
        cfg = replace(config, progress=False, workers=1, shard=None, executor="local")
        if cfg.model is None and model_name is not None:
            cfg = replace(cfg, model=model_name)
        if cfg.device is None and float(config.gpus_per_worker) > 0 and torch.cuda.is_available():
            cfg = replace(cfg, device="cuda")  # Ray sets CUDA_VISIBLE_DEVICES to this actor's GPUs
        name, model = load_model(cfg)
        self.ev = Evaluation.for_items(cfg, model_name or name, model, size, methods, metrics, ItemStore({}, {}))
        for m in methods:  # build each method once now; a method that cannot be built fails per item, as locally
            try:
                self.ev.method(m)
            except Exception:  # noqa: BLE001
                pass
        self.pid, self.node = os.getpid(), _node_address()

    def ready(self) -> Dict[str, Any]:
        """Where this actor runs (answered once its classifier and methods are loaded)."""
        dev = next((p.device for p in self.ev.model.parameters()), torch.device("cpu"))
        return {"pid": self.pid, "node": self.node, "device": str(dev), "threads": torch.get_num_threads()}

    def run(self, sample: Any, item: ItemSpec) -> ItemResult:
        """Compute one item against an :class:`ItemStore` seeded from ``item``; return its writes."""
        store = ItemStore(item.records, item.attributions)
        self.ev.store, self.ev.failures = store, []
        t0 = time.perf_counter()
        if item.kind == "mosaic":
            self.ev.process_mosaic(sample, item.method)
        else:
            self.ev.process_image(sample, item.method, item.target)
        return ItemResult(item.key, store.events, time.perf_counter() - t0, self.pid, self.node)


def _node_address() -> str:
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001
        return "local"


def pending_items(ev: "Evaluation") -> Tuple[List[Tuple[Any, ItemSpec]], int]:
    """``([(sample, item), ...], total)``: the items of this run (or share) the output folder lacks.

    An item is done when its attribution file(s) exist and every metric has a
    successful record; a done item is skipped (resume), a partly done one is sent
    with what it can reuse.
    """
    plain, grid = ev.metric_groups()
    store, out, total = ev.store, [], 0
    everything = ev.samples + ev.mosaics
    for i, s in enumerate(everything):
        is_mosaic = i >= len(ev.samples)
        names = [f"{s.name}__cell{k}" for k in range(len(s.cells))] if is_mosaic else [s.name]
        metrics = grid if is_mosaic else plain
        target: Optional[int] = None
        for j, m in enumerate(ev.methods):
            if not ev.mine(i, j):
                continue
            total += 1
            cached = {n: a for n in names
                      if (a := store.load_attribution(m, n)) is not None and a.shape[-2:] == s.image.shape[-2:]}
            records = {(s.name, m, x): r for x in metrics if (r := store.get(s.name, m, x)) is not None}
            if len(cached) == len(names) and all("error" not in r for r in records.values()) \
                    and len(records) == len(metrics):
                continue
            if not is_mosaic and target is None:
                with torch.no_grad():
                    top1 = int(ev.model(s.image.to(ev._device())).argmax(1)[0])
                target = ev.target_for(s, top1)
            out.append((s, ItemSpec(len(out), "mosaic" if is_mosaic else "image", s.name, m,
                                    -1 if target is None else target, records, cached)))
    return out, total


# ----------------------------------------------------------------- run
@dataclass
class WorkerStats:
    """Items and busy seconds of one actor (``pids``: more than one when Ray restarted it)."""

    items: int = 0
    busy: float = 0.0
    pids: Set[int] = field(default_factory=set)
    node: str = ""


@dataclass
class RayRunSummary:
    """What :func:`run_ray` did: items computed, lost (given up after retries), timings, per-worker stats."""

    items: int = 0
    lost: int = 0
    skipped: int = 0
    startup_seconds: float = 0.0   # ray.init (or connect) and every actor ready
    compute_seconds: float = 0.0   # first item sent -> last result written
    workers: List[WorkerStats] = field(default_factory=list)

    def overhead_ms_per_item(self) -> float:
        """Actor time not spent computing (transfer, driver writes, idle tail), per item, in ms."""
        if not self.items:
            return 0.0
        busy = sum(w.busy for w in self.workers)
        return 1000.0 * max(0.0, len(self.workers) * self.compute_seconds - busy) / self.items

    def lines(self) -> List[str]:
        out = [f"ray: {self.items} items on {len(self.workers)} workers in {self.compute_seconds:.1f} s "
               f"(+ {self.startup_seconds:.1f} s start-up; {self.skipped} already stored; "
               f"overhead {self.overhead_ms_per_item():.0f} ms per item)"]
        for k, w in enumerate(self.workers):
            rate = w.items / self.compute_seconds if self.compute_seconds > 0 else 0.0
            restarts = f", restarted {len(w.pids) - 1}x" if len(w.pids) > 1 else ""
            out.append(f"  worker {k + 1} ({w.node}, pid {','.join(map(str, sorted(w.pids)))}): {w.items} items, "
                       f"{w.busy:.1f} s busy, {rate:.2f} items/s{restarts}")
        if self.lost:
            out.append(f"ray: {self.lost} items failed on every try; the collecting pass computes them here")
        return out


def start_local_ray(num_cpus: int) -> None:
    """Start a small local Ray instance: no dashboard, no usage reports, a 256 MiB object store.

    Its workers keep this process's scheduling priority (Ray would otherwise renice
    them by +15, which starves them on a shared machine).

    Example:
        >>> start_local_ray(2)          # doctest: +SKIP
    """
    ray = import_ray()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline: no usage reports
    old = os.environ.get("RAY_worker_niceness")
    os.environ["RAY_worker_niceness"] = old if old is not None else "0"  # read by the raylet at start
    try:
        ray.init(num_cpus=int(num_cpus), include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES,
                 logging_level=logging.WARNING, log_to_driver=True)
    finally:
        if old is None:
            del os.environ["RAY_worker_niceness"]


def _connect(ray: Any, cfg: "EvalConfig", cpus: float) -> bool:
    """Join ``cfg.ray_address`` or start a local instance (unless Ray already runs here); True when this started Ray."""
    if ray.is_initialized():
        return False
    if cfg.ray_address:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            ray.init(address=cfg.ray_address, logging_level=logging.WARNING, log_to_driver=True)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise UsageError(f"--address {cfg.ray_address}: cannot join the Ray cluster ({_one_line(e)})") from None
    else:
        start_local_ray(int(math.ceil(cpus * int(cfg.workers))))
    return True


def _one_line(e: BaseException) -> str:
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else type(e).__name__


def _workers_that_fit(ray: Any, n: int, cpus: float, gpus: float) -> int:
    """``n``, or fewer (with a note) when the cluster cannot hold ``n`` actors of this size; 0 is an error."""
    have = ray.cluster_resources()
    fit = int(have.get("CPU", 0) // cpus)
    if gpus > 0:
        fit = min(fit, int(have.get("GPU", 0) // gpus))
    if fit < 1:
        raise UsageError(f"the Ray cluster has {have.get('CPU', 0):g} CPUs and {have.get('GPU', 0):g} GPUs; "
                         f"one worker needs {cpus:g} CPUs and {gpus:g} GPUs (see --cpus-per-worker, --gpus-per-worker)")
    if fit < n:
        echo(f"ray: the cluster holds {fit} workers of {cpus:g} CPUs and {gpus:g} GPUs, not {n}; using {fit}")
    return min(n, fit)


def run_ray(ev: "Evaluation") -> RayRunSummary:
    """Compute every item ``ev``'s output folder lacks on Ray actors, writing results as they come back."""
    from .runner import _terminate_on_sigterm

    cfg = ev.cfg
    items, total = pending_items(ev)
    summary = RayRunSummary(skipped=total - len(items))
    if not items:
        echo(f"ray: all {total} items already stored in {cfg.out}")
        return summary
    ray = import_ray()
    cpus, gpus = cpus_per_worker(cfg), float(cfg.gpus_per_worker)
    n = min(int(cfg.workers), len(items))
    t0 = time.perf_counter()
    undo = _terminate_on_sigterm()
    started = _connect(ray, cfg, cpus)
    actors: List[Any] = []
    try:
        n = _workers_that_fit(ray, n, cpus, gpus)
        actor_cls = ray.remote(EvalWorker).options(num_cpus=cpus, num_gpus=gpus, max_restarts=-1,
                                                   max_task_retries=TASK_RETRIES)
        actors = [actor_cls.remote(cfg, ev.model_name, ev.size, ev.methods, ev.metrics, max(1, int(cpus)))
                  for _ in range(n)]
        summary.workers = [WorkerStats() for _ in range(n)]
        try:
            for w, info in zip(summary.workers, ray.get([a.ready.remote() for a in actors])):
                w.pids.add(info["pid"])
                w.node = info["node"]
        except ray.exceptions.RayError as e:
            raise UsageError(f"the Ray workers could not start: {_one_line(e)}") from None
        summary.startup_seconds = time.perf_counter() - t0
        echo(f"ray: {n} workers ready in {summary.startup_seconds:.1f} s ({cpus:g} CPUs, {gpus:g} GPUs each); "
                   f"{len(items)} of {total} items to compute")
        bar = progress_bar(total, "evaluate (ray)", unit="item", enabled=cfg.progress, min_interval=10,
                           initial=total - len(items))  # tqdm on a terminal, a line every 10 s in a log
        _dispatch(ray, ev, items, actors, summary, bar)
    finally:
        for a in actors:
            try:
                ray.kill(a)
            except Exception:  # noqa: BLE001
                pass
        if started:
            ray.shutdown()
        undo()
    for line in summary.lines():
        echo(line)
    return summary


def _dispatch(ray: Any, ev: "Evaluation", items: List[Tuple[Any, ItemSpec]], actors: List[Any],
              summary: RayRunSummary, progress: Any) -> None:
    """Deal ``items`` to ``actors`` (two in flight each) and write each result as it arrives."""
    queue = deque(items)
    left = Counter(spec.image for _, spec in items)  # items per image still to finish
    refs: Dict[str, Any] = {}                          # image -> its object in the store, while needed
    in_flight: Dict[Any, Tuple[int, ItemSpec]] = {}

    def submit(k: int) -> None:
        sample, spec = queue.popleft()
        if spec.image not in refs:
            ev.store.save_image(sample.name, sample.image)
            refs[spec.image] = ray.put(sample)
        in_flight[actors[k].run.remote(refs[spec.image], spec)] = (k, spec)

    t0 = time.perf_counter()
    try:
        for _ in range(IN_FLIGHT_PER_WORKER):
            for k in range(len(actors)):
                if queue:
                    submit(k)
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            k, spec = in_flight.pop(ready[0])
            try:
                res: ItemResult = ray.get(ready[0])
            except ray.exceptions.RayError as e:
                summary.lost += 1
                echo(f"ray: {spec.image} / {spec.method} failed on every try: {_one_line(e)}")
            else:
                _write(ev, res)
                w = summary.workers[k]
                w.items, w.busy = w.items + 1, w.busy + res.seconds
                w.pids.add(res.pid)
                w.node = res.node
                summary.items += 1
            left[spec.image] -= 1
            if left[spec.image] == 0:
                refs.pop(spec.image, None)  # the image can leave the object store
            progress.update(1)
            if queue:
                submit(k)
    finally:
        progress.close()
        summary.compute_seconds = time.perf_counter() - t0


def _write(ev: "Evaluation", res: ItemResult) -> None:
    """Replay one item's writes into the real store, in the order the actor made them."""
    for kind, payload in res.events:
        if kind == "attribution":
            method, image, a = payload
            ev.store.save_attribution(method, image, a)
        else:
            ev.store.append(payload)
