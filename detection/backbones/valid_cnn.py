"""A padding-free CNN: every convolution is "valid" (no zero padding).

Zero padding makes a convolutional network see an image border that a window cut out of a
larger image does not have, so a dense pass over the image and the network run on each window
crop differ near the window's edges. Without padding, the feature at tap position ``j`` depends
only on input pixels ``j * s ... j * s + R - 1`` (``s`` the tap's stride, ``R`` its receptive
field): a crop starting at pixel ``j0 * s`` gives exactly the dense features from ``j0`` on.
OverFeat's efficiency benchmark (``python -m benchmarks run overfeat_speed``) needs that equality.

Shape letters: ``N`` images, ``H, W`` input size. The stages follow ``SmallCNN``'s layout
(each 3 x 3 conv - BN - ReLU, the first conv of a stage has stride 2), without padding::

    c1  stride 2   width       1 conv
    c2  stride 4   2 * width   2 convs
    c3  stride 8   4 * width   2 convs
    c4  stride 16  8 * width   2 convs
    c5  stride 32  8 * width   2 convs

Each valid convolution trims its input, so a ``H x W`` image gives a tap a little smaller than
``H / s x W / s``; ``input_size(tap, cells)`` is the smallest input giving ``cells`` positions.
"""

from torch import nn

from detection.backbones.small import SmallCNN


class ValidCNN(SmallCNN):
    """``SmallCNN`` without padding (module docstring); taps ``c2..c5`` at strides 4..32."""

    def __init__(self, *, width: int = 16, frozen_stages: int = 0) -> None:
        super().__init__(width=width, frozen_stages=frozen_stages, padding=0)

    def input_size(self, tap: str, cells: int) -> int:
        """The smallest input side (pixels) that gives ``cells`` positions at ``tap``.

        Inverts ``out = (in - k) // s + 1`` conv by conv, from ``tap`` back to the image.
        """
        if tap not in self.strides:
            raise ValueError(f"{tap!r} is not a tap of this backbone: {list(self.strides)}")
        if cells < 1:
            raise ValueError(f"cells must be >= 1, got {cells}")
        convs: list[nn.Conv2d] = []
        for name, stage in self.stages.items():
            convs += [m for m in stage.modules() if isinstance(m, nn.Conv2d)]
            if name == tap:
                break
        size = cells
        for conv in reversed(convs):
            size = (size - 1) * conv.stride[0] + conv.kernel_size[0]
        return size
