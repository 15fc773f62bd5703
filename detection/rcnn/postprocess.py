"""R-CNN's test-time detections: per-class scores and boxes of every proposal -> final detections.

R-CNN (section 2.2, ``rcnn_test.m``): every proposal is scored by every class's SVM; each class
keeps its top ``max_per_class`` proposals of the image, and greedy non-maximum suppression with
IoU 0.3 runs class by class (``torchvision.ops.batched_nms``). The image keeps its
``detections_per_img`` best detections over all classes.

Shape letters: ``R`` proposals of one image, ``C`` foreground classes, ``K`` detections.
"""

import torch
from torch import Tensor
from torchvision.ops import clip_boxes_to_image

from detection.class_nms import per_class_nms

NMS_IOU = 0.3  # R-CNN's per-class NMS threshold
MAX_PER_CLASS = 100  # rcnn_test.m's max_per_image: top boxes per class and image before NMS
DETECTIONS_PER_IMAGE = 100


def detect(
    scores: Tensor,
    boxes: Tensor,
    *,
    image_size: tuple[int, int],
    score_thresh: float,
    nms_thresh: float = NMS_IOU,
    max_per_class: int = MAX_PER_CLASS,
    detections_per_img: int = DETECTIONS_PER_IMAGE,
) -> dict[str, Tensor]:
    """``scores [R, C]``, ``boxes [R, C, 4]`` xyxy -> ``{boxes [K, 4], labels [K] int64, scores [K]}``."""
    count, num_classes = scores.shape
    boxes = clip_boxes_to_image(boxes.reshape(-1, 4), image_size).view(count, num_classes, 4)  # [R, C, 4] -> [R*C, 4] -> [R, C, 4]
    k = min(max_per_class, count)
    top_scores, top_index = scores.topk(k, dim=0)  # [k, C] each: every class's best proposals
    classes = torch.arange(num_classes, device=scores.device)
    top_boxes = boxes[top_index, classes[None, :]]  # [k, C, 4]
    labels = (classes + 1)[None, :].expand(k, -1)  # [k, C], labels 1..C
    return per_class_nms(
        top_boxes.reshape(-1, 4), top_scores.flatten(), labels.flatten(),
        score_thresh=score_thresh, nms_thresh=nms_thresh, detections_per_img=detections_per_img,
    )  # fmt: skip
