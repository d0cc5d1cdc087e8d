"""The metric registry: every metric as a named, uniform step of an evaluation run.

A :class:`MetricSpec` wraps one metric function so that a runner can call it on
one image and one method through a :class:`MetricContext` and store plain
numbers: ``compute(ctx) -> Outcome`` where ``Outcome.values`` maps column names
to floats (the table), ``curves`` holds lists for plots and ``skip`` gives a
reason when the metric does not apply (no annotation, not a path method, ...).

``needs`` says what a metric requires: ``"region"`` (mask or boxes), ``"mask"``,
``"boxes"``, ``"mosaic"`` (a 2x2 grid sample), ``"method"`` (it recomputes
attributions). Presets named after the papers pick an insertion/deletion
protocol and the metric set that paper reports (:data:`PRESET_METRICS`).

Example:
    >>> spec = get_metric("ehr")
    >>> spec.needs, spec.columns
    ('region', ('ehr',))
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from ..errors import UsageError
from ..models.classifier import normalized_zero

NEEDS = ("none", "method", "region", "mask", "boxes", "mosaic")


@dataclass
class MetricContext:
    """Everything a metric may read for one (image, method) pair."""

    model: nn.Module
    image: torch.Tensor                      # [1,3,H,W] in [0,1]
    attribution: torch.Tensor                # [1,C,H,W]
    target: int
    sample: Any = None                       # fisherattr.data.dataset.Sample
    method: Any = None                       # the AttributionMethod instance
    make_method: Optional[Callable[[nn.Module], Any]] = None
    cell_attributions: Optional[List[torch.Tensor]] = None  # mosaics: one [1,C,H,W] per cell
    preset: str = "inputiba"
    seed: int = 0
    batch_size: Optional[int] = None         # None: automatic (fisherattr.batching)
    options: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    previous: Dict[str, "Outcome"] = field(default_factory=dict)  # metrics already computed for this pair

    def opt(self, metric: str, key: str, default: Any) -> Any:
        return self.options.get(metric, {}).get(key, default)


@dataclass
class Outcome:
    values: Dict[str, float] = field(default_factory=dict)
    curves: Dict[str, list] = field(default_factory=dict)
    extra: Dict[str, Any] = field(default_factory=dict)
    skip: Optional[str] = None
    model_calls: int = 0

    def to_json(self) -> dict:
        return {"values": self.values, "curves": self.curves, "extra": self.extra, "skip": self.skip,
                "model_calls": self.model_calls}

    @classmethod
    def from_json(cls, d: dict) -> "Outcome":
        return cls(d.get("values", {}), d.get("curves", {}), d.get("extra", {}), d.get("skip"),
                   int(d.get("model_calls", 0)))


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric: ``name``, what it ``needs``, its table ``columns`` and whether
    ``higher`` is better per column, a one-line ``description`` and ``compute``."""

    name: str
    needs: str
    columns: Tuple[str, ...]
    higher: Tuple[bool, ...]
    description: str
    compute: Callable[[MetricContext], Outcome]


_METRICS: Dict[str, MetricSpec] = {}


def register_metric(name: str, needs: str, columns: Dict[str, bool], description: str):
    """Decorator: register ``compute(ctx) -> Outcome`` under ``name`` (columns: name -> higher is better)."""
    if needs not in NEEDS:
        raise ValueError(f"needs must be one of {NEEDS}")

    def deco(fn: Callable[[MetricContext], Outcome]) -> Callable[[MetricContext], Outcome]:
        _METRICS[name] = MetricSpec(name, needs, tuple(columns), tuple(columns.values()), description, fn)
        return fn

    return deco


def list_metrics() -> List[str]:
    """Names of all registered metrics, in registration order."""
    return list(_METRICS)


def get_metric(name: str) -> MetricSpec:
    key = name.strip().lower().replace("-", "_")
    if key not in _METRICS:
        raise UsageError(f"unknown metric {name!r}; available: {', '.join(_METRICS)}")
    return _METRICS[key]


def _f(v) -> float:
    return float(v)


