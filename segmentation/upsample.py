"""Learnable upsampling: transposed convolutions initialised to bilinear interpolation (FCN, sec. 3.3).

A transposed convolution with stride ``f`` and a ``k x k`` bilinear kernel upsamples by ``f``.
FCN uses ``k = 2f``, which interpolates maps whose pixel centres sit half a stride in from the
border (pooled maps); maps centred on the stride grid itself (strided convolutions) need the
odd ``k = 2f - 1`` instead. :func:`aligned_upsampler` picks whichever lands the output on the
target's grid and returns the crop that aligns it (``segmentation/geometry.py``).

Each class is upsampled on its own: the initial weight is ``diag(kernel)`` over channels.
"""

import torch
from torch import Tensor, nn

from segmentation.geometry import Geometry, crop_offset


def bilinear_kernel(size: int) -> Tensor:
    """``Tensor[size, size]``: the separable bilinear weights of FCN's ``upsample_filt``."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    ramp = 1 - (torch.arange(size, dtype=torch.float64) - center).abs() / factor
    return (ramp[:, None] * ramp[None, :]).float()


def bilinear_upsampler(channels: int, factor: int, kernel_size: int | None = None) -> nn.ConvTranspose2d:
    """``Tensor[N, channels, h, w] -> Tensor[N, channels, (h - 1) f + k, (w - 1) f + k]``, no bias, no padding."""
    kernel_size = 2 * factor if kernel_size is None else kernel_size
    layer = nn.ConvTranspose2d(channels, channels, kernel_size, stride=factor, bias=False)
    with torch.no_grad():
        layer.weight.zero_()
        kernel = bilinear_kernel(kernel_size)
        for c in range(channels):
            layer.weight[c, c] = kernel
    return layer


def aligned_upsampler(channels: int, source: Geometry, target: Geometry) -> tuple[nn.ConvTranspose2d, int]:
    """The bilinear transposed convolution from ``source``'s grid to ``target``'s, and its crop."""
    ratio = source.stride / target.stride
    factor = round(ratio)
    if factor < 2 or abs(ratio - factor) > 1e-6:
        raise ValueError(f"upsampling needs an integer factor >= 2, got strides {source.stride} -> {target.stride}")
    for kernel_size in (2 * factor, 2 * factor - 1):
        try:
            crop = crop_offset(source.transposed(kernel_size, factor, 0), target)
        except ValueError:
            continue
        return bilinear_upsampler(channels, factor, kernel_size), crop
    raise ValueError(f"no bilinear kernel maps {source} onto the grid of {target}")
