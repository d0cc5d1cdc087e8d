"""Closed-form weighted ridge regression as a Captum interpretable model.

Captum's LIME and KernelSHAP fit a linear surrogate through scikit-learn by
default (Lasso, LinearRegression); scikit-learn is not a dependency here.
:func:`weighted_ridge` solves the same weighted least-squares problem exactly
in torch (float64), with an unpenalised intercept (as scikit-learn does):

    min_{b, c}  sum_i w_i (y_i - c - x_i . b)^2 + alpha |b|^2

With ``alpha = 0`` it is KernelSHAP's weighted linear regression; with
``alpha = 1`` it is the ridge the reference LIME implementation uses.
"""
from __future__ import annotations

import time
from typing import Any, Dict, Tuple

import torch
from captum._utils.models.linear_model import LinearModel
from torch.utils.data import DataLoader


def weighted_ridge(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, alpha: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Coefficients ``b`` [d] and intercept ``c`` (scalar tensor) of the weighted ridge fit.

    Rank-deficient systems (``alpha = 0`` and a feature that never varies)
    get the minimum-norm solution.

    Example:
        >>> x = torch.tensor([[0., 1.], [1., 0.], [1., 1.], [0., 0.]])
        >>> b, c = weighted_ridge(x, x @ torch.tensor([2., -1.]) + 0.5, torch.ones(4), 0.0)
        >>> [round(v, 6) for v in b.tolist()], round(c.item(), 6)
        ([2.0, -1.0], 0.5)
    """
    x, y, w = x.double().cpu(), y.double().cpu().reshape(-1), w.double().cpu().reshape(-1)
    sw = w.sum().clamp_min(1e-300)
    xm = (w[:, None] * x).sum(0) / sw
    ym = (w * y).sum() / sw
    xc, yc = x - xm, y - ym
    a = xc.T @ (w[:, None] * xc) + alpha * torch.eye(x.shape[1], dtype=torch.float64)
    rhs = xc.T @ (w * yc)
    b = torch.linalg.pinv(a, hermitian=True) @ rhs
    return b, ym - xm @ b


def _train_ridge(model: LinearModel, dataloader: DataLoader, construct_kwargs: Dict[str, Any],
                 **_: Any) -> Dict[str, float]:
    """Captum ``train_fn``: gather (x, y, weight) from ``dataloader`` and fit :func:`weighted_ridge`."""
    t0 = time.time()
    xs, ys, ws = [], [], []
    for batch in dataloader:
        x, y = batch[0], batch[1]
        xs.append(x.reshape(x.shape[0], -1))
        ys.append(y.reshape(-1))
        ws.append(batch[2].reshape(-1) if len(batch) > 2 else torch.ones(x.shape[0]))
    x, y, w = torch.cat(xs), torch.cat(ys), torch.cat(ws)
    b, c = weighted_ridge(x, y, w, float(construct_kwargs.get("alpha", 0.0)))
    model._construct_model_params(weight_values=b.float().reshape(1, -1).to(x.device),
                                  bias_value=c.float().reshape(1).to(x.device))
    return {"train_time": time.time() - t0}


class WeightedRidge(LinearModel):
    """Captum interpretable model fitted by :func:`weighted_ridge`.

    Example:
        >>> from captum.attr import Lime
        >>> lime = Lime(forward_func, interpretable_model=WeightedRidge(alpha=1.0))  # doctest: +SKIP
    """

    def __init__(self, alpha: float = 0.0) -> None:
        super().__init__(train_fn=_train_ridge)
        self.alpha = float(alpha)

    def fit(self, train_data: DataLoader, **kwargs: Any) -> Dict[str, float]:
        return _train_ridge(self, train_data, {"alpha": self.alpha})