def _region(ctx: MetricContext, kind: str) -> Optional[torch.Tensor]:
    s = ctx.sample
    if s is None:
        return None
    if kind == "mask":
        return None if s.mask is None else s.mask.bool()
    if kind == "boxes":
        if not s.boxes:
            return None
        from ..data.dataset import Sample

        return Sample(s.name, s.image, boxes=list(s.boxes)).region()
    return s.region()


# ----------------------------------------------------------------- faithfulness
@register_metric("insdel", "none", {"insertion": True, "deletion": False, "difauc": True},
                 "insertion / deletion AUC and DifAUC under the preset's protocol")
def _insdel(ctx: MetricContext) -> Outcome:
    from .insertion_deletion import PRESETS, insertion_deletion

    preset = ctx.preset if ctx.preset in PRESETS else "inputiba"
    r = insertion_deletion(ctx.model, ctx.image, ctx.attribution, ctx.target, preset=preset,
                           batch_size=ctx.batch_size)
    out = Outcome(values={"insertion": _f(r.insertion[0]), "deletion": _f(r.deletion[0]),
                          "difauc": _f(r.difauc[0])},
                  curves={"fractions": r.fractions.tolist(), "insertion": r.insertion_curve[0].tolist()},
                  extra={"preset": preset}, model_calls=r.model_calls)
    if r.deletion_curve is not None:
        out.curves["deletion"] = r.deletion_curve[0].tolist()
    else:  # insertion-only protocol (idgi)
        out.extra["deletion_skip"] = out.extra["difauc_skip"] = f"insertion-only preset {preset!r}"
    if "insertion_ratio" in r.extras:
        out.values["insertion_ratio"] = _f(torch.as_tensor(r.extras["insertion_ratio"]).reshape(-1)[0])
    return out


@register_metric("mnim", "none", {"mnim": False},
                 "minimum necessary information: fraction of features needed from noise to reach p >= 0.9")
def _mnim(ctx: MetricContext) -> Outcome:
    from .mnim import mnim

    r = mnim(ctx.model, ctx.image, ctx.attribution, ctx.target, threshold=ctx.opt("mnim", "threshold", 0.9),
             grid=ctx.opt("mnim", "grid", 32), batch_size=ctx.batch_size, seed=ctx.seed)
    return Outcome(values={"mnim": _f(r.values[0])},
                   extra={"n": int(r.n[0]), "units": r.units, "reached": bool(r.reached[0])},
                   model_calls=r.model_calls)


@register_metric("sensitivity_n", "none", {"sensitivity_n": True},
                 "Sensitivity-N: Pearson(sum of removed attributions, score drop), mean over log-spaced N")
def _sens(ctx: MetricContext) -> Outcome:
    from .sensitivity import default_sizes, sensitivity_n

    units = ctx.attribution[0].numel()
    ns = default_sizes(units, ctx.opt("sensitivity_n", "points", 6))
    r = sensitivity_n(ctx.model, ctx.image, ctx.attribution, ctx.target, ns=ns,
                      n_subsets=ctx.opt("sensitivity_n", "n_subsets", 24), batch_size=ctx.batch_size,
                      seed=ctx.seed)
    c = r.correlations[0]
    finite = c[torch.isfinite(c)]
    return Outcome(values={"sensitivity_n": _f(finite.mean()) if finite.numel() else float("nan")},
                   curves={"ns": r.ns, "correlation": c.tolist()}, model_calls=r.model_calls)


@register_metric("mu_fidelity", "none", {"mu_fidelity": True},
                 "mu-Fidelity (Bhatt 2020): Sensitivity-N correlation at 20% of the features")
def _muf(ctx: MetricContext) -> Outcome:
    from .sensitivity import mu_fidelity

    v = mu_fidelity(ctx.model, ctx.image, ctx.attribution, ctx.target,
                    n_subsets=ctx.opt("mu_fidelity", "n_subsets", 64), batch_size=ctx.batch_size, seed=ctx.seed)
    return Outcome(values={"mu_fidelity": _f(v[0])})


