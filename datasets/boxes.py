"""Box-format conversions, used only at dataset and report boundaries.

Inside detseg a box is ``(x1, y1, x2, y2)`` in absolute float pixels with continuous,
0-based coordinates: a box covering pixel columns ``0..9`` inclusive has ``x1 = 0`` and
``x2 = 10``.

PASCAL VOC stores 1-based *inclusive* pixel indices: the same box is ``xmin = 1``,
``xmax = 10``. Hence, for each axis::

    x1 = xmin - 1        x2 = xmax            (VOC -> detseg)
    xmin = x1 + 1        xmax = x2            (detseg -> VOC)

The two are exact inverses, also for the float coordinates some VOC exporters write.

COCO stores ``[x, y, width, height]`` in the same continuous 0-based coordinates as
detseg, so only the corner/size conversion is needed.
"""

import numpy as np

VOC_PIXEL_OFFSET = 1.0  # VOC indices are 1-based


def voc_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """VOC ``(xmin, ymin, xmax, ymax)`` 1-based inclusive -> detseg xyxy. ``[K, 4] -> [K, 4]``."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    out = boxes.copy()
    out[:, :2] -= VOC_PIXEL_OFFSET
    return out


def xyxy_to_voc(boxes: np.ndarray) -> np.ndarray:
    """detseg xyxy -> VOC ``(xmin, ymin, xmax, ymax)`` 1-based inclusive. ``[K, 4] -> [K, 4]``."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    out = boxes.copy()
    out[:, :2] += VOC_PIXEL_OFFSET
    return out


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """COCO ``[x, y, w, h]`` -> xyxy. ``[K, 4] -> [K, 4]``."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    out = boxes.copy()
    out[:, 2:] += out[:, :2]
    return out


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """xyxy -> COCO ``[x, y, w, h]``. ``[K, 4] -> [K, 4]``."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    out = boxes.copy()
    out[:, 2:] -= out[:, :2]
    return out
