"""VOC AP: hand-worked PR curves, the devkit's edge cases, and the loop transcription as oracle."""

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from datasets.boxes import xyxy_to_voc
from detection.evaluation.gather import deduplicate
from detection.evaluation.records import ImageRecord
from detection.evaluation.voc_ap import average_precision, voc_box_iou, voc_pairwise_iou
from detection.evaluation.voc_devkit_loop import devkit_ap
from detection.evaluation.voc_evaluator import VOCEvaluator, evaluate_voc_records

CLASSES = ["a", "b", "c"]


def _box(x: float, y: float, size: float = 10.0) -> list[float]:
    return [x, y, x + size, y + size]


def _target(image_id: int, boxes: list, labels: list, difficult: list | None = None) -> dict:
    return {
        "image_id": image_id,
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "difficult": torch.tensor(difficult if difficult is not None else [False] * len(labels)),
        "iscrowd": torch.zeros(len(labels), dtype=torch.bool),
    }


def _pred(boxes: list, labels: list, scores: list) -> dict:
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "scores": torch.tensor(scores, dtype=torch.float32),
    }


def _evaluate(preds: list, targets: list, *, use_07: bool, classes: list = CLASSES) -> dict:
    evaluator = VOCEvaluator(classes=classes, use_07_metric=use_07)
    evaluator.update(preds, targets)
    return evaluator.compute()


# ------------------------------------------------------------------------- hand-worked curve
# 4 objects of class "a"; ranked detections TP, FP, TP, FP, TP.
#   recall    .25  .25  .50  .50  .75
#   precision 1    1/2  2/3  1/2  3/5
# 11-point: t=0,.1,.2 -> 1; t=.3,.4,.5 -> 2/3; t=.6,.7 -> 3/5; t=.8,.9,1 -> 0   => 6.2 / 11
# area: envelope 1 on (0,.25], 2/3 on (.25,.5], 3/5 on (.5,.75], 0 after       => 17 / 30
HAND_AP07 = 6.2 / 11
HAND_AP_AREA = 17 / 30


def _hand_case() -> tuple[list, list]:
    gts = [_box(0, 0), _box(50, 0), _box(0, 50), _box(50, 50)]
    far = _box(200, 200)
    preds = [_pred([gts[0], far, gts[1], far, gts[2]], [1] * 5, [0.9, 0.8, 0.7, 0.6, 0.5])]
    return preds, [_target(0, gts, [1, 1, 1, 1])]


def test_hand_worked_curve_both_metrics() -> None:
    preds, targets = _hand_case()
    m07 = _evaluate(preds, targets, use_07=True)
    m12 = _evaluate(preds, targets, use_07=False)
    assert m07["ap_50/a"] == pytest.approx(HAND_AP07, abs=1e-12)
    assert m12["ap_50/a"] == pytest.approx(HAND_AP_AREA, abs=1e-12)
    # classes b and c have no gt: undefined, out of the mean
    assert m07["ap_50/b"] == -1.0 and m07["ap_50/c"] == -1.0
    assert m07["map_50"] == pytest.approx(HAND_AP07, abs=1e-12)


def test_hand_worked_curve_arrays() -> None:
    preds, targets = _hand_case()
    evaluator = VOCEvaluator(classes=CLASSES)
    evaluator.update(preds, targets)
    curve = evaluator.pr_curves()["a"]
    np.testing.assert_allclose(curve.recall, [0.25, 0.25, 0.5, 0.5, 0.75])
    np.testing.assert_allclose(curve.precision, [1, 1 / 2, 2 / 3, 1 / 2, 3 / 5])
    assert curve.num_gt == 4 and curve.num_det == 5


def test_average_precision_direct() -> None:
    recall = np.array([0.25, 0.25, 0.5, 0.5, 0.75])
    precision = np.array([1, 1 / 2, 2 / 3, 1 / 2, 3 / 5])
    assert average_precision(recall, precision, use_07_metric=True) == pytest.approx(HAND_AP07, abs=1e-12)
    assert average_precision(recall, precision, use_07_metric=False) == pytest.approx(HAND_AP_AREA, abs=1e-12)


