"""Per-image evaluation records: CPU numpy copies of one image's predictions and ground truth.

Every detection evaluator turns ``update(preds, targets)`` into one :class:`ImageRecord` per
image and keeps only those, so a long validation never holds GPU tensors or images.

Shape letters: ``G`` ground-truth objects, ``D`` detections, ``H, W`` image size.
Masks, when kept, are stored as COCO run-length encodings (a few hundred bytes each).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from faster_coco_eval.core import mask as mask_utils

MASK_THRESHOLD = 0.5  # soft mask probabilities -> binary, as torchvision's Mask R-CNN pastes them


@dataclass
class ImageRecord:
    """One image's ground truth (``gt_*``) and predictions (``dt_*``), all on the CPU.

    ``gt_boxes [G, 4]`` float32 xyxy, ``gt_labels [G]`` int64 (1..C), ``gt_difficult [G]`` bool,
    ``gt_iscrowd [G]`` bool, ``gt_area [G]`` float64 or None (the dataset's own ``area``, e.g.
    COCO's polygon area), ``dt_boxes [D, 4]`` float32 xyxy, ``dt_labels [D]`` int64,
    ``dt_scores [D]`` float64, ``gt_masks`` / ``dt_masks``: lists of RLE dicts or None,
    ``image_size``: ``(H, W)`` or None.
    """

    image_id: int
    gt_boxes: np.ndarray
    gt_labels: np.ndarray
    gt_difficult: np.ndarray
    gt_iscrowd: np.ndarray
    dt_boxes: np.ndarray
    dt_labels: np.ndarray
    dt_scores: np.ndarray
    image_size: tuple[int, int] | None = None
    gt_area: np.ndarray | None = None
    gt_masks: list[dict] | None = None
    dt_masks: list[dict] | None = None


def to_numpy(value: Any) -> np.ndarray:
    """Tensor (any device) or array-like -> numpy array (a CPU copy for tensors)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def encode_masks(masks: Any) -> list[dict]:
    """Binary or soft masks ``[K, H, W]`` (or ``[K, 1, H, W]``) -> K COCO RLE dicts.

    Float masks are thresholded at ``MASK_THRESHOLD``; integer/bool masks count any non-zero
    pixel as foreground.
    """
    array = to_numpy(masks)
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3:
        raise ValueError(f"masks must be [K, H, W] or [K, 1, H, W], got shape {tuple(array.shape)}")
    if np.issubdtype(array.dtype, np.floating):
        binary = array >= MASK_THRESHOLD
    else:
        binary = array != 0
    if len(binary) == 0:
        return []
    # [K, H, W] -> [H, W, K] Fortran order, as the COCO mask API expects.
    return mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0).astype(np.uint8)))


def _image_id(target: Mapping[str, Any]) -> int:
    if "image_id" not in target:
        raise KeyError(f"target has no 'image_id' (keys: {sorted(target)})")
    value = target["image_id"]
    return int(value.item() if isinstance(value, torch.Tensor) else value)


def _flags(target: Mapping[str, Any], key: str, count: int) -> np.ndarray:
    if key not in target or target[key] is None:
        return np.zeros(count, dtype=bool)
    flags = to_numpy(target[key]).astype(bool).reshape(-1)
    if len(flags) != count:
        raise ValueError(f"target {key!r} has {len(flags)} entries for {count} boxes")
    return flags


def _image_size(pred: Mapping[str, Any], target: Mapping[str, Any]) -> tuple[int, int] | None:
    for source in (target, pred):
        masks = source.get("masks")
        if masks is not None and hasattr(masks, "shape") and len(masks.shape) >= 3:
            return int(masks.shape[-2]), int(masks.shape[-1])
    size = target.get("orig_size")
    if size is not None:
        h, w = (int(v) for v in to_numpy(size).reshape(-1)[:2])
        return h, w
    return None


def make_record(pred: Mapping[str, Any], target: Mapping[str, Any], *, num_classes: int, keep_masks: bool) -> ImageRecord:
    """One image's ``pred`` and ``target`` dicts (contract of ``docs/ARCHITECTURE.md``) -> record.

    Validates shapes and label ranges (labels must be in ``1..num_classes``).
    """
    for key in ("boxes", "labels", "scores"):
        if key not in pred:
            raise KeyError(f"prediction has no {key!r} (keys: {sorted(pred)})")
    dt_boxes = to_numpy(pred["boxes"]).astype(np.float32).reshape(-1, 4)
    dt_labels = to_numpy(pred["labels"]).astype(np.int64).reshape(-1)
    dt_scores = to_numpy(pred["scores"]).astype(np.float64).reshape(-1)
    if not len(dt_boxes) == len(dt_labels) == len(dt_scores):
        raise ValueError(
            f"prediction has {len(dt_boxes)} boxes, {len(dt_labels)} labels, {len(dt_scores)} scores"
        )
    gt_boxes = to_numpy(target["boxes"]).astype(np.float32).reshape(-1, 4)
    gt_labels = to_numpy(target["labels"]).astype(np.int64).reshape(-1)
    if len(gt_boxes) != len(gt_labels):
        raise ValueError(f"target has {len(gt_boxes)} boxes and {len(gt_labels)} labels")
    for name, labels in (("prediction", dt_labels), ("target", gt_labels)):
        bad = labels[(labels < 1) | (labels > num_classes)]
        if len(bad):
            raise ValueError(f"{name} labels must be in 1..{num_classes}, got {sorted(set(bad.tolist()))}")
    gt_area = None
    if target.get("area") is not None:
        gt_area = to_numpy(target["area"]).astype(np.float64).reshape(-1)
        if len(gt_area) != len(gt_boxes):
            raise ValueError(f"target 'area' has {len(gt_area)} entries for {len(gt_boxes)} boxes")
    gt_masks = dt_masks = None
    if keep_masks:
        if target.get("masks") is None or pred.get("masks") is None:
            raise KeyError("mask evaluation needs 'masks' in both the predictions and the targets")
        gt_masks = encode_masks(target["masks"])
        dt_masks = encode_masks(pred["masks"])
        if len(gt_masks) != len(gt_boxes) or len(dt_masks) != len(dt_boxes):
            raise ValueError(
                f"{len(gt_masks)} gt masks for {len(gt_boxes)} boxes, {len(dt_masks)} predicted masks for "
                f"{len(dt_boxes)} boxes"
            )
    return ImageRecord(
        image_id=_image_id(target),
        gt_boxes=gt_boxes,
        gt_labels=gt_labels,
        gt_difficult=_flags(target, "difficult", len(gt_boxes)),
        gt_iscrowd=_flags(target, "iscrowd", len(gt_boxes)),
        dt_boxes=dt_boxes,
        dt_labels=dt_labels,
        dt_scores=dt_scores,
        image_size=_image_size(pred, target),
        gt_area=gt_area,
        gt_masks=gt_masks,
        dt_masks=dt_masks,
    )


def make_records(
    preds: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]], *, num_classes: int, keep_masks: bool = False
) -> list[ImageRecord]:
    """A batch of predictions and targets -> one record per image."""
    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} predictions for {len(targets)} targets")
    return [make_record(p, t, num_classes=num_classes, keep_masks=keep_masks) for p, t in zip(preds, targets)]
