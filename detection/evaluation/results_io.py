"""Results files: COCO results JSON (what ``pycocotools.COCO.loadRes`` reads) and the VOC
devkit's ``comp4_det_<set>_<class>.txt`` files.

These are report boundaries, so box formats are converted here and only here:

- COCO results: ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"[, "segmentation": RLE]}``
  in COCO's continuous 0-based pixels (``datasets.boxes.xyxy_to_xywh``).
- VOC results: one line per detection ``<image_name> <score> <xmin> <ymin> <xmax> <ymax>`` in
  VOC 1-based inclusive pixels (``datasets.boxes.xyxy_to_voc``).

Reading treats the file as untrusted: every entry is type- and range-checked and a bad one
raises ``ValueError`` naming the file and the entry.
"""

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from faster_coco_eval.core import mask as mask_utils

from datasets.boxes import voc_to_xyxy, xywh_to_xyxy, xyxy_to_voc, xyxy_to_xywh
from detection.evaluation.records import ImageRecord

LabelToCategory = Callable[[int], int]
VOC_COMPETITION = "comp4"  # "comp4": detectors trained on any data (comp3: VOC data only)


def label_mapper(label_to_category_id: Mapping[int, int] | None) -> LabelToCategory:
    """``label -> COCO category_id``: the dataset's mapping, or the identity when it has none."""
    if label_to_category_id is None:
        return int
    mapping = {int(k): int(v) for k, v in label_to_category_id.items()}

    def to_category(label: int) -> int:
        if label not in mapping:
            raise KeyError(f"label {label} has no COCO category id (mapping covers {sorted(mapping)})")
        return mapping[label]

    return to_category


