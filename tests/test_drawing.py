"""``draw_prediction`` draws only the detections at or above its display threshold."""

import torch

from detection.drawing import DRAW_SCORE_THRESHOLD, draw_prediction

CLASSES = ["cat", "dog"]


def _prediction() -> dict[str, torch.Tensor]:
    """Three boxes in separate corners of a 40 x 60 image, scored 0.9, 0.3 and 0.05, with masks."""
    boxes = torch.tensor([[2.0, 2.0, 18.0, 18.0], [40.0, 2.0, 58.0, 18.0], [2.0, 22.0, 18.0, 38.0]])
    masks = torch.zeros(3, 40, 60)
    for mask, (x1, y1, x2, y2) in zip(masks, boxes.int().tolist()):
        mask[y1 + 4 : y2 - 4, x1 + 4 : x2 - 4] = 1.0
    return {"boxes": boxes, "labels": torch.tensor([1, 2, 1]), "scores": torch.tensor([0.9, 0.3, 0.05]), "masks": masks}


def _drawn(canvas: torch.Tensor, box: list[float]) -> bool:
    """Whether anything was drawn inside ``box`` (the blank image is black)."""
    x1, y1, x2, y2 = (int(v) for v in box)
    return bool(canvas[:, y1:y2, x1:x2].any())


def test_default_threshold_draws_only_confident_boxes_and_masks() -> None:
    image, pred = torch.zeros(3, 40, 60), _prediction()
    canvas = draw_prediction(image, pred, CLASSES)
    assert DRAW_SCORE_THRESHOLD == 0.5
    assert canvas.dtype == torch.uint8 and canvas.shape == (3, 40, 60)
    assert [_drawn(canvas, box) for box in pred["boxes"].tolist()] == [True, False, False]
    assert len(pred["boxes"]) == 3 and len(pred["masks"]) == 3  # the caller's prediction is untouched


def test_threshold_is_a_parameter() -> None:
    image, pred = torch.zeros(3, 40, 60), _prediction()
    some = draw_prediction(image, pred, CLASSES, score_threshold=0.3)  # at the threshold counts
    assert [_drawn(some, box) for box in pred["boxes"].tolist()] == [True, True, False]
    every = draw_prediction(image, pred, CLASSES, score_threshold=0.0)
    assert [_drawn(every, box) for box in pred["boxes"].tolist()] == [True, True, True]
    none = draw_prediction(image, pred, CLASSES, score_threshold=0.95)
    assert not none.any()


def test_semantic_maps_and_scoreless_predictions_are_drawn_whole() -> None:
    image = torch.zeros(3, 40, 60)
    semantic = torch.zeros(40, 60, dtype=torch.int64)
    semantic[10:20, 10:20] = 1
    canvas = draw_prediction(image, {"semantic": semantic}, CLASSES, score_threshold=1.0)
    assert canvas[:, 10:20, 10:20].any() and not canvas[:, 30:, 30:].any()
    boxes = {"boxes": torch.tensor([[2.0, 2.0, 18.0, 18.0]]), "labels": torch.tensor([1])}  # e.g. ground truth
    assert _drawn(draw_prediction(image, boxes, CLASSES, score_threshold=1.0), [2, 2, 18, 18])
