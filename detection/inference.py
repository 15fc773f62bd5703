"""Batch inference over an image folder or a dataset split, on one process or many: resumable,
nothing written is ever lost, the same outputs whatever the number of processes.

Inputs are a dataset of ``datasets.folder.ImageRecord`` (``image`` ``Tensor[3, H, W]`` float in
``[0, 1]`` or ``None``, ``path``, ``image_id``, ``error``) that also lists ``paths`` and
``image_ids`` without decoding anything: ``datasets.folder.ImageFolder`` (ids number the sorted
files from 1) or ``datasets.split_images.SplitImages`` (the reader's image ids, so the outputs
are scorable by ``scripts/evaluate.py``). The model runs through ``detection.predictor`` (one
forward pass per group of same-size images) and may predict boxes, instance masks or a semantic map.

Outputs in ``out_dir`` (``<rel>`` is an image's path relative to the input root):

- ``journal.jsonl`` (and ``journal.<rank>.jsonl`` for the other processes of a run on several):
  one JSON line per finished image, the source of truth (``detection/journal.py``). A rerun
  skips every path already in a journal (an unreadable file counts as finished).
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

The summary files (``detection/prediction_outputs.py``) are rebuilt from the journals by the main
process when the run ends or is interrupted (a rebuild reads every journal line: done during the
run it would cost time that grows with the folder, and on several processes hold back the main
one's share). Until then the journals, masks and drawings show the progress.

**Several processes** (``detection.processes``: Lightning Fabric, on one machine or many). Every
process lists the input, locks its own journal, then all meet at a barrier, read every journal
and meet again, so they agree on what is left. What is left is cut into batches of
``batch_size`` in input order and the batches are dealt round-robin: batch ``b`` goes to rank
``b mod N``. Each batch is thus the batch one process would have run, and the outputs equal one
process's byte for byte. The main process writes the summaries after a last barrier. A process
killed mid-run leaves its journal whole up to its last finished batch (Lightning's launcher
then ends the others); rerunning the same command, with any number of processes, predicts only
what no journal holds.
"""

import json
import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from datasets.palette import VOID_INDEX
from detection.drawing import DRAW_SCORE_THRESHOLD, atomic_write, draw_prediction, save_mask, save_png
from detection.evaluation.records import MASK_THRESHOLD, encode_masks
from detection.evaluation.results_io import rle_for_json
from detection.journal import JournalIndex, JournalWriter, journal_path
from detection.prediction_outputs import write_outputs
from detection.predictor import keep_scores, predict_images
from detection.processes import Processes

DRAWN_DIR = "drawn"
MASKS_DIR = "masks"
INSTANCES_DIR = "instances"
RUN_JSON = "run.json"  # what the outputs of ``reset_for_run`` depend on


@dataclass
class PredictSummary:
    total: int  # images in the input
    skipped: int  # already in a journal from an earlier run
    processed: int  # read and predicted in this run, by every process
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
    draw_threshold: float | None, device: torch.device,
) -> list[dict]:
    """One batch of records -> journal entries (masks and drawings written as a side effect)."""
    readable = [r.image is not None and r.error is None for r in batch]
    entries = [{"path": relative_path(r.path, root), "error": str(r.error or "unreadable")} for r, ok in zip(batch, readable) if not ok]
    records = [r for r, ok in zip(batch, readable) if ok]
    preds = predict_images(model, [r.image.to(device, non_blocking=True) for r in records], out_device="cpu")
    for record, pred in zip(records, preds, strict=True):
        rel = relative_path(record.path, root)
        pred = keep_scores(pred, score_threshold)
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


