"""Greedy box merging (OverFeat, paper sec. 4.3), for the boxes of one class.

Shape letters: ``R`` input boxes, ``M`` merged boxes. Boxes are xyxy pixels.

The paper merges, repeatedly, the pair of boxes with the best ``match_score`` ("the sum of the
distance between centres of the two bounding boxes and the intersection area of the boxes")
into their average, until the best score passes a threshold, and scores a merged box with the
sum of its members' confidences. It gives no normalisation; ours, lower is a better match::

    match_score(a, b) = ||centre(a) - centre(b)||_2 / ((diag(a) + diag(b)) / 2)  +  (1 - IoU(a, b))

Both terms are scale-free: 0 for identical boxes; two equal boxes shifted by 20 % of their
side score about 0.14 + 0.33 = 0.47, by 50 % about 0.35 + 0.67 = 1.02; disjoint boxes score
above 1. Pairs merge while the best score is ``<= threshold`` (``MERGE_THRESHOLD`` by default).

A merged box is the **score-weighted** average of its members' boxes (the paper says
"average"; weighting lets confident boxes count more, and merging two clusters stays the
weighted average of all their members); its score is the sum of its members' scores.
IoU comes from ``torchvision.ops.box_iou``.
"""

import torch
from torch import Tensor
from torchvision.ops import box_iou

MERGE_THRESHOLD = 0.6  # match_score above which no pair merges (not given by the paper)


def match_scores(boxes: Tensor) -> Tensor:
    """``boxes [R, 4] -> Tensor[R, R]``: the pairwise match score of the module docstring."""
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2  # [R, 2]
    diagonals = (boxes[:, 2:] - boxes[:, :2]).norm(dim=1)  # [R]
    distance = torch.cdist(centres, centres)  # [R, R]
    scale = ((diagonals[:, None] + diagonals[None, :]) / 2).clamp(min=1e-6)
    return distance / scale + (1 - box_iou(boxes, boxes))


def greedy_merge(boxes: Tensor, scores: Tensor, *, threshold: float = MERGE_THRESHOLD) -> tuple[Tensor, Tensor]:
    """Merge ``boxes [R, 4]`` with ``scores [R]`` -> ``(boxes [M, 4], scores [M])``, best first.

    Each step merges the pair with the lowest ``match_score`` if it is ``<= threshold``.
    """
    if boxes.ndim != 2 or boxes.shape[-1] != 4 or scores.shape != boxes.shape[:1]:
        raise ValueError(f"expected boxes [R, 4] and scores [R], got {tuple(boxes.shape)} and {tuple(scores.shape)}")
    boxes, scores = boxes.float().clone(), scores.float().clone()
    if len(boxes) > 1:
        alive = torch.ones(len(boxes), dtype=torch.bool, device=boxes.device)
        match = match_scores(boxes)  # [R, R], updated in place as boxes merge
        match.fill_diagonal_(float("inf"))
        while True:
            best = int(torch.argmin(match))
            i, j = divmod(best, len(boxes))
            if not match[i, j] <= threshold:  # also stops on inf (one box left)
                break
            total = scores[i] + scores[j]
            weights = torch.stack([scores[i], scores[j]]) / total.clamp(min=1e-12)
            if total <= 0:  # zero-score members: plain average
                weights = torch.full_like(weights, 0.5)
            boxes[i] = weights[0] * boxes[i] + weights[1] * boxes[j]
            scores[i] = total
            alive[j] = False
            match[j, :] = float("inf")
            match[:, j] = float("inf")
            row = match_scores(torch.cat([boxes[i : i + 1], boxes]))[0, 1:]  # [R]: the merged box against all
            row[~alive] = float("inf")
            row[i] = float("inf")
            match[i, :] = row
            match[:, i] = row
        boxes, scores = boxes[alive], scores[alive]
    order = torch.argsort(scores, descending=True)
    return boxes[order], scores[order]
