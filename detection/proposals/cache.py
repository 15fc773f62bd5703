"""A content-addressed disk cache of selective-search proposals.

Selective search costs tens of milliseconds (128-px shapes) to seconds (VOC, ``quality``) per
image, and its result depends only on the pixels and the settings, so it is computed once:

- the key is ``sha1(version, mode, max_proposals, min_size, H, W, uint8 pixels)``: the same
  image under the same settings always finds its entry, whatever dataset or file it came from;
- an image and its horizontal mirror share one entry: of the two orientations the one with
  the smaller key is *canonical*, selective search runs on it, and the other orientation gets
  the mirrored boxes (``x -> W - x``). Proposals therefore flip exactly with the image, so
  flip-augmented training (``DetectionDataModule(augment="flip")``) hits the cache too, as
  Fast R-CNN flips its precomputed proposals with the image;
- each entry is one ``<root>/<key[:2]>/<key>.pt`` holding ``Tensor[R, 4]`` float32 xyxy,
  written to a temporary file and ``os.replace``-d into place (readers never see half a file);
- entries load with ``torch.load(weights_only=True)``; an unreadable or malformed one is
  recomputed and overwritten, with a warning;
- ``precomputed`` optionally names one ``.pt`` file holding ``dict[key, Tensor[R, 4]]`` (what
  ``scripts/make_proposals.py --bundle`` writes, canonical orientation), consulted before the
  directory.

``root=None`` computes every time. A hit and a miss return the same tensor, so the cache is
pure memoisation: callers see a function of the image alone.
"""

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torchvision.transforms.v2.functional import horizontal_flip_bounding_boxes
from torchvision.tv_tensors import BoundingBoxFormat

from detection.proposals.selective_search import (
    MAX_PROPOSALS,
    MIN_BOX_SIDE,
    MODES,
    RANK_SEED,
    SelectiveSearchMode,
    selective_search,
)

CACHE_VERSION = 2  # bump when the proposal algorithm or the file format changes (2: canonical orientation)


def is_box_tensor(value: object) -> bool:
    """A well-formed entry: ``Tensor[R, 4]`` float32, finite."""
    return (
        isinstance(value, Tensor)
        and value.dtype == torch.float32
        and value.ndim == 2
        and value.shape[1] == 4
        and bool(torch.isfinite(value).all())
    )


