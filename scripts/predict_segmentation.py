"""Batch semantic segmentation of an image folder (recursive) with a trained checkpoint.

    python scripts/predict_segmentation.py --checkpoint runs/fcn_shapes/version_0/checkpoints/best.ckpt \\
        --input data/shapes/VOC/JPEGImages --out runs/segment

Writes ``masks/`` (VOC palette PNGs), ``overlays/`` and ``errors.txt`` into ``--out`` (see
``segmentation/inference.py``). Rerunning after an interruption skips images whose mask exists.
The checkpoint is read with ``torch.load(weights_only=True)``; the model is rebuilt from its
stored config (or ``--config``).
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from datasets.errors import DatasetError  # noqa: E402
from datasets.folder import ImageFolder  # noqa: E402
from detection.checkpoint import DEFAULT_ALLOWED_PREFIXES, CheckpointError, load_detector  # noqa: E402
from segmentation.inference import predict_masks  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path, help="a SegmentationSystem checkpoint (.ckpt)")
    parser.add_argument("--config", type=Path, help="YAML config to rebuild the model (default: from the checkpoint)")
    parser.add_argument("--input", required=True, type=Path, help="image folder, searched recursively")
    parser.add_argument("--out", required=True, type=Path, help="output folder (must not be inside --input)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--draw", action=argparse.BooleanOptionalAction, default=True, help="write overlays/")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader workers decoding images")
    parser.add_argument("--classes", help="comma-separated foreground class names, if the checkpoint has none")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.batch_size < 1:
        print(f"--batch-size must be >= 1, got {args.batch_size}", file=sys.stderr)
        return 2
    try:
        loaded = load_detector(
            args.checkpoint,
            config=args.config,
            classes=args.classes.split(",") if args.classes else None,
            allowed_prefixes=DEFAULT_ALLOWED_PREFIXES,
        )
        folder = ImageFolder(args.input)
    except (CheckpointError, DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    def progress(batches, total):
        return tqdm(batches, total=total, unit="batch", desc="segment", disable=args.no_progress)

    start = time.perf_counter()
    summary = predict_masks(
        loaded.model, folder, out_dir=args.out, batch_size=args.batch_size, draw=args.draw,
        device=args.device, num_workers=args.num_workers, progress=progress,
    )
    seconds = time.perf_counter() - start
    rate = summary.processed / seconds if seconds > 0 else float("nan")
    print(
        f"{summary.total} files: {summary.processed} segmented now ({rate:.1f} images/s), "
        f"{summary.skipped} already done, {summary.errors} unreadable (errors.txt) -> {summary.out_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
