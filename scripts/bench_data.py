"""Data-pipeline throughput: images per second through the training augmentations at 512 px.

Generates shapes at 512 x 512 in a temporary directory, then reads the train split through
``DetectionDataModule`` (VOC reader: JPEG decode + XML parse, the albumentations training
pipeline, tensor conversion, the detection collate) with 0 and 2 DataLoader workers. The
"decode only" rows (``augment=False``) separate reading from augmenting. Worker start-up
is excluded: the clock starts after the first batch, and the remaining images are counted.

    python scripts/bench_data.py [--images 200] [--image-size 512] [--workers 0 2] [--with-masks]
"""

import argparse
import os
import tempfile
import time

import torch

from datasets.datamodule import DetectionDataModule
from datasets.shapes_writer import write_shapes


def images_per_second(
    root: str, *, workers: int, augment: bool, batch_size: int, with_masks: bool
) -> tuple[int, float]:
    """One epoch of the train loader, timed after its first batch; returns ``(images, seconds)``."""
    data = DetectionDataModule(
        format="shapes", root=root, batch_size=batch_size, num_workers=workers, augment=augment, with_masks=with_masks
    )
    data.setup("fit")
    batches = iter(data.train_dataloader())
    next(batches)  # worker start-up is not throughput: the clock starts after the first batch
    start = time.perf_counter()
    count = sum(len(images) for images, _ in batches)
    return count, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--with-masks", action="store_true", help="also read and transform instance + semantic masks")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)  # the main process only converts and collates; workers are the parallelism
    with tempfile.TemporaryDirectory() as root:
        write_shapes(root, sizes={"train": args.images, "val": 1, "test": 1}, image_size=args.image_size, seed=args.seed)
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(
            f"{args.images} shapes images at {args.image_size} px, batch {args.batch_size}, "
            f"masks {'on' if args.with_masks else 'off'}; {os.cpu_count()} CPUs, load average {load}"
        )
        print(f"| {'pipeline':<22} | {'workers':>7} | {'images/s':>8} | {'ms/image':>8} | {'seconds':>7} |")
        print(f"|{'-' * 24}|{'-' * 9}|{'-' * 10}|{'-' * 10}|{'-' * 9}|")
        for augment in (False, True):
            name = "training augmentations" if augment else "decode only"
            for workers in args.workers:
                count, seconds = images_per_second(
                    root, workers=workers, augment=augment, batch_size=args.batch_size, with_masks=args.with_masks
                )
                print(
                    f"| {name:<22} | {workers:>7} | {count / seconds:>8.1f} | {1000 * seconds / count:>8.2f} "
                    f"| {seconds:>7.2f} |"
                )


if __name__ == "__main__":
    main()
