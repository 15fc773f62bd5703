"""Score a predictions file against a dataset under a chosen protocol and write a report.

Detection (predictions = a COCO results JSON, ``category_id`` = the dataset's category id, or
the label ``1..C`` for VOC-layout datasets; ``image_id`` = the reader's image id)::

    evaluate.py --predictions results.json --coco-ann instances_val.json --protocol coco --out report/
    evaluate.py --predictions results.json --voc VOCdevkit/VOC2007 --split test --protocol voc07 --out r/
    evaluate.py --predictions results.json --shapes ROOT --split val --protocol voc --out r/

Protocols: ``voc07`` (11-point), ``voc`` (VOC2010+ area), ``coco`` (bbox), ``coco_segm``
(bbox + segm), ``cls_loc`` (ILSVRC), ``region`` (mAP^r at mask IoU 0.5 / 0.7).

Semantic segmentation (predicted palette PNGs ``<name>.png`` vs VOC ``SegmentationClass``)::

    evaluate.py --masks-dir preds/ --voc VOCdevkit/VOC2012 --split val --out r/

Writes ``metrics.json``, ``report.md``, ``pr_curves/<class>.png`` (or ``confusion_matrix.png``)
into ``--out``; ``--voc-results DIR`` also writes the devkit's ``comp4_det_<set>_<class>.txt``.
"""

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from detection.evaluation.cls_loc import ClsLocEvaluator
from detection.evaluation.coco_eval import COCOEvaluator, class_pr_curves, evaluate_annotation_file, summary_metrics
from detection.evaluation.ground_truth import GroundTruth, coco_json_ground_truth, reader_ground_truth
from detection.evaluation.records import ImageRecord, make_records
from detection.evaluation.region_ap import RegionAPEvaluator
from detection.evaluation.report import write_report
from detection.evaluation.results_io import read_coco_results, results_to_predictions, write_voc_results
from detection.evaluation.voc_evaluator import VOCEvaluator
from segmentation.metrics import VOID_LABEL, ConfusionMatrix

PROTOCOLS = ("voc07", "voc", "coco", "coco_segm", "cls_loc", "region")
MASK_PROTOCOLS = ("coco_segm", "region")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", type=Path, help="COCO results JSON (detection protocols)")
    parser.add_argument("--masks-dir", type=Path, help="predicted palette PNGs (semantic segmentation mode)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--voc", type=Path, help="VOC year directory (Annotations/, JPEGImages/, ImageSets/)")
    source.add_argument("--coco-ann", type=Path, help="COCO annotation JSON")
    source.add_argument("--shapes", type=Path, help="generated shapes root (scored through its VOC layout)")
    parser.add_argument("--images", type=Path, help="image directory of --coco-ann (not read for scoring)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--classes", nargs="+", help="class names of a VOC-layout dataset (default: the 20 VOC classes)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="voc")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--voc-results", type=Path, help="also write the devkit's comp4 results files here")
    args = parser.parse_args(argv)
    if (args.predictions is None) == (args.masks_dir is None):
        parser.error("give exactly one of --predictions (detection) or --masks-dir (segmentation)")
    if args.masks_dir is not None and args.coco_ann is not None:
        parser.error("--masks-dir scores VOC SegmentationClass PNGs: use --voc or --shapes")
    return args


def _voc_root_and_classes(args: argparse.Namespace) -> tuple[Path, list[str]]:
    if args.shapes is not None:
        from datasets.shapes import SHAPE_CLASSES

        return args.shapes / "VOC", list(SHAPE_CLASSES)
    if args.classes:
        return args.voc, list(args.classes)
    from datasets.voc import VOC_CLASSES

    return args.voc, list(VOC_CLASSES)


def load_ground_truth(args: argparse.Namespace, *, with_masks: bool) -> GroundTruth:
    if args.coco_ann is not None:
        return coco_json_ground_truth(args.coco_ann, with_masks=with_masks)
    from datasets.voc import VOCDetection

    root, classes = _voc_root_and_classes(args)
    dataset = VOCDetection(root, args.split, classes=classes, with_masks=with_masks)
    return reader_ground_truth(dataset, progress=tqdm(range(len(dataset)), desc="ground truth", unit="img"))


def _dense_masks(rles: list[dict], height: int, width: int) -> np.ndarray:
    from faster_coco_eval.core import mask as mask_utils

    if not rles:
        return np.zeros((0, height, width), dtype=np.uint8)
    encoded = [{"size": r["size"], "counts": r["counts"].encode("ascii")} for r in rles]
    return mask_utils.decode(encoded).transpose(2, 0, 1)


def make_evaluator(protocol: str, gt: GroundTruth) -> Any:
    if protocol in ("voc07", "voc"):
        return VOCEvaluator(classes=gt.classes, use_07_metric=protocol == "voc07")
    if protocol in ("coco", "coco_segm"):
        iou_types = ("bbox", "segm") if protocol == "coco_segm" else ("bbox",)
        return COCOEvaluator(classes=gt.classes, iou_types=iou_types, label_to_category_id=gt.label_to_category_id)
    if protocol == "cls_loc":
        return ClsLocEvaluator(classes=gt.classes)
    return RegionAPEvaluator(classes=gt.classes)


