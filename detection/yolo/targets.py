"""Encode boxes into YOLO v1's ``S x S x (5B + C)`` grid tensor and decode it back.

Shape letters: ``N`` images, ``S`` grid cells per side, ``B`` boxes per cell, ``C``
foreground classes, ``K`` ground-truth boxes of one image, ``D = 5B + C`` the depth of a cell.

Layout of one cell's ``D`` values (Redmon et al. 2016, Sec. 2): first ``B`` box predictors of
five numbers each, then ``C`` conditional class probabilities ``Pr(class_c | object)``::

    [x_0, y_0, sqrt_w_0, sqrt_h_0, conf_0, ..., x_{B-1}, ..., conf_{B-1}, p_1, ..., p_C]

- ``x, y``: box centre as an offset inside its cell, in ``[0, 1]``;
- ``sqrt_w, sqrt_h``: square roots of the width and height as fractions of the image
  (the paper predicts the square roots "to reflect that small deviations in large boxes
  matter less than in small boxes"); ``w = sqrt_w ** 2``;
- ``conf``: ``Pr(object) * IoU(pred, truth)``.

:class:`GridLayout` builds the named slices from ``S``, ``B`` and ``C`` so nothing assumes
20 classes. A *target* grid has the same layout as a prediction: every one of the ``B``
slots of an object cell holds the ground-truth box with ``conf = 1``, the class block is
one-hot, and non-object cells are all zero. Decoding a target grid therefore returns the
encoded boxes; :func:`decode_grid` serves both the round trip and inference.

YOLO v1 predicts one set of class probabilities per cell, so a cell holds at most one
object: when several box centres fall into one cell, the largest box is kept (the smaller
ones are dropped from the target, a known limitation of the paper's design).
"""

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import box_convert, clip_boxes_to_image

BOX_FIELDS = 5  # x, y, sqrt_w, sqrt_h, conf
X, Y, SQRT_W, SQRT_H, CONF = range(BOX_FIELDS)


@dataclass(frozen=True)
class GridLayout:
    """Named views into the ``[..., S, S, 5B + C]`` tensor for any ``S``, ``B`` and ``C``."""

    grid_size: int
    boxes_per_cell: int
    num_classes: int

    def __post_init__(self) -> None:
        for name in ("grid_size", "boxes_per_cell", "num_classes"):
            if getattr(self, name) < 1:
                raise ValueError(f"GridLayout.{name} must be >= 1, got {getattr(self, name)}")

    @property
    def depth(self) -> int:
        """``D = 5B + C``."""
        return BOX_FIELDS * self.boxes_per_cell + self.num_classes

    @property
    def box_slice(self) -> slice:
        return slice(0, BOX_FIELDS * self.boxes_per_cell)

    @property
    def class_slice(self) -> slice:
        return slice(BOX_FIELDS * self.boxes_per_cell, self.depth)

    def boxes(self, grid: Tensor) -> Tensor:
        """``[N, S, S, D] -> [N, S, S, B, 5]`` (a view)."""
        self.check(grid)
        # [N, S, S, 5B] -> [N, S, S, B, 5]
        return grid[..., self.box_slice].unflatten(-1, (self.boxes_per_cell, BOX_FIELDS))

    def class_probs(self, grid: Tensor) -> Tensor:
        """``[N, S, S, D] -> [N, S, S, C]`` (a view)."""
        self.check(grid)
        return grid[..., self.class_slice]

    def check(self, grid: Tensor) -> None:
        s = self.grid_size
        if grid.dim() != 4 or tuple(grid.shape[1:]) != (s, s, self.depth):
            raise ValueError(
                f"expected a grid of shape [N, {s}, {s}, {self.depth}] (S={s}, B={self.boxes_per_cell}, "
                f"C={self.num_classes}), got {tuple(grid.shape)}"
            )


