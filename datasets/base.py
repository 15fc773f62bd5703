"""Base class shared by every reader: numpy record -> optional transforms -> tensors.

A reader implements ``__len__`` and ``load(i)``; ``load`` returns the image as
``np.ndarray[H, W, 3]`` uint8 RGB and a target dict of numpy arrays (keys as in
``docs/ARCHITECTURE.md``: ``boxes [K, 4]`` float32 xyxy pixels, ``labels [K]`` int64,
``difficult [K]`` bool, ``iscrowd [K]`` bool, optional ``masks [K, H, W]`` uint8 and
``semantic [H, W]`` uint8, plus ``image_id`` int and ``orig_size`` ``(H, W)``).
"""

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

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


class DetectionDataset(Dataset):
    """Subclasses implement ``__len__``, ``load`` and set ``classes`` (foreground names).

    ``dataset[i] -> (Tensor[3, H, W], target)`` with labels ``1..C`` (0 is background).
    """

    classes: list[str]

    def __init__(self, transforms: Transforms | None = None) -> None:
        self.transforms = transforms

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int) -> tuple[np.ndarray, Target]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        image, target = self.load(index)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image_to_tensor(image), target_to_tensors(target)
