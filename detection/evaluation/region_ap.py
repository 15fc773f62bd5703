"""Region AP (mAP^r) for instance segmentation: VOC-style AP with IoU measured on masks.

mAP^r was introduced by SDS (Hariharan et al., 2014) and reported by MNC (Dai et al., 2016)
at mask IoU 0.5 and 0.7 on VOC 2012 val (SBD annotations). The protocol, as in MNC's released
evaluation code: per class, detections sorted by score; each matched greedily to the gt mask
of its class in its image with the highest mask IoU; a TP when that IoU >= the threshold and
the gt is not yet matched, else an FP; AP is the VOC2007 11-point AP (``use_07_metric=True``,
what MNC's code calls). This is exactly ``voc_ap.py``'s devkit procedure with mask IoU in place
of box IoU, so ``difficult`` gts (absent from SBD) are ignored as VOC ignores them.

Keys: ``map_r_50``, ``map_r_70``, ``ap_r_50/<class>``, ``ap_r_70/<class>`` (per threshold in
``iou_thresholds``). A class with no gt has AP -1 and is left out of the mean.
"""

from collections.abc import Sequence

import numpy as np
from faster_coco_eval.core import mask as mask_utils

from detection.evaluation.gather import gather_records
from detection.evaluation.pr_curve import PRCurve, mean_defined
from detection.evaluation.records import ImageRecord, make_records
from detection.evaluation.voc_ap import class_curves, detection_order, greedy_match
from detection.evaluation.voc_evaluator import stack_records, threshold_suffix

MNC_IOU_THRESHOLDS = (0.5, 0.7)


def best_mask_overlaps(records: Sequence[ImageRecord]) -> tuple[np.ndarray, np.ndarray]:
    """For every detection (records concatenated), the highest mask IoU with a gt of its class
    in its image and that gt's index among all gts. ``-> ovmax [D]`` (-inf without gt), ``jmax [D]``."""
    ovmax_parts, jmax_parts = [], []
    gt_offset = 0
    for record in records:
        ovmax = np.full(len(record.dt_labels), -np.inf)
        jmax = np.full(len(record.dt_labels), -1, dtype=np.int64)
        for label in np.unique(record.dt_labels):
            det_idx = np.flatnonzero(record.dt_labels == label)
            gt_idx = np.flatnonzero(record.gt_labels == label)
            if len(gt_idx) == 0:
                continue
            ious = np.asarray(
                mask_utils.iou(
                    [record.dt_masks[d] for d in det_idx], [record.gt_masks[g] for g in gt_idx], [0] * len(gt_idx)
                ),
                dtype=np.float64,
            ).reshape(len(det_idx), len(gt_idx))  # [Dc, Gc]
            best = ious.argmax(axis=1)  # first maximum, like the devkit's strict ">"
            ovmax[det_idx] = ious[np.arange(len(det_idx)), best]
            jmax[det_idx] = gt_offset + gt_idx[best]
        ovmax_parts.append(ovmax)
        jmax_parts.append(jmax)
        gt_offset += len(record.gt_labels)
    if not ovmax_parts:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    return np.concatenate(ovmax_parts), np.concatenate(jmax_parts)


class RegionAPEvaluator:
    """Args: ``classes``; ``iou_thresholds`` (MNC: 0.5 and 0.7); ``use_07_metric`` (MNC: True)."""

    def __init__(
        self,
        *,
        classes: Sequence[str],
        iou_thresholds: Sequence[float] = MNC_IOU_THRESHOLDS,
        use_07_metric: bool = True,
    ) -> None:
        self.classes = list(classes)
        self.iou_thresholds = tuple(iou_thresholds)
        self.use_07_metric = use_07_metric
        self._records: list[ImageRecord] = []

    def reset(self) -> None:
        self._records = []

    def update(self, preds: list[dict], targets: list[dict]) -> None:
        self._records.extend(make_records(preds, targets, num_classes=len(self.classes), keep_masks=True))

    def curves_per_threshold(self) -> dict[float, dict[str, PRCurve]]:
        records = gather_records(self._records)
        s = stack_records(records)
        ovmax, jmax = best_mask_overlaps(records)
        order = detection_order(s["det_labels"], s["det_scores"])
        out = {}
        for threshold in self.iou_thresholds:
            tp, fp = greedy_match(ovmax[order], jmax[order], s["gt_difficult"], iou_threshold=threshold)
            curves = class_curves(
                s["det_labels"][order],
                tp,
                fp,
                s["gt_labels"],
                s["gt_difficult"],
                num_classes=len(self.classes),
                use_07_metric=self.use_07_metric,
            )
            out[threshold] = dict(zip(self.classes, curves))
        return out

    def pr_curves(self) -> dict[str, PRCurve]:
        """Per-class curves at the first threshold (0.5)."""
        return self.curves_per_threshold()[self.iou_thresholds[0]]

    def compute(self) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for threshold, curves in self.curves_per_threshold().items():
            suffix = threshold_suffix(threshold)
            metrics[f"map_r_{suffix}"] = mean_defined([c.ap for c in curves.values()])
            metrics.update({f"ap_r_{suffix}/{name}": float(c.ap) for name, c in curves.items()})
        return metrics

    def protocol_text(self) -> str:
        kind = "VOC2007 11-point AP" if self.use_07_metric else "VOC2010+ area AP"
        thresholds = ", ".join(f"{t:g}" for t in self.iou_thresholds)
        return (
            f"Region AP (mAP^r, SDS/MNC protocol) at mask IoU {thresholds}: {kind} per class with the "
            f"PASCAL VOC greedy matching, where the overlap is the IoU of the predicted and ground-truth "
            f"instance masks (full image, no +1). Difficult objects are ignored as in VOC; crowd flags are "
            f"not used. A class with no ground truth has AP -1 and is excluded from the mean."
        )
