"""Stand-ins for selective search in tests: every box of a regular grid, or none."""

import functools

import numpy as np
import torch


def grid_proposals(image: np.ndarray, *, step: int, mode: str, max_proposals: int, min_size: int) -> torch.Tensor:
    """Every box whose corners lie on a ``step``-pixel grid over ``image [H, W, 3]`` -> ``[R, 4]`` xyxy."""
    height, width = image.shape[:2]
    xs, ys = torch.arange(0, width + 1, step).float(), torch.arange(0, height + 1, step).float()
    boxes = [(x1, y1, x2, y2) for x1 in xs for x2 in xs if x2 > x1 for y1 in ys for y2 in ys if y2 > y1]
    return torch.tensor(boxes, dtype=torch.float32)[:max_proposals]


def grid_search(step: int):  # noqa: ANN201 - a selective_search replacement
    return functools.partial(grid_proposals, step=step)
