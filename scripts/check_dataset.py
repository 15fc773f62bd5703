"""Check a dataset before training: counts, empty images and every problem found.

    python scripts/check_dataset.py --config configs/fcn/mask_folder_example.yaml          # the splits a config trains on
    python scripts/check_dataset.py --config configs/faster_rcnn/bccd_pretrained.yaml --split train
    python scripts/check_dataset.py --voc data/VOCdevkit/VOC2007 --split trainval
    python scripts/check_dataset.py --voc ../shared/data/voc_bccd/BCCD --split train   # classes from the annotations
    python scripts/check_dataset.py --coco-ann data/coco/annotations/instances_val2017.json --images data/coco/val2017
    python scripts/check_dataset.py --coco-ann data/coco/annotations/instances_train2017.json --images data/coco/train2017 --classes person,dog
    python scripts/check_dataset.py --voc data/VOCdevkit/VOC2012 --image-set Segmentation --split train --masks   # for MNC
    python scripts/check_dataset.py --mask-folder ../shared/data/roboflow_tqb_semantic --split valid
    python scripts/check_dataset.py --mask-folder data/ade --mask-option layout=mmseg --mask-option reduce_zero_label=true --split training

``--config`` reads the config's ``data`` block (``DetectionDataModule``: format, roots, splits,
classes, task, mask folder options) and checks each split it reads (``--split``: ``train``,
``val``, ``test``, or a split name of the config), so paths are never retyped. Semantic data
(``task: semantic``, mask folders) is checked mask by mask: size against the image, values
against the classes and void (``docs/semantic_folders.md``).

Detection splits also print their object sizes: box width, height and ``sqrt(w h)`` percentiles
(5/25/50/75/95) in pixels, with k-means anchors for them. With ``--config`` the sizes are also given
at the config model's input size (its ``min_size``/``max_size`` or ``image_size`` resize), set
against its anchors (YOLOv5 AutoAnchor's best possible recall) and the stride of the map its head
reads, with warnings where they cannot localise the small objects, and a suggested input size,
``anchor_sizes`` and ``aspect_ratios`` for the config (``datasets/object_sizes.py``).

Every image is decoded as the readers decode it. Exits with status 1 when it finds errors
(warnings alone exit 0): a dataset that passes trains without a ``DatasetError``.
"""

import argparse
import sys
from pathlib import Path

import yaml

from datasets.check import DatasetReport, check_coco, check_datamodule, check_semantic, check_voc
from datasets.datamodule import DetectionDataModule
from datasets.errors import DatasetError, Problem
from datasets.mask_folder import MaskFolderOptions, MaskFolderSegmentation
from datasets.object_sizes import model_sizing

DATAMODULE = "datasets.datamodule.DetectionDataModule"
STAGES = ("train", "val", "test")


def config_datamodule(path: Path) -> DetectionDataModule:
    """The ``DetectionDataModule`` of a training config's ``data`` block (``ValueError`` when it has none)."""
    config = yaml.safe_load(path.read_text()) or {}
    data = config.get("data") or {}
    if data.get("class_path", DATAMODULE) != DATAMODULE:
        raise ValueError(f"{path}: data.class_path is {data.get('class_path')!r}; --config reads {DATAMODULE} configs")
    try:
        return DetectionDataModule(**(data.get("init_args") or {}))
    except TypeError as error:
        raise ValueError(f"{path}: data.init_args: {error}") from None


def config_stages(datamodule: DetectionDataModule, split: str | None) -> list[str]:
    """The stages to check: ``split`` as a stage or a split name, else each distinct split once."""
    if split is None:
        seen: dict[str, str] = {}
        for stage in STAGES:
            seen.setdefault(datamodule.splits[stage], stage)
        return list(seen.values())
    if split in STAGES:
        return [split]
    stages = [stage for stage in STAGES if datamodule.splits[stage] == split]
    if not stages:
        raise ValueError(f"split {split!r} is not read by this config: {datamodule.splits}")
    return stages[:1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="a training config: check the data its `data` block reads")
    source.add_argument("--voc", help="VOC year directory (with Annotations/, JPEGImages/, ImageSets/)")
    source.add_argument("--coco-ann", help="COCO instances JSON")
    source.add_argument("--mask-folder", help="semantic mask folder root (docs/semantic_folders.md)")
    parser.add_argument(
        "--split", default=None,
        help="VOC split (ImageSets/<image set>/<split>.txt; default trainval), mask folder split (default train); "
        "with --config a stage (train, val, test) or one of its split names (default: every split it reads)",
    )  # fmt: skip
    parser.add_argument("--image-set", default="Main", choices=["Main", "Segmentation"], help="VOC ImageSets folder of --split")
    parser.add_argument(
        "--classes", default=None,
        help="comma-separated class names. VOC: the classes (default: VOC's 20 for a VOC<year> directory, else the "
        "names in the split's annotations); COCO: keep only these categories, by name or id (default: all); "
        "mask folder: default its class file",
    )
    parser.add_argument("--images", help="COCO image directory")
    parser.add_argument(
        "--masks", action="store_true",
        help="also check the instance masks as instance heads read them (VOC SegmentationObject and "
        "SegmentationClass PNGs, COCO segmentations)",
    )
    parser.add_argument(
        "--mask-option", action="append", default=[], metavar="KEY=VALUE",
        help="a mask folder option (repeatable): layout, images, masks, image_suffix, mask_suffix, classes_file, "
        "void_index, reduce_zero_label, label_offset, exclude",
    )
    args = parser.parse_args(argv)

    classes = [name.strip() for name in args.classes.split(",")] if args.classes else None
    try:
        reports = run(args, classes)
    except (DatasetError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n\n".join(report.summary() for report in reports))
    return 1 if any(report.errors for report in reports) else 0


def run(args: argparse.Namespace, classes: list[str] | None) -> list[DatasetReport]:
    if args.config:
        datamodule = config_datamodule(args.config)
        reports = [check_datamodule(datamodule, stage) for stage in config_stages(datamodule, args.split)]
        sizing = model_sizing(yaml.safe_load(args.config.read_text()) or {})
        for report in reports:
            report.sizing = sizing
        return reports
    if args.mask_folder:
        split = args.split or "train"
        name = f"mask folder {args.mask_folder} [{split}]"
        try:
            reader = MaskFolderSegmentation(args.mask_folder, split, options=MaskFolderOptions.from_pairs(args.mask_option), classes=classes)
        except DatasetError as error:
            return [DatasetReport(name=name, problems=[Problem(error.path, error.problem)])]
        return [check_semantic(reader, name)]
    if args.voc:
        return [check_voc(args.voc, args.split or "trainval", classes, args.image_set, with_masks=args.masks)]
    if not args.images:
        raise ValueError("--coco-ann needs --images")
    return [check_coco(args.coco_ann, args.images, with_masks=args.masks, categories=classes)]


if __name__ == "__main__":
    sys.exit(main())
