"""Scan a whole VOC or COCO dataset and collect every problem, without stopping at the first.

The checker reads every annotation and checks every image header (size and decodability
under PIL's decompression-bomb guard) instead of decoding full images, so it is fast. It
reuses the readers' own parsing and box checks, so it finds exactly what training would
trip over (see ``docs/bad_input.md``).
"""

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from datasets.coco import COCODetection
from datasets.errors import DatasetError, Problem
from datasets.safe_io import image_size
from datasets.voc import VOCDetection


@dataclass
class DatasetReport:
    name: str
    images: int = 0
    boxes_per_class: Counter = field(default_factory=Counter)
    empty_images: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def summary(self) -> str:
        lines = [f"dataset: {self.name}", f"images: {self.images}", "boxes per class:"]
        width = max((len(c) for c in self.boxes_per_class), default=0)
        lines += [f"  {name:<{width}}  {count}" for name, count in sorted(self.boxes_per_class.items())]
        lines.append(f"images without boxes: {len(self.empty_images)}")
        lines += [f"  {name}" for name in self.empty_images[:20]]
        if len(self.empty_images) > 20:
            lines.append(f"  ... and {len(self.empty_images) - 20} more")
        lines.append(f"problems: {len(self.errors)} errors, {len(self.warnings)} warnings")
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


def _check_image(path: Path, expected: tuple[int, int]) -> list[Problem]:
    try:
        size = image_size(path)
    except DatasetError as error:
        return [Problem(error.path, error.problem)]
    if size != tuple(expected):
        return [Problem(str(path), f"annotation says (H, W) = {tuple(expected)} but the image is {size}")]
    return []


def _check(dataset: VOCDetection | COCODetection, name: str) -> DatasetReport:
    report = DatasetReport(name=name)
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
    return report


def check_voc(root: str | Path, split: str, classes: list[str]) -> DatasetReport:
    try:
        dataset = VOCDetection(root, split, classes=classes)
    except DatasetError as error:
        return DatasetReport(name=f"VOC {root} [{split}]", problems=[Problem(error.path, error.problem)])
    return _check(dataset, f"VOC {root} [{split}]")


def check_coco(ann_file: str | Path, image_root: str | Path) -> DatasetReport:
    try:
        dataset = COCODetection(image_root, ann_file)
    except DatasetError as error:
        return DatasetReport(name=f"COCO {ann_file}", problems=[Problem(error.path, error.problem)])
    return _check(dataset, f"COCO {ann_file}")
