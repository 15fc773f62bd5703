"""VGG-16 from torchvision's architecture, tapped at pool3, pool4, conv5_3 and pool5.

    block1  stride 2    64
    block2  stride 4    128
    pool3   stride 8    256   (conv3_3 -> max pool)
    pool4   stride 16   512
    conv5_3 stride 16   512   (the feature map Fast/Faster R-CNN use)
    pool5   stride 32   512

The classifier's fc6/fc7 become convolutions for FCN through :func:`vgg16_fc_as_conv`.
"""

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models import vgg16, vgg16_bn

from detection.backbones.base import Backbone
from detection.backbones.weights import load_weights

FC6_KERNEL = 7  # fc6 sees a 7x7 pool5 window in the ImageNet classifier
FC_CHANNELS = 4096


class VGG16(Backbone):
    def __init__(self, *, weights: str | None = None, frozen_stages: int = 0, batch_norm: bool = False) -> None:
        arch = "vgg16_bn" if batch_norm else "vgg16"
        model = (vgg16_bn if batch_norm else vgg16)(weights=None)
        load_weights(model, weights, arch=arch)
        layers = list(model.features)
        pools = [i for i, layer in enumerate(layers) if isinstance(layer, nn.MaxPool2d)]
        if len(pools) != 5:
            raise RuntimeError(f"expected 5 max pools in {arch}.features, found {len(pools)}")
        bounds = [0] + [p + 1 for p in pools[:4]]
        stages: OrderedDict[str, nn.Module] = OrderedDict(
            (name, nn.Sequential(*layers[start:end]))
            for name, start, end in zip(["block1", "block2", "pool3", "pool4"], bounds[:4], bounds[1:])
        )
        stages["conv5_3"] = nn.Sequential(*layers[bounds[4] : pools[4]])
        stages["pool5"] = layers[pools[4]]
        taps = {"pool3": (8, 256), "pool4": (16, 512), "conv5_3": (16, 512), "pool5": (32, 512)}
        super().__init__(stages=stages, taps=taps, frozen_stages=frozen_stages)
        self.classifier_state = {k: v.clone() for k, v in model.classifier.state_dict().items()} if weights else None

    def fc_as_conv(self, padding: int = 0) -> nn.Sequential:
        """fc6/fc7 as 7x7 and 1x1 convolutions (ReLU + dropout), from this model's classifier weights if loaded."""
        return vgg16_fc_as_conv(self.classifier_state, padding=padding)


def vgg16_fc_as_conv(classifier_state: dict[str, torch.Tensor] | None = None, padding: int = 0) -> nn.Sequential:
    """``Tensor[N, 512, h, w] -> Tensor[N, 4096, h - 6 + 2 padding, w - 6 + 2 padding]``.

    With ``padding=0`` fc6 is the classifier's unpadded 7x7 window; ``padding=3`` keeps the
    pool5 grid, which FCN uses so that any input size works without the paper's 100-px padding.
    """
    fc6 = nn.Conv2d(512, FC_CHANNELS, FC6_KERNEL, padding=padding)
    fc7 = nn.Conv2d(FC_CHANNELS, FC_CHANNELS, 1)
    if classifier_state is not None:
        # torchvision's classifier: 0 = fc6 Linear(25088, 4096), 3 = fc7 Linear(4096, 4096)
        fc6.weight.data.copy_(classifier_state["0.weight"].view(FC_CHANNELS, 512, FC6_KERNEL, FC6_KERNEL))
        fc6.bias.data.copy_(classifier_state["0.bias"])
        fc7.weight.data.copy_(classifier_state["3.weight"].view(FC_CHANNELS, FC_CHANNELS, 1, 1))
        fc7.bias.data.copy_(classifier_state["3.bias"])
    return nn.Sequential(fc6, nn.ReLU(inplace=True), nn.Dropout2d(), fc7, nn.ReLU(inplace=True), nn.Dropout2d())
