"""What a noise level means for one explainer: the :class:`LevelStrategy` interface.

A strategy turns the raw values of a level adapter into noise levels, perturbs
the image at those levels, measures the information retained and defines the
penalty the optimiser trades against the prediction. FDA (truncation times of
an SDE) and DiffIB (log-SNRs) each implement one; the optimiser
(:mod:`.level_optimiser`) and the amortised trainer (:mod:`.level_training`)
only talk to this interface.

``state`` is a dict of tensors with the image index on dim 0 (or None); it is
computed once per image by :meth:`LevelStrategy.prepare` (e.g. an information
curve) and concatenated along dim 0 for batches.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Dict, Optional, Sequence

import torch

from ..errors import UsageError

State = Optional[Dict[str, torch.Tensor]]
#: ``"level"``: the papers' level objective (FDA: maximise the truncation times; DiffIB
#: Algorithm 1: minimise the mean log-SNR); ``"information"``: the mean information retained
#: (FDA paper 001 eq. 16)
PENALTIES = ("level", "information")


class LevelStrategy(ABC):
    """Raw adapter output -> levels -> perturbation, information retained and penalty."""

    #: raw adapter value at initialisation (the strategy's "almost no noise")
    init_value: float = -5.0

    def prepare(self, images: torch.Tensor, generators: Sequence[torch.Generator]) -> State:
        """Per-image state computed before optimisation (default: none)."""
        return None

    @abstractmethod
    def levels(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw adapter output ``[B,C,H,W]`` -> noise levels (same shape)."""

    @abstractmethod
    def perturb(self, x_diff: torch.Tensor, levels: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Perturbed image in diffusion space (``x_diff``, ``levels`` and ``eps`` broadcast)."""

    @abstractmethod
    def information(self, levels: torch.Tensor, state: State, x_diff: torch.Tensor,
                    generators: Sequence[torch.Generator]) -> torch.Tensor:
        """Information retained per feature ``[B,C,H,W]`` (differentiable in ``levels``)."""

    @abstractmethod
    def level_penalty(self, levels: torch.Tensor) -> torch.Tensor:
        """Per-image level objective ``[B]`` (lower = more noise)."""

    def penalty(self, levels: torch.Tensor, state: State, x_diff: torch.Tensor,
                generators: Sequence[torch.Generator], kind: str = "information") -> torch.Tensor:
        """Per-image regulariser ``[B]``: ``kind="information"`` (mean information retained) or ``"level"``."""
        if kind == "level":
            return self.level_penalty(levels)
        if kind == "information":
            return self.information(levels, state, x_diff, generators).flatten(1).mean(1)
        raise UsageError(f"penalty must be one of {', '.join(PENALTIES)}, got {kind!r}")

    @staticmethod
    def penalty_uses_state(kind: str) -> bool:
        """Whether :meth:`penalty` of this ``kind`` reads the per-image state (only the information does)."""
        return kind == "information"

    def attribution(self, levels: torch.Tensor, state: State, x_diff: torch.Tensor,
                    generators: Sequence[torch.Generator]) -> torch.Tensor:
        """The output map of the final levels (default: the information retained)."""
        return self.information(levels, state, x_diff, generators)


def collate_states(states: Sequence[State]) -> State:
    """Concatenate per-image states along dim 0."""
    if not states or states[0] is None:
        return None
    return {k: torch.cat([s[k] for s in states]) for k in states[0]}


def select_state(state: State, idx: torch.Tensor) -> State:
    """The states of images ``idx``."""
    return None if state is None else {k: v[idx] for k, v in state.items()}


__all__ = ["PENALTIES", "LevelStrategy", "State", "collate_states", "select_state"]
