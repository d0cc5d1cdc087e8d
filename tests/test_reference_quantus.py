"""Metrics shared with Quantus 0.6.0 agree with it, or differ by a convention encoded here (issue 17).

Same inputs, settings and random draws on both sides:

- pointing game: Quantus ``PointingGame`` counts a hit when the map's maximum lies
  inside the mask; ours with ``tolerance=0`` gives the same hits.
- faithfulness correlation (Bhatt 2020) = our ``mu_fidelity``: Quantus
  ``FaithfulnessCorrelation`` draws its subsets with ``np.random.choice``, which the
  test replaces by our draws (``torch.randperm`` with generator ``seed + i`` per
  image) so both remove the same features; then the correlations agree to float32
  rounding of the logits (measured 2e-7; bound 1e-5).
- model parameter randomisation: Quantus ``MPRT`` (cascading, top-down, Spearman)
  re-initialises the same layers in the same order; it seeds every layer with
  ``seed + 1``, ours layer ``j`` with ``seed + j``, so the test gives Quantus's
  generator our seeds; then the Spearman correlations agree exactly (1e-16).
  SSIM differs by convention (Quantus flattens the maps first); its ``ssim`` on our
  2-D normalised maps is our ``map_ssim``.
- Sensitivity-N: Quantus's ``SensitivityN`` is a different protocol (features removed
  cumulatively in attribution order, per-step attribution sum against the cumulative
  prediction drop, correlated across the images of a batch); a known-answer test on a
  linear model encodes it beside ours (Ancona 2018: random subsets per image).
- localisation AUC and relevance rank accuracy: Quantus ``AUC`` and
  ``RelevanceRankAccuracy`` = our ``wsl()["auc"]`` and ``region_ratio`` with
  ``n = |region|`` on random maps (with ties for the AUC) and random boxes.

docs/evaluation.md says how each of ours differs from Quantus's defaults.
"""
from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch

from fisherattr import get_method, quantus_explain
from fisherattr.metrics.localisation import pointing_game, region_ratio, wsl
from fisherattr.metrics.randomisation import cascading_randomisation, map_ssim, normalised_map
from fisherattr.metrics.sensitivity import mu_fidelity, sensitivity_n
from fisherattr.models import Classifier

from reference_support import one_thread  # noqa: F401  (autouse)
from reference_support import synthetic_images, synthetic_model

quantus = pytest.importorskip("quantus", reason="needs the 'reference' extra (quantus==0.6.0)")


def quiet(metric, **call):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return metric(device="cpu", **call)


def random_boxes(g: np.random.Generator, n: int, size: int = 32, box: int = 16) -> np.ndarray:
    s = np.zeros((n, 1, size, size), np.float32)
    for i in range(n):
        y0, x0 = g.integers(0, size - box, size=2)
        s[i, 0, y0:y0 + box, x0:x0 + box] = 1
    return s


def flat_net(size: int = 32) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * size * size, 4)).eval()


def test_pointing_game_matches_quantus():
    g = np.random.default_rng(0)
    n = 24
    a = g.random((n, 1, 32, 32)).astype(np.float32)
    s = random_boxes(g, n)
    x = g.random((n, 3, 32, 32)).astype(np.float32)
    ref = quiet(quantus.PointingGame(disable_warnings=True, display_progressbar=False),
                model=flat_net(), x_batch=x, y_batch=np.zeros(n, int), a_batch=a, s_batch=s)
    ours = pointing_game(torch.from_numpy(a), torch.from_numpy(s[:, 0] > 0), tolerance=0.0)
    ref = np.asarray(ref, dtype=np.float64)
    assert 0 < ref.sum() < n                                  # both outcomes occur
    assert np.array_equal(ours.numpy(), ref)


def test_auc_and_relevance_rank_accuracy_match_quantus():
    g = np.random.default_rng(1)
    n = 12
    a = g.random((n, 1, 32, 32)).astype(np.float32)
    tied = np.round(a * 8) / 8                                # 9 levels: many ties for the AUC
    s = random_boxes(g, n)
    x = g.random((n, 3, 32, 32)).astype(np.float32)
    call = dict(model=flat_net(), x_batch=x, y_batch=np.zeros(n, int), s_batch=s)
    regions = torch.from_numpy(s[:, 0] > 0)
    ref_auc = quiet(quantus.AUC(disable_warnings=True), a_batch=tied, **call)
    np.testing.assert_allclose(wsl(torch.from_numpy(tied), regions)["auc"].numpy(), ref_auc, rtol=0, atol=1e-12)
    ref_rra = quiet(quantus.RelevanceRankAccuracy(disable_warnings=True), a_batch=a, **call)
    ours = region_ratio(torch.from_numpy(a), regions, n=int(s[0].sum()))
    assert len(set(np.round(ref_rra, 6))) > 3                 # the scores vary over the images
    np.testing.assert_allclose(ours.numpy(), ref_rra, rtol=0, atol=1e-12)


def test_faithfulness_correlation_matches_mu_fidelity(monkeypatch):
    model = synthetic_model()
    x = torch.cat([v.contiguous() for v in synthetic_images(3)])
    x[:, :, 0, 0] = 0                      # Quantus's "black" is the image's minimum, ours 0: make them equal
    y = model(x).argmax(1)
    a = get_method("input-x-gradient", model).attribute(x, y)
    runs, seed = 20, 5
    n = round(0.2 * a[0].numel())
    ours = mu_fidelity(model, x, a, y, fraction=0.2, n_subsets=runs, baseline="black", seed=seed)

    gens = [torch.Generator().manual_seed(seed + i) for i in range(len(x))]
    calls = itertools.count()

    def our_draws(n_features, size, replace=True):          # Quantus draws image by image within each run
        assert not replace
        return torch.randperm(n_features, generator=gens[next(calls) % len(x)])[:size].numpy()

    monkeypatch.setattr(np.random, "choice", our_draws)
    ref = quiet(quantus.FaithfulnessCorrelation(nr_runs=runs, subset_size=n, return_aggregate=False,
                                                disable_warnings=True),
                model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(), batch_size=len(x))
    assert next(calls) == runs * len(x)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-5)
    assert np.ptp(ref) > 0.05                                 # distinct values per image


