"""ILSVRC classification + localization: an image is correct when one of its top-k guesses
has a ground-truth class and overlaps a gt box of that class with IoU >= 0.5.

This is the localization head's metric (ILSVRC 2012-2014 "CLS-LOC" task). ILSVRC scores
top-5 guesses; ``top_k`` picks how many (1 by default: the single-object head gives one).
Guesses are the ``top_k`` highest-scoring predictions of the image (ties: model order).

IoU is computed with ``torchvision.ops.box_iou`` on detseg's continuous boxes. The ILSVRC
devkit uses VOC-style inclusive pixels (+1); for boxes converted with
``datasets.boxes.xyxy_to_voc`` that formula gives the same value (``voc_ap.py`` explains
why), so the two agree.

Keys: ``cls_loc_accuracy``, ``cls_loc_error`` (= 1 - accuracy), ``cls_accuracy`` (a guess has
a gt class, boxes ignored), ``mean_iou`` (IoU of the top-1 guess with its best-overlapping gt
box of any class, 0 for an image with no guess), and ``cls_loc_accuracy/<class>`` over the
images that contain the class. Images without ground truth cannot be judged and are skipped.
"""

from collections.abc import Sequence

import numpy as np
import torch
from torchvision.ops import box_iou

from detection.evaluation.gather import gather_records
from detection.evaluation.records import ImageRecord, make_records

ILSVRC_IOU_THRESHOLD = 0.5


def top_k_guesses(record: ImageRecord, top_k: int) -> ImageRecord:
    """The record with only its ``top_k`` highest-scoring predictions (stable on ties)."""
    keep = np.argsort(-record.dt_scores, kind="stable")[:top_k]
    record.dt_boxes, record.dt_labels, record.dt_scores = record.dt_boxes[keep], record.dt_labels[keep], record.dt_scores[keep]
    return record


def judge_image(record: ImageRecord, *, iou_threshold: float) -> tuple[bool, bool, float]:
    """``(cls_loc_correct, cls_correct, top1_iou)`` for one record whose guesses are already
    in descending score order."""
    if len(record.dt_labels) == 0:
        return False, False, 0.0
    ious = box_iou(torch.from_numpy(record.dt_boxes), torch.from_numpy(record.gt_boxes)).numpy()  # [k, G]
    same_class = record.dt_labels[:, None] == record.gt_labels[None, :]  # [k, G]
    loc_correct = bool(np.any(same_class & (ious >= iou_threshold)))
    cls_correct = bool(np.any(same_class))
    return loc_correct, cls_correct, float(ious[0].max())


class ClsLocEvaluator:
    """Args: ``classes`` (foreground names), ``top_k`` guesses per image, ``iou_threshold``."""

    def __init__(self, *, classes: Sequence[str], top_k: int = 1, iou_threshold: float = ILSVRC_IOU_THRESHOLD) -> None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.classes = list(classes)
        self.top_k = top_k
        self.iou_threshold = iou_threshold
        self._records: list[ImageRecord] = []

    def reset(self) -> None:
        self._records = []

    def update(self, preds: list[dict], targets: list[dict]) -> None:
        records = make_records(preds, targets, num_classes=len(self.classes))
        self._records.extend(top_k_guesses(r, self.top_k) for r in records)

    def compute(self) -> dict[str, float]:
        records = [r for r in gather_records(self._records) if len(r.gt_labels)]
        judged = [judge_image(r, iou_threshold=self.iou_threshold) for r in records]
        loc = np.array([j[0] for j in judged], dtype=bool)
        accuracy = float(loc.mean()) if len(loc) else 0.0
        metrics = {
            "cls_loc_accuracy": accuracy,
            "cls_loc_error": 1.0 - accuracy if len(loc) else 1.0,
            "cls_accuracy": float(np.mean([j[1] for j in judged])) if judged else 0.0,
            "mean_iou": float(np.mean([j[2] for j in judged])) if judged else 0.0,
        }
        for label, name in enumerate(self.classes, start=1):
            has_class = np.array([label in r.gt_labels for r in records], dtype=bool)
            metrics[f"cls_loc_accuracy/{name}"] = float(loc[has_class].mean()) if has_class.any() else -1.0
        return metrics

    def pr_curves(self) -> dict:
        """No PR curve for this protocol (one guess set per image): an empty dict."""
        return {}

    def protocol_text(self) -> str:
        return (
            f"ILSVRC classification + localization, top-{self.top_k}: an image counts as correct when "
            f"one of its {self.top_k} highest-scoring predictions has a ground-truth class and overlaps "
            f"a ground-truth box of that class with IoU >= {self.iou_threshold:g}; the error is 1 - "
            f"accuracy. IoU is continuous (equal to the devkit's +1 formula on VOC-converted boxes). "
            f"mean_iou is the IoU of the top-1 box with its best-overlapping ground truth. Images "
            f"without ground truth are skipped; difficult and crowd flags are not used."
        )