def test_recall_exactly_point_three_misses_the_devkit_threshold() -> None:
    """The devkit's 11 thresholds are the doubles k * 0.1; 3/10 < 0.30000000000000004."""
    recall, precision = np.array([0.3]), np.array([1.0])
    assert average_precision(recall, precision, use_07_metric=True) == pytest.approx(3 / 11, abs=1e-12)


# ------------------------------------------------------------------------------ IoU convention
def test_devkit_iou_on_inclusive_pixels() -> None:
    # VOC [1, 1, 10, 10] is 10 x 10 pixels; [6, 1, 15, 10] shares 5 x 10 of them: 50 / 150.
    iou = voc_box_iou(np.array([[1, 1, 10, 10]]), np.array([[6, 1, 15, 10]]))
    assert iou[0] == pytest.approx(1 / 3)
    # Touching inclusive boxes overlap in one column: [1..10] and [10..19] -> 10 / 190.
    assert voc_box_iou(np.array([[1, 1, 10, 10]]), np.array([[10, 1, 19, 10]]))[0] == pytest.approx(10 / 190)
    assert voc_box_iou(np.array([[1, 1, 10, 10]]), np.array([[11, 1, 20, 10]]))[0] == 0.0


def test_devkit_iou_of_converted_boxes_equals_continuous_iou() -> None:
    rng = np.random.default_rng(0)
    xy = rng.integers(0, 60, size=(30, 2))
    boxes = np.concatenate([xy, xy + rng.integers(1, 40, size=(30, 2))], axis=1).astype(np.float32)
    ours = voc_pairwise_iou(boxes[:15], boxes[15:])
    reference = box_iou(torch.from_numpy(boxes[:15]), torch.from_numpy(boxes[15:])).double().numpy()
    np.testing.assert_allclose(ours, reference, atol=1e-6)
    # and the conversion really is the +1 boundary (a naive devkit call on xyxy differs)
    naive = voc_box_iou(boxes[:1], boxes[15:16])
    assert not np.isclose(naive[0], reference[0, 0])


def test_iou_exactly_at_threshold_is_a_true_positive() -> None:
    gt = [0, 0, 10, 10]
    det = [0, 0, 20, 10]  # IoU = 100 / 200 = 0.5
    m = _evaluate([_pred([det], [1], [0.9])], [_target(0, [gt], [1])], use_07=False)
    assert m["ap_50/a"] == 1.0


# ------------------------------------------------------------------------------------ edge cases
def test_no_detections_at_all() -> None:
    targets = [_target(0, [_box(0, 0), _box(30, 30)], [1, 2])]
    m = _evaluate([_pred([], [], [])], targets, use_07=True)
    assert m["ap_50/a"] == 0.0 and m["ap_50/b"] == 0.0 and m["ap_50/c"] == -1.0
    assert m["map_50"] == 0.0


def test_class_with_no_ground_truth_is_left_out_of_the_mean() -> None:
    targets = [_target(0, [_box(0, 0)], [1])]
    preds = [_pred([_box(0, 0), _box(40, 40)], [1, 2], [0.9, 0.8])]  # b predicted, never present
    m = _evaluate(preds, targets, use_07=False)
    assert m["ap_50/a"] == 1.0 and m["ap_50/b"] == -1.0
    assert m["map_50"] == 1.0


def test_class_whose_boxes_are_all_difficult() -> None:
    targets = [_target(0, [_box(0, 0), _box(40, 40)], [1, 2], difficult=[False, True])]
    preds = [_pred([_box(40, 40), _box(0, 0)], [2, 1], [0.95, 0.9])]
    m = _evaluate(preds, targets, use_07=True)
    assert m["ap_50/b"] == -1.0
    assert m["map_50"] == pytest.approx(1.0)  # 11 x (1 / 11), summed as the devkit does


