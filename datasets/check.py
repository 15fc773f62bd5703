"""Scan a whole VOC or COCO dataset and collect every problem, without stopping at the first.

The checker reads every annotation and decodes every image with the readers' own parsing,
box checks and decoder (``datasets.safe_io.decode_image``, under PIL's decompression-bomb
guard), so whatever a reader would refuse it reports as an error first, and an image a reader
loads with a warning (missing trailing bytes) is a warning here too (see ``docs/bad_input.md``).
With ``with_masks`` it also reads every instance mask with the readers' ``load_masks`` (for
instance heads, which train with ``with_masks``), and the summary counts the masks read per class.
A COCO check can keep a subset of the categories (``categories``), as training reads it.
A COCO file's broken entries (unknown image or category ids, missing fields) are all listed,
and the rest of the file is still checked.
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from datasets.coco import COCODetection, index_coco, read_instances, structural_problems
from datasets.errors import DatasetError, Problem
from datasets.safe_io import decode_image
from datasets.voc import VOCDetection


@dataclass
class DatasetReport:
    name: str
    images: int = 0
    classes: list[str] = field(default_factory=list)
    boxes_per_class: Counter = field(default_factory=Counter)
    empty_images: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    masks_per_class: Counter | None = None  # None: instance masks were not read (no ``with_masks``)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def summary(self) -> str:
        lines = [f"dataset: {self.name}", f"images: {self.images}", f"classes (labels 1..{len(self.classes)}): {self.classes}"]
        lines.append("boxes per class:")
        width = max((len(c) for c in self.boxes_per_class), default=0)
        lines += [f"  {name:<{width}}  {count}" for name, count in sorted(self.boxes_per_class.items())]
        if self.masks_per_class is None:
            lines.append("instance masks: not read (check them with --masks)")
        else:
            lines.append(f"instance masks read: {sum(self.masks_per_class.values())}, per class:")
            width = max((len(c) for c in self.masks_per_class), default=0)
            lines += [f"  {name:<{width}}  {count}" for name, count in sorted(self.masks_per_class.items())]
        lines.append(f"images without boxes: {len(self.empty_images)}")
        lines += [f"  {name}" for name in self.empty_images[:20]]
        if len(self.empty_images) > 20:
            lines.append(f"  ... and {len(self.empty_images) - 20} more")
        lines.append(f"problems: {len(self.errors)} errors, {len(self.warnings)} warnings")
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


def _check_image(path: Path, expected: tuple[int, int]) -> list[Problem]:
    """Decode the whole image as a reader would: its refusal is an error, its warnings stay warnings."""
    try:
        image, problems = decode_image(path)
    except DatasetError as error:
        return [Problem(error.path, error.problem)]
    size = tuple(image.shape[:2])
    if size != tuple(expected):
        problems.append(Problem(str(path), f"annotation says (H, W) = {tuple(expected)} but the image is {size}"))
    return problems


def _check(dataset: VOCDetection | COCODetection, name: str) -> DatasetReport:
    report = DatasetReport(name=name, classes=list(dataset.classes), masks_per_class=Counter() if dataset.with_masks else None)
    for index in range(len(dataset)):
        report.images += 1
        try:
            loaded = dataset.load_annotation(index)
            image_path = dataset.image_path(index)
        except DatasetError as error:
            report.problems.append(Problem(error.path, error.problem))
            continue
        target, problems = loaded[0], loaded[-1]
        report.problems += problems
        labels = target["labels"].tolist()
        if not labels:
            report.empty_images.append(image_path.name)
        report.boxes_per_class.update(dataset.classes[label - 1] for label in labels)
        report.problems += _check_image(image_path, target["orig_size"])
        if dataset.with_masks:
            try:
                report.problems += dataset.load_masks(index, loaded)[1]
            except DatasetError as error:
                report.problems.append(Problem(error.path, error.problem))
            else:  # one mask per kept object
                report.masks_per_class.update(dataset.classes[label - 1] for label in labels)
    return report


def check_voc(
    root: str | Path, split: str, classes: list[str] | None = None, image_set: str = "Main", *, with_masks: bool = False
) -> DatasetReport:
    """``classes=None``: ``datasets.voc.default_voc_classes`` (VOC's 20 for a VOC year dir, else the split's names);
    ``image_set``: the ``ImageSets`` folder of ``split`` (as the reader's); ``with_masks``: also read
    every ``SegmentationObject`` / ``SegmentationClass`` PNG as the reader's ``with_masks`` does."""
    try:
        dataset = VOCDetection(root, split, classes=classes, image_set=image_set, with_masks=with_masks)
    except DatasetError as error:
        return DatasetReport(name=f"VOC {root} [{split}]", problems=[Problem(error.path, error.problem)])
    return _check(dataset, f"VOC {root} [{split}]")


def check_coco(
    ann_file: str | Path, image_root: str | Path, *, with_masks: bool = False, categories: Sequence[str | int] | None = None
) -> DatasetReport:
    """``with_masks``: also decode every kept annotation's segmentation as the reader's ``with_masks`` does;
    ``categories``: check only that subset (names or ids), as ``COCODetection(categories=...)`` reads it:
    the other categories' annotations are ignored and an image without the kept ones counts as empty."""
    name = f"COCO {ann_file}" + (f" (categories {list(categories)})" if categories is not None else "")
    try:
        data, structural = structural_problems(read_instances(ann_file), ann_file)
        dataset = COCODetection(image_root, ann_file, coco=index_coco(data), with_masks=with_masks, categories=categories)
    except DatasetError as error:
        return DatasetReport(name=name, problems=[*structural, Problem(error.path, error.problem)])
    report = _check(dataset, name)
    report.problems[:0] = structural
    return report
