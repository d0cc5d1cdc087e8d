"""The classifier wrapper: [0,1] images in, logits out, normalisation owned here."""
from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn


@lru_cache(maxsize=1)
def imagenet_classes() -> Tuple[List[str], List[str]]:
    """(names, wnids) of the 1000 ImageNet-1k classes, from the shipped data file."""
    text = resources.files("fisherattr.data").joinpath("imagenet_classes.tsv").read_text(encoding="utf-8")
    names, wnids = [], []
    for line in text.splitlines()[1:]:
        _, wnid, name = line.split("\t")
        wnids.append(wnid)
        names.append(name)
    return names, wnids


class Classifier(nn.Module):
    """A classifier that takes ``[B,C,H,W]`` images in [0,1] and returns logits.

    It applies the wrapped network's own normalisation, so attribution methods
    and metrics never guess one.

    Args:
        net: the network, taking normalised images.
        mean, std: per-channel normalisation (in [0,1] units).
        classes: class names (index = class id).
        input_size: the (H, W) the network was trained at.
        name: a label for reports.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
        >>> clf = Classifier(net, mean=(0.5,) * 3, std=(0.5,) * 3, classes=["a", "b"], input_size=(8, 8))
        >>> clf(torch.rand(4, 3, 8, 8)).shape
        torch.Size([4, 2])
    """

    def __init__(self, net: nn.Module, mean: Sequence[float] = (0.0, 0.0, 0.0),
                 std: Sequence[float] = (1.0, 1.0, 1.0), classes: Optional[Sequence[str]] = None,
                 input_size: Optional[Tuple[int, int]] = None, name: str = "model") -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.classes: List[str] = list(classes) if classes is not None else []
        self.input_size = tuple(input_size) if input_size is not None else None
        self.name = name
        self.in_channels = int(self.mean.shape[1])
        #: models that belong to this classifier's data world, by role: ``score_model`` (FDA),
        #: ``denoiser`` (DiffIB), ``estimate_data`` (IBA/InputIBA). Read from a saved folder's
        #: ``classifier.json`` ("companions", paths relative to the folder); used when the
        #: user does not name them.
        self.companions: Dict[str, str] = {}
        self.eval()

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """[0,1] pixel space -> the network's input space."""
        return (x - self.mean) / self.std

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        """The network's input space -> [0,1] pixel space (values may leave [0,1])."""
        return z * self.std + self.mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))

    def class_name(self, index: int) -> str:
        return self.classes[index] if 0 <= index < len(self.classes) else str(index)

    def class_index(self, name: str) -> int:
        """Index of a class given its name (case-insensitive; the full name or any comma-separated synonym).

        A full name wins over synonyms; a name that still fits several classes (ImageNet has
        two "crane"s) is an error listing them, so that the caller picks by index.

        Example:
            >>> clf = Classifier(nn.Identity(), classes=["crane", "crane, bird", "kite"])
            >>> clf.class_index("CRANE"), clf.class_index("bird")
            (0, 1)
        """
        from ..errors import UsageError

        if not isinstance(name, str):
            raise UsageError(f"a class name must be a string, got {type(name).__name__}")
        key = name.strip().lower()
        exact = [i for i, c in enumerate(self.classes) if key == c.strip().lower()]
        found = exact or [i for i, c in enumerate(self.classes)
                          if key in [s.strip().lower() for s in c.split(",")]]
        if len(found) == 1:
            return found[0]
        if found:
            shown = "; ".join(f"{i} = {self.classes[i]!r}" for i in found)
            raise UsageError(f"class name {name!r} is ambiguous for model {self.name!r}: {shown}; "
                             "give the class index")
        raise UsageError(f"unknown class name {name!r} for model {self.name!r}")


def as_classifier(model: nn.Module) -> Classifier:
    """Wrap any module as a :class:`Classifier` (identity normalisation) unless it is one."""
    if isinstance(model, Classifier):
        return model
    return Classifier(model, name=type(model).__name__)


def normalized_zero(model: nn.Module, like: torch.Tensor) -> torch.Tensor:
    """The [0,1]-space image that is zero in the model's normalised space (its mean colour)."""
    mean = getattr(model, "mean", None)
    if isinstance(mean, torch.Tensor) and mean.dim() == 4:
        return mean.to(like).expand_as(like).clone()
    return torch.zeros_like(like)


def companion(model: nn.Module, role: str, default: Optional[str] = None) -> Optional[str]:
    """The model's companion for ``role`` (see :attr:`Classifier.companions`), else ``default``.

    Example:
        >>> companion(nn.Linear(2, 2), "denoiser", "gaussian")
        'gaussian'
    """
    return getattr(model, "companions", {}).get(role, default)
