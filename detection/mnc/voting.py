"""Mask voting (MNC sec. 5, the authors' ``mask_voting``): each instance kept by NMS takes the
score-weighted average of the masks of its class whose mask IoU with it is at least 0.5, and
the average is binarised at 0.4.

The average stays soft here and is binarised once, after it is pasted into the image (as the
masks of instances that did not vote are): binarising on the voting grid and resampling the 0/1
mask again when pasting shifts its edges.

Masks predicted inside different boxes are compared in a common frame: ``frame_masks`` resamples
each ``m x m`` box mask (bilinear, zero outside its box) onto a ``G x G`` grid over a frame box,
the union of the boxes voting together.

Shape letters: ``N`` candidate instances, ``K`` kept instances, ``m`` mask size, ``G`` frame
grid size, ``H, W`` a common grid.
"""

import torch
import torch.nn.functional as F
from torch import Tensor

VOTE_IOU_THRESH = 0.5  # cfg.TEST.MASK_MERGE_IOU_THRESH
BINARIZE_THRESH = 0.4  # cfg.BINARIZE_THRESH


def binary_mask_iou(a: Tensor, b: Tensor) -> Tensor:
    """``a [K, H, W]``, ``b [N, H, W]`` bool -> ``[K, N]`` IoU (0 where both are empty)."""
    a, b = a.flatten(1).float(), b.flatten(1).float()  # [K, H * W], [N, H * W]
    inter = a @ b.T
    union = a.sum(1, keepdim=True) + b.sum(1)[None] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))


def vote_masks(
    masks: Tensor, scores: Tensor, kept: Tensor, *, iou_thresh: float = VOTE_IOU_THRESH, binarize_thresh: float = BINARIZE_THRESH
) -> Tensor:
    """``masks [N, H, W]`` soft masks of one class on a common grid, ``scores [N]``, ``kept [K]`` indices
    -> ``[K, H, W]`` soft voted masks (the caller binarises them at ``binarize_thresh``).

    The IoU is measured between masks binarised at ``binarize_thresh``; each kept mask votes for
    itself, so a kept instance without neighbours keeps its own mask.
    """
    binary = masks >= binarize_thresh
    similar = binary_mask_iou(binary[kept], binary) >= iou_thresh  # [K, N]
    similar[torch.arange(len(kept), device=masks.device), kept] = True
    weights = similar.to(masks.dtype) * scores[None]  # [K, N]
    return torch.einsum("kn,nhw->khw", weights, masks) / weights.sum(1)[:, None, None]


def frame_masks(masks: Tensor, boxes: Tensor, frame: Tensor, size: int) -> Tensor:
    """``masks [N, m, m]`` inside ``boxes [N, 4]`` -> ``[N, G, G]`` on a ``G = size`` grid over ``frame [4]`` (xyxy).

    Bilinear at the frame bins' centres; zero outside each box.
    """
    if len(masks) == 0:
        return masks.new_zeros(0, size, size)
    steps = (torch.arange(size, device=masks.device, dtype=masks.dtype) + 0.5) / size
    xs = frame[0] + steps * (frame[2] - frame[0])  # [G] bin centres in pixels
    ys = frame[1] + steps * (frame[3] - frame[1])
    widths = (boxes[:, 2] - boxes[:, 0]).clamp(min=1e-6)
    heights = (boxes[:, 3] - boxes[:, 1]).clamp(min=1e-6)
    u = 2 * (xs[None] - boxes[:, :1]) / widths[:, None] - 1  # [N, G] in the mask's normalised coordinates
    v = 2 * (ys[None] - boxes[:, 1:2]) / heights[:, None] - 1
    grid = torch.stack([u[:, None, :].expand(-1, size, -1), v[:, :, None].expand(-1, -1, size)], dim=-1)  # [N, G, G, 2]
    return F.grid_sample(masks[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]


def vote_in_frames(
    masks: Tensor,
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    kept: Tensor,
    *,
    frame_size: int,
    iou_thresh: float = VOTE_IOU_THRESH,
    binarize_thresh: float = BINARIZE_THRESH,
) -> tuple[Tensor, Tensor]:
    """Vote every kept instance with the candidates of its class.

    ``masks [N, m, m]`` soft, ``boxes [N, 4]``, ``scores [N]``, ``labels [N]`` (candidates), ``kept [K]``
    -> ``(voted [K, G, G]`` soft, ``frames [K, 4])``: each voted mask lies on a grid over its frame,
    the union box of the kept instance and the candidates of its class that overlap it.
    """
    voted, frames = [], []
    for k in kept.tolist():
        same = labels == labels[k]
        overlaps = (torch.minimum(boxes[:, 2], boxes[k, 2]) > torch.maximum(boxes[:, 0], boxes[k, 0])) & (
            torch.minimum(boxes[:, 3], boxes[k, 3]) > torch.maximum(boxes[:, 1], boxes[k, 1])
        )
        group = torch.where(same & overlaps)[0]
        group = torch.cat([torch.tensor([k], device=group.device), group[group != k]])  # the kept one first
        frame = torch.cat([boxes[group, :2].min(0).values, boxes[group, 2:].max(0).values])
        framed = frame_masks(masks[group], boxes[group], frame, frame_size)
        voted.append(vote_masks(framed, scores[group], torch.zeros(1, dtype=torch.long, device=masks.device),
                                iou_thresh=iou_thresh, binarize_thresh=binarize_thresh)[0])  # fmt: skip
        frames.append(frame)
    if not voted:
        return masks.new_zeros(0, frame_size, frame_size), boxes.new_zeros(0, 4)
    return torch.stack(voted), torch.stack(frames)