def test_detection_of_a_difficult_object_is_neither_tp_nor_fp() -> None:
    targets = [_target(0, [_box(0, 0), _box(40, 40)], [1, 1], difficult=[False, True])]
    preds = [_pred([_box(40, 40), _box(0, 0)], [1, 1], [0.95, 0.9])]  # best-scored one hits the difficult gt
    evaluator = VOCEvaluator(classes=CLASSES)
    evaluator.update(preds, targets)
    curve = evaluator.pr_curves()["a"]
    assert curve.num_gt == 1
    np.testing.assert_allclose(curve.precision, [0.0, 1.0])  # the ignored one leaves tp = fp = 0
    np.testing.assert_allclose(curve.recall, [0.0, 1.0])
    assert curve.ap == 1.0


def test_duplicate_detections_of_one_object() -> None:
    targets = [_target(0, [_box(0, 0)], [1])]
    preds = [_pred([_box(0, 0), _box(1, 0)], [1, 1], [0.9, 0.8])]
    evaluator = VOCEvaluator(classes=CLASSES)
    evaluator.update(preds, targets)
    curve = evaluator.pr_curves()["a"]
    np.testing.assert_allclose(curve.precision, [1.0, 0.5])
    np.testing.assert_allclose(curve.recall, [1.0, 1.0])


def test_duplicate_goes_to_its_best_gt_even_if_already_matched() -> None:
    """The devkit matches to the highest-IoU gt whether or not it is taken (COCO would not)."""
    gt_left, gt_right = [0, 0, 10, 10], [6, 0, 16, 10]
    det_1, det_2 = [0, 0, 10, 10], [1, 0, 11, 10]  # det_2: IoU .82 with left, .67 with right
    targets = [_target(0, [gt_left, gt_right], [1, 1])]
    preds = [_pred([det_1, det_2], [1, 1], [0.9, 0.8])]
    m = _evaluate(preds, targets, use_07=False)
    assert m["ap_50/a"] == pytest.approx(0.5)  # recall stays 1/2: det_2 is a duplicate (FP)


def test_ties_in_score_are_broken_by_image_id_then_model_order() -> None:
    gt = _box(0, 0)
    targets = [_target(7, [gt], [1]), _target(3, [], [])]
    preds = [_pred([gt], [1], [0.5]), _pred([_box(50, 50)], [1], [0.5])]  # image 7 TP, image 3 FP
    m = _evaluate(preds, targets, use_07=False)
    # image 3's FP comes first: precision [0, 1/2] -> AP 0.5 (it would be 1.0 the other way)
    assert m["ap_50/a"] == pytest.approx(0.5)
    m_swapped = _evaluate(preds[::-1], targets[::-1], use_07=False)
    assert m_swapped == m


def test_within_an_image_ties_keep_model_order() -> None:
    gt = _box(0, 0)
    tp_first = _evaluate([_pred([gt, _box(50, 50)], [1, 1], [0.5, 0.5])], [_target(0, [gt], [1])], use_07=False)
    fp_first = _evaluate([_pred([_box(50, 50), gt], [1, 1], [0.5, 0.5])], [_target(0, [gt], [1])], use_07=False)
    assert tp_first["ap_50/a"] == 1.0 and fp_first["ap_50/a"] == pytest.approx(0.5)


def test_labels_out_of_range_are_rejected() -> None:
    evaluator = VOCEvaluator(classes=CLASSES)
    with pytest.raises(ValueError, match="labels must be in 1..3"):
        evaluator.update([_pred([_box(0, 0)], [4], [0.5])], [_target(0, [], [])])


def test_repeated_image_id_without_ddp_is_an_error() -> None:
    evaluator = VOCEvaluator(classes=CLASSES)
    preds, targets = _hand_case()
    evaluator.update(preds, targets)
    evaluator.update(preds, targets)
    with pytest.raises(ValueError, match="image_id 0"):
        evaluator.compute()
    evaluator.reset()
    evaluator.update(preds, targets)
    assert evaluator.compute()["ap_50/a"] == pytest.approx(HAND_AP_AREA)


