"""Not a command: the argument groups ``scripts/predict.py`` and ``scripts/evaluate.py`` share.

Command-line spelling stops here: these turn parsed arguments into the values the library
takes (``SplitSource``, a ``detection.Detector``, the run's ``Processes``). Both commands load a
checkpoint without unpickling anything, or an exported ``model.onnx`` on onnxruntime
(``detection.Detector.load``), make one call of the library and exit with status 2 and one
``error: ...`` line on bad input.
"""

import argparse
from pathlib import Path

import torch

from datasets.errors import DatasetError
from datasets.split_source import SplitSource
from detection.api import Detector
from detection.checkpoint import DEFAULT_ALLOWED_PREFIXES, CheckpointError
from detection.processes import Processes, start_processes

BAD_INPUT = (CheckpointError, DatasetError, ValueError, FileNotFoundError)  # reported as "error: ..." with exit status 2


def add_model_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """``--checkpoint`` and how to rebuild its model."""
    parser.add_argument(
        "--checkpoint", required=required, type=Path,
        help="a checkpoint written by scripts/train.py (.ckpt), or a model.onnx written by scripts/export.py",
    )  # fmt: skip
    parser.add_argument("--config", type=Path, help="YAML config to rebuild the model (default: from the checkpoint)")
    parser.add_argument(
        "--allow-class-prefix",
        action="append",
        default=[],
        help="also accept model class_paths starting with this (repeatable); default: " + ", ".join(DEFAULT_ALLOWED_PREFIXES),
    )


def add_run_arguments(parser: argparse.ArgumentParser, *, batch_size: int) -> None:
    """How inference runs: batch size (images decoded together), device, processes, loader workers, progress bar."""
    parser.add_argument("--batch-size", type=int, default=batch_size, help="images per batch; same-size images share a forward pass")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu, cuda or cuda:N")
    parser.add_argument(
        "--devices", type=int, default=1,
        help="processes per machine, one per GPU with --device cuda (Lightning Fabric DDP, as training's --trainer.devices)",
    )  # fmt: skip
    parser.add_argument("--num-nodes", type=int, default=1, help="machines, under torchrun or SLURM (as training's --trainer.num_nodes)")
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader workers decoding images")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_dataset_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """One of ``--voc``, ``--coco-ann`` (with ``--images``), ``--shapes`` or ``--mask-folder``, and the split to read."""
    source = parser.add_mutually_exclusive_group(required=required)
    source.add_argument("--voc", type=Path, help="VOC year directory (Annotations/, JPEGImages/, ImageSets/)")
    source.add_argument("--coco-ann", type=Path, help="COCO annotation JSON")
    source.add_argument("--shapes", type=Path, help="generated shapes root (read through its VOC layout)")
    source.add_argument("--mask-folder", type=Path, help="semantic mask folder root (docs/semantic_folders.md)")
    parser.add_argument("--images", type=Path, help="image directory of --coco-ann")
    parser.add_argument("--split", default="val", help="VOC/shapes ImageSets split, or mask folder split (default: val)")
    parser.add_argument(
        "--mask-option", action="append", default=[], metavar="KEY=VALUE",
        help="a --mask-folder option (repeatable): layout (roboflow, mmseg), images, masks, image_suffix, mask_suffix, "
        "classes_file, void_index, reduce_zero_label, label_offset, exclude",
    )  # fmt: skip
    parser.add_argument(
        "--image-set", default="Main", choices=["Main", "Segmentation"],
        help="VOC ImageSets folder of --split (Segmentation: VOC's images with instance masks)",
    )  # fmt: skip
    parser.add_argument(
        "--classes", nargs="+",
        help="class names of a VOC-layout dataset (default: the checkpoint's, else VOC's 20); for COCO, the categories "
        "kept (names or ids; default: the checkpoint's, else all); also names a checkpoint's classes when it stores none",
    )


def has_dataset(args: argparse.Namespace) -> bool:
    return any(getattr(args, name) is not None for name in ("voc", "coco_ann", "shapes", "mask_folder"))


def split_source(args: argparse.Namespace) -> SplitSource:
    """The ``SplitSource`` the dataset arguments name (raises ``ValueError`` when they do not fit)."""
    from datasets.mask_folder import MaskFolderOptions

    classes = tuple(args.classes) if args.classes else None
    return SplitSource(voc=args.voc, coco_ann=args.coco_ann, images=args.images, shapes=args.shapes, split=args.split,
                       image_set=args.image_set, classes=classes, mask_folder=args.mask_folder,
                       mask_options=MaskFolderOptions.from_pairs(args.mask_option))  # fmt: skip


def load_model(args: argparse.Namespace) -> Detector:
    """The checkpoint's model (on the CPU; inference moves it to the run's device); raises one of
    ``BAD_INPUT`` saying what is wrong."""
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    return Detector.load(
        args.checkpoint,
        config=args.config,
        classes=getattr(args, "classes", None),
        allowed_prefixes=(*DEFAULT_ALLOWED_PREFIXES, *args.allow_class_prefix),
    )


def processes(args: argparse.Namespace) -> Processes:
    """This process's place among the ``--devices`` x ``--num-nodes`` processes of the run (the first
    call of a plain command starts the others: ``detection.processes``)."""
    return start_processes(args.device, devices=args.devices, num_nodes=args.num_nodes)

