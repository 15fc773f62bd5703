"""albumentations pipelines that keep boxes, labels, instance masks and semantic masks in sync.

A pipeline is a callable ``(image, target) -> (image, target)`` on numpy arrays, the
``Transforms`` of ``datasets/base.py``. Shape letters: ``K`` objects, ``H, W`` image size.

    image     [H, W, 3] uint8 RGB
    boxes     [K, 4] float32 xyxy pixels (albumentations' ``pascal_voc`` is the same absolute xyxy)
    labels, difficult, iscrowd, area   [K] per-box fields
    masks     [K, H, W] uint8 instance masks (optional)
    semantic  [H, W] uint8 class map, 255 = void (optional)

Rules every pipeline follows:

- Boxes are clipped to the output image; a box keeping less than ``min_visibility`` of its
  area is dropped, and every per-box field and the instance masks drop the same rows
  (albumentations carries each box's row index through ``label_fields``).
- Labels come back int64. Images with zero boxes pass through.
- Masks use nearest interpolation. Pixels revealed by a zoom-out, shift or pad are 0 in the
  image and the instance masks and void (255) in the semantic mask: a validity mask travels
  with the semantic mask, so the two fills are independent.
- ``area`` (COCO's segment area) is rescaled by the box-area ratio: exact for flips, scales
  and pads, an approximation of the visible part when a box is clipped.
- Inputs are never modified and outputs never share memory with them.

Training (``train_transforms``): horizontal flip, scale jitter + crop, colour jitter, and an
optional fixed output size. The scale jitter is one ``A.Affine`` zoom about the centre plus a
shift, at the input size: zooming in crops the overflow, zooming out leaves a border. We
prefer it to ``RandomResizedCrop`` (which distorts the aspect ratio and only zooms in) and to
``RandomSizedBBoxSafeCrop`` (which never cuts an object, so partly visible objects are never
seen): it jitters scale both ways, keeps the aspect ratio and the image size the model's
transform expects, maps boxes exactly (no rotation or shear) and costs one warp per image.

Evaluation (``eval_transforms``): ``None`` by default, because the model's transform resizes
and normalises (and maps predictions back to the input size); optionally a deterministic
letterbox resize to a fixed square (longest side scaled to ``image_size``, padded at the
bottom and right, so coordinates only scale).
"""

import random
from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np

from datasets.base import Target
from datasets.palette import VOID_INDEX

PER_BOX_KEYS = ("labels", "difficult", "iscrowd", "area")
GEOMETRY_KEYS = ("boxes", "masks", "semantic", *PER_BOX_KEYS)

FLIP_PROBABILITY = 0.5
SCALE_JITTER = (0.75, 1.25)  # zoom factor range of the affine scale jitter
TRANSLATE_JITTER = (-0.1, 0.1)  # shift as a fraction of the image side
MIN_VISIBILITY = 0.3  # a box keeping less of its area is dropped
BRIGHTNESS = CONTRAST = SATURATION = 0.3  # ColorJitter factors drawn from [1 - x, 1 + x]
HUE = 0.05  # hue shift as a fraction of the hue circle
COLOR_JITTER_PROBABILITY = 0.8
IMAGE_FILL = 0
INSTANCE_FILL = 0
SEMANTIC_FILL = VOID_INDEX


def _check_target(image: np.ndarray, target: Target) -> np.ndarray:
    """Validate shapes before albumentations sees them; returns the boxes as ``[K, 4]`` float32."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be [H, W, 3] uint8, got {image.shape} {image.dtype}")
    height, width = image.shape[:2]
    boxes = np.asarray(target.get("boxes", np.zeros((0, 4))), dtype=np.float32)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be [K, 4], got {boxes.shape}")
    num_boxes = len(boxes)
    for key in PER_BOX_KEYS:
        if key in target and len(target[key]) != num_boxes:
            raise ValueError(f"target[{key!r}] has {len(target[key])} rows but there are {num_boxes} boxes")
    masks = target.get("masks")
    if masks is not None and np.shape(masks) != (num_boxes, height, width):
        raise ValueError(f"masks must be [K, H, W] = {(num_boxes, height, width)}, got {np.shape(masks)}")
    semantic = target.get("semantic")
    if semantic is not None and np.shape(semantic) != (height, width):
        raise ValueError(f"semantic must be [H, W] = {(height, width)}, got {np.shape(semantic)}")
    return boxes


def _box_area(boxes: np.ndarray) -> np.ndarray:
    """``[K, 4] -> [K]``."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


