"""Ground truth for offline scoring (``scripts/evaluate.py``): targets from a COCO annotation
JSON or from any ``DetectionDataset`` reader, in the dataset-sample target format.

The COCO JSON path reads annotations only (no images); labels are ``1..C`` in sorted
category-id order, as the COCO reader assigns them.
"""

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from faster_coco_eval.core import mask as mask_utils

from datasets.boxes import xywh_to_xyxy
from datasets.coco import category_ids


@dataclass
class GroundTruth:
    """``targets`` (numpy target dicts with ``image_id``), ``classes``, optional
    ``label_to_category_id``, ``image_names`` (image_id -> file stem, for VOC results files) and
    ``image_files`` (image_id -> image file, relative to the image folder or absolute)."""

    classes: list[str]
    targets: list[dict[str, Any]]
    label_to_category_id: dict[int, int] | None = None
    image_names: dict[int, str] = field(default_factory=dict)
    image_files: dict[int, str] = field(default_factory=dict)


def _segm_to_rle(segmentation: Any, height: int, width: int) -> dict:
    if isinstance(segmentation, list):  # polygons
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation.get("counts"), list):  # uncompressed RLE
        return mask_utils.frPyObjects(segmentation, height, width)
    return {"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")}


def coco_json_ground_truth(
    ann_file: str | Path, *, with_masks: bool = False, categories: Sequence[str | int] | None = None
) -> GroundTruth:
    """Targets for every image of a COCO annotation file (``masks`` decoded when asked).

    ``categories`` (names or ids) keeps a subset, as ``COCODetection(categories=...)`` reads it:
    the other categories' objects are left out, every image stays (negatives count)."""
    path = Path(ann_file)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable COCO annotation file ({error})") from error
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"{path}: missing list {key!r}")
    known = {c["id"] for c in data["categories"]}
    kept = known if categories is None else set(category_ids(data["categories"], categories, path))
    categories = sorted((c for c in data["categories"] if c["id"] in kept), key=lambda c: c["id"])
    category_to_label = {c["id"]: label for label, c in enumerate(categories, start=1)}
    per_image: dict[int, list[dict]] = {img["id"]: [] for img in data["images"]}
    for ann in data["annotations"]:
        if ann["image_id"] not in per_image or ann["category_id"] not in known:
            raise ValueError(f"{path}: annotation {ann.get('id')} refers to an unknown image or category")
        if ann["category_id"] in kept:
            per_image[ann["image_id"]].append(ann)
    targets, names, files = [], {}, {}
    for image in data["images"]:
        anns = per_image[image["id"]]
        height, width = int(image["height"]), int(image["width"])
        target = {
            "image_id": int(image["id"]),
            "boxes": xywh_to_xyxy(np.asarray([a["bbox"] for a in anns], dtype=np.float32).reshape(-1, 4)),
            "labels": np.asarray([category_to_label[a["category_id"]] for a in anns], dtype=np.int64),
            "iscrowd": np.asarray([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool),
            "difficult": np.zeros(len(anns), dtype=bool),
            "area": np.asarray([float(a.get("area", a["bbox"][2] * a["bbox"][3])) for a in anns], dtype=np.float64),
            "orig_size": (height, width),
        }
        if with_masks:
            rles = [_segm_to_rle(a["segmentation"], height, width) for a in anns]
            target["masks"] = (
                mask_utils.decode(rles).transpose(2, 0, 1) if rles else np.zeros((0, height, width), dtype=np.uint8)
            )
        targets.append(target)
        names[int(image["id"])] = Path(image.get("file_name", str(image["id"]))).stem
        files[int(image["id"])] = str(image.get("file_name", ""))
    return GroundTruth(
        classes=[c["name"] for c in categories],
        targets=targets,
        label_to_category_id={label: cid for cid, label in category_to_label.items()},
        image_names=names,
        image_files=files,
    )


def reader_ground_truth(dataset: Any, *, progress: Iterable[int] | None = None) -> GroundTruth:
    """Targets of a ``DetectionDataset`` reader (``load(i)``; the image is read and dropped)."""
    indices = progress if progress is not None else range(len(dataset))
    targets = []
    names: dict[int, str] = {}
    files: dict[int, str] = {}
    ids = getattr(dataset, "ids", None) or getattr(dataset, "image_names", None)
    for i in indices:
        _, target = dataset.load(i)
        targets.append(target)
        if ids is not None:
            names[int(target["image_id"])] = str(ids[i])
        if hasattr(dataset, "image_path"):
            files[int(target["image_id"])] = str(dataset.image_path(i))
    return GroundTruth(
        classes=list(dataset.classes),
        targets=targets,
        label_to_category_id=getattr(dataset, "label_to_category_id", None),
        image_names=names,
        image_files=files,
    )
