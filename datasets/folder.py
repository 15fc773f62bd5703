"""A folder of images for batch inference.

Files are found recursively (common image extensions, case-insensitive) and sorted by
relative path; image ids number them from 1 in that order. Each item is an
:class:`ImageRecord`: the decoded image (EXIF orientation applied; grayscale, RGBA, palette and
16-bit converted to RGB) with its original path, size and image id, or, for a file that cannot be read, ``image=None`` and the reason in ``error``. Batch
inference skips such records and lists them in its errors file; it never stops on them.
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from datasets.base import image_to_tensor
from datasets.errors import DatasetError
from datasets.safe_io import read_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@dataclass
class ImageRecord:
    image: torch.Tensor | None  # [3, H, W] float32 in [0, 1]
    path: str
    orig_size: tuple[int, int] | None  # (H, W)
    error: str | None = None
    image_id: int = 0

    def pin_memory(self) -> "ImageRecord":
        """The record with its image in page-locked memory (a ``DataLoader`` with ``pin_memory=True``
        calls this), so the copy to a GPU can be ``non_blocking``."""
        return dataclasses.replace(self, image=None if self.image is None else self.image.pin_memory())


class ImageFolder(torch.utils.data.Dataset):
    def __init__(self, root: str | Path, *, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(self.root, "input folder does not exist")
        wanted = {e.lower() for e in extensions}
        self.paths = sorted(
            (p for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in wanted),
            key=lambda p: p.relative_to(self.root).as_posix(),
        )

    @property
    def image_ids(self) -> list[int]:
        return list(range(1, len(self.paths) + 1))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> ImageRecord:
        path = self.paths[index]
        try:
            image = read_image(path)
        except DatasetError as error:
            return ImageRecord(image=None, path=str(path), orig_size=None, error=error.problem, image_id=index + 1)
        return ImageRecord(image=image_to_tensor(image), path=str(path), orig_size=image.shape[:2], image_id=index + 1)
