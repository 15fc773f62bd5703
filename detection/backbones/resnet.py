"""ResNet-18/50 from torchvision's architecture, tapped at c2..c5.

    stem  stride 4    64          (conv1, bn1, relu, maxpool)
    c2    stride 4    64 / 256    (layer1; 18 / 50)
    c3    stride 8    128 / 512   (layer2)
    c4    stride 16   256 / 1024  (layer3)
    c5    stride 32   512 / 2048  (layer4)
"""

from collections import OrderedDict
from typing import Literal

from torch import nn
from torchvision.models import resnet18, resnet50

from detection.backbones.base import Backbone
from detection.backbones.weights import load_weights


class ResNet(Backbone):
    def __init__(
        self, *, depth: Literal[18, 50] = 18, weights: str | None = None, frozen_stages: int = 0, frozen_bn: bool = False
    ) -> None:
        builders = {18: resnet18, 50: resnet50}
        if depth not in builders:
            raise ValueError(f"depth must be 18 or 50, got {depth}")
        model = builders[depth](weights=None)
        load_weights(model, weights, arch=f"resnet{depth}")
        expansion = 1 if depth == 18 else 4
        stages: OrderedDict[str, nn.Module] = OrderedDict(
            stem=nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool),
            c2=model.layer1,
            c3=model.layer2,
            c4=model.layer3,
            c5=model.layer4,
        )
        taps = {f"c{i}": (2**i, 64 * 2 ** (i - 2) * expansion) for i in range(2, 6)}
        super().__init__(stages=stages, taps=taps, frozen_stages=frozen_stages, frozen_bn=frozen_bn)
