"""Drawing predictions on images and writing image files atomically.

One drawing for whatever a head predicts: boxes with class names and scores, instance masks
blended in the box colours, and a semantic map blended in the VOC palette colours. Only
detections scoring at least a display threshold (``DRAW_SCORE_THRESHOLD``) are drawn: the
saved JSON/CSV keep every detection, but a weak model's ~100 low-score boxes per image would
bury the picture (detectron2's demo also defaults to ``--confidence-threshold 0.5``).

Shape letters: ``K`` detections, ``H, W`` the image size.
"""

import colorsys
import io
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from datasets.palette import save_palette_png, voc_palette

MASK_THRESHOLD = 0.5
DRAW_SCORE_THRESHOLD = 0.5  # detections drawn: score >= this (the saved predictions keep all)
BOX_LINE_WIDTH = 2
MASK_ALPHA = 0.4
SEMANTIC_ALPHA = 0.5
GOLDEN_RATIO_HUE = 0.618033988749895
PALETTE_RGB = torch.tensor(voc_palette(), dtype=torch.float32).view(-1, 3) / 255  # [256, 3] in [0, 1]


@contextmanager
def atomic_file(path: Path) -> Iterator[IO[bytes]]:
    """A file to write ``path``'s new content into: a temporary file beside it, fsynced and renamed
    over ``path`` when the block ends (and removed if it raises), so ``path`` is always whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync, then rename over ``path``."""
    with atomic_file(path) as f:
        f.write(data)


def save_png(image: Tensor, path: Path) -> None:
    """``Tensor[3, H, W]`` uint8 -> a PNG, written atomically."""
    buffer = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, format="PNG")
    atomic_write(path, buffer.getvalue())


def save_mask(path: Path, labels: Tensor) -> None:
    """``Tensor[H, W]`` class indices -> a VOC palette PNG (``SegmentationClass`` style), atomically."""
    buffer = io.BytesIO()
    save_palette_png(buffer, labels.cpu().numpy().astype(np.uint8))
    atomic_write(path, buffer.getvalue())


def class_colours(num_classes: int) -> list[tuple[int, int, int]]:
    """One fixed, distinct colour per class (golden-ratio hue steps)."""
    return [
        tuple(int(255 * c) for c in colorsys.hsv_to_rgb((i * GOLDEN_RATIO_HUE) % 1.0, 0.85, 1.0))
        for i in range(num_classes)
    ]


def class_name(label: int, classes: Sequence[str]) -> str:
    return classes[label - 1] if 0 < label <= len(classes) else str(label)


def overlay_semantic(image: Tensor, labels: Tensor, alpha: float = SEMANTIC_ALPHA) -> Tensor:
    """``Tensor[3, H, W]`` in [0, 1] + ``Tensor[H, W]`` classes -> ``Tensor[3, H, W]`` float, classes blended in."""
    colour = PALETTE_RGB[labels.long().cpu()].permute(2, 0, 1)  # [H, W, 3] -> [3, H, W]
    return torch.where(labels.cpu().bool(), (1 - alpha) * image + alpha * colour, image)


def draw_prediction(
    image: Tensor, pred: dict[str, Tensor], classes: Sequence[str], *, score_threshold: float = DRAW_SCORE_THRESHOLD
) -> Tensor:
    """``Tensor[3, H, W]`` float in [0, 1] + one image's prediction -> ``Tensor[3, H, W]`` uint8 drawing.

    Draws the detections whose ``scores`` are ``>= score_threshold`` (all of them when ``pred`` has
    no ``scores``); a semantic map is drawn whole.
    """
    image = image.cpu()
    if "scores" in pred:
        keep = pred["scores"].cpu() >= score_threshold  # [K] bool
        pred = {k: v.cpu()[keep] if k in ("boxes", "labels", "scores", "masks") else v for k, v in pred.items()}
    if "semantic" in pred:
        image = overlay_semantic(image, pred["semantic"])
    canvas = (image.clamp(0, 1) * 255).round().to(torch.uint8)
    if "boxes" not in pred or len(pred["boxes"]) == 0:
        return canvas
    colours = class_colours(len(classes))
    labels = pred["labels"].tolist()
    box_colours = [colours[(label - 1) % len(colours)] for label in labels]
    if "masks" in pred:
        masks = pred["masks"].cpu()
        masks = (masks[:, 0] if masks.dim() == 4 else masks) > MASK_THRESHOLD  # [K, 1, H, W] or [K, H, W] -> [K, H, W]
        canvas = draw_segmentation_masks(canvas, masks, alpha=MASK_ALPHA, colors=box_colours)
    names = [class_name(label, classes) for label in labels]
    if "scores" in pred:
        names = [f"{name} {score:.2f}" for name, score in zip(names, pred["scores"].tolist())]
    return draw_bounding_boxes(canvas, pred["boxes"].cpu(), labels=names, colors=box_colours, width=BOX_LINE_WIDTH)
