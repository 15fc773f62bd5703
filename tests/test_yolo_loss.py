"""Each term of YOLO v1's sum-squared loss (eq. 3) against a tiny case worked out by hand.

The case: S = 2, B = 2, C = 2, a 100 x 100 input (cells of 50 px), one ground-truth box
``[12.5, 12.5, 37.5, 37.5]`` of class 1 in cell (row 0, col 0): ``x = y = 0.5``,
``sqrt_w = sqrt_h = sqrt(25 / 100) = 0.5``.

Predictions in that cell:
- box 0: ``x=0.6, y=0.5, sqrt_w=0.5, sqrt_h=0.6, conf=0.7`` -> pixels ``[17.5, 7, 42.5, 43]``,
  intersection 20 * 25 = 500, union 900 + 625 - 500 = 1025, IoU = 500 / 1025;
- box 1: ``x=0.3, y=0.6, sqrt_w=0.4, sqrt_h=0.6, conf=0.2`` -> pixels ``[7, 12, 23, 48]``,
  intersection 10.5 * 25 = 262.5, union 576 + 625 - 262.5 = 938.5, IoU = 0.2797;
  so box 0 is responsible.
Cell (0, 1) has no object, confidences 0.4 and -0.2; class probabilities of cell (0, 0) are
``[0.7, 0.1]``; every non-object cell has class probabilities 0.9 (they must not count).
"""

import pytest
import torch

from detection.yolo.loss import (
    class_loss,
    coord_loss,
    noobj_confidence_loss,
    object_confidence_loss,
    responsible_predictors,
    size_loss,
    yolo_loss,
)
from detection.yolo.targets import CONF, GridLayout, encode_batch

LAYOUT = GridLayout(grid_size=2, boxes_per_cell=2, num_classes=2)
SIZE = (100, 100)
IOU_BOX0 = 500.0 / 1025.0
IOU_BOX1 = 262.5 / 938.5


def _case() -> tuple[torch.Tensor, torch.Tensor]:
    target = encode_batch(
        [{"boxes": torch.tensor([[12.5, 12.5, 37.5, 37.5]]), "labels": torch.tensor([1])}], image_size=SIZE, layout=LAYOUT
    )
    pred = torch.zeros(1, 2, 2, LAYOUT.depth)
    pred[0, 0, 0, :10] = torch.tensor([0.6, 0.5, 0.5, 0.6, 0.7, 0.3, 0.6, 0.4, 0.6, 0.2])
    pred[0, 0, 1, CONF] = 0.4
    pred[0, 0, 1, 5 + CONF] = -0.2
    pred[..., LAYOUT.class_slice] = 0.9
    pred[0, 0, 0, LAYOUT.class_slice] = torch.tensor([0.7, 0.1])
    return pred, target


def test_responsible_predictor_has_highest_iou() -> None:
    pred, target = _case()
    responsible, iou = responsible_predictors(pred, target, image_size=SIZE, layout=LAYOUT)
    torch.testing.assert_close(iou[0, 0, 0], torch.tensor([IOU_BOX0, IOU_BOX1]))
    assert responsible.sum() == 1 and responsible[0, 0, 0, 0]
    # swap the two predictors: the responsibility follows the better box
    swapped = pred.clone()
    swapped[0, 0, 0, :5], swapped[0, 0, 0, 5:10] = pred[0, 0, 0, 5:10], pred[0, 0, 0, :5]
    responsible, _ = responsible_predictors(swapped, target, image_size=SIZE, layout=LAYOUT)
    assert responsible.sum() == 1 and responsible[0, 0, 0, 1]


def test_each_term_by_hand() -> None:
    pred, target = _case()
    losses = yolo_loss(pred, target, image_size=SIZE, layout=LAYOUT)
    expected = {
        "loss_coord": 5.0 * (0.6 - 0.5) ** 2,  # box 0: x off by 0.1, y exact
        "loss_size": 5.0 * (0.6 - 0.5) ** 2,  # sqrt_h off by 0.1
        "loss_obj": (0.7 - IOU_BOX0) ** 2,  # confidence target = IoU(pred, truth)
        "loss_noobj": 0.5 * (0.2**2 + 0.4**2 + 0.2**2),  # box 1 of the object cell + cell (0, 1)
        "loss_class": (1.0 - 0.7) ** 2 + (0.0 - 0.1) ** 2,  # object cell only
    }
    assert set(losses) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(losses[name], torch.tensor(value), msg=name)


