"""Quadrature rules on [0, 1] and the variable they integrate in (METHODS.md 1.6).

``nodes(kind, K) -> (u, w)`` gives K nodes ``u`` in [0, 1] and weights ``w``
summing to 1, so that ``integral_0^1 f(u) du ~= sum_k w_k f(u_k)``.

Kinds:
- ``"trapezoid"``: K equally spaced nodes including both ends (the papers' rule, K = 8).
- ``"gauss-legendre"``: K Gauss-Legendre nodes (exact for polynomials of degree 2K-1).
- ``"log-snr"`` / ``"log-snr-gauss-legendre"``: the same rules, but meant to be
  applied in the log-SNR variable instead of time (see :func:`variable`). The
  integrand in log-SNR is bounded (an eps-MMSE in [0, 1]), while in time it
  grows like 1/t near t = 0; so these are far more accurate for few nodes.

Example:
    >>> u, w = nodes("trapezoid", 3)
    >>> u.tolist(), w.tolist()
    ([0.0, 0.5, 1.0], [0.25, 0.5, 0.25])
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

from ..errors import UsageError

KINDS = ("trapezoid", "gauss-legendre", "log-snr", "log-snr-gauss-legendre")


def _check(kind: str, k: int) -> str:
    key = str(kind).strip().lower()
    if key not in KINDS:
        raise UsageError(f"unknown quadrature {kind!r}; choose one of {', '.join(KINDS)}")
    if int(k) < (2 if key in ("trapezoid", "log-snr") else 1):
        raise UsageError(f"quadrature {key!r} needs at least {2 if 'gauss' not in key else 1} nodes, got {k}")
    return key


def nodes(kind: str, k: int, dtype: torch.dtype = torch.float64) -> Tuple[torch.Tensor, torch.Tensor]:
    """Nodes ``u`` and weights ``w`` (summing to 1) of rule ``kind`` with ``k`` nodes on [0, 1]."""
    key = _check(kind, k)
    k = int(k)
    if key in ("trapezoid", "log-snr"):
        u = np.linspace(0.0, 1.0, k)
        w = np.full(k, 1.0 / (k - 1))
        w[0] = w[-1] = 0.5 / (k - 1)
    else:
        x, wx = np.polynomial.legendre.leggauss(k)
        u, w = (x + 1.0) / 2.0, wx / 2.0
    return torch.tensor(u, dtype=dtype), torch.tensor(w, dtype=dtype)


def variable(kind: str) -> str:
    """``"t"`` or ``"log_snr"``: the variable the rule ``kind`` is applied in."""
    return "log_snr" if _check(kind, 8).startswith("log-snr") else "t"
