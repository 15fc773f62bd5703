"""Batch inference over an image folder or a dataset split: resumable, nothing written is ever lost.

Inputs are a dataset of ``datasets.folder.ImageRecord`` (``image`` ``Tensor[3, H, W]`` float in
``[0, 1]`` or ``None``, ``path``, ``image_id``, ``error``) that also lists ``paths`` and
``image_ids`` without decoding anything: ``datasets.folder.ImageFolder`` (ids number the sorted
files from 1) or ``datasets.split_images.SplitImages`` (the reader's image ids, so the outputs
are scorable by ``scripts/evaluate.py``). The model runs through ``detection.predictor`` (one
forward pass per image) and may predict boxes, instance masks or a semantic map.

Outputs in ``out_dir`` (``<rel>`` is an image's path relative to the input root):

- ``journal.jsonl``: one JSON line per finished image, appended, flushed and fsynced after each
  batch. It is the source of truth: a rerun skips every path already in it (an unreadable file
  counts as finished), and a line cut short by an interruption is ignored.
- ``predictions.json``: COCO results (``image_id, category_id, bbox [x, y, w, h], score`` and,
  for instance masks, ``segmentation`` as RLE); ``category_id`` is the dataset's category id
  (the label ``1..C`` unless a COCO mapping is given). Full float precision.
- ``images.json``: ``{"images": [{id, file_name, width, height}], "categories": [{id, name}]}``.
- ``predictions.csv``: ``path, image_id, label, score, x1, y1, x2, y2`` (xyxy pixels).
- ``errors.txt``: ``<rel>\\t<reason>`` per skipped file.
- ``masks/<rel minus suffix>.png``: semantic heads, the class map as a VOC palette PNG.
- ``instances/<rel minus suffix>.png``: instance heads (predictions with ``masks``), a VOC
  ``SegmentationObject``-style palette PNG: 0 background, detection ``i`` (1-based, in score order,
  those above the score threshold) has value ``i``; where masks overlap the higher score wins.
- ``drawn/<rel>.png``: the image with what was predicted drawn on it.

The summary files are rebuilt from the journal every ``SUMMARY_EVERY_S`` seconds and when the run
ends or is interrupted, each through a temporary file and ``os.replace``, so a file is always
either its old or its new complete version.
"""

import csv
import io
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from datasets.boxes import xyxy_to_xywh
from datasets.palette import VOID_INDEX
from detection.drawing import DRAW_SCORE_THRESHOLD, atomic_write, class_name, draw_prediction, save_mask, save_png
from detection.evaluation.records import MASK_THRESHOLD, encode_masks
from detection.evaluation.results_io import label_mapper, rle_for_json
from detection.predictor import predict_images

JOURNAL = "journal.jsonl"
PREDICTIONS_JSON = "predictions.json"
IMAGES_JSON = "images.json"
PREDICTIONS_CSV = "predictions.csv"
ERRORS_TXT = "errors.txt"
DRAWN_DIR = "drawn"
MASKS_DIR = "masks"
INSTANCES_DIR = "instances"
CSV_HEADER = ["path", "image_id", "label", "score", "x1", "y1", "x2", "y2"]
SUMMARY_EVERY_S = 30.0  # rebuild the summary files at most this often during a run (and at its end)


@dataclass
class PredictSummary:
    total: int  # images in the input
    skipped: int  # already in the journal from an earlier run
    processed: int  # read and predicted in this run
    errors: int  # unreadable files, all runs
    detections: int  # boxes written, all runs
    out_dir: Path


def relative_path(path: str | Path, root: Path) -> str:
    """``path`` relative to ``root`` (both made absolute lexically: symlinks are not followed)."""
    absolute = Path(os.path.abspath(path))
    if not absolute.is_relative_to(root):
        raise ValueError(f"{path}: outside the input folder {root}")
    return absolute.relative_to(root).as_posix()


def mask_name(rel: str) -> str:
    """``a/b.jpg -> a/b.png``: the VOC ``SegmentationClass`` name of an input's semantic map."""
    return PurePosixPath(rel).with_suffix(".png").as_posix()


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


