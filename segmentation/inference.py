"""Batch semantic segmentation over an image folder: VOC palette masks and overlays, resumable.

Inputs are the records of ``datasets.folder.ImageFolder`` (``image`` ``Tensor[3, H, W]`` in
``[0, 1]`` or ``None``, ``path``, ``error``). Outputs in ``out_dir``, for an input ``<dir>/<name>.<ext>``:

- ``masks/<dir>/<name>.png``: the predicted class of every pixel as a VOC palette PNG (0
  background, 1..C), readable as a ``SegmentationClass`` file by ``datasets.voc.VOCSegmentation``;
- ``overlays/<dir>/<name>.png``: the image with the classes blended in their palette colours;
- ``errors.txt``: ``<relative path>\\t<reason>`` per unreadable file.

Every file is written to a temporary name and renamed, the overlay before the mask, so an
existing mask marks a finished image: a rerun skips it and nothing written is ever lost or
half-written. Unreadable files are retried on a rerun (they have no mask) and ``errors.txt`` is
rewritten at the end of each run with those still unreadable.
"""

import io
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from datasets.folder import ImageFolder, ImageRecord
from datasets.palette import VOID_INDEX, save_palette_png, voc_palette
from detection.inference import atomic_write, relative_path, save_png

MASKS_DIR = "masks"
OVERLAYS_DIR = "overlays"
ERRORS_TXT = "errors.txt"
OVERLAY_ALPHA = 0.5
PALETTE_RGB = torch.tensor(voc_palette(), dtype=torch.float32).view(-1, 3) / 255  # [256, 3] in [0, 1]


@dataclass
class SegmentSummary:
    total: int  # files in the folder
    skipped: int  # masks already written by an earlier run
    processed: int  # segmented in this run
    errors: int  # unreadable files
    out_dir: Path


def mask_name(rel: str) -> str:
    """``a/b.jpg -> a/b.png``: the VOC ``SegmentationClass`` name of an input's mask."""
    return PurePosixPath(rel).with_suffix(".png").as_posix()


def overlay(image: Tensor, labels: Tensor, alpha: float = OVERLAY_ALPHA) -> Tensor:
    """``Tensor[3, H, W]`` in [0, 1] + ``Tensor[H, W]`` labels -> ``Tensor[3, H, W]`` uint8, classes blended in."""
    colour = PALETTE_RGB[labels.long()].permute(2, 0, 1)  # [H, W, 3] -> [3, H, W]
    blended = torch.where(labels.bool(), (1 - alpha) * image + alpha * colour, image)
    return (blended.clamp(0, 1) * 255).round().to(torch.uint8)


def save_mask(path: Path, labels: Tensor) -> None:
    """``Tensor[H, W]`` labels -> a VOC palette PNG, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    save_palette_png(buffer, labels.numpy().astype(np.uint8))
    atomic_write(path, buffer.getvalue())


def segment_batch(model: nn.Module, images: list[Tensor]) -> list[Tensor]:
    """Images of any sizes -> their ``Tensor[H_i, W_i]`` int64 label maps (padded into one batch)."""
    height, width = max(i.shape[1] for i in images), max(i.shape[2] for i in images)
    batch = torch.stack([F.pad(i, (0, width - i.shape[2], 0, height - i.shape[1])) for i in images])
    with torch.inference_mode():
        labels = model(batch).argmax(dim=1)  # [N, C + 1, H, W] -> [N, H, W]
    return [label[: i.shape[1], : i.shape[2]].cpu() for label, i in zip(labels, images)]


def _keep_all(batch: list) -> list:
    return batch


def predict_masks(
    model: nn.Module,
    dataset: ImageFolder,
    *,
    out_dir: str | Path,
    batch_size: int = 4,
    draw: bool = True,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    progress: Callable[[Iterable, int], Iterable] | None = None,
) -> SegmentSummary:
    """Segment every image of ``dataset`` whose mask is not yet in ``out_dir`` (see module doc)."""
    root, out_dir = Path(os.path.abspath(dataset.root)), Path(os.path.abspath(out_dir))
    if out_dir == root or root in out_dir.parents:
        raise ValueError(f"--out {out_dir} is inside --input {root}: a rerun would segment its own masks")
    listing = [relative_path(p, root) for p in dataset.paths]
    names: dict[str, str] = {}
    for rel in listing:
        if (other := names.setdefault(mask_name(rel), rel)) != rel:
            raise ValueError(f"{other} and {rel} would both write {MASKS_DIR}/{mask_name(rel)}; rename one")
    todo = [i for i, rel in enumerate(listing) if not (out_dir / MASKS_DIR / mask_name(rel)).is_file()]
    loader = DataLoader(Subset(dataset, todo), batch_size=batch_size, num_workers=num_workers, collate_fn=_keep_all)
    batches: Iterable = loader if progress is None else progress(loader, len(loader))

    if getattr(model, "num_classes", 0) >= VOID_INDEX:
        raise ValueError(f"{model.num_classes} classes do not fit a palette PNG (at most {VOID_INDEX - 1})")
    model.eval().to(device)
    errors: list[str] = []
    processed = 0
    try:
        for batch in batches:
            readable = [r.image is not None and r.error is None for r in batch]
            records: list[ImageRecord] = [r for r, ok in zip(batch, readable) if ok]
            errors += [f"{relative_path(r.path, root)}\t{r.error or 'unreadable'}\n" for r, ok in zip(batch, readable) if not ok]
            if not records:
                continue
            labels = segment_batch(model, [r.image.to(device) for r in records])
            for record, label in zip(records, labels):
                name = mask_name(relative_path(record.path, root))
                if draw:
                    save_png(overlay(record.image.cpu(), label), out_dir / OVERLAYS_DIR / name)
                save_mask(out_dir / MASKS_DIR / name, label)  # last: an existing mask marks a finished image
                processed += 1
    finally:  # also after an interruption
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(out_dir / ERRORS_TXT, "".join(sorted(errors)).encode())
    return SegmentSummary(
        total=len(listing), skipped=len(listing) - len(todo), processed=processed, errors=len(errors), out_dir=out_dir
    )
