"""One LightningDataModule for every dataset format and task.

``format`` picks the reader and the standard layout of ``root``:

| format   | root                                   | splits read                                    |
|----------|----------------------------------------|------------------------------------------------|
| `shapes` | ``data/shapes`` (generated if missing) | ``VOC/ImageSets/{Main,Segmentation}/<split>.txt`` |
| `voc`    | a VOC year dir (``VOCdevkit/VOC2007``), or a list of them: training concatenates all (VOC07+12), val/test read the first | ``ImageSets/Main/<split>.txt`` |
| `coco`   | ``data/coco`` with ``annotations/instances_<split>.json`` and ``<split>/`` images | e.g. ``train2017`` / ``val2017`` |
| `mask_folder` | images + class-index mask PNGs (``task="semantic"`` only): Roboflow's ``<split>/<name>.jpg`` + ``<name>_mask.png``, or mmsegmentation's ``img_dir/<split>``, ``ann_dir/<split>`` (``mask_folder`` options, ``datasets/mask_folder.py``) | the split folders, e.g. ``train`` / ``valid`` |

Every task yields ``(list[Tensor[3, H, W]], list[target])`` batches (``collate_detection``);
``task="semantic"`` reads semantic masks into ``target["semantic"]`` (``VOCSegmentation`` for
VOC and shapes, COCO instances painted into a class map; ``crop_size`` makes training images a
fixed square).

Augmentation: the training split gets ``train_transforms`` (flip, scale jitter + crop, colour
jitter), ``flip_transforms`` with ``augment="flip"`` (Fast R-CNN's cached proposals follow
flips exactly), or none with ``augment=False``; validation and test get none: the model's transform
resizes, and metrics are computed on the files as they are.

Randomness: the training pipeline's seed is derived from ``torch.initial_seed()`` (so
``lightning.seed_everything`` makes ``num_workers=0`` runs repeat), and ``seed_worker``
reseeds numpy, ``random`` and the albumentations pipeline in every DataLoader worker from
the worker's torch seed; without it, forked workers would repeat the same augmentations.
"""

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset, get_worker_info

from datasets.base import BadImageLog, DetectionDataset
from datasets.coco import COCODetection, category_ids
from datasets.collate import collate_detection
from datasets.errors import DatasetError
from datasets.mask_folder import MaskFolderOptions, MaskFolderSegmentation
from datasets.shapes import SHAPE_CLASSES
from datasets.shapes_writer import write_shapes
from datasets.transforms import BoxMaskTransform, flip_transforms, train_transforms
from datasets.voc import VOC_CLASSES, VOCDetection, VOCSegmentation, default_voc_classes


SEED_MODULUS = 2**32  # numpy seeds are 32-bit


def leaf_datasets(dataset: Dataset) -> Iterator[Dataset]:
    """The readers inside ``ConcatDataset`` / ``Subset`` wrappers, in order."""
    if isinstance(dataset, ConcatDataset):
        for part in dataset.datasets:
            yield from leaf_datasets(part)
    elif isinstance(dataset, Subset):
        yield from leaf_datasets(dataset.dataset)
    else:
        yield dataset


