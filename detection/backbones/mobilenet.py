"""MobileNetV3 (large or small) from torchvision's architecture, tapped at c2..c5.

torchvision's ``features`` blocks are grouped into stages by their output stride, found
with one dummy forward pass at construction; each stage ends where the stride next
changes, so ``c3``/``c4``/``c5`` are the last blocks at strides 8/16/32.
"""

from collections import OrderedDict
from typing import Literal

import torch
from torch import nn
from torchvision.models import mobilenet_v3_large, mobilenet_v3_small

from detection.backbones.base import Backbone
from detection.backbones.weights import load_weights

_PROBE_SIZE = 64


class MobileNetV3(Backbone):
    def __init__(
        self, *, size: Literal["large", "small"] = "large", weights: str | None = None, frozen_stages: int = 0,
        frozen_bn: bool = False,
    ) -> None:
        builders = {"large": mobilenet_v3_large, "small": mobilenet_v3_small}
        model = builders[size](weights=None)
        load_weights(model, weights, arch=f"mobilenet_v3_{size}")
        groups: OrderedDict[int, list[nn.Module]] = OrderedDict()
        channels: dict[int, int] = {}
        x = torch.zeros(1, 3, _PROBE_SIZE, _PROBE_SIZE)
        model.eval()
        with torch.no_grad():
            for block in model.features:
                x = block(x)
                stride = _PROBE_SIZE // x.shape[-1]
                groups.setdefault(stride, []).append(block)
                channels[stride] = x.shape[1]
        stages = OrderedDict((f"c{stride.bit_length() - 1}", nn.Sequential(*blocks)) for stride, blocks in groups.items())
        taps = {f"c{s.bit_length() - 1}": (s, channels[s]) for s in groups if s >= 4}
        super().__init__(stages=stages, taps=taps, frozen_stages=frozen_stages, frozen_bn=frozen_bn)
        self.train()
