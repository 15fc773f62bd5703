"""One LightningDataModule for every dataset format and task.

``format`` picks the reader and the standard layout of ``root``:

| format   | root                                   | splits read                                    |
|----------|----------------------------------------|------------------------------------------------|
| `shapes` | ``data/shapes`` (generated if missing) | ``VOC/ImageSets/{Main,Segmentation}/<split>.txt`` |
| `voc`    | a VOC year dir (``VOCdevkit/VOC2007``), or a list of them: training concatenates all (VOC07+12), val/test read the first | ``ImageSets/Main/<split>.txt`` |
| `coco`   | ``data/coco`` with ``annotations/instances_<split>.json`` and ``<split>/`` images | e.g. ``train2017`` / ``val2017`` |

``task="detection"`` yields ``(list[Tensor[3, H, W]], list[target])`` batches
(``collate_detection``); ``task="semantic"`` reads semantic masks (``VOCSegmentation`` for
VOC and shapes, COCO instances painted into a class map) and yields
``(Tensor[N, 3, H, W], Tensor[N, H, W])`` (``collate_segmentation``).
"""

from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from datasets.base import DetectionDataset, Transforms
from datasets.coco import COCODetection
from datasets.collate import collate_detection, collate_segmentation
from datasets.shapes import SHAPE_CLASSES
from datasets.shapes_writer import write_shapes
from datasets.transforms import eval_transforms, train_transforms
from datasets.voc import VOC_CLASSES, VOCDetection, VOCSegmentation


def _seed_worker(worker_id: int) -> None:
    """Give numpy (used by albumentations) a distinct, reproducible seed in each worker."""
    np.random.seed(torch.initial_seed() % 2**32)


class DetectionDataModule(L.LightningDataModule):
    def __init__(
        self,
        *,
        format: Literal["shapes", "voc", "coco"],
        root: str | list[str],
        task: Literal["detection", "semantic"] = "detection",
        train_split: str = "train",
        val_split: str = "val",
        test_split: str = "test",
        classes: list[str] | None = None,
        with_masks: bool = False,
        augment: bool = True,
        crop_size: int | None = None,
        batch_size: int = 4,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        filter_empty: bool = True,
        shapes_image_size: int = 128,
        shapes_single_object: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.format = format
        self.roots = [Path(r) for r in ([root] if isinstance(root, str) else root)]
        self.task = task
        self.splits = {"train": train_split, "val": val_split, "test": test_split}
        self.with_masks = with_masks
        self.augment = augment
        self.crop_size = crop_size
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.filter_empty = filter_empty
        self.shapes_image_size = shapes_image_size
        self.shapes_single_object = shapes_single_object
        default = {"shapes": list(SHAPE_CLASSES), "voc": list(VOC_CLASSES), "coco": None}[format]
        self._classes = classes or default
        self.datasets: dict[str, Dataset] = {}

    @property
    def classes(self) -> list[str]:
        if self._classes is None:  # COCO: known once the annotation file is read
            self.setup("fit")
        return list(self._classes)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def prepare_data(self) -> None:
        if self.format == "shapes" and not (self.roots[0] / "VOC").is_dir():
            write_shapes(self.roots[0], image_size=self.shapes_image_size, single_object=self.shapes_single_object)

    def _transforms(self, stage: str) -> Transforms | None:
        semantic = self.task == "semantic"
        if stage == "train" and self.augment:
            return train_transforms(crop_size=self.crop_size, semantic=semantic)
        return eval_transforms(crop_size=self.crop_size, semantic=semantic)

    def _build(self, stage: str, root: Path) -> DetectionDataset:
        split, transforms = self.splits[stage], self._transforms(stage)
        semantic = self.task == "semantic"
        if self.format == "coco":
            dataset = COCODetection(
                root / split, root / "annotations" / f"instances_{split}.json", transforms=transforms,
                with_masks=self.with_masks, with_semantic=semantic, filter_empty=self.filter_empty and stage == "train",
            )
            self._classes = self._classes or dataset.classes
            return dataset
        voc_root = root / "VOC" if self.format == "shapes" else root
        if semantic:
            return VOCSegmentation(voc_root, split, classes=self._classes, transforms=transforms)
        return VOCDetection(voc_root, split, classes=self._classes, transforms=transforms, with_masks=self.with_masks)

    def setup(self, stage: str | None = None) -> None:
        self.prepare_data()
        if "train" not in self.datasets and stage in (None, "fit"):
            parts = [self._build("train", root) for root in self.roots]
            self.datasets["train"] = parts[0] if len(parts) == 1 else ConcatDataset(parts)
        wanted = {"fit": ["val"], "validate": ["val"], "test": ["test"], "predict": ["test"], None: ["val", "test"]}
        for name in wanted.get(stage, []):
            if name not in self.datasets:
                self.datasets[name] = self._build(name, self.roots[0])

    def dataset(self, stage: str) -> Dataset:
        if stage not in self.datasets:
            self.setup("fit" if stage == "train" else stage)
        return self.datasets[stage]

    def _loader(self, stage: str) -> DataLoader:
        return DataLoader(
            self.dataset(stage),
            batch_size=self.batch_size if stage == "train" else self.eval_batch_size,
            shuffle=stage == "train",
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            worker_init_fn=_seed_worker,
            collate_fn=collate_segmentation if self.task == "semantic" else collate_detection,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
