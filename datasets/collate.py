"""Batching samples of different sizes (``N`` images per batch, ``H_i, W_i`` their sizes).

Detection keeps images as a list: the model's transform resizes, normalises and batches them,
and maps predictions back to each image's own size.

Segmentation stacks: images are padded right and bottom to the largest ``H, W`` in the batch
(0 in the image, void 255 in the mask, so the loss and the metrics ignore the padding). With a
fixed-size training transform (``train_transforms(crop_size=...)``) nothing is padded.
The batch also carries the image ids, which ``segmentation.metrics.ConfusionMatrix.update``
needs to drop the duplicates a padded distributed sampler adds.
"""

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from datasets.palette import VOID_INDEX

Sample = tuple[Tensor, dict[str, Any]]


def collate_detection(batch: list[Sample]) -> tuple[list[Tensor], list[dict[str, Any]]]:
    """``[(Tensor[3, H_i, W_i], target_i)] -> ([Tensor[3, H_i, W_i]], [target_i])``; nothing is copied."""
    if not batch:
        raise ValueError("collate_detection got an empty batch")
    images, targets = zip(*batch)
    return list(images), list(targets)


class SegmentationBatch(NamedTuple):
    """``images [N, 3, H, W]`` float32, ``masks [N, H, W]`` int64 (255 = void), ``image_ids`` ``N`` ints."""

    images: Tensor
    masks: Tensor
    image_ids: list[int]


def collate_segmentation(batch: list[Sample]) -> SegmentationBatch:
    """``[(Tensor[3, H_i, W_i], {semantic: Tensor[H_i, W_i], image_id})] -> SegmentationBatch``.

    Unpack as ``images, masks, image_ids = batch`` or use the field names.
    """
    if not batch:
        raise ValueError("collate_segmentation got an empty batch")
    height = max(image.shape[1] for image, _ in batch)
    width = max(image.shape[2] for image, _ in batch)
    images, masks, image_ids = [], [], []
    for image, target in batch:
        if "semantic" not in target:
            raise KeyError(f"collate_segmentation needs target['semantic']; image {target.get('image_id')} has none")
        if target["semantic"].shape != image.shape[1:]:
            raise ValueError(f"semantic mask {tuple(target['semantic'].shape)} != image {tuple(image.shape[1:])}")
        pad = (0, width - image.shape[2], 0, height - image.shape[1])  # (left, right, top, bottom)
        images.append(F.pad(image, pad, value=0.0))
        masks.append(F.pad(target["semantic"].long(), pad, value=VOID_INDEX))
        image_ids.append(int(target["image_id"]))
    return SegmentationBatch(torch.stack(images), torch.stack(masks), image_ids)
