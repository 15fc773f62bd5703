"""COCO instances reader, through pycocotools.

- ``bbox`` ``[x, y, w, h]`` is converted to xyxy by ``datasets.boxes.xywh_to_xyxy``.
- Category ids (often non-contiguous, 1..90 in COCO) map to labels ``1..C`` in sorted-id
  order: ``category_id_to_label`` and ``label_to_category_id`` go both ways.
- ``iscrowd`` is kept per object; crowd regions stay in the target for the evaluator.
- Masks (polygons, compressed or uncompressed RLE) are decoded in ``load(i)``, on demand.
- ``categories`` keeps a subset (names or ids, e.g. ``["person"]`` or ``[1]``): the other
  categories' annotations are ignored, and labels ``1..C`` follow the kept ids in sorted order,
  so ``label_to_category_id`` still gives the original COCO ids for results and evaluation.
- Images without annotations (of the kept categories) are kept unless ``filter_empty=True``
  (for training), as torchvision's references and detectron2 (``FILTER_EMPTY_ANNOTATIONS``)
  drop them for training only: evaluation needs the negatives.
- ``file_name`` must stay inside ``image_root``.
"""

import contextlib
import io
import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO

from datasets.base import DetectionDataset, Target, Transforms
from datasets.boxes import xywh_to_xyxy
from datasets.errors import DatasetError, Problem
from datasets.palette import VOID_INDEX
from datasets.safe_io import decode_image, resolve_inside
from datasets.validation import check_boxes

REQUIRED_KEYS = ("images", "annotations", "categories")


def read_instances(ann_file: str | Path) -> dict:
    """The parsed JSON of a COCO instances file; unreadable or not COCO-shaped: ``DatasetError``."""
    ann_file = Path(ann_file)
    try:
        data = json.loads(ann_file.read_text())
    except FileNotFoundError:
        raise DatasetError(ann_file, "annotation file is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(ann_file, f"malformed JSON ({error})") from None
    if not isinstance(data, dict) or any(not isinstance(data.get(key), list) for key in REQUIRED_KEYS):
        raise DatasetError(ann_file, f"not a COCO instances file: needs top-level lists {list(REQUIRED_KEYS)}")
    return data


def structural_problems(data: dict, ann_file: str | Path) -> tuple[dict, list[Problem]]:
    """``(data without the broken entries, one error Problem per broken entry)``: every one is listed.

    Broken: an image without ``id``/``file_name``/``width``/``height``, a category without
    ``id``/``name``, an annotation naming an unknown image or category id or lacking a 4-number bbox.
    """
    where = str(ann_file)
    problems: list[Problem] = []

    def complete(entry: object, keys: tuple[str, ...], kind: str) -> bool:
        missing = [k for k in keys if not isinstance(entry, dict) or k not in entry]
        if missing:
            ident = entry.get("id") if isinstance(entry, dict) else entry
            problems.append(Problem(where, f"{kind} {ident!r:.80} lacks {missing}"))
        return not missing

    images = [i for i in data["images"] if complete(i, ("id", "file_name", "width", "height"), "image")]
    categories = [c for c in data["categories"] if complete(c, ("id", "name"), "category")]
    known_images, known_categories = {i["id"] for i in images}, {c["id"] for c in categories}
    annotations = []
    for ann in data["annotations"]:
        if not complete(ann, ("image_id", "category_id"), "annotation"):
            continue
        found = []
        if ann["image_id"] not in known_images:
            found.append(f"annotation {ann.get('id')} refers to unknown image id {ann['image_id']}")
        if ann["category_id"] not in known_categories:
            found.append(f"annotation {ann.get('id')} has unknown category id {ann['category_id']}")
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox):
            found.append(f"annotation {ann.get('id')} has no 4-number bbox")
        problems += [Problem(where, message) for message in found]
        if not found:
            annotations.append(ann)
    return {**data, "images": images, "categories": categories, "annotations": annotations}, problems


def index_coco(data: dict) -> COCO:
    """A pycocotools ``COCO`` over already-checked ``data``."""
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def load_coco(ann_file: str | Path) -> COCO:
    """Parse and check an instances JSON; any broken entry raises ``DatasetError`` (the checker lists them all)."""
    data, problems = structural_problems(read_instances(ann_file), ann_file)
    if problems:
        more = f" (and {len(problems) - 1} more: run scripts/check_dataset.py)" if len(problems) > 1 else ""
        raise DatasetError(ann_file, problems[0].message + more)
    return index_coco(data)