#: Methods outside ``fisherattr.methods.paths`` whose attributions sum to f(x) - f(baseline).
COMPLETE_METHODS = ("integrated-gradients", "deeplift")


def method_baseline(method: Any, model: nn.Module, image: torch.Tensor) -> Optional[torch.Tensor]:
    """The baseline image of a path method (its ``baseline``: "black", "white", "mean", a number or a
    tensor), or None when the method is not a straight-from-a-baseline path method."""
    name = getattr(method, "method_name", "")
    module = type(method).__module__
    is_path = getattr(method, "complete", False) or name in COMPLETE_METHODS or (
        module.startswith("fisherattr.methods.paths") and "blur" not in name)
    b = getattr(method, "baseline", None)
    if not is_path or b is None:
        return None
    if isinstance(b, torch.Tensor):
        return b.detach().float().cpu().expand_as(image)
    if isinstance(b, (int, float)) and not isinstance(b, bool):
        return torch.full_like(image, float(b))
    return {"black": torch.zeros_like(image), "white": torch.ones_like(image),
            "mean": normalized_zero(model, image).cpu()}.get(b)


@register_metric("completeness", "method", {"completeness_gap": False},
                 "path methods: |sum A - (f(x) - f(baseline))| / |f(x) - f(baseline)| (the method's score)")
def _completeness(ctx: MetricContext) -> Outcome:
    from .completeness import completeness_gap

    base = method_baseline(ctx.method, ctx.model, ctx.image)
    if base is None:
        return Outcome(skip="not a path method from a baseline image")
    score = "prob" if getattr(ctx.method, "score", "logit") in ("probability", "prob", "softmax") else "logit"
    gap = completeness_gap(ctx.model, ctx.image, ctx.attribution, base, ctx.target, score=score,
                           batch_size=ctx.batch_size)
    return Outcome(values={"completeness_gap": _f(gap[0])}, extra={"score": score})


@register_metric("randomisation", "method", {"ssim": False, "spearman": False},
                 "cascading parameter randomisation: SSIM / Spearman to the original map, mean over steps")
def _random(ctx: MetricContext) -> Outcome:
    from .randomisation import cascading_randomisation

    if ctx.make_method is None:
        return Outcome(skip="no method factory")
    r = cascading_randomisation(ctx.make_method, ctx.model, ctx.image, ctx.attribution, ctx.target,
                                steps=ctx.opt("randomisation", "steps", 4), seed=ctx.seed)
    return Outcome(values={"ssim": _f(r.ssim[0].mean()), "spearman": _f(r.spearman[0].nanmean())},
                   curves={"layers": r.layers, "ssim": r.ssim[0].tolist(), "spearman": r.spearman[0].tolist(),
                           "logit_change": r.logit_change})


@register_metric("pic", "none", {"sic": True, "aic": True},
                 "SIC / AIC performance information curves (PIC); table = AUC of the aggregated curves")
def _pic(ctx: MetricContext) -> Outcome:
    from .pic import pic

    ref = "gaussian" if ctx.preset == "idgi" else ctx.opt("pic", "reference", "interp")
    r = pic(ctx.model, ctx.image, ctx.attribution, ctx.target, reference=ref,
            information=ctx.opt("pic", "information", "entropy"), batch_size=ctx.batch_size, seed=ctx.seed)
    out = Outcome(curves={"thresholds": r.thresholds, "info": r.info[0].tolist(),
                          "sic_points": r.sic_points[0].tolist(), "aic_points": r.aic_points[0].tolist()},
                  extra={"sic_skip": r.sic_skip[0], "aic_skip": r.aic_skip[0], "reference": ref},
                  model_calls=r.model_calls)
    from .common import trapezoid

    out.values["sic"] = trapezoid(r.sic_curves[0]) if r.sic_skip[0] is None else float("nan")
    out.values["aic"] = trapezoid(r.aic_curves[0]) if r.aic_skip[0] is None else float("nan")
    if r.sic_skip[0] and r.aic_skip[0]:
        out.skip = r.sic_skip[0]
    return out


