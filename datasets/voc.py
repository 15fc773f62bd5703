"""PASCAL VOC readers: detection (``Annotations``) and semantic segmentation (``SegmentationClass``).

``root`` is a VOC year directory (``VOCdevkit/VOC2007``) or any directory with the same
layout::

    Annotations/<id>.xml            JPEGImages/<id>.jpg
    ImageSets/Main/<split>.txt      ImageSets/Segmentation/<split>.txt
    SegmentationClass/<id>.png      SegmentationObject/<id>.png   (palette PNGs, 255 = void)

Boxes are converted from VOC's 1-based inclusive pixels by ``datasets.boxes.voc_to_xyxy``
(float coordinates accepted). ``difficult`` is kept per box (a missing element means 0).
``image_id`` is the image's index in the split file. With ``with_masks=True`` instance ``i``
of ``SegmentationObject`` is the ``i``-th object of the annotation, as in the devkit.

Class names (``classes=None``, see :func:`default_voc_classes`): a VOC year directory
(``VOC2007``, ``VOC2012``) gets VOC's 20 in the devkit's order; any other root gets the sorted
unique ``<name>``s of its split's annotation files, so one's own dataset needs no class list.
"""

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datasets.base import DetectionDataset, Target, Transforms, semantic_target
from datasets.boxes import voc_to_xyxy
from datasets.errors import DatasetError, Problem
from datasets.palette import VOID_INDEX
from datasets.safe_io import decode_image, parse_xml, read_image, read_index_png, resolve_inside
from datasets.validation import check_boxes

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
BOX_TAGS = ("xmin", "ymin", "xmax", "ymax")
VOC_YEAR_DIR = re.compile(r"VOC\d{4}")  # VOCdevkit/VOC2007, VOC2012: the 20 classes in devkit order


@dataclass(frozen=True)
class VOCAnnotation:
    """One parsed annotation file; ``boxes`` are still VOC 1-based inclusive."""

    filename: str
    height: int
    width: int
    names: list[str]
    boxes: np.ndarray  # [K, 4] float32, VOC coordinates
    difficult: np.ndarray  # [K] bool


def read_split(root: Path, kind: str, split: str) -> list[str]:
    """Image ids listed in ``ImageSets/<kind>/<split>.txt``."""
    path = root / "ImageSets" / kind / f"{split}.txt"
    if not path.is_file():
        raise DatasetError(path, f"split file for {split!r} is missing")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def _number(path: Path, element, tag: str) -> float:
    node = element.find(tag)
    if node is None or node.text is None:
        raise DatasetError(path, f"<{tag}> is missing")
    try:
        return float(node.text)
    except ValueError:
        raise DatasetError(path, f"<{tag}> is not a number: {node.text!r}") from None


def parse_annotation(path: Path) -> VOCAnnotation:
    """Read one VOC XML file; structural problems raise ``DatasetError`` naming it."""
    root = parse_xml(path)
    size = root.find("size")
    if size is None:
        raise DatasetError(path, "<size> is missing")
    names, boxes, difficult = [], [], []
    for obj in root.iter("object"):
        name = obj.findtext("name")
        bndbox = obj.find("bndbox")
        if not name or bndbox is None:
            raise DatasetError(path, "an <object> lacks <name> or <bndbox>")
        names.append(name.strip())
        boxes.append([_number(path, bndbox, tag) for tag in BOX_TAGS])
        difficult.append(obj.findtext("difficult", "0").strip() not in ("0", ""))
    return VOCAnnotation(
        filename=root.findtext("filename", "").strip(),
        height=int(_number(path, size, "height")),
        width=int(_number(path, size, "width")),
        names=names,
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        difficult=np.asarray(difficult, dtype=bool),
    )


def annotated_class_names(root: str | Path, split: str, image_set: str = "Main") -> list[str]:
    """Sorted unique object ``<name>``s over ``split``'s annotation files (unparsable files are skipped:
    the reader and the checker report them)."""
    root = Path(root)
    names: set[str] = set()
    for image_id in read_split(root, image_set, split):
        try:
            names.update(parse_annotation(resolve_inside(root, Path("Annotations") / f"{image_id}.xml")).names)
        except DatasetError:
            continue
    if not names:
        raise DatasetError(root / "ImageSets" / image_set / f"{split}.txt", "no object names in this split's annotations: give classes=")
    return sorted(names)


def default_voc_classes(root: str | Path, split: str, image_set: str = "Main") -> list[str]:
    """VOC's 20 classes for a VOC year directory, else :func:`annotated_class_names` of ``split``."""
    if VOC_YEAR_DIR.fullmatch(Path(root).resolve().name):
        return list(VOC_CLASSES)
    return annotated_class_names(root, split, image_set)


def _labels(path: Path, names: list[str], classes: Sequence[str]) -> np.ndarray:
    index = {name: i + 1 for i, name in enumerate(classes)}
    unknown = sorted({n for n in names if n not in index})
    if unknown:
        raise DatasetError(path, f"unknown class name(s) {unknown}; known: {list(classes)}")
    return np.asarray([index[n] for n in names], dtype=np.int64)


