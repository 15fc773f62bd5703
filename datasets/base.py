"""Base class shared by every reader: numpy record -> optional transforms -> tensors.

A reader implements ``__len__`` and ``load(i)``; ``load`` returns the image as
``np.ndarray[H, W, 3]`` uint8 RGB and a target dict of numpy arrays (keys as in
``docs/ARCHITECTURE.md``: ``boxes [K, 4]`` float32 xyxy pixels, ``labels [K]`` int64,
``difficult [K]`` bool, ``iscrowd [K]`` bool, optional ``masks [K, H, W]`` uint8 and
``semantic [H, W]`` uint8, plus ``image_id`` int and ``orig_size`` ``(H, W)``).

Unreadable samples (``docs/bad_input.md``): by default ``dataset[i]`` raises the reader's
``DatasetError``, which evaluation needs (dropping an image would drop its ground truth and
inflate the scores). A training split sets ``dataset.bad_images = BadImageLog(...)``: then
``dataset[i]`` returns ``None`` for an unreadable sample (``collate_detection`` drops it),
warns, appends ``<path>\t<problem>`` to the log file, and raises only once more than
``max_fraction`` of the reader's images have been found unreadable.
"""

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from datasets.errors import DatasetError

Target = dict[str, Any]
Transforms = Callable[[np.ndarray, Target], tuple[np.ndarray, Target]]

_TENSOR_DTYPES = {
    "boxes": torch.float32,
    "area": torch.float32,
    "labels": torch.int64,
    "difficult": torch.bool,
    "iscrowd": torch.bool,
    "masks": torch.uint8,
    "semantic": torch.int64,
}


def semantic_target(semantic: np.ndarray, image_id: int, orig_size: tuple[int, int]) -> Target:
    """The target of a semantic reader's sample: no objects, the class map ``semantic [H, W]``
    (0 background, ``1..C``, 255 void)."""
    empty = np.zeros(0, dtype=bool)
    return {
        "boxes": np.zeros((0, 4), np.float32),
        "labels": np.zeros(0, np.int64),
        "difficult": empty,
        "iscrowd": empty,
        "semantic": semantic,
        "image_id": image_id,
        "orig_size": orig_size,
    }


def target_to_tensors(target: Target) -> dict[str, Any]:
    """Numpy target -> tensor target; keys outside the tensor set pass through unchanged."""
    out = dict(target)
    for key, dtype in _TENSOR_DTYPES.items():
        if key in out:
            out[key] = torch.as_tensor(np.ascontiguousarray(out[key])).to(dtype)
    if "boxes" in out:
        out["boxes"] = out["boxes"].reshape(-1, 4)
    return out


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """``np.ndarray[H, W, 3]`` uint8 -> ``Tensor[3, H, W]`` float32 in ``[0, 1]``."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


@dataclass
class BadImageLog:
    """Where a training reader lists the samples it skipped, and how many it may skip.

    ``path`` is shared by every DataLoader worker (and DDP rank): each appends its findings, and
    the count of distinct files listed there is what ``max_fraction`` bounds.
    """

    path: Path
    max_fraction: float = 0.01
    _seen: set[str] = field(default_factory=set, repr=False)

    def record(self, error: DatasetError, total: int) -> None:
        """List ``error``'s file once; ``DatasetError`` when the listed files exceed ``max_fraction`` of ``total``."""
        if error.path not in self._seen:
            self._seen.add(error.path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as log:
                log.write(f"{error.path}\t{error.problem}\n")
            warnings.warn(f"skipped unreadable sample {error} (listed in {self.path})", stacklevel=3)
        listed = self.listed()
        if len(listed) > self.max_fraction * total:
            raise DatasetError(
                self.path,
                f"{len(listed)} of {total} images are unreadable, more than max_bad_fraction={self.max_fraction}; "
                "run scripts/check_dataset.py and fix or remove them",
            )

    def listed(self) -> dict[str, str]:
        """``{file: problem}`` of every sample skipped so far (by any worker)."""
        if not self.path.is_file():
            return {}
        lines = self.path.read_text(encoding="utf-8").splitlines()
        return dict(line.split("\t", 1) for line in lines if "\t" in line)


class DetectionDataset(Dataset):
    """Subclasses implement ``__len__``, ``load`` and set ``classes`` (foreground names).

    ``dataset[i] -> (Tensor[3, H, W], target)`` with labels ``1..C`` (0 is background).
    """

    classes: list[str]
    bad_images: BadImageLog | None = None  # set for training: skip unreadable samples

    def __init__(self, transforms: Transforms | None = None) -> None:
        self.transforms = transforms

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def image_ids(self) -> list[int]:
        """The ``image_id`` of every item, in order, without reading anything: the index in split
        order (``docs/ARCHITECTURE.md``); a reader with its own ids (COCO) overrides this."""
        return list(range(len(self)))

    def load(self, index: int) -> tuple[np.ndarray, Target]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]] | None:
        try:
            image, target = self.load(index)
        except DatasetError as error:
            if self.bad_images is None:
                raise
            self.bad_images.record(error, total=len(self))
            return None
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image_to_tensor(image), target_to_tensors(target)
