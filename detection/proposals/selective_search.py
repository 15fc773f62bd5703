"""Selective search region proposals (Uijlings et al. 2013), through OpenCV contrib's ``ximgproc``.

Felzenszwalb graph segmentations of the image in several colour spaces and thresholds ``k``
are grouped hierarchically by colour, texture, size and fill similarity; every group's
bounding box is a proposal. ``"fast"`` and ``"quality"`` are the paper's two diversification
settings (``switchToSelectiveSearchFast`` / ``...Quality``, OpenCV's defaults ``k = 150 +
150 i``, ``sigma = 0.8``).

OpenCV ranks the regions by ``level * rand()`` (the paper's pseudo-random ordering) with the C
library's ``rand()``; :func:`selective_search` seeds it with ``srand(RANK_SEED)`` before every
call, under a lock, so that the order, and so the first ``max_proposals``, repeat exactly.

Shape letters: ``R`` proposals, ``H, W`` image size.

``opencv-contrib-python-headless`` provides ``cv2.ximgproc``; it must be the same version as the
``opencv-python-headless`` that albumentations pulls in, installed after it (see the Makefile).
"""

import ctypes
import ctypes.util
import importlib.metadata
import sys
import threading
from types import ModuleType
from typing import Literal

import numpy as np
import torch
from torch import Tensor

SelectiveSearchMode = Literal["fast", "quality"]
MODES: tuple[str, ...] = ("fast", "quality")

MAX_PROPOSALS = 2000  # R-CNN and Fast R-CNN use about 2000 selective-search boxes per image
MIN_BOX_SIDE = 4  # px: thinner or shorter boxes are dropped (single-segment slivers)
RANK_SEED = 0  # srand() seed for OpenCV's pseudo-random region ranking
OPENCV_THREADS = 1  # selective search is sequential; one thread keeps OpenCV off torch's cores
XYWH_X, XYWH_Y, XYWH_W, XYWH_H = range(4)  # columns of OpenCV's rects

_LOCK = threading.Lock()  # srand + process must not interleave between threads


def install_command() -> str:
    """The pip command that adds ``cv2.ximgproc`` to this environment."""
    try:
        version = "==" + importlib.metadata.version("opencv-python-headless")
    except importlib.metadata.PackageNotFoundError:
        version = ""
    return f"{sys.executable} -m pip install --no-deps opencv-contrib-python-headless{version}"


def load_ximgproc() -> ModuleType:
    """``cv2`` with the contrib ``ximgproc`` module, or an ImportError saying how to install it."""
    import cv2

    if not hasattr(cv2, "ximgproc"):
        raise ImportError(
            f"selective search needs OpenCV's contrib module cv2.ximgproc, which this cv2 "
            f"({cv2.__version__}, {cv2.__file__}) lacks. Install the contrib build of the same version "
            f"over it:\n    {install_command()}"
        )
    return cv2


def _libc_srand():
    """The C library's ``srand``, which seeds the ``rand()`` OpenCV ranks regions with (None if unknown)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).srand if name else None
    except (OSError, AttributeError):
        return None


_SRAND = _libc_srand()


def image_to_uint8(image: Tensor) -> np.ndarray:
    """``Tensor[3, H, W]`` float in ``[0, 1]`` -> ``np.ndarray[H, W, 3]`` uint8 RGB, by ``round(x * 255)``.

    The exact inverse of ``datasets.base.image_to_tensor`` (``u / 255``), so a dataset image and the
    tensor the model receives give the same bytes (and the same proposal-cache key).
    """
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected an image Tensor[3, H, W], got shape {tuple(image.shape)}")
    pixels = image.detach().mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
    return pixels.permute(1, 2, 0).contiguous().cpu().numpy()  # [3, H, W] -> [H, W, 3]


def rects_to_boxes(rects: np.ndarray, *, height: int, width: int, max_proposals: int, min_size: int) -> Tensor:
    """OpenCV's ``rects [R, 4]`` int xywh -> ``Tensor[R', 4]`` float32 xyxy pixels.

    Clips to the image, drops boxes with a side below ``min_size``, removes duplicates (the first
    occurrence stays) and keeps the first ``max_proposals``, all in OpenCV's ranking order.
    """
    rects = np.asarray(rects, dtype=np.int64).reshape(-1, 4)
    x1, y1 = rects[:, XYWH_X], rects[:, XYWH_Y]
    boxes = np.stack([x1, y1, x1 + rects[:, XYWH_W], y1 + rects[:, XYWH_H]], axis=1)  # pixel edges
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    boxes = boxes[sides >= max(min_size, 1)]
    _, first = np.unique(boxes, axis=0, return_index=True)
    boxes = boxes[np.sort(first)][:max_proposals]
    return torch.from_numpy(boxes.astype(np.float32)).reshape(-1, 4)


def selective_search(
    image: np.ndarray,
    *,
    mode: SelectiveSearchMode,
    max_proposals: int = MAX_PROPOSALS,
    min_size: int = MIN_BOX_SIDE,
) -> Tensor:
    """Proposals for one image: ``np.ndarray[H, W, 3]`` uint8 RGB -> ``Tensor[R, 4]`` float32 xyxy.

    ``R <= max_proposals``, in OpenCV's (seeded) ranking order; every box lies inside the image
    and has both sides ``>= min_size`` pixels.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{type(image).__name__} {getattr(image, 'dtype', '')} {getattr(image, 'shape', '')}"
        raise ValueError(f"selective_search expects an np.ndarray[H, W, 3] uint8 RGB image, got {got}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if max_proposals < 1:
        raise ValueError(f"max_proposals must be >= 1, got {max_proposals}")
    cv2 = load_ximgproc()
    height, width = image.shape[:2]
    bgr = np.ascontiguousarray(image[:, :, ::-1])  # OpenCV's colour conversions assume BGR
    with _LOCK:
        threads = cv2.getNumThreads()
        cv2.setNumThreads(OPENCV_THREADS)
        try:
            search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
            search.setBaseImage(bgr)
            if mode == "fast":
                search.switchToSelectiveSearchFast()
            else:
                search.switchToSelectiveSearchQuality()
            if _SRAND is not None:
                _SRAND(RANK_SEED)
            rects = search.process()
        finally:
            cv2.setNumThreads(threads)
    return rects_to_boxes(rects, height=height, width=width, max_proposals=max_proposals, min_size=min_size)
