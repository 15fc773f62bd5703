"""YOLO v1's sum-squared loss (Redmon et al. 2016, eq. 3) as free functions.

Shape letters: ``N`` images, ``S`` grid side, ``B`` boxes per cell, ``C`` classes. Box
fields are ``[N, S, S, B, 5]`` (``x, y, sqrt_w, sqrt_h, conf``, see
:mod:`detection.yolo.targets`), class probabilities ``[N, S, S, C]``.

Indicators, as in the paper:
- ``1^obj_i``: an object's centre falls in cell ``i`` (``obj_cells [N, S, S]``);
- ``1^obj_ij``: predictor ``j`` of cell ``i`` is *responsible* for that object, i.e. it has
  the highest current IoU with the ground truth among the cell's ``B`` predictors
  (``responsible [N, S, S, B]``);
- ``1^noobj_ij``: every other predictor, in object cells too.

Every term is a sum over cells and predictors, divided by the number of images ``N`` so
the scale does not depend on the batch size. Terms and their line in eq. 3::

    loss_coord  = lambda_coord * sum 1^obj_ij [(x - x^)^2 + (y - y^)^2]                    line 1
    loss_size   = lambda_coord * sum 1^obj_ij [(sqrt w - sqrt w^)^2 + (sqrt h - sqrt h^)^2]  line 2
    loss_obj    =                sum 1^obj_ij (C - C^)^2,   C^ = IoU(pred, truth)         line 3
    loss_noobj  = lambda_noobj * sum 1^noobj_ij (C - 0)^2                                 line 4
    loss_class  =                sum_i 1^obj_i sum_c (p_i(c) - p^_i(c))^2                 line 5
"""

import torch
from torch import Tensor
from detection.yolo.targets import CONF, SQRT_H, SQRT_W, X, Y, GridLayout, grid_boxes_xyxy

LAMBDA_COORD = 5.0  # "increase the loss from bounding box coordinate predictions"
LAMBDA_NOOBJ = 0.5  # "decrease the loss from confidence predictions for boxes that don't contain objects"


