"""Export a trained checkpoint to ONNX (onnxruntime) or torch.export.

    python scripts/export.py --checkpoint runs/yolo_shapes/version_0/checkpoints/best.ckpt --format onnx --out exported/
    python scripts/predict.py --checkpoint exported/model.onnx --input photos/ --out predictions/

Writes ``--out/model.onnx`` (or ``model.pt2``) and ``--out/metadata.json``. The file carries the
class names, the head's config, the input it expects (size, mean, std) and what stays in Python.
Localization, YOLO, FCN and OverFeat export their network (dynamic batch; FCN and OverFeat also
any image size) and ``predict.py`` runs the head's own decoding and NMS around it; Faster R-CNN
exports whole (one image of any size per run, ONNX only); R-CNN exports its region network with
the SVMs and box regressors (selective search, warping and NMS stay in Python, so ``predict.py``
does not run it); MNC and Fast R-CNN are refused. Each head says how it is cut (its
``export_cut()``, ``detection/exportable.py``); see ``detection/export.py``.

The checkpoint is read with ``torch.load(weights_only=True)``; the export is
``detection.Detector.load(checkpoint).export(out, format=...)``.
Bad input, or a head that cannot be exported in the format, exits with status 2 and one
``error: ...`` line.
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from detection.api import Detector  # noqa: E402
from detection.checkpoint import DEFAULT_ALLOWED_PREFIXES, CheckpointError  # noqa: E402
from detection.export import FORMATS, ExportError  # noqa: E402
from detection.onnx_model import ONNX_SUFFIX  # noqa: E402
from detection.quiet import quiet_third_party  # noqa: E402

from _arguments import add_model_arguments  # noqa: E402 (scripts/ is on the path when a script runs)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser, required=True)
    parser.add_argument("--classes", nargs="+", help="class names, for a checkpoint that stores none")
    parser.add_argument("--format", required=True, help=f"one of {', '.join(FORMATS)}")
    parser.add_argument("--out", required=True, type=Path, help="output folder (model.onnx or model.pt2, metadata.json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    quiet_third_party()
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        if args.format not in FORMATS:  # before loading anything
            raise ExportError(f"--format must be one of {list(FORMATS)}, got {args.format!r}")
        if args.checkpoint.suffix.lower() == ONNX_SUFFIX:
            raise ExportError(f"{args.checkpoint} is an exported model already; export its checkpoint")
        detector = Detector.load(
            args.checkpoint, config=args.config, classes=args.classes, allowed_prefixes=(*DEFAULT_ALLOWED_PREFIXES, *args.allow_class_prefix)
        )
        path = detector.export(args.out, format=args.format)
    except (CheckpointError, ExportError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{type(detector.model).__name__} -> {path} ({time.perf_counter() - start:.1f} s); metadata in {path.parent / 'metadata.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
