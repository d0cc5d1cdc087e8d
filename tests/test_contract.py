"""The method contract's own checks (input validation, targets, registry options)."""
import pytest
import torch

import fisherattr
from fisherattr.errors import InputError, UsageError
from fisherattr.methods.base import AttributionMethod


class GradTimesOne(AttributionMethod):
    def _attribute(self, images, target):
        x = images.requires_grad_(True)
        out = self.model(x).gather(1, target[:, None]).sum()
        (g,) = torch.autograd.grad(out, x)
        return g


def test_bad_inputs(tiny_model):
    m = GradTimesOne(tiny_model)
    with pytest.raises(InputError, match="rank 3"):
        m.attribute(torch.rand(3, 16, 16))
    with pytest.raises(InputError, match="3 channels"):
        m.attribute(torch.rand(1, 1, 16, 16))
    with pytest.raises(InputError, match="\\[0,1\\]"):
        m.attribute(torch.rand(1, 3, 16, 16) * 255)
    x = torch.rand(1, 3, 16, 16)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        m.attribute(x)
    with pytest.raises(InputError, match="outside the model's classes 0..4"):
        m.attribute(torch.rand(1, 3, 16, 16), target=7)
    with pytest.raises(InputError, match="2 entries for a batch of 3"):
        m.attribute(torch.rand(3, 3, 16, 16), target=torch.tensor([0, 1]))


def test_targets_and_copy(tiny_model, tiny_images):
    m = GradTimesOne(tiny_model)
    before = tiny_images.clone()
    a = m.attribute(tiny_images, target=2)
    b = m.attribute(tiny_images, target=torch.tensor([2, 2, 2]))
    torch.testing.assert_close(a, b)
    assert torch.equal(tiny_images, before) and not tiny_images.requires_grad
    top = tiny_model(tiny_images).argmax(1)
    torch.testing.assert_close(m.attribute(tiny_images), m.attribute(tiny_images, target=top))


def test_wrong_model_output(tiny_images):
    m = GradTimesOne(torch.nn.Identity())
    with pytest.raises(InputError, match="logits of shape"):
        m.attribute(tiny_images)


def test_registry_errors(tiny_model):
    with pytest.raises(UsageError, match="unknown method 'nope'"):
        fisherattr.get_method("nope", tiny_model)