class VOCDetection(DetectionDataset):
    """``dataset[i] -> (Tensor[3, H, W], target)`` with boxes, labels, difficult (and masks, semantic).

    ``image_set``: the ``ImageSets`` folder listing the split, ``Main`` (detection) or
    ``Segmentation`` (the images that have ``SegmentationObject`` masks, for instance heads on VOC).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "trainval",
        *,
        classes: Sequence[str] | None = None,
        transforms: Transforms | None = None,
        with_masks: bool = False,
        image_set: str = "Main",
    ) -> None:
        super().__init__(transforms)
        self.root = Path(root)
        self.split = split
        self.classes = list(classes) if classes is not None else default_voc_classes(self.root, split, image_set)
        self.with_masks = with_masks
        self.ids = read_split(self.root, image_set, split)
        self.problems: list[Problem] = []

    def __len__(self) -> int:
        return len(self.ids)

    def annotation_path(self, index: int) -> Path:
        return resolve_inside(self.root, Path("Annotations") / f"{self.ids[index]}.xml")

    def image_path(self, index: int) -> Path:
        return resolve_inside(self.root, Path("JPEGImages") / f"{self.ids[index]}.jpg")

    def load_annotation(self, index: int) -> tuple[Target, list[Problem]]:
        """The target without decoding the image (boxes checked against the XML's size)."""
        path = self.annotation_path(index)
        ann = parse_annotation(path)
        labels = _labels(path, ann.names, self.classes)
        boxes, keep, problems = check_boxes(
            str(path), voc_to_xyxy(ann.boxes), ann.height, ann.width, as_written=ann.boxes
        )
        target: Target = {
            "boxes": boxes[keep],
            "labels": labels[keep],
            "difficult": ann.difficult[keep],
            "iscrowd": np.zeros(int(keep.sum()), dtype=bool),
            "image_id": index,
            "orig_size": (ann.height, ann.width),
            "_keep": keep,
        }
        return target, problems

    def load(self, index: int) -> tuple[np.ndarray, Target]:
        annotation = self.load_annotation(index)
        target, problems = annotation
        for problem in problems:
            warnings.warn(str(problem), stacklevel=2)
        image, decode_problems = decode_image(self.image_path(index))
        for problem in decode_problems:
            warnings.warn(str(problem), stacklevel=2)
        self.problems.extend(problems + decode_problems)
        if image.shape[:2] != target["orig_size"]:
            raise DatasetError(
                self.annotation_path(index), f"<size> says {target['orig_size']} but the image is {image.shape[:2]}"
            )
        if self.with_masks:
            masks, mask_problems = self.load_masks(index, annotation)
            for problem in mask_problems:
                warnings.warn(str(problem), stacklevel=2)
            self.problems.extend(mask_problems)
            target.update(masks)
        target.pop("_keep")
        return image, target

    def load_masks(self, index: int, annotation: tuple[Target, list[Problem]]) -> tuple[dict[str, np.ndarray], list[Problem]]:
        """``masks [K, H, W]`` uint8 (the kept objects' instances) and ``semantic [H, W]`` from the
        ``SegmentationObject`` / ``SegmentationClass`` PNGs, and the problems found.

        ``annotation``: ``load_annotation(index)``'s result (the XML is not parsed again). Instance
        ``i`` is the annotation's ``i``-th object; the objects the box checks drop are left out. Raises ``DatasetError`` naming the PNG when a mask is missing,
        corrupt, of another size than the annotation's ``<size>``, or holds an instance id beyond
        the annotation's objects; a kept object without pixels is a warning.
        """
        target, _ = annotation
        keep = target["_keep"]  # [G] bool
        name = self.ids[index]
        object_path = resolve_inside(self.root, Path("SegmentationObject") / f"{name}.png")
        class_path = resolve_inside(self.root, Path("SegmentationClass") / f"{name}.png")
        objects, semantic = read_index_png(object_path), read_index_png(class_path)
        for path, mask in ((object_path, objects), (class_path, semantic)):
            if mask.shape != tuple(target["orig_size"]):
                raise DatasetError(path, f"mask is (H, W) = {mask.shape} but the annotation's <size> is {target['orig_size']}")
        present = np.unique(objects[(objects != 0) & (objects != VOID_INDEX)])
        if len(present) and int(present.max()) > len(keep):
            extra = [int(i) for i in present if i > len(keep)]
            raise DatasetError(object_path, f"instance ids {extra} but {self.annotation_path(index)} has {len(keep)} objects")
        instance_ids = np.flatnonzero(keep) + 1
        problems = [
            Problem(str(object_path), f"object {i} (of {self.annotation_path(index).name}) has no pixels", "warning")
            for i in instance_ids if i not in present
        ]  # fmt: skip
        masks = (objects[None] == instance_ids[:, None, None]).astype(np.uint8)  # [K, H, W]
        return {"masks": masks, "semantic": semantic}, problems


class VOCSegmentation(DetectionDataset):
    """Semantic segmentation: ``target["semantic"]`` ``[H, W]`` (0 bg, 1..C, 255 void); no boxes."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        classes: Sequence[str] = VOC_CLASSES,
        transforms: Transforms | None = None,
    ) -> None:
        super().__init__(transforms)
        self.root = Path(root)
        self.classes = list(classes)
        self.ids = read_split(self.root, "Segmentation", split)

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, index: int) -> Path:
        return resolve_inside(self.root, Path("JPEGImages") / f"{self.ids[index]}.jpg")

    def load(self, index: int) -> tuple[np.ndarray, Target]:
        name = self.ids[index]
        image_path = self.image_path(index)
        mask_path = resolve_inside(self.root, Path("SegmentationClass") / f"{name}.png")
        image = read_image(image_path)
        semantic = read_index_png(mask_path)
        if semantic.shape != image.shape[:2]:
            raise DatasetError(mask_path, f"mask is {semantic.shape} but the image is {image.shape[:2]}")
        bad = (semantic > len(self.classes)) & (semantic != VOID_INDEX)
        if bad.any():
            raise DatasetError(mask_path, f"class indices {sorted(set(semantic[bad].tolist()))} exceed {len(self.classes)} classes")
        return image, semantic_target(semantic, index, image.shape[:2])
