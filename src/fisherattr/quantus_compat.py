"""Run any fisherattr method under Quantus metrics.

Quantus (Hedström et al. 2023) calls ``explain_func(model=..., inputs=..., targets=...,
**explain_func_kwargs)`` with numpy batches (``inputs`` ``[B,C,H,W]``, ``targets``
``[B]``) and expects a numpy array of attributions back. :func:`quantus_explain`
is such a function: ``explain_func_kwargs={"method": "fda", ...}`` picks the
method, every other key is a method option (as ``-o METHOD.KEY=VALUE`` on the
command line), and ``device`` (which Quantus adds on its own) moves the inputs.

The fisherattr contract applies: ``inputs`` are images in [0, 1] (values that
Quantus's noise pushes slightly outside are clipped) and ``model`` takes [0, 1]
images (wrap a network that expects normalised inputs in
:class:`fisherattr.Classifier` with its ``mean``/``std``). Built methods are
cached per (model, method, options), so FDA or DiffIB set up their score model
once per metric, not once per batch.

Example:
    >>> import quantus, fisherattr                                   # doctest: +SKIP
    >>> model = fisherattr.load_classifier("synthetic")              # doctest: +SKIP
    >>> metric = quantus.MaxSensitivity(nr_samples=5)                # doctest: +SKIP
    >>> scores = metric(model=model, x_batch=x, y_batch=y, explain_func=fisherattr.quantus_explain,
    ...                 explain_func_kwargs={"method": "fda", "steps": 30})  # doctest: +SKIP
"""
from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Dict, Hashable, Optional, Tuple

import numpy as np

from .errors import UsageError

if TYPE_CHECKING:
    import torch

#: Channel reductions for :func:`quantus_explain` (``None`` keeps the method's own shape).
CHANNEL_REDUCTIONS = (None, "sum", "abs-sum", "mean")
#: Keys Quantus users commonly pass to Quantus's own ``quantus.explain`` that mean nothing here.
_IGNORED = ("softmax",)
_CACHE_SIZE = 4
_cache: "OrderedDict[Tuple[int, str, Hashable], Tuple[Any, Any]]" = OrderedDict()


def _freeze(options: Dict[str, Any]) -> Hashable:
    try:
        key = tuple(sorted(options.items()))
        hash(key)
        return key
    except TypeError:  # an unhashable option (a tensor, a list): no caching across calls
        return object()


def _method_for(model: "torch.nn.Module", method: str, options: Dict[str, Any]):
    """The built method, reused while the same model object and options come back."""
    from .methods.registry import canonical_name, get_method

    name = canonical_name(method)
    key = (id(model), name, _freeze(options))
    hit = _cache.get(key)
    if hit is not None and hit[0] is model:  # `is`: an id may be reused after a model is freed
        _cache.move_to_end(key)
        return hit[1]
    built = get_method(name, model, **options)
    _cache[key] = (model, built)
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return built


def clear_cache() -> None:
    """Forget the built methods (and the models they hold)."""
    _cache.clear()


def quantus_explain(model: "torch.nn.Module", inputs: Any, targets: Any, *, method: str = "saliency",
                    device: Optional[Any] = None, reduce_channels: Optional[str] = None,
                    **options: Any) -> np.ndarray:
    """Attributions of ``inputs`` towards ``targets`` with a fisherattr method, as Quantus wants them.

    Args:
        model: the classifier (``[B,C,H,W]`` in [0,1] -> logits), e.g. from
            :func:`fisherattr.load_classifier` or a :class:`fisherattr.Classifier`.
        inputs: numpy array or tensor ``[B,C,H,W]`` (channel first) in [0, 1].
        targets: class index per image (``[B]``, numpy or tensor), or one int for all.
        method: any name of ``fisherattr list methods`` (default ``saliency``).
        device: where to compute (default: the model's device).
        reduce_channels: ``None`` keeps the method's shape (``[B,C,H,W]`` or ``[B,1,H,W]``);
            ``"sum"``, ``"abs-sum"`` or ``"mean"`` return ``[B,1,H,W]``.
        **options: the method's options (e.g. ``steps=30``, ``seed=0``).

    Returns:
        float32 numpy array ``[B,C,H,W]`` or ``[B,1,H,W]``.

    Raises:
        UsageError: unknown method or option, inputs that are not a 4-d image
            batch in [0, 1], a targets length that does not match.

    Example:
        >>> import torch, fisherattr
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
        >>> model = fisherattr.Classifier(net, mean=(0.5,) * 3, std=(0.5,) * 3)
        >>> x = np.random.default_rng(0).random((2, 3, 8, 8), dtype=np.float32)
        >>> quantus_explain(model, x, np.array([0, 1]), method="saliency").shape
        (2, 3, 8, 8)
    """
    import torch

    for key in _IGNORED:
        options.pop(key, None)
    if reduce_channels not in CHANNEL_REDUCTIONS:
        raise UsageError(f"reduce_channels must be one of {', '.join(map(str, CHANNEL_REDUCTIONS))}, "
                         f"got {reduce_channels!r}")
    x = torch.as_tensor(np.asarray(inputs) if not isinstance(inputs, torch.Tensor) else inputs)
    if x.dim() != 4:
        raise UsageError(f"inputs must be a [B,C,H,W] batch (channel first), got shape {tuple(x.shape)}")
    x = x.float()
    lo, hi = float(x.min()), float(x.max())
    if lo < -0.5 or hi > 1.5:
        raise UsageError(f"inputs range from {lo:.2f} to {hi:.2f}, not [0, 1]: fisherattr methods take [0,1] "
                         "images; wrap the network in fisherattr.Classifier(net, mean, std) and pass "
                         "unnormalised images")
    x = x.clamp(0, 1)  # Quantus's perturbations (noise) may step slightly outside the pixel range
    t = torch.as_tensor(np.asarray(targets) if not isinstance(targets, torch.Tensor) else targets).long()
    t = t.reshape(-1)
    if t.numel() == 1:
        t = t.expand(x.shape[0])
    if t.numel() != x.shape[0]:
        raise UsageError(f"targets has {t.numel()} entries for {x.shape[0]} inputs")
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    built = _method_for(model, method, options)
    a = built.attribute(x.to(device), target=t.to(device)).detach().float().cpu()
    if reduce_channels == "sum":
        a = a.sum(1, keepdim=True)
    elif reduce_channels == "abs-sum":
        a = a.abs().sum(1, keepdim=True)
    elif reduce_channels == "mean":
        a = a.mean(1, keepdim=True)
    return a.numpy().astype(np.float32, copy=False)


__all__ = ["CHANNEL_REDUCTIONS", "clear_cache", "quantus_explain"]
