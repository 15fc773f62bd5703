"""R-CNN's region crops: each proposal, dilated for context, warped to a fixed ``S x S`` square.

R-CNN (Girshick et al. 2014, section 2.1 and appendix A) feeds the CNN one fixed-size image per
region: the proposal's box is *dilated* so that, once warped to ``S x S``, it carries ``p``
pixels of image context on every side (``p = 16`` at ``S = 227``), then warped anisotropically
(each axis scaled on its own, aspect ratio not kept) with bilinear sampling. Where the dilated
box leaves the image, the crop is filled with the image mean, i.e. zeros once the mean is
subtracted: callers pass *normalised* images, and samples outside the image read zero.

Geometry (continuous pixel coordinates, ``docs/ARCHITECTURE.md``: pixel column ``i`` covers
``[i, i + 1)``, its centre is ``i + 0.5``):

- the box ``(x1, y1, x2, y2)`` keeps its centre and is scaled by ``S / (S - 2 p)`` on each axis,
  so its own extent maps onto the central ``S - 2 p`` crop pixels and the context onto ``p``
  pixels on each side;
- crop pixel ``j`` (``0 <= j < S``) samples the dilated box at ``x1' + (j + 0.5) w' / S``: the
  crop's pixel centres spread evenly over the box, like a resize of the box's window;
- bilinear interpolation between the four nearest pixel centres, a missing (outside) neighbour
  counting as zero: ``F.grid_sample(mode="bilinear", padding_mode="zeros", align_corners=False)``.

The authors' code (``rcnn_im_crop.m``) rounds the dilated box to whole pixels and resizes the
clipped window; this version samples the continuous box, which differs by under a pixel.

Shape letters: ``R`` regions, ``S`` the crop size, ``H, W`` the image size.
"""

import torch
import torch.nn.functional as F
from torch import Tensor

PAPER_CROP_SIZE = 227  # R-CNN's warped region size (AlexNet input)
PAPER_CONTEXT_PADDING = 16  # px of context around the box at PAPER_CROP_SIZE


def scaled_context_padding(crop_size: int) -> float:
    """The paper's 16 px of context at 227 px, scaled to ``crop_size`` (e.g. 4.51 px at 64)."""
    return PAPER_CONTEXT_PADDING * crop_size / PAPER_CROP_SIZE


def dilate_boxes(boxes: Tensor, *, crop_size: int, padding: float) -> Tensor:
    """``boxes [R, 4]`` xyxy -> the dilated boxes ``[R, 4]`` whose warp leaves ``padding`` px of context.

    Each box keeps its centre; its width and height are scaled by ``S / (S - 2 padding)``.
    """
    if not 0 <= 2 * padding < crop_size:
        raise ValueError(f"padding must be in [0, crop_size / 2), got {padding} for crop_size {crop_size}")
    scale = crop_size / (crop_size - 2 * padding)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2  # [R, 2] (cx, cy)
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * scale  # [R, 2] (half width, half height), dilated
    return torch.cat([centres - half, centres + half], dim=1)


def sampling_grid(boxes: Tensor, *, image_size: tuple[int, int], crop_size: int) -> Tensor:
    """``boxes [R, 4]`` (already dilated) -> ``grid [R, S, S, 2]`` for ``grid_sample(align_corners=False)``.

    ``grid[r, i, j] = (gx, gy)``: crop pixel ``(i, j)``'s centre in the image, normalised so that
    ``-1`` and ``+1`` are the image's outer edges (``u -> 2 u / W - 1``).
    """
    height, width = image_size
    steps = (torch.arange(crop_size, dtype=boxes.dtype, device=boxes.device) + 0.5) / crop_size  # [S]
    x1, y1, x2, y2 = boxes.unbind(dim=1)  # each [R]
    xs = x1[:, None] + steps[None, :] * (x2 - x1)[:, None]  # [R, S] sample columns, pixels
    ys = y1[:, None] + steps[None, :] * (y2 - y1)[:, None]  # [R, S] sample rows, pixels
    gx = 2 * xs / width - 1
    gy = 2 * ys / height - 1
    # [R, 1, S] and [R, S, 1] -> [R, S, S] each, stacked to [R, S, S, 2] in grid_sample's (x, y) order
    return torch.stack(
        [gx[:, None, :].expand(-1, crop_size, -1), gy[:, :, None].expand(-1, -1, crop_size)], dim=-1
    )


def warp_regions(image: Tensor, boxes: Tensor, *, crop_size: int, padding: float) -> Tensor:
    """One normalised ``image [3, H, W]`` and its ``boxes [R, 4]`` -> crops ``[R, 3, S, S]``.

    One ``grid_sample`` call per image: the ``R`` sampling grids are stacked along the output
    height (``[1, R * S, S, 2]``), so there is no Python loop over regions.
    """
    if image.ndim != 3:
        raise ValueError(f"expected one image Tensor[3, H, W], got shape {tuple(image.shape)}")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"expected boxes Tensor[R, 4], got shape {tuple(boxes.shape)}")
    channels, height, width = image.shape
    count = boxes.shape[0]
    if count == 0:
        return image.new_zeros(0, channels, crop_size, crop_size)
    dilated = dilate_boxes(boxes.to(image.dtype), crop_size=crop_size, padding=padding)
    grid = sampling_grid(dilated, image_size=(height, width), crop_size=crop_size)  # [R, S, S, 2]
    stacked = F.grid_sample(
        image[None],  # [1, 3, H, W]
        grid.reshape(1, count * crop_size, crop_size, 2),  # [R, S, S, 2] -> [1, R*S, S, 2]
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )  # [1, 3, R*S, S]
    # [1, 3, R*S, S] -> [3, R, S, S] -> [R, 3, S, S]
    return stacked.view(channels, count, crop_size, crop_size).transpose(0, 1).contiguous()


def warp_batch(images: list[Tensor], boxes: list[Tensor], *, crop_size: int, padding: float) -> Tensor:
    """Normalised ``images [3, H_i, W_i]`` with ``boxes [R_i, 4]`` -> ``[sum R_i, 3, S, S]``, image by image."""
    if len(images) != len(boxes):
        raise ValueError(f"got {len(images)} images but {len(boxes)} box tensors")
    crops = [warp_regions(image, b, crop_size=crop_size, padding=padding) for image, b in zip(images, boxes)]
    if not crops:
        return torch.zeros(0, 3, crop_size, crop_size)
    return torch.cat(crops)
