"""Command-line pieces shared by ``scripts/predict.py`` and ``scripts/evaluate.py --checkpoint``.

Both load a checkpoint without unpickling anything (``detection.checkpoint.load_detector``),
run the one batch-inference path (``detection.inference.batch_predict``) with the same run
options and progress bar, and exit with status 2 and one ``error: ...`` line on bad input.
"""

import argparse
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from tqdm import tqdm

from datasets.errors import DatasetError
from detection.checkpoint import DEFAULT_ALLOWED_PREFIXES, CheckpointError, LoadedDetector, load_detector

BAD_INPUT = (CheckpointError, DatasetError, ValueError, FileNotFoundError)  # reported as "error: ..." with exit status 2


def add_model_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """``--checkpoint`` and how to rebuild its model."""
    parser.add_argument("--checkpoint", required=required, type=Path, help="a checkpoint written by scripts/train.py (.ckpt)")
    parser.add_argument("--config", type=Path, help="YAML config to rebuild the model (default: from the checkpoint)")
    parser.add_argument(
        "--allow-class-prefix",
        action="append",
        default=[],
        help="also accept model class_paths starting with this (repeatable); default: " + ", ".join(DEFAULT_ALLOWED_PREFIXES),
    )


def add_run_arguments(parser: argparse.ArgumentParser, *, batch_size: int) -> None:
    """How inference runs: batch size (images decoded together), device, loader workers, progress bar."""
    parser.add_argument("--batch-size", type=int, default=batch_size, help="images per loader batch (the model sees one at a time)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader workers decoding images")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def load_model(args: argparse.Namespace) -> LoadedDetector:
    """The checkpoint's model in eval mode; raises one of ``BAD_INPUT`` saying what is wrong."""
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    return load_detector(
        args.checkpoint,
        config=args.config,
        classes=getattr(args, "classes", None),
        allowed_prefixes=(*DEFAULT_ALLOWED_PREFIXES, *args.allow_class_prefix),
    )


def model_task(model: torch.nn.Module) -> str:
    """``"semantic"`` for a head that predicts class maps (its ``task`` attribute), else ``"detection"``."""
    return getattr(model, "task", "detection")


def progress_bar(args: argparse.Namespace, desc: str) -> Callable[[Iterable, int], Iterable]:
    """``progress(batches, total)`` for the inference loops: a tqdm bar unless ``--no-progress``."""

    def progress(batches: Iterable, total: int) -> Iterable:
        return tqdm(batches, total=total, unit="batch", desc=desc, disable=args.no_progress)

    return progress
