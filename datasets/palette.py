"""The PASCAL VOC colour palette and palette-PNG writing.

VOC stores class and instance masks as palette ("P" mode) PNGs: each pixel holds an index
(0 background, 1..C classes or instances, 255 void) and the palette only colours it.
"""

import functools
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

VOID_INDEX = 255


@functools.cache
def voc_palette() -> tuple[int, ...]:
    """The devkit's 256-colour palette as a flat ``(r0, g0, b0, r1, ...)`` tuple of 768 ints (built once)."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette.extend((r, g, b))
    return tuple(palette)


def save_palette_png(path: str | Path | BinaryIO, indices: np.ndarray) -> None:
    """Write ``[H, W]`` uint8 class/instance indices as a VOC palette PNG (to a path or a binary file)."""
    indices = np.asarray(indices)
    if indices.ndim != 2 or indices.dtype != np.uint8:
        raise ValueError(f"expected [H, W] uint8 indices, got {indices.shape} {indices.dtype}")
    image = Image.fromarray(indices, mode="P")
    image.putpalette(voc_palette())
    image.save(path, format="PNG")