def evaluate_detection(args: argparse.Namespace) -> Path:
    with_masks = args.protocol in MASK_PROTOCOLS
    gt = load_ground_truth(args, with_masks=with_masks)
    results = read_coco_results(args.predictions)
    category_to_label = {c: l for l, c in gt.label_to_category_id.items()} if gt.label_to_category_id else None
    predictions = results_to_predictions(results, category_id_to_label=category_to_label)
    known = {int(t["image_id"]) for t in gt.targets}
    unknown = sorted(set(predictions) - known)
    if unknown:
        raise SystemExit(f"{args.predictions}: {len(unknown)} image ids are not in the dataset, e.g. {unknown[:5]}")
    evaluator = make_evaluator(args.protocol, gt)
    kept: list[ImageRecord] = []  # for --voc-results
    empty = {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64), "scores": np.zeros(0)}
    for target in tqdm(gt.targets, desc="matching", unit="img"):
        pred = dict(predictions.get(int(target["image_id"]), empty))
        if with_masks:
            height, width = target["masks"].shape[-2:]
            pred["masks"] = _dense_masks(pred.pop("masks_rle", []), height, width)
        evaluator.update([pred], [target])
        if args.voc_results is not None:
            kept += make_records([pred], [target], num_classes=len(gt.classes))
    start = time.perf_counter()
    official = args.coco_ann is not None and args.protocol in ("coco", "coco_segm")
    if official:  # the annotation file itself is the ground truth, exactly as pycocotools reads it
        metrics, curves = {}, {}
        category_ids = [gt.label_to_category_id[label] for label in range(1, len(gt.classes) + 1)]
        for iou_type in evaluator.iou_types:
            coco = evaluate_annotation_file(str(args.coco_ann), results, iou_type=iou_type)
            metrics.update(summary_metrics(coco, gt.classes, category_ids, "" if iou_type == "bbox" else f"{iou_type}/"))
            curves = curves or class_pr_curves(coco, gt.classes, category_ids)
    else:
        metrics = evaluator.compute()
        curves = evaluator.pr_curves()
    seconds = time.perf_counter() - start
    if args.voc_results is not None:
        names = gt.image_names or {int(t["image_id"]): str(t["image_id"]) for t in gt.targets}
        kept.sort(key=lambda r: r.image_id)  # the order VOCEvaluator ranks ties in
        write_voc_results(args.voc_results, kept, classes=gt.classes, image_names=names, image_set=args.split)
    source = args.coco_ann or args.voc or args.shapes
    details = [
        f"dataset: `{source}` split `{args.split}` ({len(gt.targets)} images, {len(gt.classes)} classes)",
        f"predictions: `{args.predictions}` ({len(results)} detections)",
        f"protocol: `{args.protocol}`; scoring took {seconds:.2f} s",
    ]
    return write_report(
        args.out, metrics, curves, evaluator.protocol_text(), title=f"Detection evaluation ({args.protocol})", details=details,
        class_names=gt.classes,
    )


def _read_label_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        if image.mode not in ("P", "L"):
            raise SystemExit(f"{path}: expected a palette or grayscale PNG of class indices, got mode {image.mode}")
        return np.array(image, dtype=np.uint8)  # a writable copy


def evaluate_segmentation(args: argparse.Namespace) -> Path:
    root, classes = _voc_root_and_classes(args)
    listing = root / "ImageSets" / "Segmentation" / f"{args.split}.txt"
    names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    matrix = ConfusionMatrix(len(classes) + 1, ignore_index=VOID_LABEL, class_names=["background", *classes])
    for image_id, name in enumerate(tqdm(names, desc="pixels", unit="img")):
        if os.sep in name or name.startswith("."):
            raise SystemExit(f"{listing}: bad image name {name!r}")
        target = _read_label_png(root / "SegmentationClass" / f"{name}.png")
        pred_path = args.masks_dir / f"{name}.png"
        if not pred_path.is_file():
            raise SystemExit(f"missing prediction {pred_path}")
        pred = _read_label_png(pred_path)
        if pred.shape != target.shape:
            raise SystemExit(f"{pred_path}: size {pred.shape} differs from the ground truth {target.shape}")
        pred = np.where(pred == VOID_LABEL, 0, pred)  # a void prediction counts as background
        matrix.update(torch.from_numpy(pred)[None], torch.from_numpy(target)[None], image_ids=[image_id])
    metrics = matrix.compute()
    text = (
        "Semantic segmentation, FCN protocol: one confusion matrix summed over the whole split (not "
        "averaged per image); pixel accuracy, mean class accuracy, mean IU and frequency-weighted IU as "
        "defined by Long et al. (2015); pixels labelled 255 (void) in the ground truth are ignored; "
        "classes absent from both ground truth and predictions are left out of the means."
    )
    details = [f"dataset: `{root}` split `{args.split}` ({len(names)} images)", f"predictions: `{args.masks_dir}`"]
    return write_report(
        args.out, metrics, {}, text, title="Segmentation evaluation", confusion=matrix.matrix(),
        confusion_names=matrix.class_names, details=details,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report = evaluate_segmentation(args) if args.masks_dir is not None else evaluate_detection(args)
    print(f"wrote {report}")
    metrics_path = report.parent / "metrics.json"
    print(metrics_path.read_text() if metrics_path.stat().st_size < 4000 else f"metrics in {metrics_path}")


if __name__ == "__main__":
    sys.exit(main())
