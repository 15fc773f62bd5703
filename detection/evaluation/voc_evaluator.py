"""PASCAL VOC detection evaluator: per-class AP (11-point VOC2007 or area VOC2010+) and mAP.

Protocol (see ``voc_ap.py`` for the devkit algorithm): detections of a class are sorted by
descending score (stable; ties keep ``image_id`` order, then the model's order within an
image), each is matched greedily to the highest-IoU gt of its class in its image, ``difficult``
gts are neither TP nor FP, a second detection of a matched gt is an FP. IoU is the devkit's
inclusive-pixel (+1) formula on boxes converted to VOC coordinates. ``iscrowd`` is not part
of VOC and is ignored here.

Metric keys: ``map_50`` and ``ap_50/<class>`` (the suffix is the IoU threshold in percent).
A class with no non-difficult gt has AP ``-1`` and is left out of the mean.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np

from datasets.boxes import xyxy_to_voc
from detection.evaluation.gather import gather_records
from detection.evaluation.pr_curve import PRCurve, mean_defined
from detection.evaluation.records import ImageRecord, make_records
from detection.evaluation.voc_ap import best_box_overlaps, class_curves, detection_order, greedy_match

VOC_IOU_THRESHOLD = 0.5  # PASCAL VOC's minimum overlap


def _concat(arrays: list[np.ndarray], dtype: Any, width: int | None = None) -> np.ndarray:
    if not arrays:
        return np.zeros((0, width) if width else 0, dtype=dtype)
    return np.concatenate(arrays).astype(dtype, copy=False)


def stack_records(records: Sequence[ImageRecord]) -> dict[str, np.ndarray]:
    """Concatenate all records: ``det_image/gt_image`` are record indices (``[D]``, ``[G]``)."""
    det_counts = [len(r.dt_labels) for r in records]
    gt_counts = [len(r.gt_labels) for r in records]
    return {
        "det_image": np.repeat(np.arange(len(records)), det_counts),
        "det_boxes": _concat([r.dt_boxes for r in records], np.float32, 4),
        "det_labels": _concat([r.dt_labels for r in records], np.int64),
        "det_scores": _concat([r.dt_scores for r in records], np.float64),
        "gt_image": np.repeat(np.arange(len(records)), gt_counts),
        "gt_boxes": _concat([r.gt_boxes for r in records], np.float32, 4),
        "gt_labels": _concat([r.gt_labels for r in records], np.int64),
        "gt_difficult": _concat([r.gt_difficult for r in records], bool),
    }


def evaluate_voc_records(
    records: Sequence[ImageRecord], *, num_classes: int, iou_threshold: float, use_07_metric: bool
) -> list[PRCurve]:
    """The devkit's per-class PR curves and AP over ``records`` (index ``label - 1``)."""
    s = stack_records(records)
    order = detection_order(s["det_labels"], s["det_scores"])
    groups = num_classes + 1
    det_key = s["det_image"][order] * groups + s["det_labels"][order]
    gt_key = s["gt_image"] * groups + s["gt_labels"]
    ovmax, jmax = best_box_overlaps(det_key, xyxy_to_voc(s["det_boxes"][order]), gt_key, xyxy_to_voc(s["gt_boxes"]))
    tp, fp = greedy_match(ovmax, jmax, s["gt_difficult"], iou_threshold=iou_threshold)
    return class_curves(
        s["det_labels"][order],
        tp,
        fp,
        s["gt_labels"],
        s["gt_difficult"],
        num_classes=num_classes,
        use_07_metric=use_07_metric,
    )


def threshold_suffix(iou_threshold: float) -> str:
    """0.5 -> ``"50"``, 0.7 -> ``"70"``: the IoU threshold in percent, as metric names use it."""
    return f"{round(iou_threshold * 100):d}"


class VOCEvaluator:
    """Streams ``update(preds, targets)`` into CPU records; ``compute()`` runs the devkit protocol.

    Args:
        classes: foreground class names, ``classes[label - 1]``.
        use_07_metric: VOC2007 11-point AP if True, else the VOC2010+ area under the curve.
        iou_threshold: minimum overlap for a TP (VOC: 0.5).
    """

    def __init__(self, *, classes: Sequence[str], use_07_metric: bool = False, iou_threshold: float = VOC_IOU_THRESHOLD) -> None:
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        self.classes = list(classes)
        self.use_07_metric = use_07_metric
        self.iou_threshold = iou_threshold
        self._records: list[ImageRecord] = []

    def reset(self) -> None:
        self._records = []

    def update(self, preds: list[dict], targets: list[dict]) -> None:
        """``preds``: ``boxes [K, 4]`` xyxy, ``labels [K]``, ``scores [K]``; ``targets``: dataset targets."""
        self._records.extend(make_records(preds, targets, num_classes=len(self.classes)))

    def records(self) -> list[ImageRecord]:
        """All ranks' records, deduplicated and sorted by ``image_id`` (what ``compute`` scores)."""
        return gather_records(self._records)

    def pr_curves(self) -> dict[str, PRCurve]:
        """Per-class precision/recall along the ranked detections, with AP and counts."""
        curves = evaluate_voc_records(
            self.records(),
            num_classes=len(self.classes),
            iou_threshold=self.iou_threshold,
            use_07_metric=self.use_07_metric,
        )
        return dict(zip(self.classes, curves))

    def compute(self) -> dict[str, float]:
        curves = self.pr_curves()
        suffix = threshold_suffix(self.iou_threshold)
        metrics = {f"map_{suffix}": mean_defined([c.ap for c in curves.values()])}
        metrics.update({f"ap_{suffix}/{name}": float(c.ap) for name, c in curves.items()})
        return metrics

    def protocol_text(self) -> str:
        """The protocol in words, for reports."""
        ap_kind = (
            "VOC2007 11-point interpolated AP (mean of the max precision at recall >= 0, 0.1, ..., 1)"
            if self.use_07_metric
            else "VOC2010+ AP: area under the precision envelope (all recall points)"
        )
        return (
            f"PASCAL VOC protocol. {ap_kind}, per class, mean over classes with ground truth. "
            f"A detection is a true positive when its IoU with the best-overlapping ground truth of "
            f"its class in the image is >= {self.iou_threshold:g}; IoU uses the devkit's inclusive-pixel "
            f"convention (+1 on widths and heights) on boxes converted to VOC 1-based coordinates. "
            f"Detections are ranked by score (ties: image id, then model order); greedy matching as in "
            f"VOCevaldet.m: a second detection of a matched object is a false positive. Objects marked "
            f"'difficult' are not counted as positives and detections matched to them are ignored "
            f"(neither true nor false positives). Crowd flags are not used. A class with no "
            f"non-difficult ground truth has AP -1 and is excluded from the mean."
        )
