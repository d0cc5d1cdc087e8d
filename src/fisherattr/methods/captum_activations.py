"""ReLU6 in a form Captum's hook-based methods understand (same forward maths).

Captum's Guided Backprop overrides gradients only at ``nn.ReLU`` modules, and
its DeepLIFT applies the rescale rule only to an exact list of module types
(``ReLU``, ``ELU``, ``Sigmoid``, ...); ``nn.ReLU6`` (EfficientNet-Lite,
MobileNet) is in neither, so both would silently fall back to the plain
gradient there. We swap the modules on a deep copy of the model (the caller's
model is never touched):

- Guided Backprop: :class:`GuidedReLU6` *is an* ``nn.ReLU`` (so Captum hooks
  it) whose forward is ``relu6``. Captum replaces its input gradient
  ``g * 1[0<x<6]`` by ``relu(g * 1[0<x<6])``: negative gradients are cut and
  the saturated region passes nothing, i.e. guided backprop for ReLU6.
- DeepLIFT: :class:`RescaleReLU6` computes ``relu(x) - relu(x - 6)`` with two
  ``nn.ReLU`` modules. The rescale multipliers of the two ReLUs combine to
  ``(drelu(x) - drelu(x-6)) / dx = drelu6(x) / dx``: exactly the rescale rule
  for ReLU6, so DeepLIFT's summation-to-delta still holds.
"""
from __future__ import annotations

import copy
import itertools
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


class GuidedReLU6(nn.ReLU):
    """``relu6`` that Captum's ``GuidedBackprop`` recognises as a ReLU.

    Example:
        >>> GuidedReLU6()(torch.tensor([-1.0, 3.0, 9.0]))
        tensor([0., 3., 6.])
    """

    def __init__(self) -> None:
        super().__init__(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x)


class RescaleReLU6(nn.Module):
    """``relu6(x) = relu(x) - relu(x - 6)`` built from two ``nn.ReLU`` for Captum's DeepLIFT.

    Example:
        >>> RescaleReLU6()(torch.tensor([-1.0, 3.0, 9.0]))
        tensor([0., 3., 6.])
    """

    def __init__(self) -> None:
        super().__init__()
        self.low = nn.ReLU()
        self.high = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Each ReLU must get a tensor of its own: Captum hooks the module's *input tensor*,
        # and a tensor shared by two consumers would receive their summed gradient.
        return self.low(x.clone()) - self.high(x - 6.0)


def has_relu6(model: nn.Module) -> bool:
    return any(isinstance(m, nn.ReLU6) for m in model.modules())


def swap_relu6(model: nn.Module, factory: Callable[[], nn.Module]) -> nn.Module:
    """A deep copy of ``model`` with every ``nn.ReLU6`` replaced by ``factory()``.

    Returns ``model`` itself (no copy) when it has no ReLU6.
    """
    if not has_relu6(model):
        return model
    clone = copy.deepcopy(model)
    for parent in list(clone.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU6):
                setattr(parent, name, factory())
    return clone.eval()


def _state_key(model: nn.Module) -> Tuple:
    """Changes whenever a parameter or buffer is replaced, moved or modified in place."""
    return tuple((t.data_ptr(), t._version, t.device, t.dtype)
                 for t in itertools.chain(model.parameters(), model.buffers()))


class PatchedCopy:
    """Keeps ``swap_relu6(model, factory)`` and rebuilds it only when the model's tensors change.

    Saves a deep copy per ``attribute`` call; any weight update, ``load_state_dict`` or device
    move of the model (all of which change a tensor's pointer or version) triggers a fresh copy.

    Example:
        >>> cache = PatchedCopy(RescaleReLU6)
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.ReLU6())
        >>> cache.get(net) is cache.get(net)
        True
    """

    def __init__(self, factory: Callable[[], nn.Module]) -> None:
        self.factory = factory
        self._key: Optional[Tuple] = None
        self._model_id: Optional[int] = None
        self._copy: Optional[nn.Module] = None

    def get(self, model: nn.Module) -> nn.Module:
        key = _state_key(model)
        if self._copy is None or key != self._key or id(model) != self._model_id:
            self._copy = swap_relu6(model, self.factory)
            self._key, self._model_id = key, id(model)
        return self._copy


def deeplift_unsupported(model: nn.Module) -> List[str]:
    """Names of activation types in ``model`` for which Captum's DeepLIFT has no rule."""
    from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR

    ignore = {"MultiheadAttention", "Softmax2d", "LogSoftmax", "Softmin", "Threshold", "Identity"}
    found = set()
    for m in model.modules():
        t = type(m)
        if t.__module__ == "torch.nn.modules.activation" and t not in SUPPORTED_NON_LINEAR \
                and t.__name__ not in ignore and not isinstance(m, nn.ReLU6):
            found.add(t.__name__)
    return sorted(found)
