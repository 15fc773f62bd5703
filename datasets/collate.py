"""Batching samples of different sizes (``N`` images per batch, ``H_i, W_i`` their sizes).

Detection keeps images as a list: the model's transform resizes, normalises and batches them,
and maps predictions back to each image's own size.

Every task batches this way (semantic segmentation too: FCN pads its training batch itself).
"""

from typing import Any

from torch import Tensor

Sample = tuple[Tensor, dict[str, Any]]


def collate_detection(batch: list[Sample | None]) -> tuple[list[Tensor], list[dict[str, Any]]]:
    """``[(Tensor[3, H_i, W_i], target_i) or None] -> ([Tensor[3, H_i, W_i]], [target_i])``; nothing is copied.

    ``None`` marks a sample a training reader skipped as unreadable (``datasets.base.BadImageLog``):
    it is dropped, so a batch can be smaller than the batch size, or empty (``([], [])``).
    """
    if not batch:
        raise ValueError("collate_detection got an empty batch")
    samples = [sample for sample in batch if sample is not None]
    if not samples:
        return [], []
    images, targets = zip(*samples)
    return list(images), list(targets)
