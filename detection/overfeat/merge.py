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
Two boxes of zero area and zero union have IoU 0 (``box_iou`` gives NaN there).

A merged box is the **score-weighted** average of its members' boxes (the paper says
"average"; weighting lets confident boxes count more, and merging two clusters stays the
weighted average of all their members); its score is the sum of its members' scores.
IoU comes from ``torchvision.ops.box_iou``.

Cost. The ``[R, R]`` match matrix is built once; each merge step then touches only the merged
box's row and column (its match against every box, ``match_row``) and keeps each row's minimum
and its column (``row_min``, ``row_arg``) up to date, so the best pair is an ``argmin`` over ``R``
values: ``O(R^2)`` setup, ``O(R)`` per step (plus a row rescan for the rows whose best partner
just merged). Ties go to the first pair in row-major order, as ``argmin`` over the matrix would.
Callers bound ``R`` (``OverFeat``'s ``pre_merge_top_n``, ``score_threshold`` and
``max_merge_candidates``).
"""

import torch
from torch import Tensor
from torchvision.ops import box_iou

MERGE_THRESHOLD = 0.6  # match_score above which no pair merges (not given by the paper)


def match_scores(boxes: Tensor) -> Tensor:
    """``boxes [R, 4] -> Tensor[R, R]``: the pairwise match score of the module docstring."""
    return _match(boxes, boxes, *_centres_and_diagonals(boxes), *_centres_and_diagonals(boxes))


def match_row(box: Tensor, boxes: Tensor) -> Tensor:
    """``box [4]`` against ``boxes [R, 4]`` -> ``Tensor[R]``: one row of ``match_scores``, in ``O(R)``."""
    return _match(box[None], boxes, *_centres_and_diagonals(box[None]), *_centres_and_diagonals(boxes))[0]


def _centres_and_diagonals(boxes: Tensor) -> tuple[Tensor, Tensor]:
    """``boxes [R, 4] -> (centres [R, 2], diagonals [R])``."""
    return (boxes[:, :2] + boxes[:, 2:]) / 2, (boxes[:, 2:] - boxes[:, :2]).norm(dim=1)


def _match(a: Tensor, b: Tensor, centres_a: Tensor, diagonals_a: Tensor, centres_b: Tensor, diagonals_b: Tensor) -> Tensor:
    """``a [Ra, 4]`` against ``b [Rb, 4]`` (with their centres and diagonals) -> ``Tensor[Ra, Rb]``."""
    # Differences, not torch.cdist: past 25 points cdist's matrix-product path is off by up to
    # ~0.1 px at 200 px coordinates (identical centres come out 0.1 px apart).
    distance = (centres_a[:, None, :] - centres_b[None, :, :]).norm(dim=-1)  # [Ra, 1, 2] - [1, Rb, 2] -> [Ra, Rb]
    scale = ((diagonals_a[:, None] + diagonals_b[None, :]) / 2).clamp(min=1e-6)  # [Ra, Rb]
    return distance / scale + (1 - box_iou(a, b).nan_to_num(0.0))


def greedy_merge(boxes: Tensor, scores: Tensor, *, threshold: float = MERGE_THRESHOLD) -> tuple[Tensor, Tensor]:
    """Merge ``boxes [R, 4]`` with ``scores [R]`` -> ``(boxes [M, 4], scores [M])``, best first.

    Each step merges the pair with the lowest ``match_score`` if it is ``<= threshold``; the
    merged box takes the first box's slot.
    """
    if boxes.ndim != 2 or boxes.shape[-1] != 4 or scores.shape != boxes.shape[:1]:
        raise ValueError(f"expected boxes [R, 4] and scores [R], got {tuple(boxes.shape)} and {tuple(scores.shape)}")
    boxes, scores = boxes.float().clone(), scores.float().clone()
    if len(boxes) > 1:
        inf = float("inf")
        dead = torch.zeros(len(boxes), dtype=torch.bool, device=boxes.device)
        centres, diagonals = _centres_and_diagonals(boxes)  # [R, 2], [R]: the merged box's entry updated
        match = _match(boxes, boxes, centres, diagonals, centres, diagonals)  # [R, R], updated as boxes merge
        match.fill_diagonal_(inf)
        row_min, row_arg = match.min(dim=1)  # [R], [R]: each row's best partner (first on ties)
        while True:
            best, i = row_min.min(dim=0)  # the first row on ties
            if not float(best) <= threshold:  # also stops on inf (one box left)
                break
            i = int(i)
            j = int(row_arg[i])  # j > i: row j's minimum is the same value, so i < j wins the tie
            total = scores[i] + scores[j]
            weights = torch.stack([scores[i], scores[j]]) / total.clamp(min=1e-12)  # [2]
            if total <= 0:  # zero-score members: plain average
                weights = torch.full_like(weights, 0.5)
            boxes[i] = weights[0] * boxes[i] + weights[1] * boxes[j]
            scores[i] = total
            dead[j] = True
            match[j, :] = inf
            match[:, j] = inf
            row_min[j] = inf
            merged = boxes[i : i + 1]  # [1, 4]
            centre, diagonal = _centres_and_diagonals(merged)
            centres[i], diagonals[i] = centre[0], diagonal[0]
            row = _match(merged, boxes, centre, diagonal, centres, diagonals)[0]  # [R]: the merged box against all
            row.masked_fill_(dead, inf)
            row[i] = inf
            match[i, :] = row
            match[:, i] = row
            # Column i may now be a row's best (dead rows and row i stay inf); rows whose best partner
            # was i or j are rescanned, row i among them.
            better = (row < row_min) | ((row == row_min) & (row_arg > i))
            row_min = torch.where(better, row, row_min)
            row_arg = row_arg.masked_fill(better, i)
            rescan = ((row_arg == i) | (row_arg == j)).nonzero()[:, 0]
            row_min[rescan], row_arg[rescan] = match[rescan].min(dim=1)
        boxes, scores = boxes[~dead], scores[~dead]
    order = torch.argsort(scores, descending=True)
    return boxes[order], scores[order]
