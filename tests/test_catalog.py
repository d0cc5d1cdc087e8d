"""``fisherattr.catalog`` repeats the registries as plain data: every entry must match them."""
from __future__ import annotations

import importlib.util

from fisherattr import catalog


def test_methods_match_the_registry_and_their_output_shape():
    from fisherattr.methods.registry import list_methods, method_class

    assert sorted(catalog.METHODS) == list_methods()
    for name, info in catalog.METHODS.items():
        per_pixel = bool(getattr(method_class(name), "per_pixel", False))
        assert info.shape == ("[1,H,W]" if per_pixel else "[C,H,W]"), name
        assert info.cost in catalog.COST_CLASSES, name
        assert "``" not in info.summary and ":class:" not in info.summary, name


def test_explain_defaults_are_registered():
    from fisherattr.commands.explain import DEFAULT_METHODS

    assert set(DEFAULT_METHODS) <= set(catalog.METHODS)


def test_presets_match_insertion_deletion():
    from fisherattr.metrics.insertion_deletion import PRESETS

    assert catalog.INSDEL_PRESETS == tuple(PRESETS)


def test_quick_preset_is_inputiba_with_coarser_steps():
    from fisherattr.metrics.insertion_deletion import PRESETS

    quick, full = PRESETS["quick"], PRESETS["inputiba"]
    assert quick.steps_and_counts(224, 224)[0] == 20 and full.steps_and_counts(224, 224)[0] == 100
    for field in ("deletion_baseline", "insertion_start", "score", "auc", "insertion_only", "normalise_by_full"):
        assert getattr(quick, field) == getattr(full, field), field


def test_quick_preset_samples_the_inputiba_curves(tiny_model, tiny_images):
    import torch

    from fisherattr.metrics.insertion_deletion import insertion_deletion

    maps = torch.randn(tiny_images.shape, generator=torch.Generator().manual_seed(3))
    full = insertion_deletion(tiny_model, tiny_images, maps, preset="inputiba")
    quick = insertion_deletion(tiny_model, tiny_images, maps, preset="quick")
    # the same curves at every fifth point (fractions k/20 = 5k/100), for a fifth of the model calls
    torch.testing.assert_close(quick.insertion_curve, full.insertion_curve[:, ::5], rtol=0, atol=1e-6)
    torch.testing.assert_close(quick.deletion_curve, full.deletion_curve[:, ::5], rtol=0, atol=1e-6)
    assert quick.model_calls == 40 * tiny_images.shape[0] and full.model_calls == 200 * tiny_images.shape[0]


def test_models_and_samples_match_the_loaders():
    from fisherattr.data import images
    from fisherattr.models import loading

    assert set(catalog.MODELS) == set(loading._BUILTIN)
    assert catalog.SAMPLES == {k: v[1] for k, v in images.SAMPLES.items()}
    sklearn = importlib.util.find_spec("sklearn") is not None
    assert set(images.list_samples()) == set(catalog.sample_names())
    assert (set(catalog.OPTIONAL_SAMPLES) <= set(images.list_samples())) == sklearn


def test_metrics_match_the_suite():
    from fisherattr.metrics import get_metric, list_metrics

    assert sorted(catalog.METRICS) == sorted(list_metrics())
    for name, (needs, description) in catalog.METRICS.items():
        spec = get_metric(name)
        assert (spec.needs, spec.description) == (needs, description), name


def test_library_available():
    assert catalog.library_available("json") and not catalog.library_available("no_such_module_xyz")
