"""Cascading model-parameter randomisation: SSIM identity, layer order, the randomisation bites."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fisherattr.methods.base import AttributionMethod
from fisherattr.metrics.randomisation import (cascading_randomisation, map_spearman, map_ssim, normalised_map,
                                              parameter_layers, reinitialise)


class Grad(AttributionMethod):
    """Plain input gradient (a method whose map depends on every weight)."""

    def _attribute(self, images, target):
        x = images.clone().requires_grad_(True)
        out = self.model(x).gather(1, target.view(-1, 1)).sum()
        return torch.autograd.grad(out, x)[0]


def test_ssim_and_spearman_of_a_map_with_itself_is_one():
    a = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert abs(map_ssim(a, a) - 1.0) < 1e-12
    assert abs(map_spearman(a, a) - 1.0) < 1e-12
    assert map_ssim(a, torch.rand(3, 16, 16)) < 0.5
    n = normalised_map(-a)
    assert n.min() == 0.0 and n.max() == 1.0


def test_layers_are_ordered_output_to_input(tiny_model):
    names = [n for n, _ in parameter_layers(tiny_model, torch.rand(1, 3, 16, 16))]
    assert names == ["net.fc", "net.conv2", "net.conv1"]


def test_reinitialise_is_seeded_and_leaves_global_rng(tiny_model):
    import copy

    m1, m2 = copy.deepcopy(tiny_model), copy.deepcopy(tiny_model)
    state = torch.random.get_rng_state()
    reinitialise(m1.net.fc, 7)
    reinitialise(m2.net.fc, 7)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(m1.net.fc.weight, m2.net.fc.weight)
    assert not torch.equal(m1.net.fc.weight, tiny_model.net.fc.weight)


def test_cascade_changes_outputs_and_maps_but_not_the_callers_model(tiny_model, tiny_images):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    r = cascading_randomisation(lambda m: Grad(m), tiny_model, tiny_images, target=1, seed=0)
    assert r.layers == ["net.fc", "net.conv2", "net.conv1"]
    assert r.ssim.shape == (3, 3)
    assert all(c > 0 for c in r.logit_change)
    assert float(r.ssim.max()) < 0.999  # randomised maps differ from the original
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(v, before[k])
    r2 = cascading_randomisation(lambda m: Grad(m), tiny_model, tiny_images, target=1, seed=0)
    assert torch.equal(r.ssim, r2.ssim)
    r3 = cascading_randomisation(lambda m: Grad(m), tiny_model, tiny_images, target=1, steps=2)
    assert len(r3.layers) == 2 and r3.layers[-1] == "net.conv1"


def test_a_map_independent_of_the_weights_scores_one(tiny_model, tiny_images):
    class Edges(AttributionMethod):  # depends only on the image: the sanity check must flag it
        def _attribute(self, images, target):
            return (images - images.mean((2, 3), keepdim=True)).abs()

    r = cascading_randomisation(lambda m: Edges(m), tiny_model, tiny_images, target=0)
    assert np.allclose(r.ssim.numpy(), 1.0)


@pytest.mark.slow
def test_lite0_layers_and_saliency_fails_less_than_an_edge_map(lite0, chelsea):
    from fisherattr import get_method

    layers = parameter_layers(lite0, chelsea)
    assert isinstance(layers[0][1], torch.nn.Linear) and isinstance(layers[-1][1], torch.nn.Conv2d)
    assert len(layers) > 50
    r = cascading_randomisation(lambda m: get_method("saliency", m), lite0, chelsea, steps=2)
    assert r.layers[-1] == layers[-1][0]
    assert float(r.ssim.max()) < 0.9 and all(c > 0 for c in r.logit_change)
