"""Scan a whole VOC or COCO dataset and collect every problem, without stopping at the first.

The checker reads every annotation and decodes every image with the readers' own parsing,
box checks and decoder (``datasets.safe_io.decode_image``, under PIL's decompression-bomb
guard), so whatever a reader would refuse it reports as an error first, and an image a reader
loads with a warning (missing trailing bytes) is a warning here too (see ``docs/bad_input.md``).
With ``with_masks`` it also reads every instance mask with the readers' ``load_masks`` (for
instance heads, which train with ``with_masks``), and the summary counts the masks read per class.
Detection splits also measure their boxes (``datasets.object_sizes``): the summary gives box
width / height percentiles, and, with the ``sizing`` of a config's model, the sizes at its input
size, warnings about objects its stride or anchors cannot localise, and a suggested input size and anchors.
A COCO check can keep a subset of the categories (``categories``), as training reads it.
A COCO file's broken entries (unknown image or category ids, missing fields) are all listed,
and the rest of the file is still checked.

Semantic masks (:func:`check_semantic`: mask folders, VOC ``SegmentationClass``): every image
and mask is read; every mask whose size differs from its image and every value that is neither
a class nor void is listed, and the summary counts the images showing each class.
:func:`check_datamodule` checks the splits a config's data module reads, for every format.
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from datasets.coco import COCODetection, index_coco, read_instances, structural_problems
from datasets.errors import DatasetError, Problem
from datasets.mask_folder import MaskFolderSegmentation
from datasets.object_sizes import BoxSizes, ModelSizing, size_lines
from datasets.safe_io import decode_image
from datasets.voc import VOCDetection, VOCSegmentation

if TYPE_CHECKING:  # the data module imports lightning; the checker needs only its attributes
    from datasets.datamodule import DetectionDataModule


@dataclass
class DatasetReport:
    name: str
    images: int = 0
    classes: list[str] = field(default_factory=list)
    boxes_per_class: Counter = field(default_factory=Counter)
    empty_images: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    masks_per_class: Counter | None = None  # None: instance masks were not read (no ``with_masks``)
    images_per_class: Counter | None = None  # semantic masks: the images whose mask shows each class
    box_sizes: BoxSizes | None = None  # detection: every box read, for the object-size section
    sizing: ModelSizing | None = None  # a config's model: sizes at its input size, its anchors, a suggestion

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def summary(self) -> str:
        lines = [f"dataset: {self.name}", f"images: {self.images}", f"classes (labels 1..{len(self.classes)}): {self.classes}"]
        if self.images_per_class is not None:
            lines.append("semantic masks: images showing each class:")
            width = max((len(c) for c in self.classes), default=0)
            lines += [f"  {name:<{width}}  {self.images_per_class[name]}" for name in self.classes]
            lines.append(f"problems: {len(self.errors)} errors, {len(self.warnings)} warnings")
            lines += [f"  {p}" for p in self.problems]
            return "\n".join(lines)
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
        if self.box_sizes is not None:
            sizes, size_warnings = size_lines(self.box_sizes, self.sizing)
            lines += sizes + [f"  warning: {warning}" for warning in size_warnings]
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
    report = DatasetReport(
        name=name, classes=list(dataset.classes), masks_per_class=Counter() if dataset.with_masks else None, box_sizes=BoxSizes()
    )
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
        report.box_sizes.add(target["boxes"], target["orig_size"])
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


def check_semantic(dataset: MaskFolderSegmentation | VOCSegmentation, name: str) -> DatasetReport:
    """Read every image and semantic mask of ``dataset`` as its ``load`` does, listing every problem.

    A mask folder lists all of a sample's problems (size and values) and warns about masks without
    an image; a VOC ``SegmentationClass`` reader reports the first problem of each sample.
    """
    report = DatasetReport(name=name, classes=list(dataset.classes), images_per_class=Counter())
    for index in range(len(dataset)):
        report.images += 1
        if isinstance(dataset, MaskFolderSegmentation):
            problems, labels = dataset.check(index)
        else:
            try:
                _, target = dataset.load(index)
            except DatasetError as error:
                problems, labels = [Problem(error.path, error.problem)], None
            else:
                problems, labels = [], [v for v in set(target["semantic"].ravel().tolist()) if 0 < v <= len(dataset.classes)]
        report.problems += problems
        if labels is not None:
            report.images_per_class.update(dataset.classes[int(label) - 1] for label in labels if label > 0)
    if isinstance(dataset, MaskFolderSegmentation):
        report.problems += [Problem(str(path), "mask without an image", "warning") for path in dataset.orphan_masks()]
        report.problems += [
            Problem(str(dataset.image_dir / f"{name}{dataset.image_suffix}"), "left out (mask folder option exclude)", "warning")
            for name in dataset.excluded
        ]  # fmt: skip
    return report


def check_datamodule(datamodule: "DetectionDataModule", stage: str) -> DatasetReport:
    """Check split ``stage`` (``train``, ``val`` or ``test``) of a ``DetectionDataModule`` as it reads it:
    its format, roots, classes, task and ``with_masks``. Every root of a concatenated training split."""
    split = datamodule.splits[stage]
    semantic = datamodule.task == "semantic"
    if datamodule.format == "coco":  # the file checks (structure, every entry) come with check_coco
        root = datamodule.roots[0]
        classes = datamodule._categories
        return check_coco(
            root / "annotations" / f"instances_{split}.json", root / split, with_masks=datamodule.with_masks or semantic,
            categories=classes,
        )  # fmt: skip
    name = f"{datamodule.format} {datamodule.roots[0]} [{split}]"
    if datamodule.format == "shapes" and not (datamodule.roots[0] / "classes.txt").is_file():  # never generate it here
        return DatasetReport(name=name, problems=[Problem(str(datamodule.roots[0]), "generated shapes root is missing (training writes it)")])
    try:
        reader = datamodule.unaugmented(stage)
    except DatasetError as error:
        return DatasetReport(name=name, problems=[Problem(error.path, error.problem)])
    readers = list(reader.datasets) if hasattr(reader, "datasets") else [reader]
    reports = []
    for part in readers:
        name = f"{datamodule.format} {getattr(part, 'root', datamodule.roots[0])} [{split}]"
        reports.append(check_semantic(part, name) if semantic else _check(part, name))
    report = reports[0]
    for other in reports[1:]:  # VOC07+12: one report over every root
        report.name += f" + {other.name}"
        report.images += other.images
        report.boxes_per_class.update(other.boxes_per_class)
        report.empty_images += other.empty_images
        report.problems += other.problems
        if report.box_sizes is not None and other.box_sizes is not None:
            report.box_sizes.add_all(other.box_sizes)
        if report.masks_per_class is not None:
            report.masks_per_class.update(other.masks_per_class)
    return report
