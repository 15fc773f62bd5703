"""The last step of every one-image postprocess: candidate detections -> per-class NMS -> the best.

Shape letters: ``M`` candidates (box, class) of one image, ``K`` kept detections.
"""

import torch
from torch import Tensor
from torchvision.ops import batched_nms, remove_small_boxes

MIN_BOX_SIZE = 1e-2  # px: degenerate boxes are dropped, as torchvision's RoIHeads does


def per_class_nms(
    boxes: Tensor, scores: Tensor, labels: Tensor, *, score_thresh: float, nms_thresh: float, detections_per_img: int
) -> dict[str, Tensor]:
    """``boxes [M, 4]`` xyxy, ``scores [M]``, ``labels [M]`` -> ``{boxes [K, 4] float32, labels [K] int64,
    scores [K] float32}``, best first: scores above ``score_thresh``, boxes of at least ``MIN_BOX_SIZE``,
    greedy NMS class by class (``torchvision.ops.batched_nms``), the best ``detections_per_img``."""
    keep = torch.nonzero(scores > score_thresh).flatten()
    keep = keep[remove_small_boxes(boxes[keep], MIN_BOX_SIZE)]
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    keep = batched_nms(boxes, scores, labels, nms_thresh)[:detections_per_img]  # sorted by score
    return {"boxes": boxes[keep].float(), "labels": labels[keep].to(torch.int64), "scores": scores[keep].float()}
