"""Opening untrusted dataset files: images, XML annotations and palette masks.

Every failure becomes a :class:`~datasets.errors.DatasetError` naming the file:
- a path that leaves the dataset root (``../../etc/passwd``, a symlink pointing out);
- a missing, zero-byte or corrupt image, or one truncated so much that rows come out blank;
  an image missing only its trailing bytes is decoded (``ImageFile.LOAD_TRUNCATED_IMAGES`` for
  that one decode, never globally) and reported as a warning :class:`~datasets.errors.Problem`;
- a decompression bomb: PIL's guard (``Image.MAX_IMAGE_PIXELS``) stays on, and its warning
  (above the limit) is treated as an error too, so a bomb is never decoded;
- malformed XML, or XML with entity declarations (defusedxml refuses to expand them).

Images come back as ``np.ndarray[H, W, 3]`` uint8 RGB with the EXIF orientation applied;
grayscale, RGBA, palette and 16-bit images are converted.
"""

import threading
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import parse as defused_parse
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from datasets.errors import DatasetError, Problem

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
TRUNCATED_BLANK_LIMIT = 0.1  # a truncated image with more blank bottom rows than this is refused
_TRUNCATED_LOCK = threading.Lock()


def resolve_inside(root: str | Path, relative: str | Path) -> Path:
    """``root / relative`` resolved, or ``DatasetError`` if it escapes ``root``."""
    root = Path(root).resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise DatasetError(relative, f"path leaves the dataset root {root}")
    return path


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in SIXTEEN_BIT_MODES:
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") else max(float(array.max()), 1.0)
        return Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA"):
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


def _blank_bottom_rows(image: Image.Image) -> int:
    """How many rows at the bottom are one flat colour (where a cut-short baseline JPEG ends up grey)."""
    rows = np.asarray(image).reshape(image.height, -1)  # [H, W * bands]
    flat = rows.max(axis=1) == rows.min(axis=1)  # [H]
    return image.height if flat.all() else int(np.argmin(flat[::-1]))


def _decode(path: Path, *, truncated: bool = False) -> tuple[np.ndarray, float]:
    """``(np.ndarray[H, W, 3] uint8 RGB, fraction of blank bottom rows)``; PIL errors pass through.

    The blank fraction is measured (before EXIF rotation) only for a ``truncated`` decode, else 0.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            image.load()
            blank = _blank_bottom_rows(image) / image.height if truncated else 0.0
            image = ImageOps.exif_transpose(image)
            return np.array(_to_rgb(image), dtype=np.uint8), blank


@contextmanager
def _truncated_images_allowed() -> Iterator[None]:
    """PIL's ``LOAD_TRUNCATED_IMAGES`` for one decode only (a module global: set and restored under a lock)."""
    with _TRUNCATED_LOCK:
        previous = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous


def decode_image(path: str | Path) -> tuple[np.ndarray, list[Problem]]:
    """Decode an image file to ``np.ndarray[H, W, 3]`` uint8 RGB (EXIF orientation applied) and its warnings.

    A file missing only its last bytes (PIL: "image file is truncated") is decoded again with
    truncated loading allowed, as OpenCV and browsers do, and reported as a warning; it is refused
    when more than ``TRUNCATED_BLANK_LIMIT`` of its rows come out blank (the cut lost real content).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "image file is missing")
    if path.stat().st_size == 0:
        raise DatasetError(path, "image file is empty (0 bytes)")
    try:
        return _decode(path)[0], []
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DatasetError(path, f"refused as a decompression bomb ({error})") from None
    except (UnidentifiedImageError, SyntaxError, ValueError) as error:
        raise DatasetError(path, f"corrupt image ({error})") from None
    except OSError as error:
        if "truncated" not in str(error):
            raise DatasetError(path, f"corrupt image ({error})") from None
        cause = str(error)
    try:
        with _truncated_images_allowed():
            image, blank = _decode(path, truncated=True)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DatasetError(path, f"refused as a decompression bomb ({error})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DatasetError(path, f"corrupt or truncated image ({cause}; then {error})") from None
    if blank > TRUNCATED_BLANK_LIMIT:
        raise DatasetError(path, f"truncated image: the bottom {blank:.0%} of its rows are blank, content is lost ({cause})")
    note = f"truncated image, decoded without its missing trailing bytes ({cause}); {blank:.0%} blank rows at the bottom"
    return image, [Problem(str(path), note, "warning")]


def read_image(path: str | Path) -> np.ndarray:
    """:func:`decode_image`, its warnings emitted as Python warnings (``UserWarning``)."""
    image, problems = decode_image(path)
    for problem in problems:
        warnings.warn(str(problem), stacklevel=2)
    return image


def parse_xml(path: str | Path) -> ET.Element:
    """Parse an annotation file without ever expanding entities."""
    try:
        return defused_parse(str(path), forbid_dtd=True).getroot()
    except FileNotFoundError:
        raise DatasetError(path, "annotation file is missing") from None
    except DefusedXmlException as error:
        raise DatasetError(path, f"XML with a DTD or entities refused ({type(error).__name__})") from None
    except ET.ParseError as error:
        raise DatasetError(path, f"malformed XML ({error})") from None


def read_index_png(path: str | Path) -> np.ndarray:
    """A palette ("P") or grayscale PNG mask as its ``[H, W]`` uint8 indices (255 = void), not colours."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.mode not in ("P", "L"):
                    raise DatasetError(path, f"mask must be a palette or grayscale PNG, got mode {image.mode}")
                return np.array(image, dtype=np.uint8)
    except FileNotFoundError:
        raise DatasetError(path, "mask file is missing") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DatasetError(path, f"refused as a decompression bomb ({error})") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DatasetError(path, f"corrupt mask ({error})") from None