def cell_offsets(grid_size: int, *, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """Column and row index of every cell: two ``[S, S]`` float tensors (``[row, col]`` indexed)."""
    index = torch.arange(grid_size, dtype=torch.float32, device=device)
    rows, cols = torch.meshgrid(index, index, indexing="ij")
    return cols, rows


def encode_targets(
    boxes: Tensor, labels: Tensor, *, image_size: tuple[int, int], layout: GridLayout
) -> Tensor:
    """One image's ground truth -> its target grid.

    Args:
        boxes: ``[K, 4]`` float xyxy pixels of the (resized) network input.
        labels: ``[K]`` int64 in ``1..C``.
        image_size: ``(H, W)`` of the network input.
    Returns:
        ``[S, S, D]`` float32 target grid (layout in the module docstring).
    """
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be [K, 4], got {tuple(boxes.shape)}")
    if labels.shape != boxes.shape[:1]:
        raise ValueError(f"labels must be [K] with K={boxes.shape[0]}, got {tuple(labels.shape)}")
    if labels.numel() and (labels.min() < 1 or labels.max() > layout.num_classes):
        raise ValueError(f"labels must be in 1..{layout.num_classes}, got {labels.unique().tolist()}")
    s, height, width = layout.grid_size, float(image_size[0]), float(image_size[1])
    target = torch.zeros((s, s, layout.depth), dtype=torch.float32, device=boxes.device)
    if boxes.numel() == 0:
        return target
    boxes = boxes.float()
    clipped = clip_boxes_to_image(boxes, (int(image_size[0]), int(image_size[1])))
    cxcywh = box_convert(clipped, in_fmt="xyxy", out_fmt="cxcywh")  # [K, 4] pixels
    keep = (cxcywh[:, 2] > 0) & (cxcywh[:, 3] > 0)
    cxcywh, labels = cxcywh[keep], labels[keep]
    # Write smaller boxes first so that the largest box of a shared cell is written last.
    order = torch.argsort(cxcywh[:, 2] * cxcywh[:, 3])
    cxcywh, labels = cxcywh[order], labels[order]
    gx = cxcywh[:, 0] / width * s  # centre in grid units, [K]
    gy = cxcywh[:, 1] / height * s
    col = gx.floor().clamp(0, s - 1)
    row = gy.floor().clamp(0, s - 1)
    cell_box = torch.stack(
        [gx - col, gy - row, (cxcywh[:, 2] / width).sqrt(), (cxcywh[:, 3] / height).sqrt(), torch.ones_like(gx)],
        dim=1,
    )  # [K, 5]
    one_hot = torch.nn.functional.one_hot(labels - 1, layout.num_classes).float()  # [K, C]
    cell = torch.cat([cell_box.repeat(1, layout.boxes_per_cell), one_hot], dim=1)  # [K, D]
    for k in range(cell.shape[0]):  # sequential so that the last (largest) write wins deterministically
        target[int(row[k]), int(col[k])] = cell[k]
    return target


def encode_batch(targets: list[dict[str, Tensor]], *, image_size: tuple[int, int], layout: GridLayout) -> Tensor:
    """``N`` target dicts (boxes in network-input pixels) -> ``[N, S, S, D]``."""
    return torch.stack(
        [encode_targets(t["boxes"], t["labels"], image_size=image_size, layout=layout) for t in targets]
    )


def grid_boxes_xyxy(grid: Tensor, *, image_size: tuple[int, int], layout: GridLayout) -> Tensor:
    """Box fields of a grid -> absolute xyxy pixels.

    ``[N, S, S, D] -> [N, S, S, B, 4]``. Differentiable (the loss uses it under ``no_grad``
    only, to pick the responsible predictor and the IoU target).
    """
    s, height, width = layout.grid_size, float(image_size[0]), float(image_size[1])
    fields = layout.boxes(grid)  # [N, S, S, B, 5]
    cols, rows = cell_offsets(s, device=grid.device)  # [S, S] each
    cx = (fields[..., X] + cols[..., None]) / s * width  # [N, S, S, B]
    cy = (fields[..., Y] + rows[..., None]) / s * height
    w = fields[..., SQRT_W].square() * width
    h = fields[..., SQRT_H].square() * height
    return box_convert(torch.stack([cx, cy, w, h], dim=-1), in_fmt="cxcywh", out_fmt="xyxy")


def decode_grid(grid: Tensor, *, image_size: tuple[int, int], layout: GridLayout) -> tuple[Tensor, Tensor]:
    """Grid -> every predicted box with its class-specific confidences (paper eq. 1).

    ``Pr(class_c | object) * Pr(object) * IoU = p_c * conf`` for every box and class.
    Boxes are clipped to the image; the outputs are linear, so negative confidences and
    probabilities are taken as 0 before the product.

    Returns:
        boxes ``[N, S*S*B, 4]`` xyxy pixels of the network input and
        scores ``[N, S*S*B, C]``.
    """
    boxes = grid_boxes_xyxy(grid, image_size=image_size, layout=layout)  # [N, S, S, B, 4]
    boxes = clip_boxes_to_image(boxes, (int(image_size[0]), int(image_size[1])))
    conf = layout.boxes(grid)[..., CONF].clamp(min=0)  # [N, S, S, B]
    probs = layout.class_probs(grid).clamp(min=0)  # [N, S, S, C]
    scores = conf[..., :, None] * probs[..., None, :]  # [N, S, S, B, C]
    n = grid.shape[0]
    # [N, S, S, B, 4] -> [N, S*S*B, 4]; [N, S, S, B, C] -> [N, S*S*B, C]
    return boxes.reshape(n, -1, 4), scores.reshape(n, -1, layout.num_classes)
