"""albumentations pipelines that keep boxes, labels, masks and semantic masks in sync.

A pipeline is a callable ``(image, target) -> (image, target)`` on numpy arrays (see
``datasets/base.py``): ``image [H, W, 3]`` uint8, ``target`` with ``boxes [K, 4]`` xyxy pixels
(albumentations' ``pascal_voc`` format is the same absolute xyxy), per-box ``labels``,
``difficult``, ``iscrowd`` and optional ``masks [K, H, W]``, plus optional ``semantic [H, W]``.

Boxes are clipped to the image; a box keeping less than ``min_visibility`` of its area is
dropped, and every per-box array (masks included) drops the same rows. Inputs are never
modified. Deterministic resize and normalisation are the model's job, so evaluation uses
no transform (``None``) unless a fixed crop size is wanted for batching.
"""

from typing import Any

import albumentations as A
import cv2
import numpy as np

from datasets.base import Target
from datasets.palette import VOID_INDEX

PER_BOX_KEYS = ("labels", "difficult", "iscrowd", "area")
DEFAULT_SCALE = (0.75, 1.25)
DEFAULT_TRANSLATE = (-0.1, 0.1)
DEFAULT_MIN_VISIBILITY = 0.3


class BoxMaskTransform:
    """Wraps an ``A.Compose`` so that per-box fields follow the boxes albumentations keeps."""

    def __init__(self, pipeline: A.Compose) -> None:
        self.pipeline = pipeline

    def __call__(self, image: np.ndarray, target: Target) -> tuple[np.ndarray, Target]:
        boxes = np.asarray(target.get("boxes", np.zeros((0, 4))), dtype=np.float32).reshape(-1, 4)
        inputs: dict[str, Any] = {"image": image, "bboxes": boxes, "box_index": np.arange(len(boxes))}
        masks = target.get("masks")
        if masks is not None and len(masks):
            inputs["masks"] = np.asarray(masks)
        if "semantic" in target:
            inputs["mask"] = np.asarray(target["semantic"])
        out = self.pipeline(**inputs)

        kept = np.asarray(out["box_index"], dtype=np.int64)
        result = {k: v for k, v in target.items() if k not in ("boxes", "masks", "semantic", *PER_BOX_KEYS)}
        result["boxes"] = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
        for key in PER_BOX_KEYS:
            if key in target:
                result[key] = np.asarray(target[key])[kept]
        if "labels" in result:
            result["labels"] = result["labels"].astype(np.int64)
        height, width = out["image"].shape[:2]
        if masks is not None:
            result["masks"] = np.asarray(out["masks"])[kept] if len(masks) else np.zeros((0, height, width), np.uint8)
        if "semantic" in target:
            result["semantic"] = out["mask"]
        return out["image"], result


def _compose(ops: list[A.BasicTransform], min_visibility: float) -> BoxMaskTransform:
    bbox_params = A.BboxParams(
        format="pascal_voc", label_fields=["box_index"], min_visibility=min_visibility, clip=True, filter_invalid_bboxes=True
    )
    return BoxMaskTransform(A.Compose(ops, bbox_params=bbox_params, strict=True))


def train_transforms(
    *,
    scale: tuple[float, float] = DEFAULT_SCALE,
    translate: tuple[float, float] = DEFAULT_TRANSLATE,
    min_visibility: float = DEFAULT_MIN_VISIBILITY,
    color_jitter: bool = True,
    crop_size: int | None = None,
    semantic: bool = False,
) -> BoxMaskTransform:
    """Flip, scale jitter + crop (an affine zoom/shift whose overflow is cut off), colour jitter.

    ``crop_size`` pads and random-crops to a fixed square (for stacking segmentation batches).
    ``semantic=True`` fills revealed mask borders with void (255) instead of background (0).
    """
    mask_fill = VOID_INDEX if semantic else 0
    ops: list[A.BasicTransform] = [
        A.HorizontalFlip(p=0.5),
        A.Affine(scale=scale, translate_percent=translate, keep_ratio=True, fill=0, fill_mask=mask_fill,
                 border_mode=cv2.BORDER_CONSTANT, p=1.0),
    ]
    if color_jitter:
        ops.append(A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05, p=0.8))
    if crop_size is not None:
        ops += [
            A.PadIfNeeded(min_height=crop_size, min_width=crop_size, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=mask_fill),
            A.RandomCrop(height=crop_size, width=crop_size),
        ]
    return _compose(ops, min_visibility)


def eval_transforms(*, crop_size: int | None = None, semantic: bool = False) -> BoxMaskTransform | None:
    """``None`` (the model resizes), or a deterministic pad + centre crop to ``crop_size``."""
    if crop_size is None:
        return None
    mask_fill = VOID_INDEX if semantic else 0
    ops: list[A.BasicTransform] = [
        A.PadIfNeeded(min_height=crop_size, min_width=crop_size, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=mask_fill),
        A.CenterCrop(height=crop_size, width=crop_size),
    ]
    return _compose(ops, min_visibility=0.0)