# ----------------------------------------------------------------- localisation
@register_metric("ehr", "region", {"ehr": True}, "effective heat ratio inside the mask / boxes")
def _ehr(ctx: MetricContext) -> Outcome:
    from .localisation import ehr

    reg = _region(ctx, "region")
    if reg is None:
        return Outcome(skip="no mask or boxes")
    return Outcome(values={"ehr": _f(ehr(ctx.attribution, reg.unsqueeze(0))[0])})


def _ratio(ctx: MetricContext, kind: str, col: str) -> Outcome:
    from .localisation import region_ratio

    reg = _region(ctx, kind)
    if reg is None:
        return Outcome(skip=f"no {kind}")
    prev = ctx.previous.get("mnim")
    if prev is None or prev.skip:
        prev = _mnim(ctx)
    n = max(1, int(prev.extra["n"]))
    return Outcome(values={col: _f(region_ratio(ctx.attribution, reg.unsqueeze(0), n)[0])}, extra={"n": n},
                   model_calls=prev.model_calls if "mnim" not in ctx.previous else 0)


@register_metric("box_ratio", "boxes", {"box_ratio": True}, "fraction of the top-N (N from MNIM) features in the boxes")
def _box_ratio(ctx: MetricContext) -> Outcome:
    return _ratio(ctx, "boxes", "box_ratio")


@register_metric("seg_ratio", "mask", {"seg_ratio": True}, "fraction of the top-N (N from MNIM) features in the mask")
def _seg_ratio(ctx: MetricContext) -> Outcome:
    return _ratio(ctx, "mask", "seg_ratio")


@register_metric("pointing_game", "region", {"pointing_game": True},
                 "1 if the map's maximum is within 15 px of the object")
def _pointing(ctx: MetricContext) -> Outcome:
    from .localisation import pointing_game

    reg = _region(ctx, "region")
    if reg is None:
        return Outcome(skip="no mask or boxes")
    return Outcome(values={"pointing_game": _f(pointing_game(ctx.attribution, reg.unsqueeze(0),
                                                             ctx.opt("pointing_game", "tolerance", 15.0))[0])})


@register_metric("wsl", "region", {"wsl_auc": True, "wsl_f1": True, "wsl_mae": False},
                 "weakly supervised localisation: ROC-AUC, best F1, MAE of the normalised map")
def _wsl(ctx: MetricContext) -> Outcome:
    from .localisation import wsl

    reg = _region(ctx, "region")
    if reg is None:
        return Outcome(skip="no mask or boxes")
    r = wsl(ctx.attribution, reg.unsqueeze(0))
    return Outcome(values={f"wsl_{k}": _f(v[0]) for k, v in r.items()})


@register_metric("grid_pointing", "mosaic", {"grid_pointing": True},
                 "2x2 mosaics: positive mass in the explained class's cell / total (chance 0.25)")
def _grid(ctx: MetricContext) -> Outcome:
    from .grid_pointing import grid_pointing

    if not ctx.cell_attributions:
        return Outcome(skip="not a mosaic")
    grid = tuple(getattr(ctx.sample, "grid", (2, 2)))
    maps = torch.cat([a.float().cpu() for a in ctx.cell_attributions])
    scores = grid_pointing(maps, list(range(maps.shape[0])), grid)
    return Outcome(values={"grid_pointing": _f(scores.mean())}, curves={"per_cell": scores.tolist()})


#: Metric sets the papers report, by preset (the preset also picks the insertion/deletion protocol).
PRESET_METRICS: Dict[str, Tuple[str, ...]] = {
    "inputiba": ("insdel", "mnim", "ehr", "seg_ratio", "box_ratio"),
    "rise": ("insdel", "pointing_game"),
    "samp": ("insdel", "completeness"),
    "idgi": ("insdel", "pic", "wsl"),
}

#: Metrics that need no annotation and no recomputation (cheap enough for the default run).
NO_ANNOTATION: Tuple[str, ...] = ("insdel", "mnim", "sensitivity_n", "mu_fidelity", "completeness",
                                  "randomisation", "pic")
LOCALISATION: Tuple[str, ...] = ("ehr", "seg_ratio", "box_ratio", "pointing_game", "wsl")