def deal_batches(todo: Sequence[int], batch_size: int, processes: Processes) -> list[list[int]]:
    """This process's batches of ``todo``: batch ``b`` of the input-order batching goes to rank ``b mod N``."""
    batches = [list(todo[start : start + batch_size]) for start in range(0, len(todo), batch_size)]
    return batches[processes.rank :: processes.world_size]


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
    device: str | torch.device | None = None,
    num_workers: int = 0,
    label_to_category_id: Mapping[int, int] | None = None,
    progress: Callable[[Iterable, int], Iterable] | None = None,
    processes: Processes | None = None,
) -> PredictSummary | None:
    """Run ``model`` (any head, eval mode) over every record of ``dataset`` that no journal holds.

    ``dataset`` lists ``paths`` and ``image_ids`` (see the module docstring); ``root`` is the
    folder the relative paths start from. ``progress(iterable, total)`` wraps the batch loop of
    the main process. Every detection scoring at least ``score_threshold`` is saved; ``drawn/``
    shows those scoring at least ``draw_threshold`` too. ``processes`` (``detection.processes``)
    shares the work among the processes of a run; every one of them calls this with the same
    arguments, and the model runs on ``processes.device`` (``device`` alone, one process:
    ``"cpu"`` by default). Returns the run's summary on the main process, ``None`` on the others.
    """
    if processes is None:
        processes = Processes(device=torch.device(device or "cpu"))
    elif device is not None and torch.device(device) != processes.device:
        raise ValueError(f"device {device} differs from the processes' {processes.device}: give one of them")
    root, out_dir = Path(os.path.abspath(root)), Path(os.path.abspath(out_dir))
    if out_dir.resolve() == root.resolve() or root.resolve() in out_dir.resolve().parents:
        raise ValueError(f"--out {out_dir} is inside the input {root}: a rerun would predict its own drawings")
    if getattr(model, "num_classes", 0) >= VOID_INDEX:
        raise ValueError(f"{model.num_classes} classes do not fit a palette PNG (at most {VOID_INDEX - 1})")
    listing = [relative_path(p, root) for p in dataset.paths]
    _check_mask_names(listing)
    image_ids = dict(zip(listing, dataset.image_ids, strict=True))
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with JournalWriter(journal_path(out_dir, processes.rank)) as journal:
            processes.barrier()  # every process holds its journal: no one writes while the others read
            done = JournalIndex.read(out_dir).lines
            processes.barrier()
            todo = [i for i, rel in enumerate(listing) if rel not in done]
            mine = deal_batches(todo, batch_size, processes)
            pin = processes.device.type == "cuda"
            loader = DataLoader(dataset, batch_sampler=mine, num_workers=num_workers, collate_fn=_keep_all, pin_memory=pin)
            batches: Iterable = loader if progress is None or not processes.is_main else progress(loader, len(loader))
            model.eval().to(processes.device)
            draw_at = draw_threshold if draw else None
            for batch in batches:
                # masks and drawings are on disk before the journal line that marks an image done
                journal.write(_predict_batch(model, batch, root, out_dir, classes, score_threshold, draw_at, processes.device))
        processes.barrier()  # every share journalled
    finally:  # the main process also after an interruption: the summaries then hold everything journalled so far
        if processes.is_main:
            index = JournalIndex.read(out_dir)
            counts = write_outputs(index, image_ids, classes, out_dir, label_to_category_id=label_to_category_id)
    if not processes.is_main:
        return None
    previously_read = sum(not line.error for rel, line in done.items() if rel in image_ids)
    now_read = sum(not line.error for rel, line in index.lines.items() if rel in image_ids)
    return PredictSummary(
        total=len(listing), skipped=len(listing) - len(todo), processed=now_read - previously_read, errors=counts.errors,
        detections=counts.detections, out_dir=out_dir,
    )  # fmt: skip


def reset_for_run(out_dir: str | Path, run: Mapping[str, Any], processes: Processes | None = None) -> None:
    """Keep ``out_dir``'s outputs only if they are of the same ``run`` (JSON values naming what the
    outputs depend on: checkpoint, split, batch size, ...), so that rerunning after an interruption
    resumes, while any other run starts afresh; ``out_dir`` must be a folder the caller owns.

    The main process compares and removes, then all processes meet.
    """
    processes = processes or Processes()
    out_dir = Path(out_dir)
    if processes.is_main:
        stamp = out_dir / RUN_JSON
        same = stamp.is_file() and json.loads(stamp.read_text()) == json.loads(json.dumps(run))
        if not same:
            shutil.rmtree(out_dir, ignore_errors=True)
            atomic_write(stamp, json.dumps(run, indent=1).encode())
    processes.barrier()