class BoxMaskTransform:
    """Runs an ``A.Compose`` on an ``(image, target)`` pair, keeping per-box fields in sync.

    The compose must have ``bbox_params`` with ``label_fields=["box_index"]`` and the
    additional mask target ``valid``; build it with ``box_mask_pipeline``.
    """

    def __init__(self, pipeline: A.Compose) -> None:
        self.pipeline = pipeline

    def set_seed(self, seed: int) -> None:
        """Restart the random stream; one generator is shared by every step of the pipeline.

        (``A.Compose.set_random_seed`` would give each step its own generator with the same
        seed, correlating e.g. the flip and the zoom.) DataLoader workers call this with a
        per-worker seed: a forked copy of a pipeline otherwise repeats the parent's stream.
        """
        self.pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))

    def __call__(self, image: np.ndarray, target: Target) -> tuple[np.ndarray, Target]:
        boxes = _check_target(image, target)
        num_boxes = len(boxes)
        inputs: dict[str, Any] = {"image": image, "bboxes": boxes, "box_index": np.arange(num_boxes)}
        masks = target.get("masks")
        if masks is not None and num_boxes:
            inputs["masks"] = np.asarray(masks)
        if "semantic" in target:
            inputs["mask"] = np.asarray(target["semantic"])
            inputs["valid"] = np.ones(image.shape[:2], np.uint8)
        out = self.pipeline(**inputs)

        out_image = out["image"]
        if np.may_share_memory(out_image, image):
            out_image = out_image.copy()
        height, width = out_image.shape[:2]
        kept = np.asarray(out["box_index"], dtype=np.int64).reshape(-1)
        result: Target = {key: value for key, value in target.items() if key not in GEOMETRY_KEYS}
        result["boxes"] = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
        for key in PER_BOX_KEYS:
            if key in target:
                result[key] = np.asarray(target[key])[kept]
        if "labels" in result:
            result["labels"] = result["labels"].astype(np.int64)
        if "area" in result:
            before, after = _box_area(boxes[kept]), _box_area(result["boxes"])
            ratio = np.divide(after, before, out=np.zeros_like(after), where=before > 0)
            result["area"] = (result["area"] * ratio).astype(np.float32)
        if masks is not None:
            if num_boxes:
                result["masks"] = np.asarray(out["masks"])[kept]  # fancy indexing copies
            else:
                result["masks"] = np.zeros((0, height, width), np.uint8)
        if "semantic" in target:
            semantic = np.array(out["mask"], copy=True)
            semantic[np.asarray(out["valid"]) == 0] = SEMANTIC_FILL
            result["semantic"] = semantic
        return out_image, result


def box_mask_pipeline(
    ops: Sequence[A.BasicTransform], *, min_visibility: float = MIN_VISIBILITY, seed: int | None = None
) -> BoxMaskTransform:
    """Wrap albumentations steps with our box parameters (``pascal_voc`` xyxy, clip, filter)."""
    bbox_params = A.BboxParams(
        format="pascal_voc",
        label_fields=["box_index"],
        min_visibility=min_visibility,
        clip=True,
        filter_invalid_bboxes=True,
    )
    pipeline = A.Compose(list(ops), bbox_params=bbox_params, additional_targets={"valid": "mask"}, strict=True)
    transform = BoxMaskTransform(pipeline)
    if seed is not None:
        transform.set_seed(seed)
    return transform


def _pad_to(size: int, position: str) -> A.PadIfNeeded:
    return A.PadIfNeeded(
        min_height=size, min_width=size, position=position, border_mode=cv2.BORDER_CONSTANT,
        fill=IMAGE_FILL, fill_mask=INSTANCE_FILL,
    )


def train_transforms(
    *,
    scale: tuple[float, float] = SCALE_JITTER,
    translate: tuple[float, float] = TRANSLATE_JITTER,
    flip_probability: float = FLIP_PROBABILITY,
    vertical_flip: bool = False,
    color_jitter: bool = True,
    min_visibility: float = MIN_VISIBILITY,
    crop_size: int | None = None,
    seed: int | None = None,
) -> BoxMaskTransform:
    """Flip, affine scale jitter + crop, colour jitter; ``crop_size`` pads and random-crops to a square.

    ``vertical_flip`` adds up-down flips (with ``flip_probability``), for images whose
    orientation means nothing (microscopy, aerial photographs).

    ``crop_size`` gives every training image the same ``[crop_size, crop_size]`` size (for
    stacked segmentation batches). ``seed`` fixes the random stream (``None``: fresh entropy).
    """
    ops: list[A.BasicTransform] = [
        A.HorizontalFlip(p=flip_probability),
        *([A.VerticalFlip(p=flip_probability)] if vertical_flip else []),
        A.Affine(
            scale=scale, translate_percent=translate, keep_ratio=True, border_mode=cv2.BORDER_CONSTANT,
            fill=IMAGE_FILL, fill_mask=INSTANCE_FILL, p=1.0,
        ),
    ]
    if color_jitter:
        ops.append(
            A.ColorJitter(
                brightness=BRIGHTNESS, contrast=CONTRAST, saturation=SATURATION, hue=HUE, p=COLOR_JITTER_PROBABILITY
            )
        )
    if crop_size is not None:
        ops += [_pad_to(crop_size, "center"), A.RandomCrop(height=crop_size, width=crop_size)]
    return box_mask_pipeline(ops, min_visibility=min_visibility, seed=seed)


def flip_transforms(*, flip_probability: float = FLIP_PROBABILITY, seed: int | None = None) -> BoxMaskTransform:
    """Horizontal flips only. Pixel-exact (no resampling, no colour change), so selective-search
    proposals cached for an image serve its mirror image (``detection/proposals/cache.py``)."""
    return box_mask_pipeline([A.HorizontalFlip(p=flip_probability)], seed=seed)


def eval_transforms(*, image_size: int | None = None) -> BoxMaskTransform | None:
    """``None`` (the model resizes), or a deterministic letterbox to ``[image_size, image_size]``.

    The letterbox scales the longest side to ``image_size`` and pads bottom and right, so a
    box ``b`` becomes ``b * image_size / max(H, W)``; no box is dropped.
    """
    if image_size is None:
        return None
    ops = [A.LongestMaxSize(max_size=image_size), _pad_to(image_size, "top_left")]
    return box_mask_pipeline(ops, min_visibility=0.0)
