"""Data-pipeline throughput: images per second through the training augmentations at 512 px.

Generates 200 shapes images at 512 x 512 in a temporary directory, then reads the train split
through ``DetectionDataModule`` (VOC reader: JPEG decode + XML parse, the albumentations training
pipeline, tensor conversion, the detection collate), batch 8, with 0 and 2 DataLoader workers.
The "decode only" rows (``augment=False``) separate reading from augmenting. Worker start-up is
excluded: the clock starts after the first batch, and the remaining images are counted. Masks
are off (``images_per_second(with_masks=True)`` also reads and transforms instance + semantic
masks).

    OMP_NUM_THREADS=1 python -m benchmarks run data [--quick]

Figures: ``{pipeline: {"workers_<n>": {images_per_s, ms_per_image, seconds}}}`` for the pipelines
``decode_only`` and ``training_augmentations``.
"""

import tempfile
import time

import torch

from benchmarks.timing import torch_threads
from datasets.datamodule import DetectionDataModule
from datasets.shapes_writer import write_shapes

PIPELINES = {"decode_only": False, "training_augmentations": True}  # name -> augment


def images_per_second(root: str, *, workers: int, augment: bool, batch_size: int, with_masks: bool = False) -> tuple[int, float]:
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


def run(quick: bool) -> dict:
    images, image_size, workers, batch_size = (8, 128, (0,), 2) if quick else (200, 512, (0, 2), 8)
    torch.manual_seed(0)
    figures: dict = {"images": images, "image_size": image_size, "batch_size": batch_size}
    # The main process only converts and collates; workers are the parallelism.
    with tempfile.TemporaryDirectory(prefix="bench_data_") as root, torch_threads(1):
        write_shapes(root, sizes={"train": images, "val": 1, "test": 1}, image_size=image_size, seed=0)
        for name, augment in PIPELINES.items():
            figures[name] = {}
            for n in workers:
                count, seconds = images_per_second(root, workers=n, augment=augment, batch_size=batch_size)
                figures[name][f"workers_{n}"] = {
                    "images_per_s": round(count / seconds, 1),
                    "ms_per_image": round(1000 * seconds / count, 2),
                    "seconds": round(seconds, 2),
                }
    return figures
