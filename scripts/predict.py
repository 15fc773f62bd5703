"""Batch inference with a trained checkpoint over an image folder (recursive) or a dataset split.

    python scripts/predict.py --checkpoint runs/faster_rcnn_shapes/version_0/checkpoints/best.ckpt \\
        --input photos/ --out predictions/ --score-threshold 0.3
    python scripts/predict.py --checkpoint best.ckpt --shapes data/shapes --split test --out preds/
    python scripts/predict.py --checkpoint best.ckpt --voc VOCdevkit/VOC2007 --split test --out preds/
    python scripts/predict.py --checkpoint best.ckpt --coco-ann instances_val2017.json --images val2017/ --out preds/
    python scripts/predict.py --checkpoint best.ckpt --input photos/ --out preds/ --device cuda --devices 8

Every head: boxes (and instance masks, as RLE) go to ``predictions.json`` / ``predictions.csv``,
semantic maps to ``masks/`` as VOC palette PNGs; ``drawn/`` shows them, ``errors.txt`` lists
unreadable files (skipped). See ``detection/inference.py``. For a dataset split the image ids
and category ids are the dataset's, so ``predictions.json`` is scored directly by
``scripts/evaluate.py --predictions`` (and ``masks/`` by ``--masks-dir``); the score threshold
then defaults to 0, as in evaluation. Rerunning the same command after an interruption continues
where it stopped: images already in a journal of ``--out`` are not predicted again.

``--devices N`` (and ``--num-nodes M`` under torchrun or SLURM) shares the images among N
processes per machine; the outputs are those of one process (``detection/inference.py``), and the
first process prints the summary.

The checkpoint is read with ``torch.load(weights_only=True)`` and the model is rebuilt from its
stored config (or ``--config``, or the ``config.yaml`` LightningCLI wrote beside it).
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from detection.api import FOLDER_SCORE_THRESHOLD  # noqa: E402
from detection.drawing import DRAW_SCORE_THRESHOLD  # noqa: E402
from detection.inference import PredictSummary  # noqa: E402
from detection.processes import Processes  # noqa: E402
from detection.quiet import quiet_third_party  # noqa: E402

from _arguments import (  # noqa: E402 (scripts/ is on the path when a script runs)
    BAD_INPUT, add_dataset_arguments, add_model_arguments, add_run_arguments, has_dataset, load_model, processes, split_source,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser, required=True)
    parser.add_argument("--input", type=Path, help="image folder, searched recursively (or give a dataset split)")
    add_dataset_arguments(parser, required=False)
    parser.add_argument("--out", required=True, type=Path, help="output folder (must not be inside the input)")
    add_run_arguments(parser, batch_size=8)
    parser.add_argument("--draw", action=argparse.BooleanOptionalAction, default=True, help="write drawn/ images")
    parser.add_argument(
        "--draw-threshold", type=float, default=DRAW_SCORE_THRESHOLD,
        help=f"drawn/ shows detections scoring at least this (default {DRAW_SCORE_THRESHOLD}); the JSON and CSV keep all",
    )  # fmt: skip
    parser.add_argument(
        "--score-threshold", type=float, help=f"drop detections scoring below this (default {FOLDER_SCORE_THRESHOLD} for a folder, 0 for a split)"
    )
    args = parser.parse_args(argv)
    if (args.input is not None) == has_dataset(args):
        parser.error("give either --input FOLDER or a dataset split (--voc / --coco-ann / --shapes)")
    return args


def predict(args: argparse.Namespace, group: Processes) -> PredictSummary | None:
    """Run the checkpoint over the folder or split of ``args`` (``detection.Detector.predict_folder``);
    raises one of ``BAD_INPUT`` on bad input. Returns the summary on the main process, ``None`` on the others."""
    detector = load_model(args)
    return detector.predict_folder(
        args.input if args.input is not None else split_source(args), args.out, batch_size=args.batch_size,
        score_threshold=args.score_threshold, draw=args.draw, draw_threshold=args.draw_threshold, num_workers=args.num_workers,
        progress=not args.no_progress, processes=group,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    quiet_third_party()
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        summary = predict(args, processes(args))
    except BAD_INPUT as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if summary is None:  # another process of the run: the first one reports
        return 0
    seconds = time.perf_counter() - start
    rate = summary.processed / seconds if seconds > 0 else float("nan")
    print(
        f"{summary.total} images: {summary.processed} predicted now ({rate:.1f} images/s), "
        f"{summary.skipped} already done, {summary.errors} unreadable (errors.txt), "
        f"{summary.detections} detections -> {summary.out_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
