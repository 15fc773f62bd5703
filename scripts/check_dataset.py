"""Check a VOC or COCO dataset before training: counts, empty images and every problem found.

    python scripts/check_dataset.py --voc data/VOCdevkit/VOC2007 --split trainval
    python scripts/check_dataset.py --voc ../shared/data/voc_bccd/BCCD --split train   # classes from the annotations
    python scripts/check_dataset.py --coco-ann data/coco/annotations/instances_val2017.json --images data/coco/val2017
    python scripts/check_dataset.py --coco-ann data/coco/annotations/instances_train2017.json --images data/coco/train2017 --classes person,dog
    python scripts/check_dataset.py --voc data/VOCdevkit/VOC2012 --image-set Segmentation --split train --masks   # for MNC

Every image is decoded as the readers decode it. Exits with status 1 when it finds errors
(warnings alone exit 0): a dataset that passes trains without a ``DatasetError``.
"""

import argparse
import sys

from datasets.check import check_coco, check_voc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--voc", help="VOC year directory (with Annotations/, JPEGImages/, ImageSets/)")
    source.add_argument("--coco-ann", help="COCO instances JSON")
    parser.add_argument("--split", default="trainval", help="VOC split (ImageSets/<image set>/<split>.txt)")
    parser.add_argument("--image-set", default="Main", choices=["Main", "Segmentation"], help="VOC ImageSets folder of --split")
    parser.add_argument(
        "--classes", default=None,
        help="comma-separated class names. VOC: the classes (default: VOC's 20 for a VOC<year> directory, else the "
        "names in the split's annotations); COCO: keep only these categories, by name or id (default: all)",
    )
    parser.add_argument("--images", help="COCO image directory")
    parser.add_argument(
        "--masks", action="store_true",
        help="also check the instance masks as instance heads read them (VOC SegmentationObject and "
        "SegmentationClass PNGs, COCO segmentations)",
    )
    args = parser.parse_args()

    classes = [name.strip() for name in args.classes.split(",")] if args.classes else None
    if args.voc:
        report = check_voc(args.voc, args.split, classes, args.image_set, with_masks=args.masks)
    else:
        if not args.images:
            parser.error("--coco-ann needs --images")
        report = check_coco(args.coco_ann, args.images, with_masks=args.masks, categories=classes)
    print(report.summary())
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