def category_ids(categories: Sequence[dict], wanted: Sequence[str | int], ann_file: str | Path) -> list[int]:
    """The ids of the ``wanted`` categories, in the order given, duplicates dropped.

    An entry is a category ``name`` or ``id``; a string that names no category but is a number
    (``"1"`` from a command line) is read as an id. Unknown entries raise ``DatasetError`` naming
    ``ann_file`` and listing the categories that exist.
    """
    by_name = {c["name"]: c["id"] for c in categories}
    known_ids = {c["id"] for c in categories}
    ids: list[int] = []
    unknown: list[str | int] = []
    for entry in wanted:
        if isinstance(entry, str) and entry in by_name:
            found = by_name[entry]
        elif isinstance(entry, int) and not isinstance(entry, bool) and entry in known_ids:
            found = entry
        elif isinstance(entry, str) and entry.strip().isdigit() and int(entry) in known_ids:
            found = int(entry)
        else:
            unknown.append(entry)
            continue
        if found not in ids:
            ids.append(found)
    if unknown:
        listing = ", ".join(f"{c['name']} ({c['id']})" for c in sorted(categories, key=lambda c: c["id"]))
        raise DatasetError(ann_file, f"no category named or numbered {unknown}; its categories (id) are: {listing}")
    return ids


class COCODetection(DetectionDataset):
    """``dataset[i] -> (Tensor[3, H, W], target)``; ``image_id`` is COCO's id.

    Args:
        image_root, ann_file: the images folder and the instances JSON.
        categories: keep only these categories (names or ids, see ``category_ids``); ``None``
            keeps all. Labels are ``1..C`` over the kept ids in sorted order. Raises
            ``DatasetError`` for an unknown entry, and when the file has no annotation of them.
        filter_empty: drop images without a non-crowd annotation (of the kept categories);
            raises ``DatasetError`` when that leaves no image.
        with_masks, with_semantic: also decode ``masks [K, H, W]`` / ``semantic [H, W]``.
        coco: the ``COCO`` index already read from ``ann_file`` (the checker's).
    """

    def __init__(
        self,
        image_root: str | Path,
        ann_file: str | Path,
        *,
        transforms: Transforms | None = None,
        with_masks: bool = False,
        with_semantic: bool = False,
        categories: Sequence[str | int] | None = None,
        filter_empty: bool = False,
        coco: COCO | None = None,
    ) -> None:
        super().__init__(transforms)
        self.image_root = Path(image_root)
        self.ann_file = Path(ann_file)
        self.coco = coco if coco is not None else load_coco(ann_file)  # `coco`: already read from ann_file
        self.with_masks = with_masks
        self.with_semantic = with_semantic
        kept_ids = sorted(
            self.coco.getCatIds() if categories is None else category_ids(self.coco.dataset["categories"], categories, ann_file)
        )
        self.category_id_to_label = {cid: label for label, cid in enumerate(kept_ids, start=1)}
        self.label_to_category_id = {label: cid for cid, label in self.category_id_to_label.items()}
        self.classes = [self.coco.cats[cid]["name"] for cid in kept_ids]
        if categories is not None and not any(a["category_id"] in self.category_id_to_label for a in self.coco.anns.values()):
            raise DatasetError(ann_file, f"no annotation of the categories kept ({self.classes}): the subset is empty")
        ids = sorted(self.coco.getImgIds())
        if filter_empty:
            ids = [i for i in ids if any(not a.get("iscrowd", 0) for a in self.annotations(i))]
            if not ids and self.coco.imgs:
                raise DatasetError(
                    ann_file, f"no image has a non-crowd object of {self.classes}: filter_empty left no image"
                )
        self.ids = ids
        self.problems: list[Problem] = []

    def __len__(self) -> int:
        return len(self.ids)

    def annotations(self, image_id: int) -> list[dict]:
        """The image's raw annotations of the kept categories, in file order."""
        return [a for a in self.coco.imgToAnns[image_id] if a["category_id"] in self.category_id_to_label]

    @property
    def image_ids(self) -> list[int]:
        return [int(i) for i in self.ids]

    def image_path(self, index: int) -> Path:
        info = self.coco.imgs[self.ids[index]]
        return resolve_inside(self.image_root, info["file_name"])

    def load_annotation(self, index: int) -> tuple[Target, list[dict], list[Problem]]:
        """Target without decoding the image, the kept raw annotations, and the problems found."""
        image_id = self.ids[index]
        info = self.coco.imgs[image_id]
        height, width = int(info["height"]), int(info["width"])
        anns = self.annotations(image_id)
        raw = xywh_to_xyxy(np.asarray([a["bbox"] for a in anns], dtype=np.float32).reshape(-1, 4))
        where = f"{self.ann_file} (image id {image_id}, {info['file_name']})"
        boxes, keep, problems = check_boxes(where, raw, height, width)
        kept = [a for a, k in zip(anns, keep) if k]
        target: Target = {
            "boxes": boxes[keep],
            "labels": np.asarray([self.category_id_to_label[a["category_id"]] for a in kept], dtype=np.int64),
            "difficult": np.zeros(len(kept), dtype=bool),
            "iscrowd": np.asarray([bool(a.get("iscrowd", 0)) for a in kept], dtype=bool),
            "area": np.asarray([float(a.get("area", 0.0)) for a in kept], dtype=np.float32),
            "image_id": image_id,
            "orig_size": (height, width),
        }
        return target, kept, problems

    def load(self, index: int) -> tuple[np.ndarray, Target]:
        annotation = self.load_annotation(index)
        target, _, problems = annotation
        path = self.image_path(index)
        image, decode_problems = decode_image(path)
        for problem in problems + decode_problems:
            warnings.warn(str(problem), stacklevel=2)
        self.problems.extend(problems + decode_problems)
        if image.shape[:2] != target["orig_size"]:
            raise DatasetError(path, f"annotation says {target['orig_size']} but the image is {image.shape[:2]}")
        if self.with_masks or self.with_semantic:
            masks, _ = self.load_masks(index, annotation)
            target.update(masks)
        return image, target

    def load_masks(
        self, index: int, annotation: tuple[Target, list[dict], list[Problem]]
    ) -> tuple[dict[str, np.ndarray], list[Problem]]:
        """``masks [K, H, W]`` uint8 of the kept annotations (``with_masks``) and ``semantic [H, W]``
        (``with_semantic``), decoded from their ``segmentation`` (polygons or RLE), and the
        warnings found (none here; the pair matches ``VOCDetection.load_masks``). ``annotation``:
        ``load_annotation(index)``'s result.

        Raises ``DatasetError`` naming the annotation file, the image and the annotation when a
        kept annotation has no segmentation, an RLE of another size than the image's, or one
        pycocotools cannot decode.
        """
        target, kept, _ = annotation
        height, width = target["orig_size"]
        masks = []
        for ann in kept:
            where = f"image id {target['image_id']}, annotation id {ann.get('id')}"
            segmentation = ann.get("segmentation")
            if not segmentation:
                raise DatasetError(self.ann_file, f"{where}: no segmentation")
            if isinstance(segmentation, dict) and list(segmentation.get("size", [])) != [height, width]:
                problem = f"{where}: RLE size {segmentation.get('size')} but the image is {[height, width]}"
                raise DatasetError(self.ann_file, problem)
            try:
                masks.append(self.coco.annToMask(ann))
            except Exception as error:  # pycocotools raises a bare Exception ("input type is not supported")
                raise DatasetError(self.ann_file, f"{where}: malformed segmentation ({error})") from None
        stacked = np.stack(masks).astype(np.uint8) if masks else np.zeros((0, height, width), np.uint8)  # [K, H, W]
        out = {"masks": stacked} if self.with_masks else {}
        if self.with_semantic:
            out["semantic"] = self._semantic(stacked, target["labels"], target["iscrowd"], height, width)
        return out, []

    @staticmethod
    def _semantic(masks: np.ndarray, labels: np.ndarray, iscrowd: np.ndarray, height: int, width: int) -> np.ndarray:
        """Later instances paint over earlier ones; crowd regions become void (255). ``[H, W]`` uint8."""
        semantic = np.zeros((height, width), np.uint8)
        for mask, label, crowd in zip(masks.astype(bool), labels, iscrowd):
            semantic[mask] = VOID_INDEX if crowd else label
        return semantic
