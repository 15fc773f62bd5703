"""Selective-search proposal recall on a dataset split, ``fast`` vs ``quality``.

For every ground-truth box (VOC ``difficult`` and COCO ``iscrowd`` left out) the best IoU over
the image's proposals (``torchvision.ops.box_iou``); recall at IoU 0.5 and 0.7 is the fraction
of boxes whose best IoU reaches it, ABO the mean best IoU (Uijlings et al.'s average best
overlap). Also the mean number of proposals and the seconds per image (no cache: every image
is computed, one OpenCV thread).

    python scripts/proposal_recall.py --format shapes --root data/shapes --split test [--images 100]
"""

import argparse
import os
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch  # noqa: E402
from torchvision.ops import box_iou  # noqa: E402
from tqdm import tqdm  # noqa: E402

from datasets.datamodule import DetectionDataModule  # noqa: E402
from detection.proposals.selective_search import MAX_PROPOSALS, MIN_BOX_SIDE, MODES, image_to_uint8, selective_search  # noqa: E402

IOU_THRESHOLDS = (0.5, 0.7)


def split_dataset(format: str, root: str, split: str):
    """The reader of ``split`` without augmentation (what the model is evaluated on)."""
    return DetectionDataModule(format=format, root=root, test_split=split, augment=False).dataset("test")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", choices=["shapes", "voc", "coco"], default="shapes")
    parser.add_argument("--root", default="data/shapes")
    parser.add_argument("--split", default="test")
    parser.add_argument("--images", type=int, default=None, help="the first N images only")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--max-proposals", type=int, default=MAX_PROPOSALS)
    parser.add_argument("--min-size", type=int, default=MIN_BOX_SIDE)
    args = parser.parse_args()
    dataset = split_dataset(args.format, args.root, args.split)
    count = len(dataset) if args.images is None else min(args.images, len(dataset))
    samples = [dataset[i] for i in range(count)]
    print(f"{args.format} {args.root} {args.split}: {count} images, max_proposals={args.max_proposals}, min_size={args.min_size}")
    for mode in args.modes:
        best_ious, proposals, seconds = [], 0, 0.0
        for image, target in tqdm(samples, desc=mode, unit="img"):
            pixels = image_to_uint8(image)
            start = time.perf_counter()
            boxes = selective_search(pixels, mode=mode, max_proposals=args.max_proposals, min_size=args.min_size)
            seconds += time.perf_counter() - start
            proposals += len(boxes)
            keep = ~(target["difficult"] | target["iscrowd"])
            gt = target["boxes"][keep]
            if len(gt):
                best_ious.append(box_iou(gt, boxes).amax(dim=1) if len(boxes) else torch.zeros(len(gt)))
        best = torch.cat(best_ious) if best_ious else torch.zeros(0)
        recalls = "  ".join(f"recall@{t}: {(best >= t).float().mean().item():.3f}" for t in IOU_THRESHOLDS)
        print(f"{mode:8s} {recalls}  ABO: {best.mean().item():.3f}  ({len(best)} boxes)  "
              f"proposals/img: {proposals / count:.0f}  s/img: {seconds / count:.3f}")


if __name__ == "__main__":
    main()
