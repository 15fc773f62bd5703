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

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from detection.inference import predict_folder  # noqa: E402
from detection.predict_cli import BAD_INPUT, add_arguments, open_inputs, progress_bar  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, system="DetectionSystem", batch_size=8, draw_help="write drawn/ images")
    parser.add_argument("--score-threshold", type=float, default=0.05, help="drop detections scoring below this")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        detector, folder = open_inputs(args)
    except BAD_INPUT as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    summary = predict_folder(
        detector.model,
        detector.classes,
        folder,
        root=args.input,
        out_dir=args.out,
        batch_size=args.batch_size,
        score_threshold=args.score_threshold,
        draw=args.draw,
        device=args.device,
        num_workers=args.num_workers,
        progress=progress_bar(args, "predict"),
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