class ProposalCache:
    """``get_or_compute(image np.ndarray[H, W, 3] uint8 RGB) -> Tensor[R, 4]`` float32 xyxy pixels.

    Args:
        root: the cache directory (created on the first write), or None to compute every time.
        mode, max_proposals, min_size: the :func:`selective_search` settings (part of the key).
        precomputed: a ``.pt`` file with ``dict[key, Tensor[R, 4]]``, read lazily.
    """

    def __init__(
        self,
        root: str | Path | None,
        *,
        mode: SelectiveSearchMode = "fast",
        max_proposals: int = MAX_PROPOSALS,
        min_size: int = MIN_BOX_SIDE,
        precomputed: str | Path | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.root = Path(root) if root is not None else None
        self.mode = mode
        self.max_proposals = max_proposals
        self.min_size = min_size
        self.precomputed_path = Path(precomputed) if precomputed is not None else None
        self._precomputed: dict[str, Tensor] | None = None
        settings = {"version": CACHE_VERSION, "mode": mode, "max_proposals": max_proposals,
                    "min_size": min_size, "rank_seed": RANK_SEED}
        self._settings = json.dumps(settings, sort_keys=True).encode()

    def __repr__(self) -> str:
        return (f"ProposalCache(root={self.root}, mode={self.mode!r}, max_proposals={self.max_proposals}, "
                f"min_size={self.min_size}, precomputed={self.precomputed_path})")

    # ----------------------------------------------------------------------------- keys
    def _digest(self, image: np.ndarray) -> str:
        """The hex sha1 of the settings, the shape and the pixels of ``image [H, W, 3]`` uint8."""
        digest = hashlib.sha1(self._settings)
        digest.update(repr(image.shape).encode())
        digest.update(np.ascontiguousarray(image).tobytes())
        return digest.hexdigest()

    def canonical(self, image: np.ndarray) -> tuple[str, bool]:
        """``(key, mirrored)``: the entry's key and whether the canonical orientation is ``image``'s mirror."""
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
            raise ValueError(f"expected an np.ndarray[H, W, 3] uint8 image, got {type(image).__name__} "
                             f"{getattr(image, 'dtype', '')} {getattr(image, 'shape', '')}")
        own, mirror = self._digest(image), self._digest(image[:, ::-1])
        return (mirror, True) if mirror < own else (own, False)

    def key(self, image: np.ndarray) -> str:
        """The key of ``image``'s entry (shared with its mirror image)."""
        return self.canonical(image)[0]

    def path(self, key: str) -> Path:
        if self.root is None:
            raise ValueError("this ProposalCache has no root directory")
        return self.root / key[:2] / f"{key}.pt"

    # ----------------------------------------------------------------------------- lookups
    def compute(self, image: np.ndarray) -> Tensor:
        return selective_search(image, mode=self.mode, max_proposals=self.max_proposals, min_size=self.min_size)

    def precomputed(self) -> dict[str, Tensor]:
        """The ``precomputed`` bundle (empty without one), loaded and checked once."""
        if self._precomputed is None:
            self._precomputed = {}
            if self.precomputed_path is not None:
                bundle = torch.load(self.precomputed_path, map_location="cpu", weights_only=True)
                if not isinstance(bundle, dict) or not all(
                    isinstance(k, str) and is_box_tensor(v) for k, v in bundle.items()
                ):
                    raise ValueError(f"{self.precomputed_path}: expected a dict of key -> Tensor[R, 4] float32")
                self._precomputed = bundle
        return self._precomputed

    def load(self, key: str) -> Tensor | None:
        """The stored entry, or None when it is missing or unreadable (warned)."""
        if self.root is None:
            return None
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            boxes = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 -- any unreadable file is recomputed, whatever the unpickler raised
            warnings.warn(f"proposal cache entry {path} is unreadable ({type(error).__name__}); recomputing it")
            return None
        if not is_box_tensor(boxes):
            warnings.warn(f"proposal cache entry {path} is not a Tensor[R, 4] float32; recomputing it")
            return None
        return boxes

    def save(self, key: str, boxes: Tensor) -> Path:
        """Write one entry atomically: a temporary file in the same directory, then ``os.replace``."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key}.", suffix=".tmp")
        os.close(handle)
        try:
            torch.save(boxes.contiguous(), tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def _stored(self, key: str, image: np.ndarray, mirrored: bool) -> Tensor:
        """The entry ``key`` in the canonical orientation; computed (and saved) on a miss."""
        boxes = self.precomputed().get(key)
        if boxes is None:
            boxes = self.load(key)
        if boxes is None:
            boxes = self.compute(np.ascontiguousarray(image[:, ::-1]) if mirrored else image)
            if self.root is not None:
                self.save(key, boxes)
        return boxes

    def entry(self, image: np.ndarray) -> tuple[str, Tensor]:
        """``(key, boxes)`` of ``image``'s entry, boxes in the canonical orientation (for bundles)."""
        key, mirrored = self.canonical(image)
        return key, self._stored(key, image, mirrored)

    def get_or_compute(self, image: np.ndarray) -> Tensor:
        """The proposals of ``image [H, W, 3]`` uint8 RGB: ``Tensor[R, 4]`` float32 xyxy pixels."""
        key, mirrored = self.canonical(image)
        boxes = self._stored(key, image, mirrored)
        if mirrored:
            return mirror_boxes(boxes, width=image.shape[1])
        return boxes.clone()  # callers may move or edit it; the bundle stays intact


def mirror_boxes(boxes: Tensor, *, width: int) -> Tensor:
    """Boxes ``[R, 4]`` xyxy of an image ``width`` pixels wide -> the same boxes in its horizontal mirror (a copy)."""
    return horizontal_flip_bounding_boxes(boxes, format=BoundingBoxFormat.XYXY, canvas_size=(1, width))