def write_outputs(
    entries: Mapping[str, dict],
    image_ids: Mapping[str, int],
    classes: Sequence[str],
    out_dir: Path,
    *,
    label_to_category_id: Mapping[int, int] | None = None,
) -> tuple[int, int]:
    """Rebuild the summary files from the journal entries; returns ``(detections, errors)``.

    ``image_ids`` maps each input's relative path to its image id; entries of files no longer in
    the input are left out.
    """
    to_category = label_mapper(label_to_category_id)
    images, results, errors = [], [], []
    rows = [CSV_HEADER]
    for rel in sorted(entries, key=lambda r: (image_ids.get(r, -1), r)):
        entry = entries[rel]
        if rel not in image_ids:
            continue  # the file has left the folder since it was predicted
        image_id = image_ids[rel]
        if "error" in entry:
            errors.append(f"{rel}\t{entry['error']}\n")
            continue
        images.append({"id": image_id, "file_name": rel, "width": entry["width"], "height": entry["height"]})
        for det in entry.get("detections", []):
            x, y, w, h = (float(v) for v in xyxy_to_xywh([det["box"]])[0])
            result = {"image_id": image_id, "category_id": to_category(det["label"]), "bbox": [x, y, w, h], "score": det["score"]}
            if "segmentation" in det:
                result["segmentation"] = det["segmentation"]
            results.append(result)
            rows.append([rel, image_id, class_name(det["label"], classes), f"{det['score']:.6f}", *(f"{v:.2f}" for v in det["box"])])
    categories = [{"id": to_category(i + 1), "name": name} for i, name in enumerate(classes)]
    atomic_write(out_dir / PREDICTIONS_JSON, json.dumps(results).encode())
    atomic_write(out_dir / IMAGES_JSON, json.dumps({"images": images, "categories": categories}, indent=1).encode())
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    atomic_write(out_dir / PREDICTIONS_CSV, text.getvalue().encode())
    atomic_write(out_dir / ERRORS_TXT, "".join(errors).encode())
    return len(results), len(errors)


def instance_map(masks: Tensor, scores: Tensor) -> Tensor:
    """``masks [K, H, W]`` (soft or 0/1) + ``scores [K]`` -> ``[H, W]`` uint8: 0 background, the ``i``-th
    highest-scoring instance ``i``; the higher score wins an overlap. At most ``VOID_INDEX - 1`` instances."""
    masks = masks[:, 0] if masks.dim() == 4 else masks  # [K, 1, H, W] -> [K, H, W]
    binary = masks >= MASK_THRESHOLD if masks.is_floating_point() else masks != 0
    order = scores.argsort(descending=True, stable=True)[: VOID_INDEX - 1]
    out = torch.zeros(masks.shape[-2:], dtype=torch.uint8, device=masks.device)
    for rank in reversed(range(len(order))):  # lowest score first, so higher scores paint over it
        out[binary[order[rank]]] = rank + 1
    return out


def _keep_all(batch: list) -> list:
    return batch


def _entry(rel: str, image: Tensor, pred: dict[str, Tensor], out_dir: Path) -> dict:
    """One image's journal line; a semantic map is written to ``masks/`` first."""
    entry: dict[str, Any] = {"path": rel, "width": int(image.shape[-1]), "height": int(image.shape[-2])}
    if "semantic" in pred:
        name = f"{MASKS_DIR}/{mask_name(rel)}"
        save_mask(out_dir / name, pred["semantic"])
        entry["semantic"] = name
    if "masks" in pred and "scores" in pred:
        name = f"{INSTANCES_DIR}/{mask_name(rel)}"
        save_mask(out_dir / name, instance_map(pred["masks"], pred["scores"]))
        entry["instances"] = name
    if "boxes" in pred:
        rles = encode_masks(pred["masks"]) if "masks" in pred else None
        detections = []
        for k, (box, label, score) in enumerate(zip(pred["boxes"].tolist(), pred["labels"].tolist(), pred["scores"].tolist())):
            det = {"label": int(label), "score": float(score), "box": [float(v) for v in box]}
            if rles is not None:
                det["segmentation"] = rle_for_json(rles[k])
            detections.append(det)
        entry["detections"] = detections
    return entry


