"""``fisherattr.quantus_explain``: the explain_func contract Quantus uses, and real Quantus metrics.

The contract tests need no Quantus; the metric tests run Quantus 0.6 on the
shipped synthetic CNN (64 px) when quantus is installed (``pip install -e .[reference]``).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import fisherattr
from fisherattr import UsageError, get_method, quantus_explain
from fisherattr.quantus_compat import clear_cache


@pytest.fixture(scope="module")
def synthetic():
    from fisherattr.data.synthetic import load_samples

    model = fisherattr.load_classifier("synthetic")
    samples = load_samples(4)
    x = torch.cat([s.image for s in samples])
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x.numpy(), y.numpy()


def test_same_maps_as_the_method(synthetic):
    model, x, y = synthetic
    a = quantus_explain(model, x, y, method="saliency")
    want = get_method("saliency", model).attribute(torch.from_numpy(x), target=torch.from_numpy(y))
    assert isinstance(a, np.ndarray) and a.dtype == np.float32 and a.shape == x.shape
    np.testing.assert_array_equal(a, want.numpy())


def test_targets_are_used_and_per_pixel_shape(synthetic):
    model, x, y = synthetic
    other = (y + 1) % 8
    a = quantus_explain(model=model, inputs=x, targets=other, method="gradcam")
    assert a.shape == (x.shape[0], 1, *x.shape[2:])
    want = get_method("gradcam", model).attribute(torch.from_numpy(x), target=torch.from_numpy(other))
    np.testing.assert_allclose(a, want.numpy(), rtol=0, atol=1e-6)
    assert not np.allclose(a, quantus_explain(model, x, y, method="gradcam"))


def test_options_device_reduction_and_cache(synthetic):
    model, x, y = synthetic
    clear_cache()
    base = quantus_explain(model, x, y, method="ig", steps=8, device="cpu", softmax=False)
    again = quantus_explain(model, x, y, method="ig", steps=8)
    np.testing.assert_array_equal(base, again)  # deterministic, and the cached method is reused
    summed = quantus_explain(model, x, y, method="ig", steps=8, reduce_channels="sum")
    np.testing.assert_allclose(summed, base.sum(1, keepdims=True), rtol=1e-6, atol=1e-6)
    absum = quantus_explain(model, x, y, method="ig", steps=8, reduce_channels="abs-sum")
    np.testing.assert_allclose(absum, np.abs(base).sum(1, keepdims=True), rtol=1e-6, atol=1e-6)
    coarse = quantus_explain(model, x, y, method="ig", steps=2)
    assert not np.allclose(coarse, base)  # the option reached the method


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "nope"}, "unknown method"),
    ({"method": "saliency", "nope": 1}, "has no option"),
    ({"method": "saliency", "reduce_channels": "max"}, "reduce_channels"),
])
def test_bad_arguments_are_one_line_usage_errors(synthetic, kwargs, message):
    model, x, y = synthetic
    with pytest.raises(UsageError, match=message):
        quantus_explain(model, x, y, **kwargs)


def test_bad_inputs(synthetic):
    model, x, y = synthetic
    with pytest.raises(UsageError, match="not \\[0, 1\\]"):
        quantus_explain(model, (x - 0.5) / 0.1, y)  # normalised images
    with pytest.raises(UsageError, match="channel first"):
        quantus_explain(model, x[0], y)
    with pytest.raises(UsageError, match="entries"):
        quantus_explain(model, x, y[:2])


@pytest.mark.filterwarnings("ignore:The settings for perturbing input")
def test_under_quantus_metrics(synthetic):
    quantus = pytest.importorskip("quantus", reason="quantus is not installed (pip install -e '.[reference]')")
    model, x, y = synthetic
    kwargs = {"method": "saliency"}
    # Sparseness calls explain_func once: the same scores as with the maps passed in directly
    via_func = quantus.Sparseness(disable_warnings=True)(model=model, x_batch=x, y_batch=y, a_batch=None,
                                                        explain_func=quantus_explain, explain_func_kwargs=kwargs,
                                                        device="cpu")
    maps = get_method("saliency", model).attribute(torch.from_numpy(x), target=torch.from_numpy(y)).numpy()
    direct = quantus.Sparseness(disable_warnings=True)(model=model, x_batch=x, y_batch=y, a_batch=maps,
                                                      explain_func=quantus_explain, explain_func_kwargs=kwargs,
                                                      device="cpu")
    assert len(via_func) == x.shape[0] and np.all(np.isfinite(via_func))
    np.testing.assert_allclose(via_func, direct, rtol=1e-6)
    # MaxSensitivity calls explain_func again on perturbed numpy batches: no noise, no change
    def sensitivity(bound: float) -> np.ndarray:
        metric = quantus.MaxSensitivity(nr_samples=2, lower_bound=bound, disable_warnings=True)
        return np.asarray(metric(model=model, x_batch=x, y_batch=y, a_batch=None, explain_func=quantus_explain,
                                 explain_func_kwargs=kwargs, device="cpu"))

    still, noisy = sensitivity(0.0), sensitivity(0.2)
    assert still.shape == noisy.shape == (x.shape[0],)
    assert np.all(still < 1e-6) and np.all(noisy > 1e-3)
