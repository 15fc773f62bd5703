"""Where each feature-map pixel sits on the input image, traced through the layers.

A map of geometry ``(stride, offset)`` has its pixel ``j`` centred on input coordinate
``offset + stride * j`` (per axis; square kernels and strides). Layers change it as follows,
for kernel ``k``, stride ``s``, padding ``p``, dilation ``d``:

- convolution / pooling: the window of output ``j`` is centred on input index
  ``s j - p + d (k - 1) / 2``, so ``offset += stride (d (k - 1) / 2 - p)`` and ``stride *= s``;
- transposed convolution: output ``j`` is centred between inputs at index
  ``(j + p - (k - 1) / 2) / s``, so ``offset += stride (p - (k - 1) / 2) / s`` and ``stride /= s``;
- element-wise layers (BatchNorm, activations, dropout) keep it;
- TensorFlow "SAME" convolutions (EfficientNet-Lite's ``SameConv2d``) pad at run time,
  ``k - s`` pixels in all when the input size is a multiple of ``s``, the smaller half
  ``(k - s) // 2`` at the top/left. FCN pads its input to a multiple of 32, so every strided
  convolution sees such a size and the traced padding is exact.

FCN aligns two maps of equal stride by cropping the one that starts earlier by
``(offset_target - offset_source) / stride`` pixels: the crop is *computed* from the layers
here, where the original Caffe model hard-coded it (the offsets 19, 5, 9 and 31 of VGG-16 with
its 100-pixel input padding). Pooled VGG maps are centred at ``(stride - 1) / 2``; strided-conv
backbones (SmallCNN, ResNet, MobileNet) at ``0``.
"""

from dataclasses import dataclass

from torch import nn
from torchvision.ops.misc import SqueezeExcitation

from detection.backbones.efficientnet import SameConv2d

# Shortcut branches of residual blocks: they share the main path's geometry by construction.
SIDE_BRANCHES = frozenset({"downsample"})
TOLERANCE = 1e-6


@dataclass(frozen=True)
class Geometry:
    stride: float
    offset: float

    def conv(self, kernel: int, stride: int, padding: int, dilation: int = 1) -> "Geometry":
        return Geometry(self.stride * stride, self.offset + self.stride * (dilation * (kernel - 1) / 2 - padding))

    def transposed(self, kernel: int, stride: int, padding: int) -> "Geometry":
        return Geometry(self.stride / stride, self.offset + self.stride * (padding - (kernel - 1) / 2) / stride)


INPUT = Geometry(stride=1.0, offset=0.0)


def _square(value: int | tuple[int, ...], name: str, layer: nn.Module) -> int:
    values = (value,) if isinstance(value, int) else tuple(value)
    if len(set(values)) != 1:
        raise ValueError(f"{type(layer).__name__} has a non-square {name} {values}; geometry assumes square")
    return int(values[0])


def trace(module: nn.Module, geometry: Geometry = INPUT) -> Geometry:
    """The geometry after running ``module`` on a map of ``geometry``."""
    if isinstance(module, nn.ConvTranspose2d):
        k, s, p = (_square(getattr(module, a), a, module) for a in ("kernel_size", "stride", "padding"))
        return geometry.transposed(k, s, p)
    if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        k, s, p = (_square(getattr(module, a), a, module) for a in ("kernel_size", "stride", "padding"))
        if isinstance(module, SameConv2d):  # run-time padding on an input that is a multiple of s
            p = max(k - s, 0) // 2
        dilation = _square(getattr(module, "dilation", 1), "dilation", module)
        return geometry.conv(k, s or k, p, dilation)
    if isinstance(module, SqueezeExcitation):  # channel re-weighting: the map is unchanged
        return geometry
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        raise ValueError(f"{type(module).__name__} has no fixed geometry: a fully convolutional network cannot contain it")
    for name, child in module.named_children():
        if name not in SIDE_BRANCHES:
            geometry = trace(child, geometry)
    return geometry  # a leaf without spatial parameters is element-wise


def crop_offset(source: Geometry, target: Geometry) -> int:
    """Pixels to drop at the top-left of a ``source`` map so that it lies on ``target``'s grid."""
    if abs(source.stride - target.stride) > TOLERANCE:
        raise ValueError(f"cannot align maps of strides {source.stride} and {target.stride}")
    shift = (target.offset - source.offset) / target.stride
    if shift < -TOLERANCE or abs(shift - round(shift)) > TOLERANCE:
        raise ValueError(f"{source} does not fall on the grid of {target} (shift {shift} pixels)")
    return round(shift)
