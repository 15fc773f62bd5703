"""Command-line pieces shared by ``scripts/predict.py`` and ``scripts/predict_segmentation.py``.

Both scripts take a checkpoint and an image folder, load the model without unpickling
anything (``detection.checkpoint.load_detector``), list the folder (``datasets.folder``),
show a progress bar and exit with status 2 and one ``error: ...`` line on bad input.
"""

import argparse
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from tqdm import tqdm

from datasets.errors import DatasetError
from datasets.folder import ImageFolder
from detection.checkpoint import DEFAULT_ALLOWED_PREFIXES, CheckpointError, LoadedDetector, load_detector

BAD_INPUT = (CheckpointError, DatasetError, ValueError)  # reported as "error: ..." with exit status 2


def add_arguments(parser: argparse.ArgumentParser, *, system: str, batch_size: int, draw_help: str) -> None:
    """The arguments both scripts share; ``system`` names the LightningModule that wrote the checkpoint."""
    parser.add_argument("--checkpoint", required=True, type=Path, help=f"a {system} checkpoint (.ckpt)")
    parser.add_argument("--config", type=Path, help="YAML config to rebuild the model (default: from the checkpoint)")
    parser.add_argument("--input", required=True, type=Path, help="image folder, searched recursively")
    parser.add_argument("--out", required=True, type=Path, help="output folder (must not be inside --input)")
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--draw", action=argparse.BooleanOptionalAction, default=True, help=draw_help)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader workers decoding images")
    parser.add_argument("--classes", help="comma-separated foreground class names, if the checkpoint has none")
    parser.add_argument(
        "--allow-class-prefix",
        action="append",
        default=[],
        help="also accept model class_paths starting with this (repeatable); default: "
        + ", ".join(DEFAULT_ALLOWED_PREFIXES),
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def open_inputs(args: argparse.Namespace) -> tuple[LoadedDetector, ImageFolder]:
    """The loaded model and the listed folder; raises one of ``BAD_INPUT`` saying what is wrong."""
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    folder = ImageFolder(args.input)
    loaded = load_detector(
        args.checkpoint,
        config=args.config,
        classes=args.classes.split(",") if args.classes else None,
        allowed_prefixes=(*DEFAULT_ALLOWED_PREFIXES, *args.allow_class_prefix),
    )
    return loaded, folder


def progress_bar(args: argparse.Namespace, desc: str) -> Callable[[Iterable, int], Iterable]:
    """``progress(batches, total)`` for the inference loops: a tqdm bar unless ``--no-progress``."""

    def progress(batches: Iterable, total: int) -> Iterable:
        return tqdm(batches, total=total, unit="batch", desc=desc, disable=args.no_progress)

    return progress