class _SeededTorch:
    """``torch`` as Quantus's layer generator sees it, except that its k-th ``manual_seed`` seeds ``base + k``."""

    def __init__(self, base: int) -> None:
        self.base, self.calls = base, itertools.count()

    def manual_seed(self, seed):
        return torch.manual_seed(self.base + next(self.calls))

    def __getattr__(self, name):
        return getattr(torch, name)


def test_mprt_spearman_matches_cascading_randomisation(monkeypatch):
    import quantus.helpers.model.pytorch_model as qpm

    model = synthetic_model()
    x = torch.cat([v.contiguous() for v in synthetic_images(2)])
    y = model(x).argmax(1)
    seed = 7
    ours = cascading_randomisation(lambda m: get_method("saliency", m), model, x, target=y, seed=seed)
    monkeypatch.setattr(qpm, "torch", _SeededTorch(seed))
    ref = quiet(quantus.MPRT(disable_warnings=True), model=model, x_batch=x.numpy(), y_batch=y.numpy(),
                explain_func=quantus_explain, explain_func_kwargs={"method": "saliency", "reduce_channels": "sum"})
    layers = [k for k in ref if k != "original"]
    assert layers == ours.layers and len(layers) == 15
    np.testing.assert_allclose(np.array([ref[k] for k in layers]).T, ours.spearman.numpy(), rtol=0, atol=1e-9)
    assert ours.spearman[:, -1].max() < ours.spearman[:, 0].min()    # randomisation bites


def test_quantus_ssim_on_our_normalised_maps_is_map_ssim():
    g = torch.Generator().manual_seed(2)
    a, b = torch.rand(3, 32, 32, generator=g), torch.rand(3, 32, 32, generator=g)
    b[:, :16] += a[:, :16]                                     # partly similar maps
    from quantus.functions.similarity_func import ssim

    want = ssim(normalised_map(a), normalised_map(b))          # both span [0, 1]: data range 1, window 7
    assert abs(map_ssim(a, b) - want) < 1e-12 and 0.05 < want < 0.95


def test_sensitivity_n_conventions_on_a_linear_model():
    """Logit = w . x (identity normalisation, baseline 0), exact attribution a = w * x.

    Ours (Ancona 2018): random subsets S per image, Pearson over subsets of sum_S a and the
    drop f(x) - f(x_S=0): exactly 1 for every N, and clearly below 1 for a shuffled map.
    Quantus 0.6.0 ``SensitivityN``: step k removes the next ``features_in_step`` features in
    attribution order (cumulatively) and correlates, across the images of the batch, the
    attribution sum of *that step's* features with the *cumulative* drop; a hand computation
    of that convention matches it, and it is not 1 beyond the first step.
    """
    size, step, n_img = 8, 16, 6
    g = torch.Generator().manual_seed(0)
    net = flat_net(size)
    with torch.no_grad():
        net[1].weight.copy_(torch.randn(4, 3 * size * size, generator=g))
        net[1].bias.zero_()
    model = Classifier(net, classes=list("abcd")).eval()
    x = torch.rand(n_img, 3, size, size, generator=g)
    x[:, 0, 0, 0] = 0                                          # Quantus's "black" (the minimum) is 0
    w = net[1].weight[0].detach().view(1, 3, size, size)
    a = w * x

    ours = sensitivity_n(model, x, a, target=0, ns=[1, 16, 64, 150], n_subsets=20, baseline="black")
    np.testing.assert_allclose(ours.correlations.numpy(), 1.0, atol=1e-6)
    shuffled = a.flatten(1)[:, torch.randperm(a[0].numel(), generator=g)].view_as(a)
    assert sensitivity_n(model, x, shuffled, target=0, ns=[16, 64], n_subsets=20,
                         baseline="black").correlations.max() < 0.9

    ref = quiet(quantus.SensitivityN(features_in_step=step, return_aggregate=False, disable_warnings=True),
                model=model, x_batch=x.numpy(), y_batch=np.zeros(n_img, int), a_batch=a.numpy(), softmax=False)
    flat = a.flatten(1).double().numpy()
    order = np.argsort(-flat, axis=1)
    per_step = np.stack([np.take_along_axis(flat, order[:, k * step:(k + 1) * step], 1).sum(1)
                         for k in range(flat.shape[1] // step)], 1)          # [images, steps]
    drops = np.cumsum(per_step, 1)
    steps_kept = int(0.8 * size * size // step)                            # Quantus's n_max_percentage
    want = [np.corrcoef(drops[:, k], per_step[:, k])[0, 1] for k in range(steps_kept)]
    np.testing.assert_allclose(ref, want, atol=1e-5)
    assert abs(want[0] - 1) < 1e-9 and min(want[1:]) < 0.9
    aggregate = quiet(quantus.SensitivityN(features_in_step=step, disable_warnings=True),   # its default: the mean
                      model=model, x_batch=x.numpy(), y_batch=np.zeros(n_img, int), a_batch=a.numpy(), softmax=False)
    np.testing.assert_allclose(aggregate, [np.mean(want)], atol=1e-5)
