"""Batch inference over an image folder (recursive) with a trained checkpoint.

    python scripts/predict.py --checkpoint runs/example_shapes/version_0/checkpoints/best.ckpt \\
        --input data/shapes/VOC/JPEGImages --out runs/predict --batch-size 16 --score-threshold 0.3

Writes ``predictions.json`` (COCO results), ``images.json`` (image ids and categories),
``predictions.csv``, ``errors.txt`` (unreadable files, skipped) and ``drawn/`` into ``--out``
(see ``detection/inference.py``). Rerunning the same command after an interruption continues
where it stopped: images already in ``--out/journal.jsonl`` are not predicted again.

The checkpoint is read with ``torch.load(weights_only=True)`` and the model is rebuilt from
its stored config (or ``--config``, or the ``config.yaml`` LightningCLI wrote beside it).
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from datasets.folder import ImageFolder  # noqa: E402
from detection.checkpoint import DEFAULT_ALLOWED_PREFIXES, CheckpointError, load_detector  # noqa: E402
from detection.inference import predict_folder  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path, help="a DetectionSystem checkpoint (.ckpt)")
    parser.add_argument("--config", type=Path, help="YAML config to rebuild the model (default: from the checkpoint)")
    parser.add_argument("--input", required=True, type=Path, help="image folder, searched recursively")
    parser.add_argument("--out", required=True, type=Path, help="output folder (must not be inside --input)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--score-threshold", type=float, default=0.05, help="drop detections scoring below this")
    parser.add_argument("--draw", action=argparse.BooleanOptionalAction, default=True, help="write drawn/ images")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader workers decoding images")
    parser.add_argument("--classes", help="comma-separated class names, if the checkpoint has none")
    parser.add_argument(
        "--allow-class-prefix",
        action="append",
        default=[],
        help="also accept model class_paths starting with this (repeatable); default: "
        + ", ".join(DEFAULT_ALLOWED_PREFIXES),
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.batch_size < 1:
        print(f"--batch-size must be >= 1, got {args.batch_size}", file=sys.stderr)
        return 2
    if not args.input.is_dir():
        print(f"--input {args.input}: not a directory", file=sys.stderr)
        return 2
    try:
        detector = load_detector(
            args.checkpoint,
            config=args.config,
            classes=args.classes.split(",") if args.classes else None,
            allowed_prefixes=(*DEFAULT_ALLOWED_PREFIXES, *args.allow_class_prefix),
        )
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    def progress(batches, total):
        return tqdm(batches, total=total, unit="batch", desc="predict", disable=args.no_progress)

    start = time.perf_counter()
    summary = predict_folder(
        detector.model,
        detector.classes,
        ImageFolder(args.input),
        root=args.input,
        out_dir=args.out,
        batch_size=args.batch_size,
        score_threshold=args.score_threshold,
        draw=args.draw,
        device=args.device,
        num_workers=args.num_workers,
        progress=progress,
    )
    seconds = time.perf_counter() - start
    rate = summary.processed / seconds if seconds > 0 else float("nan")
    print(
        f"{summary.total} files: {summary.processed} predicted now ({rate:.1f} images/s), "
        f"{summary.skipped} already done, {summary.errors} unreadable (errors.txt), "
        f"{summary.detections} detections -> {summary.out_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