def rle_for_json(rle: dict) -> dict:
    counts = rle["counts"]
    return {"size": [int(v) for v in rle["size"]], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def coco_results(
    records: Iterable[ImageRecord], *, label_to_category_id: Mapping[int, int] | None = None, with_masks: bool = False
) -> list[dict]:
    """COCO results entries for every detection of every record (JSON-ready)."""
    to_category = label_mapper(label_to_category_id)
    results: list[dict] = []
    for record in records:
        xywh = xyxy_to_xywh(record.dt_boxes).tolist()
        categories = [to_category(int(label)) for label in record.dt_labels]
        scores = record.dt_scores.tolist()
        masks = record.dt_masks if with_masks else None
        if with_masks and masks is None:
            raise ValueError(f"image {record.image_id}: with_masks=True but the record holds no predicted masks")
        for k, (box, category, score) in enumerate(zip(xywh, categories, scores)):
            entry = {"image_id": record.image_id, "category_id": category, "bbox": box, "score": score}
            if masks is not None:
                entry["segmentation"] = rle_for_json(masks[k])
            results.append(entry)
    return results


def write_coco_results(path: str | Path, results: Sequence[dict]) -> Path:
    """Write a COCO results list as JSON; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(list(results)))
    return path


def _check_entry(entry: Any, index: int, path: Path) -> dict:
    where = f"{path}: entry {index}"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} is a {type(entry).__name__}, not an object")
    for key in ("image_id", "category_id", "score"):
        if key not in entry:
            raise ValueError(f"{where} has no {key!r}")
    for key in ("image_id", "category_id"):
        if isinstance(entry[key], bool) or not isinstance(entry[key], int):
            raise ValueError(f"{where}: {key!r} must be an integer, got {entry[key]!r}")
    score = entry["score"]
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        raise ValueError(f"{where}: 'score' must be a finite number, got {score!r}")
    if "bbox" not in entry and "segmentation" not in entry:
        raise ValueError(f"{where} has neither 'bbox' nor 'segmentation'")
    if "bbox" in entry:
        box = entry["bbox"]
        if (
            not isinstance(box, list)
            or len(box) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box)
        ):
            raise ValueError(f"{where}: 'bbox' must be 4 finite numbers [x, y, w, h], got {box!r}")
        if box[2] < 0 or box[3] < 0:
            raise ValueError(f"{where}: 'bbox' has a negative width or height: {box!r}")
    if "segmentation" in entry:
        segm = entry["segmentation"]
        if not (isinstance(segm, dict) and isinstance(segm.get("counts"), str) and isinstance(segm.get("size"), list)):
            raise ValueError(f"{where}: 'segmentation' must be an RLE {{'size': [h, w], 'counts': str}}")
    return entry


def read_coco_results(path: str | Path) -> list[dict]:
    """Read and validate a COCO results JSON (a list of result objects)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable JSON file ({error})") from error
    if not isinstance(data, list):
        raise ValueError(f"{path}: a COCO results file is a JSON list, got {type(data).__name__}")
    return [_check_entry(entry, i, path) for i, entry in enumerate(data)]


def results_to_predictions(
    results: Sequence[dict], *, category_id_to_label: Mapping[int, int] | None = None
) -> dict[int, dict[str, Any]]:
    """COCO results -> per-image prediction dicts ``{boxes [K, 4] xyxy, labels [K], scores [K][, masks]}``.

    ``masks`` (RLE list) is present when every entry of the image has a segmentation.
    Unknown category ids raise ``KeyError``.
    """
    grouped: dict[int, list[dict]] = {}
    for entry in results:
        grouped.setdefault(int(entry["image_id"]), []).append(entry)
    predictions = {}
    for image_id, entries in grouped.items():
        if category_id_to_label is None:
            labels = [int(e["category_id"]) for e in entries]
        else:
            unknown = sorted({e["category_id"] for e in entries} - set(category_id_to_label))
            if unknown:
                raise KeyError(f"image {image_id}: category ids {unknown} are not in the dataset")
            labels = [int(category_id_to_label[e["category_id"]]) for e in entries]
        boxes = [e["bbox"] if "bbox" in e else _rle_box(e["segmentation"]) for e in entries]
        pred: dict[str, Any] = {
            "boxes": xywh_to_xyxy(np.asarray(boxes, dtype=np.float32).reshape(-1, 4)),
            "labels": np.asarray(labels, dtype=np.int64),
            "scores": np.asarray([e["score"] for e in entries], dtype=np.float64),
        }
        if all("segmentation" in e for e in entries):
            pred["masks_rle"] = [e["segmentation"] for e in entries]
        predictions[image_id] = pred
    return predictions


def _rle_box(rle: dict) -> list[float]:
    return mask_utils.toBbox([{"size": rle["size"], "counts": rle["counts"].encode("ascii")}])[0].tolist()


def write_voc_results(
    out_dir: str | Path,
    records: Iterable[ImageRecord],
    *,
    classes: Sequence[str],
    image_names: Mapping[int, str],
    image_set: str,
    competition: str = VOC_COMPETITION,
) -> list[Path]:
    """Write ``<competition>_det_<image_set>_<class>.txt`` for every class (empty files included).

    Lines keep record order (ascending ``image_id`` when the records come from an evaluator),
    then the model's order within an image: the devkit's stable sort then breaks score ties
    exactly as ``VOCEvaluator`` does. Boxes are written in VOC 1-based inclusive coordinates.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines: list[list[str]] = [[] for _ in classes]
    for record in records:
        if record.image_id not in image_names:
            raise KeyError(f"no image name for image_id {record.image_id}")
        name = image_names[record.image_id]
        voc_boxes = xyxy_to_voc(record.dt_boxes)
        for box, label, score in zip(voc_boxes, record.dt_labels.tolist(), record.dt_scores.tolist()):
            coords = " ".join(f"{v:.9g}" for v in box.tolist())
            lines[label - 1].append(f"{name} {score!r} {coords}\n")
    paths = []
    for class_name, class_lines in zip(classes, lines):
        path = out_dir / f"{competition}_det_{image_set}_{class_name}.txt"
        path.write_text("".join(class_lines))
        paths.append(path)
    return paths


def read_voc_results(path: str | Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Read one VOC results file -> ``(image_names [D], scores [D], boxes [D, 4] xyxy)``."""
    path = Path(path)
    names, scores, boxes = [], [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 6:
            raise ValueError(f"{path}:{number}: expected '<image> <score> <xmin> <ymin> <xmax> <ymax>', got {line!r}")
        try:
            values = [float(v) for v in fields[1:]]
        except ValueError as error:
            raise ValueError(f"{path}:{number}: {error}") from error
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"{path}:{number}: non-finite number in {line!r}")
        names.append(fields[0])
        scores.append(values[0])
        boxes.append(values[1:])
    return names, np.asarray(scores, dtype=np.float64), voc_to_xyxy(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