def test_rescore_off_uses_confidence_target_one() -> None:
    pred, target = _case()
    losses = yolo_loss(pred, target, image_size=SIZE, layout=LAYOUT, rescore=False)
    torch.testing.assert_close(losses["loss_obj"], torch.tensor((0.7 - 1.0) ** 2))


def test_lambdas_scale_their_terms_only() -> None:
    pred, target = _case()
    base = yolo_loss(pred, target, image_size=SIZE, layout=LAYOUT)
    scaled = yolo_loss(pred, target, image_size=SIZE, layout=LAYOUT, lambda_coord=1.0, lambda_noobj=1.0)
    torch.testing.assert_close(scaled["loss_coord"], base["loss_coord"] / 5.0)
    torch.testing.assert_close(scaled["loss_size"], base["loss_size"] / 5.0)
    torch.testing.assert_close(scaled["loss_noobj"], base["loss_noobj"] / 0.5)
    torch.testing.assert_close(scaled["loss_obj"], base["loss_obj"])
    torch.testing.assert_close(scaled["loss_class"], base["loss_class"])


def test_free_functions_match_the_composition() -> None:
    pred, target = _case()
    responsible, iou = responsible_predictors(pred, target, image_size=SIZE, layout=LAYOUT)
    p, t = LAYOUT.boxes(pred), LAYOUT.boxes(target)
    obj_cells = t[..., 0, CONF] > 0
    losses = yolo_loss(pred, target, image_size=SIZE, layout=LAYOUT)
    torch.testing.assert_close(coord_loss(p, t, responsible), losses["loss_coord"])
    torch.testing.assert_close(size_loss(p, t, responsible), losses["loss_size"])
    torch.testing.assert_close(object_confidence_loss(p, iou, responsible), losses["loss_obj"])
    torch.testing.assert_close(noobj_confidence_loss(p, responsible), losses["loss_noobj"])
    torch.testing.assert_close(
        class_loss(LAYOUT.class_probs(pred), LAYOUT.class_probs(target), obj_cells), losses["loss_class"]
    )


def test_batch_mean_and_empty_image() -> None:
    pred, target = _case()
    empty_target = torch.zeros_like(target)
    both = yolo_loss(torch.cat([pred, pred]), torch.cat([target, empty_target]), image_size=SIZE, layout=LAYOUT)
    one = yolo_loss(pred, target, image_size=SIZE, layout=LAYOUT)
    empty = yolo_loss(pred, empty_target, image_size=SIZE, layout=LAYOUT)
    for name in ("loss_coord", "loss_size", "loss_obj", "loss_class"):
        assert empty[name] == 0, name  # no object: no box, object or class loss
        torch.testing.assert_close(both[name], one[name] / 2, msg=name)
    # without an object every predictor is "noobj": 0.7, 0.2, 0.4, -0.2
    torch.testing.assert_close(empty["loss_noobj"], torch.tensor(0.5 * (0.49 + 0.04 + 0.16 + 0.04)))
    torch.testing.assert_close(both["loss_noobj"], (one["loss_noobj"] + empty["loss_noobj"]) / 2)


def test_gradients_reach_only_the_right_outputs() -> None:
    pred, target = _case()
    pred.requires_grad_(True)
    losses = yolo_loss(pred, target, image_size=SIZE, layout=LAYOUT)
    (losses["loss_coord"] + losses["loss_size"]).backward()
    grad = LAYOUT.boxes(pred.grad)  # [1, S, S, B, 5]
    assert grad[0, 0, 0, 0, :4].abs().sum() > 0  # the responsible box's coordinates
    grad_rest = grad.clone()
    grad_rest[0, 0, 0, 0, :4] = 0
    assert grad_rest.abs().sum() == 0  # nothing else (the IoU used for matching is detached)


def test_shape_mismatch_is_reported() -> None:
    pred, target = _case()
    with pytest.raises(ValueError, match="expected a grid"):
        yolo_loss(pred[..., :-1], target, image_size=SIZE, layout=LAYOUT)
