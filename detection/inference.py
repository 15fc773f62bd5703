"""Batch inference over an image folder: batched, resumable, nothing written is ever lost.

Inputs are the records of an image-folder dataset (``datasets.folder.ImageFolder``): each has
``image`` (``Tensor[3, H, W]`` float in ``[0, 1]``, or ``None``), ``path`` (the file) and
``error`` (``None``, or why the file could not be read). Outputs in ``out_dir``:

- ``journal.jsonl``: one JSON line per finished image, appended, flushed and fsynced after each
  batch. It is the source of truth: a rerun skips every path already in it (an unreadable file
  counts as finished), and a line cut short by an interruption is ignored.
- ``predictions.json``: COCO results (``image_id, category_id, bbox [x, y, w, h], score``);
  ``category_id`` is the label ``1..C``.
- ``images.json``: ``{"images": [{id, file_name, width, height}], "categories": [{id, name}]}``;
  image ids number the folder's files in sorted relative-path order from 1, so they are the
  same for a partial and a full run.
- ``predictions.csv``: ``path, image_id, label, score, x1, y1, x2, y2`` (xyxy pixels).
- ``errors.txt``: ``<relative path>\\t<reason>`` per skipped file.
- ``drawn/<relative path>.png``: the image with boxes, label names and scores (and masks).

The four summary files are rebuilt from the journal every ``SUMMARY_EVERY_S`` seconds and when the
run ends or is interrupted, each through a temporary file and ``os.replace``, so a file is always
either its old or its new complete version; a rerun rebuilds them from the whole journal.
"""

import csv
import io
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from datasets.boxes import xyxy_to_xywh

JOURNAL = "journal.jsonl"
PREDICTIONS_JSON = "predictions.json"
IMAGES_JSON = "images.json"
PREDICTIONS_CSV = "predictions.csv"
ERRORS_TXT = "errors.txt"
DRAWN_DIR = "drawn"
CSV_HEADER = ["path", "image_id", "label", "score", "x1", "y1", "x2", "y2"]
MASK_THRESHOLD = 0.5
BOX_LINE_WIDTH = 2
MASK_ALPHA = 0.4
SUMMARY_EVERY_S = 30.0  # rebuild the summary files at most this often during a run (and at its end)


@dataclass
class PredictSummary:
    total: int  # files in the folder
    skipped: int  # already in the journal from an earlier run
    processed: int  # read and predicted in this run
    errors: int  # unreadable files, all runs
    detections: int  # boxes written, all runs
    out_dir: Path


def _field(record: Any, name: str) -> Any:
    return record[name] if isinstance(record, dict) else getattr(record, name)


def relative_path(path: str | Path, root: Path) -> str:
    """``path`` relative to ``root`` (both made absolute lexically: symlinks are not followed)."""
    absolute = Path(os.path.abspath(path))
    if not absolute.is_relative_to(root):
        raise ValueError(f"{path}: outside the input folder {root}")
    return absolute.relative_to(root).as_posix()


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_journal(path: Path) -> dict[str, dict]:
    """Finished images by relative path; a last line cut short by an interruption is dropped."""
    entries: dict[str, dict] = {}
    if not path.is_file():
        return entries
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and "path" in entry:
                entries[entry["path"]] = entry
    return entries


def _end_cut_line(path: Path, journal: Any) -> None:
    """Terminate a last line cut short by an interruption, so the next line starts clean."""
    if path.stat().st_size == 0:
        return
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) != b"\n":
            journal.write("\n")


def _palette(num_classes: int) -> list[tuple[int, int, int]]:
    """One fixed, distinct colour per class (golden-ratio hue steps)."""
    import colorsys

    return [
        tuple(int(255 * c) for c in colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.85, 1.0))
        for i in range(num_classes)
    ]


def _class_name(label: int, classes: Sequence[str]) -> str:
    return classes[label - 1] if 0 < label <= len(classes) else str(label)


def draw_detections(image: Tensor, pred: dict[str, Tensor], classes: Sequence[str]) -> Tensor:
    """``Tensor[3, H, W]`` float in [0, 1] + detections -> ``Tensor[3, H, W]`` uint8 with boxes drawn."""
    canvas = (image.clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    if len(pred["boxes"]) == 0:
        return canvas
    colours = _palette(len(classes))
    labels = pred["labels"].tolist()
    box_colours = [colours[(label - 1) % len(colours)] for label in labels]
    if "masks" in pred:
        masks = pred["masks"].cpu()
        masks = (masks[:, 0] if masks.dim() == 4 else masks) > MASK_THRESHOLD  # [K, 1, H, W] or [K, H, W] -> [K, H, W]
        canvas = draw_segmentation_masks(canvas, masks, alpha=MASK_ALPHA, colors=box_colours)
    names = [f"{_class_name(label, classes)} {score:.2f}" for label, score in zip(labels, pred["scores"].tolist())]
    return draw_bounding_boxes(canvas, pred["boxes"].cpu(), labels=names, colors=box_colours, width=BOX_LINE_WIDTH)


def save_png(image: Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, format="PNG")
    atomic_write(path, buffer.getvalue())


def write_outputs(
    entries: dict[str, dict], listing: Sequence[str], classes: Sequence[str], out_dir: Path
) -> tuple[int, int]:
    """Rebuild the summary files from the journal entries; returns ``(detections, errors)``."""
    image_ids = {rel: i + 1 for i, rel in enumerate(sorted(listing))}
    images, results, errors = [], [], []
    rows = [CSV_HEADER]
    for rel in sorted(entries):
        entry = entries[rel]
        if rel not in image_ids:
            continue  # the file has left the folder since it was predicted
        image_id = image_ids[rel]
        if "error" in entry:
            errors.append(f"{rel}\t{entry['error']}\n")
            continue
        images.append({"id": image_id, "file_name": rel, "width": entry["width"], "height": entry["height"]})
        for det in entry["detections"]:
            x, y, w, h = (float(v) for v in xyxy_to_xywh([det["box"]])[0])
            results.append(
                {"image_id": image_id, "category_id": det["label"], "bbox": [x, y, w, h], "score": det["score"]}
            )
            rows.append([rel, image_id, _class_name(det["label"], classes), f"{det['score']:.6f}", *(f"{v:.2f}" for v in det["box"])])
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(classes)]
    atomic_write(out_dir / PREDICTIONS_JSON, json.dumps(results).encode())
    atomic_write(out_dir / IMAGES_JSON, json.dumps({"images": images, "categories": categories}, indent=1).encode())
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    atomic_write(out_dir / PREDICTIONS_CSV, text.getvalue().encode())
    atomic_write(out_dir / ERRORS_TXT, "".join(errors).encode())
    return len(results), len(errors)