def seed_transforms(dataset: Dataset, seed: int) -> None:
    """Restart the albumentations stream of every reader in ``dataset`` (reader ``i`` gets ``seed + i``)."""
    for offset, part in enumerate(leaf_datasets(dataset)):
        transforms = getattr(part, "transforms", None)
        if isinstance(transforms, BoxMaskTransform):
            transforms.set_seed((seed + offset) % SEED_MODULUS)


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: distinct, reproducible numpy / ``random`` / albumentations seeds per worker.

    albumentations 2 keeps its own generator, which a forked worker inherits unchanged;
    seeding the global numpy state alone would leave every worker on the same augmentations.
    """
    seed = torch.initial_seed() % SEED_MODULUS  # the DataLoader's base seed + worker_id
    np.random.seed(seed)
    random.seed(seed)
    info = get_worker_info()
    if info is not None:
        seed_transforms(info.dataset, seed)


class DetectionDataModule(L.LightningDataModule):
    """Train/val/test loaders for one dataset; see the module docstring for ``format`` and ``task``.

    Args (keyword-only, LightningCLI ``init_args``):
        format: ``"shapes"``, ``"voc"``, ``"coco"`` or ``"mask_folder"``: the reader and the layout of ``root``.
        root: the dataset root, or a list of roots whose training splits are concatenated
            (VOC07+12: ``[VOC2007, VOC2012]``); validation and test read the first root.
        task: ``"detection"`` (boxes, optional instance masks) or ``"semantic"`` (semantic masks:
            ``VOCSegmentation`` for ``voc``/``shapes``, COCO instances painted into a class map).
        train_split, val_split, test_split: split names (VOC ``ImageSets`` files, COCO
            ``instances_<split>.json`` + ``<split>/``).
        classes: foreground class names in label order (``classes[label - 1]``). Left out, they
            come from the data: COCO's categories in id order, the four shapes, VOC's 20 for VOC
            year directories (``VOC2007``...) and for ``task="semantic"``, else the sorted unique
            ``<name>``s of the training split's annotations (``datasets.voc.default_voc_classes``).
            For COCO a list keeps that subset of the categories (``[person]``; ids such as ``[1]``
            work too) and must follow their id order, as the labels do; every split reads the
            same subset (``COCODetection(categories=...)``).
        mask_folder: ``format="mask_folder"``'s options (``datasets.mask_folder.MaskFolderOptions``):
            ``layout`` (``roboflow`` or ``mmseg``), ``images``/``masks`` folders (``{split}`` is
            replaced), ``image_suffix``/``mask_suffix``, ``classes_file``, ``void_index``,
            ``reduce_zero_label``, ``label_offset``. Its classes come from ``classes``, else the
            class file (Roboflow's ``_classes.csv`` of the training split by default).
        with_masks: detection targets also carry ``masks [K, H, W]`` (and ``semantic``).
        image_set: VOC layouts' ``ImageSets`` folder for the splits: ``Main``, or ``Segmentation``
            (VOC's images with ``SegmentationObject`` masks, for instance heads).
        augment: the training split's augmentation: ``True`` ``train_transforms``, ``"flip"``
            horizontal flips only (``flip_transforms``), ``False`` none.
        vertical_flip: ``train_transforms`` also flips up-down (microscopy, aerial images).
        crop_size: fixed square training size (pad + random crop), e.g. for stacked FCN batches.
        batch_size, eval_batch_size: loader batch sizes (eval defaults to ``batch_size``).
        num_workers: DataLoader workers (``persistent_workers`` when > 0, seeded by ``seed_worker``).
        filter_empty: COCO training drops images without non-crowd objects (of the kept
            ``classes``), as torchvision's references and detectron2 do; ``False`` keeps them as
            negatives. Validation and test always keep every image.
        shapes_image_size, shapes_single_object, shapes_sizes: how ``write_shapes`` generates a
            missing shapes root (``shapes_sizes`` images per split; default ``write_shapes``'s).
        max_bad_fraction: training skips unreadable images (``datasets.base.BadImageLog``) and
            fails once more than this fraction of a reader's images were unreadable; evaluation
            splits never skip (dropping an image would drop its ground truth): they raise.
        bad_images_file: where skipped training images are listed (default
            ``<trainer.log_dir>/bad_images.txt``, the run directory).

    After ``setup``: ``classes`` (foreground names) and ``num_classes`` (their count, ``C``).
    """

    def __init__(
        self,
        *,
        format: Literal["shapes", "voc", "coco", "mask_folder"],
        root: str | list[str],
        task: Literal["detection", "semantic"] = "detection",
        train_split: str = "train",
        val_split: str = "val",
        test_split: str = "test",
        classes: list[str | int] | None = None,
        with_masks: bool = False,
        image_set: Literal["Main", "Segmentation"] = "Main",
        augment: bool | Literal["flip"] = True,
        vertical_flip: bool = False,
        crop_size: int | None = None,
        batch_size: int = 4,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        filter_empty: bool = True,
        shapes_image_size: int = 128,
        shapes_single_object: bool = False,
        shapes_sizes: dict[str, int] | None = None,
        max_bad_fraction: float = 0.01,
        bad_images_file: str | None = None,
        mask_folder: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if format == "mask_folder" and task != "semantic":
            raise ValueError('format="mask_folder" holds semantic masks: set task: semantic')
        if mask_folder is not None and format != "mask_folder":
            raise ValueError(f'mask_folder options are for format="mask_folder", not {format!r}')
        self.mask_folder = MaskFolderOptions.from_dict(mask_folder)
        if augment == "flip" and crop_size is not None:
            raise ValueError('augment="flip" keeps image sizes; it cannot be combined with crop_size')
        # Not `classes`: the model stores the class names, and Lightning refuses to log a data
        # module hparam that differs from the model's of the same name (None there, unless given).
        self.save_hyperparameters(ignore=["classes"])
        self.format = format
        self.roots = [Path(r) for r in ([root] if isinstance(root, str) else root)]
        self.task = task
        self.splits = {"train": train_split, "val": val_split, "test": test_split}
        self.with_masks = with_masks
        self.image_set = image_set
        self.augment = augment
        self.vertical_flip = vertical_flip
        self.crop_size = crop_size
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.filter_empty = filter_empty
        self.shapes_image_size = shapes_image_size
        self.shapes_single_object = shapes_single_object
        self.shapes_sizes = shapes_sizes
        self.max_bad_fraction = max_bad_fraction
        self.bad_images_file = bad_images_file
        if classes and format != "coco" and not all(isinstance(c, str) for c in classes):
            raise ValueError(f"classes={list(classes)}: category ids work for COCO only; give {format} class names")
        # COCO: the categories asked for (names or ids); their names are known once the file is read
        self._categories = list(classes) if classes and format == "coco" else None
        self._classes = list(classes) if classes and format != "coco" else (list(SHAPE_CLASSES) if format == "shapes" else None)
        self.datasets: dict[str, Dataset] = {}

    @property
    def classes(self) -> list[str]:
        if self._classes is None and self.format == "coco":  # known once the annotation file is read
            self.setup("fit")
        if self._classes is None and self.format == "mask_folder":  # from the training split's class file
            self._classes = self._build("train", self.roots[0], augment=False).classes
        if self._classes is None:
            self._classes = self._voc_classes()
        return list(self._classes)

    def _voc_classes(self) -> list[str]:
        """VOC's 20 (year directories, semantic masks), else the training split's annotated names."""
        if self.task == "semantic":
            return list(VOC_CLASSES)
        per_root = [default_voc_classes(root, self.splits["train"], self.image_set) for root in self.roots]
        return per_root[0] if all(c == per_root[0] for c in per_root) else sorted(set().union(*per_root))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def prepare_data(self) -> None:
        """Generate a missing shapes root. ``classes.txt`` is written last, so it marks a finished one."""
        if self.format == "shapes" and not (self.roots[0] / "classes.txt").is_file():
            write_shapes(
                self.roots[0], sizes=self.shapes_sizes, image_size=self.shapes_image_size,
                single_object=self.shapes_single_object,
            )

    def _transforms(self, stage: str) -> BoxMaskTransform | None:
        if stage == "train" and self.augment == "flip":
            return flip_transforms()
        if stage == "train" and self.augment:
            return train_transforms(crop_size=self.crop_size, vertical_flip=self.vertical_flip)
        return None  # evaluation: the model's transform resizes; metrics see the files as they are

    def _build(self, stage: str, root: Path, *, augment: bool = True) -> DetectionDataset:
        split, transforms = self.splits[stage], self._transforms(stage) if augment else None
        semantic = self.task == "semantic"
        if self.format == "coco":
            ann_file = root / "annotations" / f"instances_{split}.json"
            dataset = COCODetection(
                root / split, ann_file, transforms=transforms, categories=self._categories,
                with_masks=self.with_masks, with_semantic=semantic, filter_empty=self.filter_empty and stage == "train",
            )
            if self._categories is not None and self._classes is None:
                asked = category_ids(dataset.coco.dataset["categories"], self._categories, ann_file)
                if asked != sorted(asked):
                    raise DatasetError(
                        ann_file, f"classes={self._categories}: list them in category-id order, as the labels "
                        f"follow it: {dataset.classes}",
                    )
            if self._classes is not None and list(self._classes) != dataset.classes:
                raise DatasetError(
                    ann_file, f"categories {dataset.classes} (in id order) differ from classes={list(self._classes)}"
                )
            self._classes = dataset.classes
            return dataset
        if self.format == "mask_folder":  # every split reads the training split's classes
            classes = self._classes if stage == "train" else self.classes
            dataset = MaskFolderSegmentation(root, split, options=self.mask_folder, classes=classes, transforms=transforms)
            self._classes = dataset.classes
            return dataset
        voc_root = root / "VOC" if self.format == "shapes" else root
        if semantic:
            return VOCSegmentation(voc_root, split, classes=self.classes, transforms=transforms)
        return VOCDetection(
            voc_root, split, classes=self.classes, transforms=transforms, with_masks=self.with_masks, image_set=self.image_set
        )

    def setup(self, stage: str | None = None) -> None:
        self.prepare_data()
        if "train" not in self.datasets and stage in (None, "fit"):
            parts = [self._build("train", root) for root in self.roots]
            self.datasets["train"] = parts[0] if len(parts) == 1 else ConcatDataset(parts)
            seed_transforms(self.datasets["train"], torch.initial_seed())  # workers reseed in seed_worker
        wanted = {"fit": ["val"], "validate": ["val"], "test": ["test"], "predict": ["test"], None: ["val", "test"]}
        for name in wanted.get(stage, []):
            if name not in self.datasets:
                self.datasets[name] = self._build(name, self.roots[0])

    def dataset(self, stage: str) -> Dataset:
        if stage not in self.datasets:
            self.setup("fit" if stage == "train" else stage)
        return self.datasets[stage]

    def unaugmented(self, stage: str) -> Dataset:
        """The split's images without random augmentation, in the same order (e.g. R-CNN's feature
        pass over the training images after fine-tuning); every root for ``train``, as ``setup``."""
        self.prepare_data()
        parts = [self._build(stage, root, augment=False) for root in (self.roots if stage == "train" else self.roots[:1])]
        return parts[0] if len(parts) == 1 else ConcatDataset(parts)

    def _skip_bad_training_images(self) -> None:
        """Training readers skip unreadable images into one list (see ``max_bad_fraction``)."""
        path = Path(self.bad_images_file) if self.bad_images_file else None
        if path is None:
            trainer = getattr(self, "trainer", None)
            path = Path((trainer.log_dir if trainer is not None else None) or ".") / "bad_images.txt"
        log = BadImageLog(path, max_fraction=self.max_bad_fraction)
        for reader in leaf_datasets(self.dataset("train")):
            if isinstance(reader, DetectionDataset):
                reader.bad_images = log

    def _loader(self, stage: str) -> DataLoader:
        if stage == "train":
            self._skip_bad_training_images()
        return DataLoader(
            self.dataset(stage),
            batch_size=self.batch_size if stage == "train" else self.eval_batch_size,
            shuffle=stage == "train",
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            worker_init_fn=seed_worker,
            collate_fn=collate_detection,
            pin_memory=self._on_gpu(),  # page-locked batches: Lightning then copies them with non_blocking=True
        )

    def _on_gpu(self) -> bool:
        """Whether the attached Trainer runs on CUDA (no Trainer: the loaders of a plain Python user)."""
        trainer = getattr(self, "trainer", None)
        return trainer is not None and trainer.strategy.root_device.type == "cuda"

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
