"""A small, fast CNN for CPU work: the default backbone of the demo and the tests.

Five conv-BN-ReLU stages, each halving the resolution::

    c1  stride 2   width
    c2  stride 4   2 * width
    c3  stride 8   4 * width
    c4  stride 16  8 * width
    c5  stride 32  8 * width
"""

from collections import OrderedDict

from torch import nn

from detection.backbones.base import Backbone


def _stage(in_channels: int, out_channels: int, convs: int, padding: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        stride = 2 if i == 0 else 1
        layers += [
            nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class SmallCNN(Backbone):
    """``padding``: of every 3 x 3 convolution (1 keeps sizes; 0 is ``ValidCNN``)."""

    def __init__(self, *, width: int = 32, frozen_stages: int = 0, padding: int = 1) -> None:
        widths = [width, 2 * width, 4 * width, 8 * width, 8 * width]
        convs = [1, 2, 2, 2, 2]
        stages: OrderedDict[str, nn.Module] = OrderedDict()
        in_channels = 3
        for i, (w, n) in enumerate(zip(widths, convs), start=1):
            stages[f"c{i}"] = _stage(in_channels, w, n, padding)
            in_channels = w
        taps = {f"c{i}": (2**i, widths[i - 1]) for i in range(2, 6)}
        super().__init__(stages=stages, taps=taps, frozen_stages=frozen_stages)
