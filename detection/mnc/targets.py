"""Training targets of stages 2 and 3: RoI sampling, box-regression targets and mask targets.

RoI sampling follows the authors' ``proposal_target_layer`` with torchvision's parts: the
ground-truth boxes join the proposals, ``Matcher`` labels each RoI with its best gt (foreground
at IoU >= 0.5, background below), ``BalancedPositiveNegativeSampler`` keeps ``rois_per_image``
RoIs with at most ``positive_fraction`` foreground, and the shared ``BoxCoder`` encodes the
class-wise regression targets. The sampled RoIs keep their gradient (MNC back-propagates into
the boxes); labels and targets are computed on detached copies.

A mask target is the RoI's matched gt mask cropped to the RoI and resized to ``m x m`` by
bilinear sampling at the bins' centres (``roi_align(aligned=True, sampling_ratio=1)``), then
binarised at 0.5.

Shape letters: ``R_i`` RoIs of image ``i``, ``R`` over the batch, ``G`` gt objects, ``H, W``
the (transformed) image size, ``m`` mask size.
"""

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.models.detection._utils import (
    BalancedPositiveNegativeSampler,
    BoxCoder,
    Matcher,
)
from torchvision.ops import box_iou, roi_align

MASK_TARGET_THRESH = 0.5  # resized gt masks are binarised here


@dataclass
class SampledRoIs:
    """``boxes``: N tensors ``[R_i, 4]`` (with gradient); ``labels``: N ``[R_i]`` int64 (0 = background);
    ``matched_idxs``: N ``[R_i]`` gt index of each RoI; ``regression_targets``: N ``[R_i, 4]``."""

    boxes: list[Tensor]
    labels: list[Tensor]
    matched_idxs: list[Tensor]
    regression_targets: list[Tensor]


class RoISampler:
    """``(proposals: list[Tensor[R_i, 4]], targets: list[dict]) -> SampledRoIs``."""

    def __init__(
        self, *, box_coder: BoxCoder, fg_iou_thresh: float, bg_iou_thresh: float, rois_per_image: int, positive_fraction: float
    ) -> None:
        self.box_coder = box_coder
        self.matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=False)
        self.sampler = BalancedPositiveNegativeSampler(rois_per_image, positive_fraction)

    def _match(self, rois: Tensor, gt_boxes: Tensor, gt_labels: Tensor) -> tuple[Tensor, Tensor]:
        if len(gt_boxes) == 0:
            zeros = torch.zeros(len(rois), dtype=torch.int64, device=rois.device)
            return zeros, zeros.clone()
        matched = self.matcher(box_iou(gt_boxes, rois))
        labels = gt_labels[matched.clamp(min=0)].clone()
        labels[matched == Matcher.BELOW_LOW_THRESHOLD] = 0
        labels[matched == Matcher.BETWEEN_THRESHOLDS] = -1  # ignored by the sampler
        return matched.clamp(min=0), labels

    def __call__(self, proposals: list[Tensor], targets: list[dict[str, Tensor]]) -> SampledRoIs:
        rois, matched_idxs, labels = [], [], []
        for image_proposals, target in zip(proposals, targets):
            gt_boxes = target["boxes"].to(image_proposals.dtype)
            image_rois = torch.cat([image_proposals, gt_boxes])
            matched, image_labels = self._match(image_rois.detach(), gt_boxes, target["labels"])
            rois.append(image_rois)
            matched_idxs.append(matched)
            labels.append(image_labels)
        positive, negative = self.sampler(labels)
        keep = [torch.where(p | n)[0] for p, n in zip(positive, negative)]
        rois = [r[k] for r, k in zip(rois, keep)]
        labels = [lab[k] for lab, k in zip(labels, keep)]
        matched_idxs = [m[k] for m, k in zip(matched_idxs, keep)]
        matched_boxes = []
        for image_matched, target, image_rois in zip(matched_idxs, targets, rois):
            gt_boxes = target["boxes"].to(image_rois.dtype)
            if len(gt_boxes) == 0:
                gt_boxes = image_rois.new_zeros(1, 4)
            matched_boxes.append(gt_boxes[image_matched])
        regression_targets = self.box_coder.encode(matched_boxes, [r.detach() for r in rois])
        return SampledRoIs(boxes=rois, labels=labels, matched_idxs=matched_idxs, regression_targets=list(regression_targets))


def mask_targets(gt_masks: Tensor, boxes: Tensor, matched_idxs: Tensor, mask_size: int) -> Tensor:
    """``gt_masks [G, H, W]``, ``boxes [R, 4]``, ``matched_idxs [R]`` -> ``[R, m, m]`` float 0/1 targets.

    Each box crops its matched gt mask and resizes it to ``m x m`` (bilinear at bin centres),
    then binarises at ``MASK_TARGET_THRESH``.
    """
    if len(boxes) == 0:
        return gt_masks.new_zeros(0, mask_size, mask_size, dtype=torch.float32)
    rois = torch.cat([matched_idxs[:, None].to(boxes.dtype), boxes.detach()], dim=1)  # [R, 5] (mask index, box)
    resized = roi_align(gt_masks[:, None].to(boxes.dtype), rois, (mask_size, mask_size), spatial_scale=1.0, sampling_ratio=1, aligned=True)
    return (resized[:, 0] >= MASK_TARGET_THRESH).to(torch.float32)
