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

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from detection.predict_cli import BAD_INPUT, add_arguments, open_inputs, progress_bar  # noqa: E402
from segmentation.inference import predict_masks  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, system="SegmentationSystem", batch_size=4, draw_help="write overlays/")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        loaded, folder = open_inputs(args)
    except BAD_INPUT as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    summary = predict_masks(
        loaded.model, folder, out_dir=args.out, batch_size=args.batch_size, draw=args.draw,
        device=args.device, num_workers=args.num_workers, progress=progress_bar(args, "segment"),
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
