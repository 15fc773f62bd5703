"""Where the false positives come from: Hoiem et al.'s diagnosis ("Diagnosing Error in Object
Detectors", ECCV 2012), as the R-CNN and YOLO papers use it.

For each class ``c`` with ``N_c`` ground-truth objects (difficult ones not counted), the ``N_c``
top-scored detections of ``c`` over the whole split are each put in the first category that fits,
in score order (greedy, like the VOC matching):

- ``correct``: IoU >= 0.5 with an object of ``c`` not yet claimed;
- ``duplicate``: IoU >= 0.5 with an object of ``c`` already claimed by a higher-scored detection;
- ``localization``: 0.1 <= IoU < 0.5 with an object of ``c``;
- ``similar``: IoU >= 0.1 with an object of a class in the same group as ``c`` (``similar_groups``;
  Hoiem's VOC groups when the classes are VOC's: animals, vehicles, furniture);
- ``other``: IoU >= 0.1 with an object of any other class;
- ``background``: IoU < 0.1 with every object.

A detection whose best same-class match (IoU >= 0.5) is a ``difficult`` object is skipped, as the
VOC protocol ignores it. IoU here is the continuous one (``torchvision.ops.box_iou``): this is a
diagnosis, not the score. Objects that no detection of their class covers with IoU >= 0.5, at any
score, are the *missed* objects.

Shape letters: ``G`` objects and ``D`` detections of one image.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import box_iou

from detection.evaluation.records import ImageRecord

CATEGORIES = ("correct", "duplicate", "localization", "similar", "other", "background")
MATCH_IOU = 0.5
TOUCH_IOU = 0.1
VOC_SIMILAR_GROUPS = (
    ("bird", "cat", "cow", "dog", "horse", "sheep"),
    ("aeroplane", "bicycle", "boat", "bus", "car", "motorbike", "train"),
    ("chair", "diningtable", "sofa"),
)


@dataclass(frozen=True)
class Detection:
    """One detection of the analysis: where it is, what it is, and what it was judged to be."""

    image_id: int
    box: tuple[float, float, float, float]
    label: int
    score: float
    category: str
    gt_box: tuple[float, float, float, float] | None  # the object it overlaps most, if any
    gt_label: int | None


@dataclass(frozen=True)
class MissedObject:
    image_id: int
    box: tuple[float, float, float, float]
    label: int


@dataclass
class ErrorAnalysis:
    """``shares[class][category]``: fraction of the class's top detections; ``detections``: all judged ones."""

    shares: dict[str, dict[str, float]]
    detections: list[Detection]
    missed: list[MissedObject]

    def false_positives(self, count: int) -> list[Detection]:
        """The ``count`` highest-scored detections that are not correct."""
        wrong = [d for d in self.detections if d.category != "correct"]
        return sorted(wrong, key=lambda d: -d.score)[:count]

    def markdown(self) -> list[str]:
        lines = ["| class | " + " | ".join(CATEGORIES) + " |", "|---" * (1 + len(CATEGORIES)) + "|"]
        for name, shares in self.shares.items():
            lines.append(f"| {name} | " + " | ".join(f"{shares[c]:.3f}" for c in CATEGORIES) + " |")
        return lines


def default_similar_groups(classes: Sequence[str]) -> list[tuple[str, ...]]:
    """Hoiem's VOC groups restricted to ``classes`` (none for other datasets)."""
    return [group for group in VOC_SIMILAR_GROUPS if sum(name in classes for name in group) > 1]


def _group_of(classes: Sequence[str], groups: Sequence[Sequence[str]]) -> dict[int, set[int]]:
    """label -> the labels of its similar classes (itself excluded)."""
    index = {name: label for label, name in enumerate(classes, start=1)}
    similar: dict[int, set[int]] = {label: set() for label in index.values()}
    for group in groups:
        labels = {index[name] for name in group if name in index}
        for label in labels:
            similar[label] |= labels - {label}
    return similar


