"""Opening untrusted dataset files: images, XML annotations and palette masks.

Every failure becomes a :class:`~datasets.errors.DatasetError` naming the file:
- a path that leaves the dataset root (``../../etc/passwd``, a symlink pointing out);
- a missing, zero-byte, corrupt or truncated image;
- a decompression bomb: PIL's guard (``Image.MAX_IMAGE_PIXELS``) stays on, and its warning
  (above the limit) is treated as an error too, so a bomb is never decoded;
- malformed XML, or XML with entity declarations (defusedxml refuses to expand them).

Images come back as ``np.ndarray[H, W, 3]`` uint8 RGB with the EXIF orientation applied;
grayscale, RGBA, palette and 16-bit images are converted.
"""

import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import parse as defused_parse
from PIL import Image, ImageOps, UnidentifiedImageError

from datasets.errors import DatasetError

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


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


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to ``np.ndarray[H, W, 3]`` uint8 RGB, EXIF orientation applied."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "image file is missing")
    if path.stat().st_size == 0:
        raise DatasetError(path, "image file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                image = ImageOps.exif_transpose(image)
                return np.array(_to_rgb(image), dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DatasetError(path, f"refused as a decompression bomb ({error})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DatasetError(path, f"corrupt or truncated image ({error})") from None


def image_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` from the header, with the bomb guard on; decodes nothing else."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.verify()
                width, height = image.size
                if width * height > (Image.MAX_IMAGE_PIXELS or float("inf")):
                    raise Image.DecompressionBombError(f"{width}x{height} pixels")
                return height, width
    except FileNotFoundError:
        raise DatasetError(path, "image file is missing") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DatasetError(path, f"refused as a decompression bomb ({error})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DatasetError(path, f"corrupt or unreadable image ({error})") from None


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