def test_deduplicate_keeps_first_and_sorts() -> None:
    items = [(5, "r0"), (2, "r0"), (5, "r1-pad"), (9, "r1")]
    kept = deduplicate(items, key=lambda item: item[0], allow_duplicates=True)
    assert kept == [(2, "r0"), (5, "r0"), (9, "r1")]
    with pytest.raises(ValueError):
        deduplicate(items, key=lambda item: item[0], allow_duplicates=False)


# ------------------------------------------------------------------ randomized vs loop devkit
def random_records(seed: int, *, num_images: int, num_classes: int) -> list[ImageRecord]:
    rng = np.random.default_rng(seed)
    records = []
    for image_id in range(num_images):
        g = int(rng.integers(0, 6))
        xy = rng.integers(0, 60, size=(g, 2))
        gt_boxes = np.concatenate([xy, xy + rng.integers(2, 30, size=(g, 2))], axis=1).astype(np.float32)
        gt_labels = rng.integers(1, num_classes + 1, size=g)
        d = int(rng.integers(0, 10))
        if g:
            src = rng.integers(0, g, size=d)
            dt_boxes = gt_boxes[src] + rng.integers(-5, 6, size=(d, 4))
            dt_labels = np.where(rng.random(d) < 0.8, gt_labels[src], rng.integers(1, num_classes + 1, size=d))
        else:
            xy = rng.integers(0, 60, size=(d, 2))
            dt_boxes = np.concatenate([xy, xy + rng.integers(2, 30, size=(d, 2))], axis=1)
            dt_labels = rng.integers(1, num_classes + 1, size=d)
        records.append(
            ImageRecord(
                image_id=image_id,
                gt_boxes=gt_boxes,
                gt_labels=gt_labels.astype(np.int64),
                gt_difficult=rng.random(g) < 0.2,
                gt_iscrowd=np.zeros(g, dtype=bool),
                dt_boxes=np.asarray(dt_boxes, dtype=np.float32),
                dt_labels=dt_labels.astype(np.int64),
                dt_scores=np.round(rng.random(d), 1),  # coarse scores: many ties
            )
        )
    return records


def loop_reference(records: list[ImageRecord], label: int, *, use_07: bool, threshold: float) -> tuple:
    gt_boxes = [xyxy_to_voc(r.gt_boxes[r.gt_labels == label]) for r in records]
    gt_difficult = [r.gt_difficult[r.gt_labels == label] for r in records]
    det_image = np.concatenate([np.full(int(np.sum(r.dt_labels == label)), i) for i, r in enumerate(records)])
    det_boxes = np.concatenate([xyxy_to_voc(r.dt_boxes[r.dt_labels == label]) for r in records])
    det_scores = np.concatenate([r.dt_scores[r.dt_labels == label] for r in records])
    return devkit_ap(gt_boxes, gt_difficult, det_image, det_boxes, det_scores, min_overlap=threshold, use_07_metric=use_07)


@pytest.mark.parametrize("use_07", [True, False])
@pytest.mark.parametrize("threshold", [0.5, 0.7])
def test_vectorized_equals_loop_devkit(use_07: bool, threshold: float) -> None:
    records = random_records(seed=int(threshold * 10) + use_07, num_images=150, num_classes=3)
    curves = evaluate_voc_records(records, num_classes=3, iou_threshold=threshold, use_07_metric=use_07)
    for label in (1, 2, 3):
        ap, recall, precision = loop_reference(records, label, use_07=use_07, threshold=threshold)
        curve = curves[label - 1]
        assert curve.ap == pytest.approx(ap, rel=1e-12, abs=1e-15)
        np.testing.assert_array_equal(curve.recall, recall)
        np.testing.assert_array_equal(curve.precision, precision)
        assert 0.0 < curve.ap < 1.0  # the data is not degenerate
