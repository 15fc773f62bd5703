"""Dataset-split arguments shared by ``scripts/evaluate.py`` and ``scripts/predict.py``.

One of ``--voc DIR`` (a VOC year directory), ``--coco-ann FILE`` (with ``--images DIR``) or
``--shapes ROOT`` (the generated shapes, read through their VOC layout), plus ``--split`` and,
for VOC layouts, ``--classes``. ``open_split`` turns them into the reader the training data
module would build for that split, so image ids and labels are the ones training and
``scripts/train.py test`` use.
"""

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from datasets.base import DetectionDataset
from datasets.coco import COCODetection
from datasets.shapes import SHAPE_CLASSES
from datasets.voc import VOC_CLASSES, VOCDetection, VOCSegmentation

Task = Literal["detection", "semantic"]


@dataclass
class Split:
    """A dataset split: its ``reader``, the folder its image paths start from, and a description."""

    reader: DetectionDataset
    images_root: Path
    source: Path
    label_to_category_id: dict[int, int] | None


def add_dataset_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    source = parser.add_mutually_exclusive_group(required=required)
    source.add_argument("--voc", type=Path, help="VOC year directory (Annotations/, JPEGImages/, ImageSets/)")
    source.add_argument("--coco-ann", type=Path, help="COCO annotation JSON")
    source.add_argument("--shapes", type=Path, help="generated shapes root (read through its VOC layout)")
    parser.add_argument("--images", type=Path, help="image directory of --coco-ann")
    parser.add_argument("--split", default="val", help="VOC/shapes ImageSets split (default: val)")
    parser.add_argument(
        "--image-set", default="Main", choices=["Main", "Segmentation"],
        help="VOC ImageSets folder of --split (Segmentation: VOC's images with instance masks)",
    )  # fmt: skip
    parser.add_argument(
        "--classes", nargs="+", help="class names of a VOC-layout dataset (default: the checkpoint's, else VOC's 20); also names a checkpoint's classes when it stores none"
    )


def has_dataset(args: argparse.Namespace) -> bool:
    return any(getattr(args, name) is not None for name in ("voc", "coco_ann", "shapes"))


def _voc_root_and_classes(args: argparse.Namespace, default: list[str] | None = None) -> tuple[Path, list[str]]:
    """The VOC-layout root and class names: ``--classes``, else ``default``, else VOC's (shapes: theirs)."""
    if args.shapes is not None:
        return args.shapes / "VOC", list(SHAPE_CLASSES)
    return args.voc, list(args.classes or default or VOC_CLASSES)


def open_split(args: argparse.Namespace, *, task: Task, with_masks: bool = False, classes: list[str] | None = None) -> Split:
    """The reader of the chosen split, without augmentation. ``classes``: the model's, for VOC layouts."""
    if args.coco_ann is not None:
        if args.images is None:
            raise ValueError("--coco-ann needs --images (the folder of the annotation file's images)")
        reader = COCODetection(args.images, args.coco_ann, with_masks=with_masks, with_semantic=task == "semantic")
        return Split(reader=reader, images_root=args.images, source=args.coco_ann, label_to_category_id=reader.label_to_category_id)
    root, names = _voc_root_and_classes(args, classes)
    if task == "semantic":
        reader = VOCSegmentation(root, args.split, classes=names)
    else:
        reader = VOCDetection(root, args.split, classes=names, with_masks=with_masks, image_set=args.image_set)
    return Split(reader=reader, images_root=root / "JPEGImages", source=args.shapes or args.voc, label_to_category_id=None)
