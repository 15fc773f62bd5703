"""Data-pipeline throughput: images per second through the training augmentations at 512 px.

Generates shapes at 512 x 512 in a temporary directory, then reads the train split through the
VOC reader, the albumentations training pipeline and the detection collate, with 0 and 2
DataLoader workers.

    python scripts/bench_data.py [--images 200] [--workers 0 2]
"""

import argparse
import tempfile
import time

from datasets.datamodule import DetectionDataModule
from datasets.shapes_writer import write_shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as root:
        write_shapes(root, sizes={"train": args.images, "val": 1}, image_size=args.image_size)
        print(f"{args.images} images at {args.image_size} px, training augmentations, batch {args.batch_size}")
        print(f"{'workers':>8}  {'images/s':>9}  {'seconds':>8}")
        for workers in args.workers:
            data = DetectionDataModule(format="shapes", root=root, batch_size=args.batch_size, num_workers=workers)
            data.setup("fit")
            loader = data.train_dataloader()
            next(iter(loader))  # worker start-up is not throughput
            start = time.perf_counter()
            count = sum(len(images) for images, _ in loader)
            seconds = time.perf_counter() - start
            print(f"{workers:>8}  {count / seconds:>9.1f}  {seconds:>8.2f}")


if __name__ == "__main__":
    main()