def _as_tuple(box: np.ndarray) -> tuple[float, float, float, float]:
    return tuple(float(v) for v in box)  # type: ignore[return-value]


def analyse_errors(
    records: Sequence[ImageRecord], classes: Sequence[str], *, similar_groups: Sequence[Sequence[str]] | None = None
) -> ErrorAnalysis:
    """Judge the top detections of every class (see the module docstring)."""
    groups = default_similar_groups(classes) if similar_groups is None else similar_groups
    similar = _group_of(classes, groups)
    by_image = {r.image_id: r for r in records}
    ious = {
        r.image_id: box_iou(torch.from_numpy(r.dt_boxes).double(), torch.from_numpy(r.gt_boxes).double()).numpy()
        for r in records
    }  # [D, G] per image
    shares: dict[str, dict[str, float]] = {}
    judged: list[Detection] = []
    for label, name in enumerate(classes, start=1):
        num_objects = sum(int(((r.gt_labels == label) & ~r.gt_difficult).sum()) for r in records)
        ranked = [
            (float(r.dt_scores[k]), r.image_id, k) for r in records for k in np.flatnonzero(r.dt_labels == label)
        ]
        ranked.sort(key=lambda item: (-item[0], item[1], item[2]))  # score, then image id, then model order
        claimed: set[tuple[int, int]] = set()
        counts = dict.fromkeys(CATEGORIES, 0)
        taken = 0
        for score, image_id, k in ranked:
            if taken >= num_objects:
                break
            record, overlaps = by_image[image_id], ious[image_id][k]
            category, gt_index = _judge(record, overlaps, label, similar[label], claimed)
            if category is None:  # matched a difficult object: ignored, as by the VOC protocol
                continue
            taken += 1
            counts[category] += 1
            judged.append(
                Detection(
                    image_id=image_id, box=_as_tuple(record.dt_boxes[k]), label=label, score=score, category=category,
                    gt_box=_as_tuple(record.gt_boxes[gt_index]) if gt_index is not None else None,
                    gt_label=int(record.gt_labels[gt_index]) if gt_index is not None else None,
                )
            )
        total = max(taken, 1)
        shares[name] = {c: counts[c] / total for c in CATEGORIES}
    return ErrorAnalysis(shares=shares, detections=judged, missed=_missed(records, ious))


def _judge(
    record: ImageRecord, overlaps: np.ndarray, label: int, similar: set[int], claimed: set[tuple[int, int]]
) -> tuple[str | None, int | None]:
    """One detection's category (``None``: ignored) and the index of the object it is judged against."""
    if len(overlaps) == 0:
        return "background", None
    same = record.gt_labels == label
    if same.any():
        best = int(np.argmax(np.where(same, overlaps, -1.0)))
        if overlaps[best] >= MATCH_IOU:
            if record.gt_difficult[best]:
                return None, best
            key = (record.image_id, best)
            if key in claimed:
                return "duplicate", best
            claimed.add(key)
            return "correct", best
        if overlaps[best] >= TOUCH_IOU:
            return "localization", best
    best = int(np.argmax(overlaps))
    if overlaps[best] < TOUCH_IOU:
        return "background", None
    if int(record.gt_labels[best]) in similar:
        return "similar", best
    return "other", best


def _missed(records: Sequence[ImageRecord], ious: dict[int, np.ndarray]) -> list[MissedObject]:
    """Non-difficult objects that no detection of their class covers with IoU >= 0.5, largest first."""
    missed = []
    for record in records:
        overlaps = ious[record.image_id]  # [D, G]
        for g, (box, label) in enumerate(zip(record.gt_boxes, record.gt_labels)):
            if record.gt_difficult[g]:
                continue
            same = record.dt_labels == label
            if not same.any() or overlaps[same, g].max() < MATCH_IOU:
                missed.append(MissedObject(image_id=record.image_id, box=_as_tuple(box), label=int(label)))
    return sorted(missed, key=lambda m: -(m.box[2] - m.box[0]) * (m.box[3] - m.box[1]))
