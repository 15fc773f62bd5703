"""ILSVRC classification + localization, and region AP (mAP^r) on masks."""

import numpy as np
import pytest
import torch

from detection.evaluation.cls_loc import ClsLocEvaluator
from detection.evaluation.region_ap import RegionAPEvaluator
from detection.evaluation.voc_evaluator import VOCEvaluator

CLASSES = ["a", "b"]
SIZE = 40


def _target(image_id: int, boxes: list, labels: list, masks: np.ndarray | None = None) -> dict:
    target = {
        "image_id": image_id,
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }
    if masks is not None:
        target["masks"] = torch.from_numpy(masks.astype(np.uint8))
    return target


def _pred(boxes: list, labels: list, scores: list, masks: np.ndarray | None = None) -> dict:
    pred = {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "scores": torch.tensor(scores, dtype=torch.float32),
    }
    if masks is not None:
        pred["masks"] = torch.from_numpy(masks.astype(np.float32))
    return pred


# ----------------------------------------------------------------------------------- cls-loc
def test_cls_loc_hand_cases() -> None:
    gt = [0.0, 0, 20, 20]
    targets = [_target(i, [gt], [1]) for i in range(4)]
    preds = [
        _pred([gt], [1], [0.9]),  # right class, IoU 1: correct
        _pred([[0.0, 0, 20, 40]], [1], [0.9]),  # right class, IoU 0.5: correct (>=)
        _pred([[0.0, 0, 20, 41]], [1], [0.9]),  # IoU 400/820 < 0.5: wrong
        _pred([gt, gt], [2, 1], [0.9, 0.8]),  # top-1 has the wrong class: wrong with top_k=1
    ]
    evaluator = ClsLocEvaluator(classes=CLASSES)
    evaluator.update(preds, targets)
    m = evaluator.compute()
    assert m["cls_loc_accuracy"] == pytest.approx(0.5)
    assert m["cls_loc_error"] == pytest.approx(0.5)
    assert m["cls_accuracy"] == pytest.approx(0.75)
    assert m["mean_iou"] == pytest.approx((1 + 0.5 + 400 / 820 + 1) / 4)
    assert m["cls_loc_accuracy/a"] == pytest.approx(0.5) and m["cls_loc_accuracy/b"] == -1.0
    top2 = ClsLocEvaluator(classes=CLASSES, top_k=2)
    top2.update(preds, targets)
    assert top2.compute()["cls_loc_accuracy"] == pytest.approx(0.75)


def test_cls_loc_no_prediction_is_an_error() -> None:
    evaluator = ClsLocEvaluator(classes=CLASSES)
    evaluator.update([_pred([], [], [])], [_target(0, [[0.0, 0, 5, 5]], [1])])
    m = evaluator.compute()
    assert m["cls_loc_error"] == 1.0 and m["mean_iou"] == 0.0


# --------------------------------------------------------------------------------- region AP
def _rect(box: list) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
    x1, y1, x2, y2 = (int(v) for v in box)
    mask[y1:y2, x1:x2] = 1
    return mask


def _random_rect_batch(seed: int) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    preds, targets = [], []
    for i in range(30):
        g = int(rng.integers(1, 4))
        xy = rng.integers(0, 25, size=(g, 2))
        gt = np.concatenate([xy, xy + rng.integers(3, 15, size=(g, 2))], axis=1)
        labels = rng.integers(1, 3, size=g)
        d = int(rng.integers(0, 6))
        src = rng.integers(0, g, size=d)
        dt = np.clip(gt[src] + rng.integers(-3, 4, size=(d, 4)), 0, SIZE)
        dt[:, 2:] = np.maximum(dt[:, 2:], dt[:, :2] + 1)
        dl = np.where(rng.random(d) < 0.85, labels[src], 3 - labels[src])
        scores = np.round(rng.random(d), 1).tolist()
        dmask = np.stack([_rect(b) for b in dt]) if d else np.zeros((0, SIZE, SIZE))
        preds.append(_pred(dt.tolist(), dl.tolist(), scores, dmask))
        targets.append(_target(i, gt.tolist(), labels.tolist(), np.stack([_rect(b) for b in gt])))
    return preds, targets


@pytest.mark.parametrize("use_07", [True, False])
def test_region_ap_of_rectangles_equals_box_ap(use_07: bool) -> None:
    """Filled integer rectangles: mask IoU == box IoU, so mAP^r must equal the devkit box AP."""
    preds, targets = _random_rect_batch(0)
    region = RegionAPEvaluator(classes=CLASSES, use_07_metric=use_07)
    region.update(preds, targets)
    m = region.compute()
    for threshold, key in ((0.5, "50"), (0.7, "70")):
        boxes = VOCEvaluator(classes=CLASSES, use_07_metric=use_07, iou_threshold=threshold)
        boxes.update(preds, targets)
        reference = boxes.compute()
        assert m[f"map_r_{key}"] == pytest.approx(reference[f"map_{key}"], abs=1e-12)
        assert 0.0 < m[f"map_r_{key}"] < 1.0
    assert m["map_r_70"] < m["map_r_50"]


def test_region_ap_uses_masks_not_boxes() -> None:
    """Same box, but the predicted mask covers the wrong half: box IoU 1, mask IoU 0."""
    box = [0.0, 0, 20, 20]
    gt_mask = np.zeros((1, SIZE, SIZE), dtype=np.uint8)
    gt_mask[0, 0:20, 0:10] = 1
    pred_mask = np.zeros((1, SIZE, SIZE), dtype=np.uint8)
    pred_mask[0, 0:20, 10:20] = 1
    region = RegionAPEvaluator(classes=CLASSES)
    region.update([_pred([box], [1], [0.9], pred_mask)], [_target(0, [box], [1], gt_mask)])
    m = region.compute()
    assert m["map_r_50"] == 0.0 and m["ap_r_50/b"] == -1.0
    region.reset()
    region.update([_pred([box], [1], [0.9], gt_mask)], [_target(0, [box], [1], gt_mask)])
    assert region.compute()["map_r_70"] == pytest.approx(1.0)
