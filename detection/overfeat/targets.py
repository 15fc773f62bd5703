"""Training targets of OverFeat's dense windows: which class and which box each window learns.

Shape letters: ``G`` ground-truth objects, ``P`` window positions (``Ho * Wo``, row-major).

Every output position is a square window of ``window_size`` pixels at its origin
(``OverFeatNet.window_origins``). For each window and object:

- ``coverage`` = area(window ∩ object) / area(object): how much of the object the window sees.
  The paper trains the regressor only on windows that overlap the object by at least 50 %
  (``MIN_COVERAGE``); we read that overlap as coverage.
- ``IoU`` (``torchvision.ops.box_iou``): how well the window's size matches the object.

A window is assigned the object with the highest IoU among those it covers >= ``MIN_COVERAGE``.

- **localization mode** (``negative_iou=None``): every covering window is a positive of its
  object's class; the others are ignored (there is no background to learn).
- **detection mode**: a covering window with IoU >= ``positive_iou`` is a positive; a window
  whose IoU with every object is < ``negative_iou`` is a negative (background, label 0); the
  rest are ignored. A small object wholly inside a window is thus background at this scale and
  an object at a larger one: the multi-scale test finds it there.

Box targets are the object's edges relative to the window's origin, in units of ``window_size``:
``((x1 - wx) / S, (y1 - wy) / S, (x2 - wx) / S, (y2 - wy) / S)``.
"""

import torch
from torch import Tensor
from torchvision.ops import box_iou

MIN_COVERAGE = 0.5  # paper sec. 4.2: no regression training on windows overlapping the object < 50 %
IGNORE = -1


def window_boxes(origins: Tensor, window_size: int) -> Tensor:
    """``origins [..., 2]`` (x, y) -> window boxes ``[..., 4]`` xyxy."""
    return torch.cat([origins, origins + window_size], dim=-1)


def encode_edges(boxes: Tensor, origins: Tensor, window_size: int) -> Tensor:
    """``boxes [P, 4]`` xyxy pixels, ``origins [P, 2]`` -> edges ``[P, 4]`` in window units."""
    return (boxes - origins.repeat(1, 2)) / window_size


def decode_edges(edges: Tensor, origins: Tensor, window_size: int) -> Tensor:
    """The inverse of ``encode_edges``: ``edges [P, 4]``, ``origins [P, 2]`` -> xyxy ``[P, 4]``."""
    return edges * window_size + origins.repeat(1, 2)


def window_targets(
    gt_boxes: Tensor,
    gt_labels: Tensor,
    origins: Tensor,
    window_size: int,
    *,
    positive_iou: float = 0.0,
    negative_iou: float | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Targets of ``P`` windows (``origins [P, 2]``) for one image's ``gt_boxes [G, 4]``, ``gt_labels [G]``.

    Returns ``labels [P]`` int64 (``-1`` ignore, ``0`` background, ``1..C``), ``edges [P, 4]``
    (box targets, meaningful where ``positive``) and ``positive [P]`` bool.
    """
    num = origins.shape[0]
    labels = torch.full((num,), IGNORE, dtype=torch.int64, device=origins.device)
    edges = torch.zeros(num, 4, device=origins.device)
    if len(gt_boxes) == 0:
        if negative_iou is not None:
            labels.fill_(0)
        return labels, edges, torch.zeros(num, dtype=torch.bool, device=origins.device)
    windows = window_boxes(origins, window_size)  # [P, 4]
    top_left = torch.max(windows[:, None, :2], gt_boxes[None, :, :2])  # [P, G, 2]
    bottom_right = torch.min(windows[:, None, 2:], gt_boxes[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)  # [P, G]
    areas = (gt_boxes[:, 2:] - gt_boxes[:, :2]).clamp(min=1e-6).prod(-1)  # [G]
    coverage = inter / areas[None, :]
    iou = box_iou(windows, gt_boxes)  # [P, G]
    quality = torch.where(coverage >= MIN_COVERAGE, iou, torch.full_like(iou, -1.0))
    best_quality, best = quality.max(dim=1)  # [P]
    positive = (best_quality >= positive_iou) & (best_quality >= 0)
    labels[positive] = gt_labels[best[positive]]
    if negative_iou is not None:
        labels[iou.max(dim=1).values < negative_iou] = 0
    edges[positive] = encode_edges(gt_boxes[best[positive]], origins[positive], window_size)
    return labels, edges, positive
