"""Score a checkpoint, a predictions file or predicted masks against a dataset split; write a report.

From a checkpoint (any head; predictions go through ``detection/inference.py`` into
``--out/predictions/``, so they can be rescored later; ``--devices N`` predicts on N processes,
with the same metrics, and rerunning an interrupted command resumes its predictions)::

    evaluate.py --checkpoint best.ckpt --shapes data/shapes --split test --out report/
    evaluate.py --checkpoint best.ckpt --voc VOCdevkit/VOC2007 --split test --protocol voc07 --out r/ --voc-results r/comp4
    evaluate.py --checkpoint best.ckpt --coco-ann instances_val2017.json --images val2017/ --protocol coco --out r/

From a COCO results JSON (``category_id`` = the dataset's category id, or the label ``1..C`` for
VOC-layout datasets; ``image_id`` = the reader's image id, as ``scripts/predict.py`` writes them
for a split)::

    evaluate.py --predictions results.json --coco-ann instances_val.json --protocol coco --out report/
    evaluate.py --predictions results.json --voc VOCdevkit/VOC2007 --split test --protocol voc07 --out r/

Protocols: ``voc07`` (11-point), ``voc`` (VOC2010+ area), ``coco`` (bbox), ``coco_segm``
(bbox + segm), ``cls_loc`` (ILSVRC), ``region`` (mAP^r at mask IoU 0.5 / 0.7), ``semantic``
(FCN metrics from a confusion matrix). From a checkpoint the default follows the evaluator the
model was trained with; otherwise ``voc``.

Semantic segmentation from predicted class-index PNGs (``masks/`` of ``scripts/predict.py``:
``<image path relative to the image folder>`` with ``.png``) vs VOC ``SegmentationClass`` or COCO
instances painted into a class map::

    evaluate.py --masks-dir preds/masks --voc VOCdevkit/VOC2012 --split val --out r/

Writes ``metrics.json``, ``report.md`` (summary, per-class table, error analysis with drawn
galleries for box protocols, the worst images for segmentation), ``pr_curves/<class>.png`` (or
``confusion_matrix.png``) into ``--out``; ``--voc-results DIR`` also writes the devkit's
``comp4_det_<set>_<class>.txt``.
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch  # noqa: E402

from detection.api import Detector  # noqa: E402
from detection.evaluation.evaluate_split import GALLERY_SIZE, PROTOCOLS, ReportOptions, evaluate_masks, evaluate_predictions  # noqa: E402
from detection.processes import Processes  # noqa: E402
from detection.quiet import quiet_third_party  # noqa: E402

from _arguments import (  # noqa: E402 (scripts/ is on the path when a script runs)
    BAD_INPUT, add_dataset_arguments, add_model_arguments, add_run_arguments, load_model, processes, split_source,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", type=Path, help="COCO results JSON (detection protocols)")
    parser.add_argument("--masks-dir", type=Path, help="predicted palette PNGs (semantic segmentation)")
    add_model_arguments(parser, required=False)
    add_dataset_arguments(parser, required=True)
    parser.add_argument("--protocol", choices=PROTOCOLS, help="default: the checkpoint's evaluator, else voc (semantic for --masks-dir)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--voc-results", type=Path, help="also write the devkit's comp4 results files here")
    parser.add_argument("--gallery", type=int, default=GALLERY_SIZE, help="crops per error gallery (0: none)")
    add_run_arguments(parser, batch_size=8)
    args = parser.parse_args(argv)
    if sum(x is not None for x in (args.predictions, args.masks_dir, args.checkpoint)) != 1:
        parser.error("give exactly one of --checkpoint, --predictions (detection) or --masks-dir (segmentation)")
    return args


def run(args: argparse.Namespace, group: Processes | None = None) -> Path | None:
    """Evaluate as ``args`` say (``detection.evaluation.evaluate_split``); returns the report's path
    (``None`` on a process other than the main one)."""
    group = group or Processes(device=torch.device(args.device))
    options = ReportOptions(gallery=args.gallery, voc_results=args.voc_results, progress=not args.no_progress)
    if args.checkpoint is not None:
        detector: Detector = load_model(args)
        metrics = detector.evaluate(
            split_source(args), protocol=args.protocol, out_dir=args.out, batch_size=args.batch_size, num_workers=args.num_workers,
            gallery=args.gallery, voc_results=args.voc_results, progress=not args.no_progress, processes=group,
        )  # fmt: skip
        return None if metrics is None else args.out / "report.md"
    if args.masks_dir is not None:
        return evaluate_masks(args.masks_dir, split_source(args), args.out, options=options)
    return evaluate_predictions(args.predictions, split_source(args), args.out, protocol=args.protocol, options=options)


def main(argv: list[str] | None = None) -> int:
    quiet_third_party()
    args = parse_args(argv)
    try:
        report = run(args, processes(args))
    except BAD_INPUT as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if report is None:  # another process of the run: the first one reports
        return 0
    print(f"wrote {report}")
    metrics_path = report.parent / "metrics.json"
    print(metrics_path.read_text() if metrics_path.stat().st_size < 4000 else f"metrics in {metrics_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
