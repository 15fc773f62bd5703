"""One tap of a backbone in the form torchvision's detectors expect.

torchvision's ``GeneralizedRCNN`` models (``FasterRCNN``, ``MaskRCNN``) take a backbone that maps
``Tensor[N, 3, H, W]`` to a dict of feature maps and has ``out_channels``. ``SingleTap`` wraps one
of our backbones, cut after ``feature``: ``{feature: Tensor[N, D, H / s, W / s]}``.
"""

from torch import Tensor, nn

from detection.backbones.base import Backbone


class SingleTap(nn.Module):
    """``Tensor[N, 3, H, W] -> {feature: Tensor[N, D, H / s, W / s]}``, ``out_channels = D``."""

    def __init__(self, backbone: Backbone, feature: str) -> None:
        super().__init__()
        backbone.truncate(feature)  # ValueError naming the taps when ``feature`` is not one
        self.body = backbone
        self.feature = feature
        self.out_channels = backbone.channels[feature]

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {self.feature: self.body(x)[self.feature]}