def _keep_all(batch: list) -> list:
    return batch


def _entry(rel: str, image: Tensor, pred: dict[str, Tensor]) -> dict:
    boxes, labels, scores = pred["boxes"].tolist(), pred["labels"].tolist(), pred["scores"].tolist()
    detections = [
        {"label": int(label), "score": round(float(score), 6), "box": [round(float(v), 3) for v in box]}
        for box, label, score in zip(boxes, labels, scores)
    ]
    return {"path": rel, "width": int(image.shape[-1]), "height": int(image.shape[-2]), "detections": detections}


def _predict_batch(
    model: nn.Module,
    batch: list,
    root: Path,
    out_dir: Path,
    classes: Sequence[str],
    score_threshold: float,
    draw: bool,
    device: str | torch.device,
) -> list[dict]:
    """One batch of records -> journal entries (drawings written as a side effect)."""
    readable = [_field(r, "image") is not None and _field(r, "error") is None for r in batch]
    entries = [
        {"path": relative_path(_field(r, "path"), root), "error": str(_field(r, "error") or "unreadable")}
        for r, ok in zip(batch, readable)
        if not ok
    ]
    records = [r for r, ok in zip(batch, readable) if ok]
    if not records:
        return entries
    with torch.inference_mode():
        preds = model([_field(r, "image").to(device) for r in records])
    for record, pred in zip(records, preds, strict=True):
        rel = relative_path(_field(record, "path"), root)
        pred = {k: v.detach().cpu() for k, v in pred.items()}
        keep = pred["scores"] >= score_threshold
        pred = {k: v[keep] for k, v in pred.items()}
        image = _field(record, "image")
        if draw:
            save_png(draw_detections(image, pred, classes), out_dir / DRAWN_DIR / f"{rel}.png")
        entries.append(_entry(rel, image, pred))
    return entries


def predict_folder(
    model: nn.Module,
    classes: Sequence[str],
    dataset: Dataset,
    *,
    root: str | Path,
    out_dir: str | Path,
    batch_size: int = 8,
    score_threshold: float = 0.05,
    draw: bool = True,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    progress: Callable[[Iterable, int], Iterable] | None = None,
) -> PredictSummary:
    """Run ``model`` (detector contract, eval mode) over every record of ``dataset`` not yet done.

    ``progress(iterable, total)`` wraps the batch loop (e.g. ``tqdm``); ``None`` runs silently.
    """
    root, out_dir = Path(os.path.abspath(root)), Path(os.path.abspath(out_dir))
    if out_dir.resolve() == root.resolve() or root.resolve() in out_dir.resolve().parents:
        raise ValueError(f"--out {out_dir} is inside --input {root}: a rerun would predict its own drawings")
    out_dir.mkdir(parents=True, exist_ok=True)
    journal_path = out_dir / JOURNAL
    entries = read_journal(journal_path)

    listing = [relative_path(p, root) for p in _paths(dataset)]
    todo = [i for i, rel in enumerate(listing) if rel not in entries]
    loader = DataLoader(Subset(dataset, todo), batch_size=batch_size, num_workers=num_workers, collate_fn=_keep_all)
    batches: Iterable = loader if progress is None else progress(loader, len(loader))

    model.eval().to(device)
    processed = 0
    last_summary = time.monotonic()
    try:
        with open(journal_path, "a", encoding="utf-8") as journal:
            _end_cut_line(journal_path, journal)
            for batch in batches:
                new = _predict_batch(model, batch, root, out_dir, classes, score_threshold, draw, device)
                for entry in new:  # drawings are on disk before the journal line that marks an image done
                    journal.write(json.dumps(entry) + "\n")
                    entries[entry["path"]] = entry
                journal.flush()
                os.fsync(journal.fileno())
                processed += sum("error" not in entry for entry in new)
                if time.monotonic() - last_summary > SUMMARY_EVERY_S:
                    write_outputs(entries, listing, classes, out_dir)
                    last_summary = time.monotonic()
    finally:  # also after an interruption: the summaries then hold everything journalled so far
        detections, errors = write_outputs(entries, listing, classes, out_dir)
    return PredictSummary(
        total=len(listing),
        skipped=len(listing) - len(todo),
        processed=processed,
        errors=errors,
        detections=detections,
        out_dir=out_dir,
    )


def _paths(dataset: Dataset) -> list[str | Path]:
    """Every file path of the folder dataset, without reading the images."""
    for name in ("paths", "files"):
        if hasattr(dataset, name):
            return list(getattr(dataset, name))
    raise TypeError(f"{type(dataset).__name__} must expose its file list as .paths or .files")
