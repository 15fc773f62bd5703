"""YOLO v1 at test time: class-specific confidence, thresholding and per-class NMS.

Shape letters: ``N`` images, ``M = S*S*B`` predicted boxes per image, ``C`` classes,
``K`` kept detections.
"""

import torch
from torch import Tensor
from torchvision.ops import batched_nms, remove_small_boxes

SCORE_THRESHOLD = 0.2  # the paper's demo threshold on class-specific confidence
NMS_THRESHOLD = 0.5  # IoU above which a lower-scoring box of the same class is suppressed
DETECTIONS_PER_IMAGE = 100
MIN_BOX_SIZE = 1e-2  # pixels; degenerate boxes from collapsed sqrt(w), sqrt(h) are dropped


def select_detections(
    boxes: Tensor,
    scores: Tensor,
    *,
    score_threshold: float = SCORE_THRESHOLD,
    nms_threshold: float = NMS_THRESHOLD,
    detections_per_image: int = DETECTIONS_PER_IMAGE,
) -> dict[str, Tensor]:
    """One image's decoded grid -> detections.

    Args:
        boxes: ``[M, 4]`` xyxy pixels.
        scores: ``[M, C]`` class-specific confidences ``Pr(class | object) * conf``.
    Returns:
        ``{"boxes": [K, 4], "labels": [K] int64 in 1..C, "scores": [K]}``, best first.
    """
    num_boxes, num_classes = scores.shape
    # Every (box, class) pair is a candidate, as in the paper's 98 x 20 class-specific scores.
    # [M, 4] -> [M, C, 4] -> [M*C, 4]; [M, C] -> [M*C]
    cand_boxes = boxes[:, None, :].expand(num_boxes, num_classes, 4).reshape(-1, 4)
    cand_scores = scores.reshape(-1)
    cand_labels = torch.arange(1, num_classes + 1, device=scores.device).repeat(num_boxes)
    keep = torch.nonzero(cand_scores > score_threshold).squeeze(1)
    cand_boxes, cand_scores, cand_labels = cand_boxes[keep], cand_scores[keep], cand_labels[keep]
    keep = remove_small_boxes(cand_boxes, MIN_BOX_SIZE)
    cand_boxes, cand_scores, cand_labels = cand_boxes[keep], cand_scores[keep], cand_labels[keep]
    keep = batched_nms(cand_boxes, cand_scores, cand_labels, nms_threshold)[:detections_per_image]
    return {"boxes": cand_boxes[keep], "labels": cand_labels[keep], "scores": cand_scores[keep]}
