"""YOLO v1 at test time: class-specific confidence, thresholding and per-class NMS.

Shape letters: ``N`` images, ``M = S*S*B`` predicted boxes per image, ``C`` classes,
``K`` kept detections.
"""

import torch
from torch import Tensor

from detection.class_nms import per_class_nms

SCORE_THRESHOLD = 0.2  # the paper's demo threshold on class-specific confidence
NMS_THRESHOLD = 0.5  # IoU above which a lower-scoring box of the same class is suppressed
DETECTIONS_PER_IMAGE = 100


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
    return per_class_nms(
        cand_boxes, cand_scores, cand_labels,
        score_thresh=score_threshold, nms_thresh=nms_threshold, detections_per_img=detections_per_image,
    )  # fmt: skip