def _predict_batch(
    model: nn.Module, batch: list, root: Path, out_dir: Path, classes: Sequence[str], score_threshold: float,
    draw_threshold: float | None, device: str | torch.device,
) -> list[dict]:
    """One batch of records -> journal entries (masks and drawings written as a side effect)."""
    readable = [r.image is not None and r.error is None for r in batch]
    entries = [{"path": relative_path(r.path, root), "error": str(r.error or "unreadable")} for r, ok in zip(batch, readable) if not ok]
    records = [r for r, ok in zip(batch, readable) if ok]
    preds = predict_images(model, [r.image.to(device) for r in records], out_device="cpu")
    for record, pred in zip(records, preds, strict=True):
        rel = relative_path(record.path, root)
        if "scores" in pred:
            keep = pred["scores"] >= score_threshold
            pred = {k: v[keep] if k in ("boxes", "labels", "scores", "masks") else v for k, v in pred.items()}
        if draw_threshold is not None:
            drawn = draw_prediction(record.image, pred, classes, score_threshold=draw_threshold)
            save_png(drawn, out_dir / DRAWN_DIR / f"{rel}.png")
        entries.append(_entry(rel, record.image, pred, out_dir))
    return entries


def _check_mask_names(listing: Sequence[str]) -> None:
    names: dict[str, str] = {}
    for rel in listing:
        if (other := names.setdefault(mask_name(rel), rel)) != rel:
            raise ValueError(f"{other} and {rel} would both write {MASKS_DIR}/{mask_name(rel)}; rename one")


def batch_predict(
    model: nn.Module,
    classes: Sequence[str],
    dataset: Dataset,
    *,
    root: str | Path,
    out_dir: str | Path,
    batch_size: int = 8,
    score_threshold: float = 0.05,
    draw: bool = True,
    draw_threshold: float = DRAW_SCORE_THRESHOLD,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    label_to_category_id: Mapping[int, int] | None = None,
    progress: Callable[[Iterable, int], Iterable] | None = None,
) -> PredictSummary:
    """Run ``model`` (any head, eval mode) over every record of ``dataset`` not yet journalled.

    ``dataset`` lists ``paths`` and ``image_ids`` (see the module docstring); ``root`` is the
    folder the relative paths start from. ``progress(iterable, total)`` wraps the batch loop.
    Every detection scoring at least ``score_threshold`` is saved; ``drawn/`` shows those scoring
    at least ``draw_threshold`` too.
    """
    root, out_dir = Path(os.path.abspath(root)), Path(os.path.abspath(out_dir))
    if out_dir.resolve() == root.resolve() or root.resolve() in out_dir.resolve().parents:
        raise ValueError(f"--out {out_dir} is inside the input {root}: a rerun would predict its own drawings")
    if getattr(model, "num_classes", 0) >= VOID_INDEX:
        raise ValueError(f"{model.num_classes} classes do not fit a palette PNG (at most {VOID_INDEX - 1})")
    out_dir.mkdir(parents=True, exist_ok=True)
    journal_path = out_dir / JOURNAL
    entries = read_journal(journal_path)

    listing = [relative_path(p, root) for p in dataset.paths]
    _check_mask_names(listing)
    image_ids = dict(zip(listing, dataset.image_ids, strict=True))
    todo = [i for i, rel in enumerate(listing) if rel not in entries]
    loader = DataLoader(Subset(dataset, todo), batch_size=batch_size, num_workers=num_workers, collate_fn=_keep_all)
    batches: Iterable = loader if progress is None else progress(loader, len(loader))

    model.eval().to(device)
    processed = 0
    last_summary = time.monotonic()

    def summarise() -> tuple[int, int]:
        return write_outputs(entries, image_ids, classes, out_dir, label_to_category_id=label_to_category_id)

    try:
        with open(journal_path, "a", encoding="utf-8") as journal:
            _end_cut_line(journal_path, journal)
            for batch in batches:
                new = _predict_batch(model, batch, root, out_dir, classes, score_threshold, draw_threshold if draw else None, device)
                for entry in new:  # masks and drawings are on disk before the journal line that marks an image done
                    journal.write(json.dumps(entry) + "\n")
                    entries[entry["path"]] = entry
                journal.flush()
                os.fsync(journal.fileno())
                processed += sum("error" not in entry for entry in new)
                if time.monotonic() - last_summary > SUMMARY_EVERY_S:
                    summarise()
                    last_summary = time.monotonic()
    finally:  # also after an interruption: the summaries then hold everything journalled so far
        detections, errors = summarise()
    return PredictSummary(
        total=len(listing), skipped=len(listing) - len(todo), processed=processed, errors=errors, detections=detections, out_dir=out_dir
    )
