"""Insertion/deletion presets reproduce the code they are named after (issue 17).

``rise``: RISE's ``CausalMetric`` (Petsiuk 2018, ``evaluation.py`` and its
notebook); ``samp``: ExplainAttr's ``Metric`` (Zhang 2023, ``benchmark/metric.py``).
Neither is installable, so each protocol is re-written below in a few lines
from the authors' code (our own words) and run on the synthetic 64 px CNN with
a tie-free map. Target: AUCs within 1e-3.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fisherattr.metrics.insertion_deletion import PRESETS, insertion_deletion

from reference_support import one_thread  # noqa: F401  (autouse)
from reference_support import gkern, synthetic_images, synthetic_model


def blur(z: torch.Tensor, klen: int = 11) -> torch.Tensor:
    return F.conv2d(z, gkern(klen), padding=klen // 2)


def walk(score, start: torch.Tensor, finish: torch.Tensor, order: np.ndarray, step: int) -> np.ndarray:
    """Score ``start``, then copy the next ``step`` pixels (in ``order``) from ``finish``, until all are copied."""
    hw = start.shape[-1] * start.shape[-2]
    n = (hw + step - 1) // step
    cur = start.clone().reshape(1, 3, hw)
    fin = finish.reshape(1, 3, hw)
    states = []
    for i in range(n + 1):
        states.append(cur.reshape(start.shape).clone())
        if i < n:
            idx = torch.from_numpy(order[step * i: step * (i + 1)].copy())
            cur[:, :, idx] = fin[:, :, idx]
    # the states are scored in batches (the codes score them one by one; same numbers)
    return np.concatenate([score(torch.cat(states[j:j + 128])) for j in range(0, len(states), 128)])


def rise_causal_metric(net, z: torch.Tensor, expl: np.ndarray, mode: str, step: int) -> float:
    """RISE: softmax of the class predicted on the image; deletion to zeros, insertion from the blur
    (normalised tensors); pixels by np.argsort flipped; auc = (sum - first/2 - last/2) / n."""
    with torch.no_grad():
        c = int(net(z).argmax(1))
        score = lambda t: net(t).softmax(1)[:, c].double().numpy()  # noqa: E731
        order = np.flip(np.argsort(expl.reshape(-1)))
        start, finish = (z, torch.zeros_like(z)) if mode == "del" else (blur(z), z)
        s = walk(score, start, finish, order, step)
    return float((s.sum() - s[0] / 2 - s[-1] / 2) / (len(s) - 1))


def explainattr_metric(net, z: torch.Tensor, expl: np.ndarray, mode: str, step: int, klen: int = 11) -> float:
    """ExplainAttr: the logit, divided by the clean image's (first point for deletion, last for insertion),
    area = mean of the points."""
    with torch.no_grad():
        c = int(net(z).argmax(1))
        score = lambda t: net(t)[:, c].double().numpy()  # noqa: E731
        order = torch.sort(torch.from_numpy(expl.reshape(-1)), descending=True).indices.numpy()
        start, finish = (z, torch.zeros_like(z)) if mode == "del" else (blur(z, klen), z)
        s = walk(score, start, finish, order, step)
    s = s / (s[0] if mode == "del" else s[-1])
    return float(s.mean())


@pytest.mark.parametrize("preset,reference", [("rise", rise_causal_metric), ("samp", explainattr_metric)])
def test_preset_matches_the_authors_protocol(preset, reference):
    model = synthetic_model()
    x = synthetic_images(1)[0]
    expl = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(7)).double()   # no ties
    # the preset's protocol with fewer, larger steps (146 px, the last one partial) to keep the test fast;
    # the step sizes themselves are checked in test_insertion_deletion.py
    protocol = replace(PRESETS[preset], step_pixels=224 * 8, small_step_pixels=None)
    ours = insertion_deletion(model, x, expl.float(), preset=protocol, batch_size=64)
    step = protocol.pixels_per_step(64, 64)
    assert step == 146 and 4096 % step != 0
    z = model.normalize(x)
    e = expl.float().numpy()[0, 0]
    ins = reference(model.net, z, e, "ins", step)
    dele = reference(model.net, z, e, "del", step)
    assert abs(float(ours.insertion[0]) - ins) < 1e-3, (float(ours.insertion[0]), ins)
    assert abs(float(ours.deletion[0]) - dele) < 1e-3, (float(ours.deletion[0]), dele)
