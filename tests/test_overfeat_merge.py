"""OverFeat's greedy merge: the incremental loop against a straightforward reference, and the
bound on the boxes that reach it."""

import pytest
import torch
from torch import Tensor
from torchvision.ops import box_iou

import detection.overfeat.model as overfeat_model
from detection.backbones import SmallCNN
from detection.overfeat import OverFeat, greedy_merge, match_scores
from detection.overfeat.merge import match_row


def reference_match_scores(boxes: Tensor) -> Tensor:
    """The module docstring's formula, pair by pair over ``[R, R]`` (centre differences rather
    than the first version's ``torch.cdist``, whose matrix-product path is off by ~0.1 px)."""
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2  # [R, 2]
    diagonals = (boxes[:, 2:] - boxes[:, :2]).norm(dim=1)  # [R]
    distance = (centres[:, None, :] - centres[None, :, :]).norm(dim=-1)  # [R, R]
    scale = ((diagonals[:, None] + diagonals[None, :]) / 2).clamp(min=1e-6)
    return distance / scale + (1 - box_iou(boxes, boxes).nan_to_num(0.0))


def reference_greedy_merge(boxes: Tensor, scores: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """The merge as first written: recompute every pair's match score after each merge, merge the
    first best pair (row-major) while it is ``<= threshold``."""
    boxes, scores = boxes.float().clone(), scores.float().clone()
    alive = torch.ones(len(boxes), dtype=torch.bool)
    while alive.sum() > 1:
        match = reference_match_scores(boxes)  # [R, R]
        match[~alive, :] = float("inf")
        match[:, ~alive] = float("inf")
        match.fill_diagonal_(float("inf"))
        i, j = divmod(int(torch.argmin(match)), len(boxes))
        if not match[i, j] <= threshold:
            break
        total = scores[i] + scores[j]
        weights = torch.stack([scores[i], scores[j]]) / total.clamp(min=1e-12)
        if total <= 0:
            weights = torch.full_like(weights, 0.5)
        boxes[i] = weights[0] * boxes[i] + weights[1] * boxes[j]
        scores[i] = total
        alive[j] = False
    boxes, scores = boxes[alive], scores[alive]
    order = torch.argsort(scores, descending=True)
    return boxes[order], scores[order]


def _clustered_boxes(count: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``count`` boxes around a few objects (jittered centres and sizes), some exact duplicates."""
    objects = torch.rand(max(count // 20, 1), 4, generator=generator) * torch.tensor([200.0, 200.0, 60.0, 60.0])
    pick = torch.randint(len(objects), (count,), generator=generator)
    centre = objects[pick, :2] + torch.randn(count, 2, generator=generator) * 8  # [R, 2]
    size = (objects[pick, 2:] + 10) * (1 + 0.2 * torch.randn(count, 2, generator=generator)).clamp(min=0.3)  # [R, 2]
    boxes = torch.cat([centre - size / 2, centre + size / 2], dim=1)  # [R, 4]
    scores = torch.rand(count, generator=generator)
    duplicates = torch.randint(count, (count // 10,), generator=generator)
    boxes[: len(duplicates)], scores[: len(duplicates)] = boxes[duplicates], scores[duplicates]
    return boxes, scores


@pytest.mark.parametrize("count", [2, 3, 17, 120])
@pytest.mark.parametrize("threshold", [0.2, 0.6, 1.5])
def test_merge_equals_the_reference_loop_on_random_boxes(count, threshold):
    generator = torch.Generator().manual_seed(count)
    boxes, scores = _clustered_boxes(count, generator)
    merged, merged_scores = greedy_merge(boxes, scores, threshold=threshold)
    expected, expected_scores = reference_greedy_merge(boxes, scores, threshold)
    assert merged.shape == expected.shape
    torch.testing.assert_close(merged, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(merged_scores, expected_scores, rtol=0, atol=1e-5)


def test_match_row_is_a_row_of_match_scores_and_degenerate_boxes_do_not_give_nan():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [3.0, 3.0, 3.0, 3.0], [3.0, 3.0, 3.0, 3.0]])
    match = match_scores(boxes)
    torch.testing.assert_close(match, reference_match_scores(boxes))
    for i in range(len(boxes)):
        torch.testing.assert_close(match_row(boxes[i], boxes), match[i])
    assert torch.isfinite(match).all()
    # Two zero-area boxes at one point: IoU 0, so they match at distance 0 + 1 and do not stop the merge of the others.
    merged, _ = greedy_merge(boxes[[0, 2, 3, 0]], torch.ones(4), threshold=0.5)
    assert len(merged) == 3


def test_untrained_detection_model_bounds_the_boxes_reaching_the_merge(monkeypatch):
    """An untrained model scores every window about 1 / (C + 1): only the caps bound the merge."""
    sizes: list[int] = []

    def recording_merge(boxes: Tensor, scores: Tensor, **kwargs) -> tuple[Tensor, Tensor]:
        sizes.append(len(boxes))
        return greedy_merge(boxes, scores, **kwargs)

    monkeypatch.setattr(overfeat_model, "greedy_merge", recording_merge)
    cap = 40
    model = OverFeat(
        backbone=SmallCNN(width=4), num_classes=3, mode="detection", window_size=64, hidden=16,
        test_scales=[128, 160], test_flip=True, top_k_classes=3, pre_merge_top_n=30, max_merge_candidates=cap,
    ).eval()
    with torch.no_grad():
        (detections,) = model([torch.rand(3, 150, 140)])
    assert sizes and max(sizes) <= cap  # 4 views x 30 would be 120
    assert max(sizes) == cap  # every untrained window passes the 0.05 floor
    assert len(detections["boxes"]) > 0
