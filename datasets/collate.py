"""Batching samples of different sizes.

Detection keeps images as a list (the model's transform resizes and batches them);
segmentation pads to the largest image in the batch (images with 0, masks with void).
"""

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from datasets.palette import VOID_INDEX


def collate_detection(batch: list[tuple[Tensor, dict[str, Any]]]) -> tuple[list[Tensor], list[dict[str, Any]]]:
    """``[(Tensor[3, H_i, W_i], target_i)] -> ([Tensor[3, H_i, W_i]], [target_i])``."""
    images, targets = zip(*batch)
    return list(images), list(targets)


def collate_segmentation(batch: list[tuple[Tensor, dict[str, Any]]]) -> tuple[Tensor, Tensor]:
    """``[(Tensor[3, H_i, W_i], {semantic: Tensor[H_i, W_i]})] -> (Tensor[N, 3, H, W], Tensor[N, H, W])``.

    Padding goes right and bottom; padded mask pixels are void (255) so the loss ignores them.
    """
    height = max(image.shape[1] for image, _ in batch)
    width = max(image.shape[2] for image, _ in batch)
    images, masks = [], []
    for image, target in batch:
        pad = (0, width - image.shape[2], 0, height - image.shape[1])
        images.append(F.pad(image, pad, value=0.0))
        masks.append(F.pad(target["semantic"].long(), pad, value=VOID_INDEX))
    return torch.stack(images), torch.stack(masks)
