"""R-CNN's fine-tuning mini-batches: label every region by its best ground truth, then sample 32 + 96.

R-CNN (section 2.3): the CNN is fine-tuned as a ``C + 1``-way classifier on warped regions.
A region with IoU >= 0.5 with a ground-truth box is a positive of that box's class, every other
region is background (the authors' ``det_bg_threshold: 0.5``, with no lower bound). The regions
are the selective-search proposals *and* the ground-truth boxes themselves (``rcnn_make_window_file.m``
writes both into the window file). Each SGD mini-batch holds 128 regions: 32 positives and
96 background, drawn across all the images of the batch (the paper's windows come from the whole
training set; here, from the batch's images).

The authors' Caffe ``window_data`` layer draws the 32 positives and 96 negatives *with*
replacement, so the counts are always exact. :func:`sample_regions` keeps the exact counts but
draws without replacement while the pool is large enough, and tops up with repeats only when it is
not (torchvision's ``BalancedPositiveNegativeSampler`` instead fills missing positives with more
background, which changes the fractions, hence this small sampler of its own).

Shape letters: ``R`` regions, ``K`` ground-truth boxes, ``B`` the mini-batch size.
"""

import torch
from torch import Tensor
from torchvision.ops import box_iou

FG_IOU = 0.5  # fine-tuning positives: IoU >= 0.5 with a ground-truth box (R-CNN section 2.3)
CROPS_PER_BATCH = 128  # regions per SGD mini-batch
FG_FRACTION = 0.25  # 32 of the 128 are positives


def label_regions(
    boxes: Tensor, gt_boxes: Tensor, gt_labels: Tensor, *, fg_iou: float = FG_IOU
) -> tuple[Tensor, Tensor, Tensor]:
    """Label ``boxes [R, 4]`` by their best ground truth.

    Returns ``labels [R]`` int64 (the best ground truth's label where its IoU >= ``fg_iou``, else
    0), ``max_iou [R]`` float and ``matched [R]`` int64 (index of the best ground truth, 0 when
    there is none).
    """
    count = boxes.shape[0]
    if gt_boxes.numel() == 0:
        zeros = torch.zeros(count, dtype=torch.int64, device=boxes.device)
        return zeros, torch.zeros(count, device=boxes.device), zeros.clone()
    iou = box_iou(boxes, gt_boxes)  # [R, K]
    max_iou, matched = iou.max(dim=1)  # [R] each
    labels = torch.where(max_iou >= fg_iou, gt_labels[matched], torch.zeros_like(gt_labels[matched]))
    return labels.to(torch.int64), max_iou, matched


def _draw(pool: Tensor, count: int, generator: torch.Generator | None) -> Tensor:
    """``count`` entries of ``pool [P]``: without replacement while ``P >= count``, topped up with repeats otherwise."""
    if count == 0 or pool.numel() == 0:
        return pool[:0]
    order = torch.randperm(pool.numel(), generator=generator)
    taken = pool[order[:count]]
    missing = count - taken.numel()
    if missing > 0:
        extra = torch.randint(pool.numel(), (missing,), generator=generator)
        taken = torch.cat([taken, pool[extra]])
    return taken


def sample_regions(
    labels: Tensor,
    *,
    batch_size: int = CROPS_PER_BATCH,
    fg_fraction: float = FG_FRACTION,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``labels [R]`` (0 = background) -> indices ``[B]`` of the regions of one mini-batch, on ``labels``' device.

    ``round(B * fg_fraction)`` positives and the rest background. When there is no positive at
    all, the whole batch is background (and vice versa); with no region, the batch is empty.
    The draw runs on the CPU (``generator`` is a CPU generator), so it is the same on every device.
    """
    device = labels.device
    labels = labels.cpu()
    fg = torch.nonzero(labels > 0).flatten()
    bg = torch.nonzero(labels == 0).flatten()
    num_fg = round(batch_size * fg_fraction) if fg.numel() else 0
    if bg.numel() == 0 and fg.numel():
        num_fg = batch_size
    chosen = torch.cat([_draw(fg, num_fg, generator), _draw(bg, batch_size - num_fg, generator)])
    return chosen.to(device)
