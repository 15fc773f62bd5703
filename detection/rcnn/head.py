"""The network R-CNN runs on every warped region: backbone, pool5, fc6, fc7, a ``C + 1``-way classifier.

R-CNN (section 2.1) computes a 4096-d feature per region with AlexNet (conv1..pool5, fc6, fc7);
the fine-tuning stage puts a ``C + 1``-way softmax on fc7 (section 2.3). Here the convolutional
part is any detseg backbone, tapped at ``feature``; its map is max-pooled to a fixed
``pool_size x pool_size`` grid (the identity for VGG-16's own pool5 on 227-px crops, which is 7x7),
and flattened: that vector is *pool5*, the features of the box regressors. fc6 and fc7 are
linear + ReLU (+ dropout in training); fc7 after its ReLU is the SVMs' feature.

With a VGG-16 backbone loaded with ImageNet weights, fc6 and fc7 start from the ImageNet
classifier's (as the paper starts from its pretrained AlexNet), through ``VGG16.fc_as_conv``.

Shape letters: ``R`` regions, ``S`` crop size, ``F`` tap channels, ``P`` pool size,
``D = F P^2`` pool5 dimension, ``H`` fc6/fc7 width, ``C`` foreground classes.
"""

from typing import NamedTuple

import torch
from torch import Tensor, nn

from detection.backbones.base import Backbone


class RegionOutputs(NamedTuple):
    pool5: Tensor  # [R, D]
    fc7: Tensor  # [R, H], after ReLU
    class_logits: Tensor  # [R, C + 1], column 0 is background


class RegionNet(nn.Module):
    """``crops [R, 3, S, S]`` (normalised) -> :class:`RegionOutputs`."""

    def __init__(
        self,
        *,
        backbone: Backbone,
        feature: str,
        pool_size: int,
        representation_size: int,
        num_classes: int,
        dropout: float,
    ) -> None:
        super().__init__()
        if feature not in backbone.strides:
            raise ValueError(f"feature {feature!r} is not a tap of the backbone: {list(backbone.strides)}")
        backbone.truncate(feature)
        self.backbone = backbone
        self.feature = feature
        self.pool = nn.AdaptiveMaxPool2d(pool_size)
        self.pool5_dim = backbone.channels[feature] * pool_size**2
        self.fc6 = nn.Linear(self.pool5_dim, representation_size)
        self.fc7 = nn.Linear(representation_size, representation_size)
        self.dropout = nn.Dropout(dropout)
        self.cls_score = nn.Linear(representation_size, num_classes + 1)
        self._init_from_imagenet_classifier(backbone)

    def _init_from_imagenet_classifier(self, backbone: Backbone) -> None:
        """Copy VGG-16's ImageNet fc6/fc7 when the backbone carries them and the shapes agree."""
        if getattr(backbone, "classifier_state", None) is None or not hasattr(backbone, "fc_as_conv"):
            return
        fc = backbone.fc_as_conv()  # nn.Sequential(fc6, ReLU, Dropout2d, fc7, ReLU, Dropout2d)
        fc6_conv, fc7_conv = fc[0], fc[3]
        if fc6_conv.weight[0].numel() != self.fc6.in_features or fc6_conv.out_channels != self.fc6.out_features:
            return  # another pool size or width: fc6/fc7 stay randomly initialised
        with torch.no_grad():
            self.fc6.weight.copy_(fc6_conv.weight.flatten(1))  # [H, F, P, P] -> [H, F P^2], pool5's flatten order
            self.fc6.bias.copy_(fc6_conv.bias)
            self.fc7.weight.copy_(fc7_conv.weight.flatten(1))  # [H, H, 1, 1] -> [H, H]
            self.fc7.bias.copy_(fc7_conv.bias)

    def forward(self, crops: Tensor) -> RegionOutputs:
        features = self.backbone(crops)[self.feature]  # [R, F, S/s, S/s]
        pool5 = self.pool(features).flatten(1)  # [R, F, P, P] -> [R, D]
        fc6 = self.dropout(torch.relu(self.fc6(pool5)))  # [R, H]
        fc7 = torch.relu(self.fc7(fc6))  # [R, H]: the SVMs' feature (no dropout on it)
        class_logits = self.cls_score(self.dropout(fc7))  # [R, C + 1]
        return RegionOutputs(pool5=pool5, fc7=fc7, class_logits=class_logits)
