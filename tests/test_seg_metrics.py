"""Confusion-matrix segmentation metrics: hand-worked numbers, void pixels, dataset level."""

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from segmentation.metrics import ConfusionMatrix, confusion_metrics


def _update(cm: ConfusionMatrix, pred: torch.Tensor, target: torch.Tensor, first_id: int = 0) -> None:
    """``[N, H, W]`` maps -> the evaluator contract: one dict per image, ids from ``first_id``."""
    ids = range(first_id, first_id + len(target))
    cm.update([{"semantic": p} for p in pred], [{"semantic": t, "image_id": i} for t, i in zip(target, ids)])


def test_hand_worked_four_numbers() -> None:
    # target row-major 2 x 4, one void pixel; 3 classes
    target = torch.tensor([[[0, 0, 1, 1], [2, 2, 2, 255]]])
    pred = torch.tensor([[[0, 1, 1, 1], [2, 2, 0, 1]]])
    cm = ConfusionMatrix(classes=["x", "y"])
    _update(cm, pred, target)
    np.testing.assert_array_equal(cm.matrix(), [[1, 1, 0], [0, 2, 0], [1, 0, 2]])
    m = cm.compute()
    assert m["pixel_accuracy"] == pytest.approx(5 / 7)
    assert m["mean_accuracy"] == pytest.approx((1 / 2 + 1 + 2 / 3) / 3)
    ious = [1 / 3, 2 / 3, 2 / 3]  # bg: 1 / (2 + 2 - 1); x: 2 / (2 + 3 - 2); y: 2 / (3 + 2 - 2)
    assert m["mean_iou"] == pytest.approx(np.mean(ious))
    assert m["fw_iou"] == pytest.approx((2 * ious[0] + 2 * ious[1] + 3 * ious[2]) / 7)
    assert m["iou/x"] == pytest.approx(2 / 3) and m["iou/background"] == pytest.approx(1 / 3)


def test_dataset_level_not_per_image_mean() -> None:
    cm = ConfusionMatrix(classes=["x"])
    _update(cm, torch.ones(1, 1, 1, dtype=torch.long), torch.ones(1, 1, 1, dtype=torch.long))  # 1 px right
    _update(cm, torch.zeros(1, 3, 3, dtype=torch.long), torch.ones(1, 3, 3, dtype=torch.long), first_id=1)  # 9 px wrong
    assert cm.compute()["pixel_accuracy"] == pytest.approx(1 / 10)  # per-image mean would be 0.5


def test_matches_torchmetrics_confusion_matrix() -> None:
    rng = torch.Generator().manual_seed(0)
    target = torch.randint(0, 5, (4, 16, 16), generator=rng)
    target[torch.rand(4, 16, 16, generator=rng) < 0.1] = 255
    pred = torch.randint(0, 5, (4, 16, 16), generator=rng)
    cm = ConfusionMatrix(classes=["a", "b", "c", "d"])
    _update(cm, pred[:2], target[:2])
    _update(cm, pred[2:], target[2:], first_id=2)
    reference = MulticlassConfusionMatrix(num_classes=5, ignore_index=255)(pred, target).numpy()
    np.testing.assert_array_equal(cm.matrix(), reference)


def test_absent_class_is_left_out_and_predicted_absent_class_counts_zero() -> None:
    matrix = np.array([[5, 0, 1], [0, 0, 0], [0, 0, 4]])  # class 1 absent everywhere
    m = confusion_metrics(matrix, ["0", "1", "2"])
    assert m["iou/1"] == -1.0
    assert m["mean_iou"] == pytest.approx((5 / 6 + 4 / 5) / 2)
    matrix = np.array([[5, 1, 0], [0, 0, 0], [0, 0, 4]])  # class 1 predicted, never in targets
    assert confusion_metrics(matrix, ["0", "1", "2"])["iou/1"] == 0.0


def test_bad_labels_and_duplicate_ids() -> None:
    cm = ConfusionMatrix(classes=["x", "y"])
    with pytest.raises(ValueError, match="target labels"):
        _update(cm, torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 7))
    _update(cm, torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long), first_id=4)
    _update(cm, torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long), first_id=4)
    with pytest.raises(ValueError, match="image_id 4"):
        cm.compute()
