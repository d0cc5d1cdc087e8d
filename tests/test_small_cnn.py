"""The small CNN of the synthetic world: size, shape, one module per call site, save/load."""
from __future__ import annotations

from collections import Counter

import pytest
import torch

from fisherattr import load_classifier, save_classifier
from fisherattr.errors import UsageError
from fisherattr.models import Classifier
from fisherattr.models.small_cnn import SmallCNN, build_small_cnn


def test_parameter_count_is_a_few_hundred_thousand() -> None:
    n = sum(p.numel() for p in build_small_cnn(classes=8).parameters())
    assert 200_000 < n < 500_000


@pytest.mark.parametrize("size", [16, 48, 64])
def test_output_shape_any_size(size: int) -> None:
    net = build_small_cnn(classes=6).eval()
    assert net(torch.rand(2, 3, size, size)).shape == (2, 6)


def test_every_module_is_called_once_per_forward() -> None:
    """DeepLift/GuidedBackprop hooks need one module per call site: count calls of every leaf module."""
    net = build_small_cnn().eval()
    calls: Counter = Counter()
    hooks = [m.register_forward_hook(lambda mod, i, o, name=name: calls.update([name]))
             for name, m in net.named_modules() if not list(m.children())]
    net(torch.rand(1, 3, 32, 32))
    for h in hooks:
        h.remove()
    leaves = [name for name, m in net.named_modules() if not list(m.children())]
    assert set(calls) == set(leaves)
    assert all(c == 1 for c in calls.values())
    relus = [m for m in net.modules() if isinstance(m, torch.nn.ReLU)]
    assert len({id(m) for m in relus}) == len(relus) == 7


def test_deeplift_completeness_on_small_cnn() -> None:
    """Captum DeepLift (rescale rule) sums to f(x) - f(baseline) only if hooks see each ReLU once."""
    from captum.attr import DeepLift

    torch.manual_seed(0)
    net = build_small_cnn(classes=8).eval()
    x = torch.rand(2, 3, 32, 32)
    base = torch.zeros_like(x)
    attr, delta = DeepLift(net).attribute(x, base, target=3, return_convergence_delta=True)
    gap = net(x)[:, 3] - net(base)[:, 3]
    assert torch.allclose(attr.flatten(1).sum(1), gap, atol=1e-3 * (1 + gap.abs().max().item()))
    assert delta.abs().max() < 1e-3


def test_save_load_round_trip(tmp_path) -> None:
    torch.manual_seed(1)
    net = build_small_cnn(classes=7)
    net.train()
    net(torch.rand(4, 3, 32, 32))  # move the batch-norm running statistics away from their init
    clf = Classifier(net.eval(), (0.5,) * 3, (0.25,) * 3, [f"k{i}" for i in range(7)], (32, 32), name="t")
    save_classifier(clf, tmp_path, builder="fisherattr.models.small_cnn:build_small_cnn",
                    builder_kwargs={"classes": 7})
    back = load_classifier(str(tmp_path))
    x = torch.rand(3, 3, 32, 32)
    assert torch.equal(back(x), clf(x))
    assert back.classes == clf.classes and back.input_size == (32, 32)


def test_bad_configuration_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="classes"):
        SmallCNN(classes=1)
    with pytest.raises(UsageError, match="widths"):
        SmallCNN(widths=(8, 16), blocks=(1,))


def test_companions_round_trip_and_shipped_world(tmp_path) -> None:
    import fisherattr
    from fisherattr.data.synthetic import default_classifier_path
    from fisherattr.scores.diffusers_backend import DiffusersVP
    from fisherattr.scores.noise_map import NoiseMapDenoiser

    clf = Classifier(build_small_cnn(), mean=(0.5,) * 3, std=(0.25,) * 3, classes=[str(i) for i in range(8)],
                     input_size=(64, 64))
    save_classifier(clf, tmp_path / "m", builder="fisherattr.models.small_cnn:build_small_cnn",
                    companions={"denoiser": "../den", "estimate_data": "synthetic"})
    with pytest.raises(UsageError, match="outside the model folder"):  # ../ leaves the folder: trusted only
        load_classifier(str(tmp_path / "m"))
    back = load_classifier(str(tmp_path / "m"), trust_code=True)
    assert back.companions == {"denoiser": str((tmp_path / "den").resolve()), "estimate_data": "synthetic"}
    # the shipped synthetic classifier names its world's models; the methods pick them up by default
    shipped = load_classifier(str(default_classifier_path()))
    assert isinstance(fisherattr.get_method("fda", shipped)._score_model, DiffusersVP)
    assert isinstance(fisherattr.get_method("diffib", shipped)._denoiser, NoiseMapDenoiser)
    iba = fisherattr.get_method("iba", shipped)
    assert (iba.estimate_data, iba.layer) == ("synthetic", "net.features.23")
    # an explicit choice still wins
    assert type(fisherattr.get_method("fda", shipped, score_model="gaussian")._score_model).__name__ == "GaussianPrior"