def paired_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of corresponding rows: ``[M, 4], [M, 4] -> [M]`` (xyxy).

    The element-wise diagonal of ``torchvision.ops.box_iou`` (which is pairwise, ``[M, M]``,
    too large for big batches); tests check it against ``box_iou``.
    """
    if boxes1.shape != boxes2.shape or boxes1.shape[-1:] != (4,):
        raise ValueError(f"paired_iou needs two [M, 4] tensors, got {tuple(boxes1.shape)} and {tuple(boxes2.shape)}")
    top_left = torch.maximum(boxes1[:, :2], boxes2[:, :2])  # [M, 2]
    bottom_right = torch.minimum(boxes1[:, 2:], boxes2[:, 2:])  # [M, 2]
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=1)  # [M]
    area1 = (boxes1[:, 2:] - boxes1[:, :2]).prod(dim=1)
    area2 = (boxes2[:, 2:] - boxes2[:, :2]).prod(dim=1)
    return inter / (area1 + area2 - inter)


def responsible_predictors(
    pred_grid: Tensor, target_grid: Tensor, *, image_size: tuple[int, int], layout: GridLayout
) -> tuple[Tensor, Tensor]:
    """Pick ``1^obj_ij`` and the IoU of every predictor with its cell's ground truth.

    Returns:
        responsible ``[N, S, S, B]`` bool (exactly one ``True`` per object cell) and
        iou ``[N, S, S, B]`` (0 outside object cells), both without gradient.
    """
    with torch.no_grad():
        obj_cells = layout.boxes(target_grid)[..., 0, CONF] > 0  # [N, S, S]
        pred_xyxy = grid_boxes_xyxy(pred_grid, image_size=image_size, layout=layout)  # [N, S, S, B, 4]
        gt_xyxy = grid_boxes_xyxy(target_grid, image_size=image_size, layout=layout)  # [N, S, S, B, 4], B equal copies
        iou = pred_grid.new_zeros(pred_grid.shape[:3] + (layout.boxes_per_cell,))  # [N, S, S, B]
        # [K, B, 4] -> [K*B, 4] for the object cells only
        iou[obj_cells] = paired_iou(pred_xyxy[obj_cells].reshape(-1, 4), gt_xyxy[obj_cells].reshape(-1, 4)).view(
            -1, layout.boxes_per_cell
        )
        best = iou.argmax(dim=-1)  # [N, S, S]; ties go to the first predictor
        responsible = torch.nn.functional.one_hot(best, layout.boxes_per_cell).bool() & obj_cells[..., None]
    return responsible, iou


def coord_loss(pred: Tensor, target: Tensor, responsible: Tensor, *, lambda_coord: float = LAMBDA_COORD) -> Tensor:
    """Eq. 3, line 1: centre offsets of the responsible predictors. Box fields ``[N, S, S, B, 5]``."""
    err = (pred[..., X] - target[..., X]).square() + (pred[..., Y] - target[..., Y]).square()  # [N, S, S, B]
    return lambda_coord * (err * responsible).sum() / pred.shape[0]


def size_loss(pred: Tensor, target: Tensor, responsible: Tensor, *, lambda_coord: float = LAMBDA_COORD) -> Tensor:
    """Eq. 3, line 2: square roots of width and height (both grids already hold the roots)."""
    err = (pred[..., SQRT_W] - target[..., SQRT_W]).square() + (pred[..., SQRT_H] - target[..., SQRT_H]).square()
    return lambda_coord * (err * responsible).sum() / pred.shape[0]


def object_confidence_loss(pred: Tensor, confidence_target: Tensor, responsible: Tensor) -> Tensor:
    """Eq. 3, line 3: confidence of responsible predictors towards ``confidence_target`` ``[N, S, S, B]``

    (the IoU with the ground truth in the paper, or 1 without rescoring).
    """
    err = (pred[..., CONF] - confidence_target).square()  # [N, S, S, B]
    return (err * responsible).sum() / pred.shape[0]


def noobj_confidence_loss(pred: Tensor, responsible: Tensor, *, lambda_noobj: float = LAMBDA_NOOBJ) -> Tensor:
    """Eq. 3, line 4: confidence of every non-responsible predictor towards 0."""
    err = pred[..., CONF].square()  # [N, S, S, B]
    return lambda_noobj * (err * ~responsible).sum() / pred.shape[0]


def class_loss(pred_probs: Tensor, target_probs: Tensor, obj_cells: Tensor) -> Tensor:
    """Eq. 3, line 5: class probabilities ``[N, S, S, C]`` of cells that hold an object ``[N, S, S]``."""
    err = (pred_probs - target_probs).square().sum(dim=-1)  # [N, S, S]
    return (err * obj_cells).sum() / pred_probs.shape[0]


def yolo_loss(
    pred_grid: Tensor,
    target_grid: Tensor,
    *,
    image_size: tuple[int, int],
    layout: GridLayout,
    lambda_coord: float = LAMBDA_COORD,
    lambda_noobj: float = LAMBDA_NOOBJ,
    rescore: bool = True,
) -> dict[str, Tensor]:
    """The five terms of eq. 3 for ``[N, S, S, 5B + C]`` predictions and targets.

    ``rescore=True`` is the paper's confidence target ``IoU(pred, truth)``; ``False`` uses 1.
    """
    layout.check(pred_grid)
    layout.check(target_grid)
    responsible, iou = responsible_predictors(pred_grid, target_grid, image_size=image_size, layout=layout)
    pred, target = layout.boxes(pred_grid), layout.boxes(target_grid)  # [N, S, S, B, 5] each
    obj_cells = target[..., 0, CONF] > 0  # [N, S, S]
    confidence_target = iou if rescore else torch.ones_like(iou)
    return {
        "loss_coord": coord_loss(pred, target, responsible, lambda_coord=lambda_coord),
        "loss_size": size_loss(pred, target, responsible, lambda_coord=lambda_coord),
        "loss_obj": object_confidence_loss(pred, confidence_target, responsible),
        "loss_noobj": noobj_confidence_loss(pred, responsible, lambda_noobj=lambda_noobj),
        "loss_class": class_loss(layout.class_probs(pred_grid), layout.class_probs(target_grid), obj_cells),
    }
