"""Learnable upsampling: transposed convolutions initialised to bilinear interpolation (FCN, sec. 3.3).

A transposed convolution with stride ``f`` and a ``k x k`` bilinear kernel upsamples by ``f``.
FCN uses ``k = 2f``, which interpolates maps whose pixel centres sit half a stride in from the
border (pooled maps); maps centred on the stride grid itself (strided convolutions) need the
odd ``k = 2f - 1`` instead. :func:`aligned_upsampler` picks whichever lands the output on the
target's grid and returns the crop that aligns it (``segmentation/geometry.py``).

Some backbones admit no exact crop: the upsampled map's centres fall between the target's
(offset difference not a multiple of the finer stride), or start after the target's first pixel
(ValidCNN's unpadded convolutions never see the image border). For them :func:`upsampler_onto`
keeps the learned ``2f`` transposed convolution (bilinear init) and follows it with
:class:`Resample`: bilinear interpolation (``F.grid_sample``) at the exact position of every
target pixel centre on the upsampled map, clamped to the map's border where the target reaches
beyond it. Positions are exact to float precision, so the fused maps stay aligned (well within
half a pixel of the finer map); only the values are interpolated once more. Backbones with an
exact crop keep it (:class:`Crop`), and their outputs are unchanged.

Each class is upsampled on its own: the initial weight is ``diag(kernel)`` over channels.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segmentation.geometry import Geometry, crop_offset, trace


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


class Crop(nn.Module):
    """``Tensor[N, K, h, w] -> Tensor[N, K, height, width]``: the window at ``(offset, offset)`` (exact alignment)."""

    def __init__(self, offset: int) -> None:
        super().__init__()
        self.offset = offset

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        top_left = self.offset
        if x.shape[-2] < top_left + height or x.shape[-1] < top_left + width:
            raise RuntimeError(f"map {tuple(x.shape[-2:])} too small for a {height}x{width} crop at {top_left}")
        return x[..., top_left : top_left + height, top_left : top_left + width]

    def extra_repr(self) -> str:
        return f"offset={self.offset}"


class Resample(nn.Module):
    """``Tensor[N, K, h, w]`` on ``source``'s grid -> ``Tensor[N, K, height, width]`` on ``target``'s.

    Target pixel ``j`` is centred on input coordinate ``target.offset + target.stride * j``, that is
    on source pixel ``u = (that - source.offset) / source.stride``; the output is the bilinear
    interpolation of the source at ``u`` (per axis), clamped to the border outside ``[0, w - 1]``.
    """

    def __init__(self, source: Geometry, target: Geometry) -> None:
        super().__init__()
        self.source, self.target = source, target

    def positions(self, size: int, like: Tensor) -> Tensor:
        """``Tensor[size]``: the source pixel coordinates of target pixels ``0..size-1``."""
        j = torch.arange(size, device=like.device, dtype=like.dtype)
        return (self.target.offset + self.target.stride * j - self.source.offset) / self.source.stride

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        h, w = x.shape[-2:]
        # grid_sample with align_corners=True maps -1 / +1 onto the centres of the first / last pixel
        gy = 2 * self.positions(height, x) / max(h - 1, 1) - 1
        gx = 2 * self.positions(width, x) / max(w - 1, 1) - 1
        grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)  # [height, width, 2] as (x, y)
        grid = grid[None].expand(x.shape[0], height, width, 2)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)

    def extra_repr(self) -> str:
        return f"source={self.source}, target={self.target}"


def upsampler_onto(channels: int, source: Geometry, target: Geometry) -> tuple[nn.ConvTranspose2d, Crop | Resample]:
    """The learned upsampler from ``source``'s grid to ``target``'s, and the module that aligns its output.

    The exact bilinear transposed convolution and its :class:`Crop` where one exists
    (:func:`aligned_upsampler`); otherwise the ``2f`` bilinear transposed convolution and a
    :class:`Resample` onto the target's pixel centres (module docstring).
    """
    try:
        upsampler, offset = aligned_upsampler(channels, source, target)
        return upsampler, Crop(offset)
    except ValueError as error:
        if "no bilinear kernel" not in str(error):
            raise
    factor = round(source.stride / target.stride)
    upsampler = bilinear_upsampler(channels, factor)
    return upsampler, Resample(trace(upsampler, source), target)
