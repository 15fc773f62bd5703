"""Differentiable RoI warping (MNC sec. 3.2): bilinear sampling of each box, then max pooling.

Each box is sampled on an ``S x S`` grid of bin centres (``S = 28``) by bilinear interpolation
and max-pooled to ``S/2 x S/2`` (14). Unlike ``roi_pool`` / ``roi_align`` the sampling positions
are a differentiable function of the box, so the loss reaches the box coordinates (and through
them stage 1's box regression) as well as the features: ``F.affine_grid`` builds the grid from
a per-box affine map, ``F.grid_sample`` interpolates.

Sampling convention: ``torchvision.ops.roi_align(..., aligned=True, sampling_ratio=1)``: a box
``(x1, y1, x2, y2)`` in image pixels covers feature coordinates ``x1 / s .. x2 / s`` of a map of
stride ``s`` whose pixel ``j`` has its centre at ``j + 0.5``; bin ``(i, j)`` is sampled at its
centre. Outside the map the border value is used (``roi_align`` clamps the same way within one
pixel of the border; boxes are clipped to the image before warping).

Shape letters: ``N`` images, ``F`` feature channels, ``Hf, Wf`` feature size, ``R`` boxes over
the batch, ``S`` sampling grid size, ``P = S / 2`` pooled size.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

WARP_SIZE = 28  # bilinear samples per side (paper sec. 3.2)
POOL_KERNEL = 2  # then 2 x 2 max pooling: the 14 x 14 RoI grid


def warp_affine(boxes: Tensor, *, spatial_scale: float, feature_size: tuple[int, int]) -> Tensor:
    """``boxes [R, 4]`` xyxy image pixels -> ``theta [R, 2, 3]`` for ``F.affine_grid(align_corners=False)``.

    ``affine_grid`` puts output bin ``j`` of ``S`` at ``u = (2j + 1) / S - 1``; the input's pixel
    ``x`` sits at ``(2x + 1) / Wf - 1``. Mapping bin centres onto ``x1' + (j + 0.5) w' / S - 0.5``
    (``x1' = x1 * scale``, ``w' = (x2 - x1) * scale``) gives ``u_in = (w' / Wf) u + (x1 + x2) scale / Wf - 1``.
    """
    height, width = feature_size
    x1, y1, x2, y2 = boxes.unbind(dim=1)
    zeros = torch.zeros_like(x1)
    row_x = torch.stack([(x2 - x1) * spatial_scale / width, zeros, (x1 + x2) * spatial_scale / width - 1], dim=1)
    row_y = torch.stack([zeros, (y2 - y1) * spatial_scale / height, (y1 + y2) * spatial_scale / height - 1], dim=1)
    return torch.stack([row_x, row_y], dim=1)  # [R, 2, 3]


def roi_warp(features: Tensor, boxes: list[Tensor], *, spatial_scale: float, output_size: int) -> Tensor:
    """``features [N, F, Hf, Wf]``, ``boxes``: N tensors ``[R_i, 4]`` -> ``[R, F, S, S]`` bilinear samples.

    Differentiable with respect to the features and the boxes.
    """
    if len(boxes) != features.shape[0]:
        raise ValueError(f"{len(boxes)} box lists for {features.shape[0]} feature maps")
    channels, height, width = features.shape[1:]
    out = []
    for image_features, image_boxes in zip(features, boxes):
        if len(image_boxes) == 0:
            out.append(features.new_zeros(0, channels, output_size, output_size))
            continue
        theta = warp_affine(image_boxes.to(features.dtype), spatial_scale=spatial_scale, feature_size=(height, width))
        grid = F.affine_grid(theta, [len(image_boxes), channels, output_size, output_size], align_corners=False)
        # [R_i, S, S, 2] -> [1, R_i * S, S, 2]: one grid_sample call per image, no copy of the features
        grid = grid.reshape(1, len(image_boxes) * output_size, output_size, 2)
        sampled = F.grid_sample(image_features[None], grid, mode="bilinear", padding_mode="border", align_corners=False)
        # [1, F, R_i * S, S] -> [R_i, F, S, S]
        out.append(sampled[0].view(channels, len(image_boxes), output_size, output_size).transpose(0, 1).contiguous())
    return torch.cat(out)


class RoIWarp(nn.Module):
    """``(features [N, F, Hf, Wf], boxes: list[Tensor[R_i, 4]]) -> Tensor[R, F, P, P]``: warp to ``S``, max-pool to ``P``."""

    def __init__(self, *, stride: int, warp_size: int = WARP_SIZE, pool_kernel: int = POOL_KERNEL) -> None:
        super().__init__()
        if warp_size % pool_kernel:
            raise ValueError(f"warp_size {warp_size} is not a multiple of pool_kernel {pool_kernel}")
        self.spatial_scale = 1.0 / stride
        self.warp_size = warp_size
        self.pool_kernel = pool_kernel
        self.output_size = warp_size // pool_kernel

    def forward(self, features: Tensor, boxes: list[Tensor]) -> Tensor:
        # fp32 under autocast: bf16 box coordinates and sampling grids lose whole feature cells.
        warped = roi_warp(features.float(), [b.float() for b in boxes], spatial_scale=self.spatial_scale, output_size=self.warp_size)
        return F.max_pool2d(warped, self.pool_kernel)
