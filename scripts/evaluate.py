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
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from tqdm import tqdm  # noqa: E402

from datasets.safe_io import read_image  # noqa: E402
from datasets.split_images import SplitImages  # noqa: E402
from datasets.split_source import open_split  # noqa: E402
from detection.evaluation.cls_loc import ClsLocEvaluator  # noqa: E402
from detection.evaluation.coco_eval import COCOEvaluator, class_pr_curves, evaluate_annotation_file, summary_metrics  # noqa: E402
from detection.evaluation.error_analysis import CATEGORIES, analyse_errors  # noqa: E402
from detection.evaluation.galleries import crop_gallery, segmentation_gallery  # noqa: E402
from detection.evaluation.ground_truth import GroundTruth, coco_json_ground_truth, reader_ground_truth  # noqa: E402
from detection.evaluation.records import ImageRecord, make_records  # noqa: E402
from detection.evaluation.region_ap import RegionAPEvaluator  # noqa: E402
from detection.evaluation.report import write_report  # noqa: E402
from detection.evaluation.results_io import read_coco_results, results_to_predictions, write_voc_results  # noqa: E402
from detection.evaluation.voc_evaluator import VOCEvaluator  # noqa: E402
from detection.inference import MASKS_DIR, batch_predict, mask_name, relative_path, reset_for_run  # noqa: E402
from detection.prediction_outputs import PREDICTIONS_JSON  # noqa: E402
from detection.predictor import model_task  # noqa: E402
from detection.processes import Processes  # noqa: E402
from segmentation.metrics import VOID_LABEL, ConfusionMatrix, confusion_metrics  # noqa: E402

from _arguments import (  # noqa: E402 (scripts/ is on the path when a script runs)
    BAD_INPUT, add_dataset_arguments, add_model_arguments, add_run_arguments, load_model, processes, progress_bar, split_source,
)

PROTOCOLS = ("voc07", "voc", "coco", "coco_segm", "cls_loc", "region", "semantic")
MASK_PROTOCOLS = ("coco_segm", "region")
ERROR_ANALYSIS_PROTOCOLS = ("voc07", "voc", "coco", "coco_segm")
PROTOCOL_OF_EVALUATOR = {"VOCEvaluator": "voc", "COCOEvaluator": "coco", "ClsLocEvaluator": "cls_loc", "RegionAPEvaluator": "region", "ConfusionMatrix": "semantic"}
PREDICTIONS_DIR = "predictions"
GALLERY_SIZE = 12
WORST_IMAGES = 6


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


def predict_split(args: argparse.Namespace, group: Processes) -> str | None:
    """``--checkpoint``: predict the split into ``--out/predictions/`` and point ``args`` at the outputs.

    Returns a line for the report on the main process, ``None`` on the others. Every image must
    be readable: a skipped image would count as one with no detections and lower the score
    silently. The predictions of another checkpoint, split or batch size are removed first; the
    same command rerun after an interruption resumes them.
    """
    loaded = load_model(args)
    task = model_task(loaded.model)
    args.protocol = args.protocol or ("semantic" if task == "semantic" else PROTOCOL_OF_EVALUATOR.get(loaded.evaluator or "", "voc"))
    if (task == "semantic") != (args.protocol == "semantic"):
        raise ValueError(f"protocol {args.protocol} does not fit a {task} model ({loaded.model_config['class_path']})")
    source = split_source(args)
    split = open_split(source, task=task, classes=loaded.classes)
    if split.reader.classes != loaded.classes:
        raise ValueError(f"{split.source}: classes {split.reader.classes} differ from the checkpoint's {loaded.classes}")
    args.classes = loaded.classes
    out_dir = args.out / PREDICTIONS_DIR
    checkpoint = args.checkpoint.resolve()
    run = {"checkpoint": str(checkpoint), "bytes": checkpoint.stat().st_size, "mtime_ns": checkpoint.stat().st_mtime_ns,
           "config": str(args.config), "split": source.describe(), "image_set": args.image_set, "batch_size": args.batch_size}  # fmt: skip
    reset_for_run(out_dir, run, group)
    start = time.perf_counter()
    summary = batch_predict(
        loaded.model, loaded.classes, SplitImages(split.reader), root=split.images_root, out_dir=out_dir,
        batch_size=args.batch_size, score_threshold=0.0, draw=False, num_workers=args.num_workers,
        label_to_category_id=split.label_to_category_id, progress=progress_bar(args, "predict"), processes=group,
    )  # fmt: skip
    if summary is None:
        return None
    seconds = time.perf_counter() - start
    if summary.errors:
        raise ValueError(f"{summary.errors} images of {split.source} could not be read; see {out_dir / 'errors.txt'}")
    if task == "semantic":
        args.masks_dir = out_dir / MASKS_DIR
    else:
        args.predictions = out_dir / PREDICTIONS_JSON
    where = f"{group.world_size} processes on {group.device.type}" if group.world_size > 1 else str(group.device)
    return f"checkpoint: `{args.checkpoint}`; inference {seconds:.1f} s for {summary.total} images ({seconds / max(summary.total, 1):.3f} s/image on {where})"


def load_ground_truth(args: argparse.Namespace, *, with_masks: bool) -> GroundTruth:
    if args.coco_ann is not None:
        return coco_json_ground_truth(args.coco_ann, with_masks=with_masks, categories=args.classes)
    reader = open_split(split_source(args), task="detection", with_masks=with_masks).reader
    return reader_ground_truth(reader, progress=tqdm(range(len(reader)), desc="ground truth", unit="img", disable=args.no_progress))


def _dense_masks(rles: list[dict], height: int, width: int) -> np.ndarray:
    from faster_coco_eval.core import mask as mask_utils

    if not rles:
        return np.zeros((0, height, width), dtype=np.uint8)
    encoded = [{"size": r["size"], "counts": r["counts"].encode("ascii")} for r in rles]
    return mask_utils.decode(encoded).transpose(2, 0, 1)


def make_evaluator(protocol: str, gt: GroundTruth) -> VOCEvaluator | COCOEvaluator | ClsLocEvaluator | RegionAPEvaluator:
    if protocol in ("voc07", "voc"):
        return VOCEvaluator(classes=gt.classes, use_07_metric=protocol == "voc07")
    if protocol in ("coco", "coco_segm"):
        iou_types = ("bbox", "segm") if protocol == "coco_segm" else ("bbox",)
        return COCOEvaluator(classes=gt.classes, iou_types=iou_types, label_to_category_id=gt.label_to_category_id)
    if protocol == "cls_loc":
        return ClsLocEvaluator(classes=gt.classes)
    return RegionAPEvaluator(classes=gt.classes)


def _image_loader(args: argparse.Namespace, gt: GroundTruth):  # noqa: ANN202 - a LoadImage callable or None
    """``image_id -> np.ndarray[H, W, 3]`` for the galleries, or ``None`` when the images are unknown."""
    if args.coco_ann is not None and args.images is None:
        return None
    folder = args.images if args.coco_ann is not None else Path()
    return lambda image_id: read_image(folder / gt.image_files[image_id])


def error_analysis_section(args: argparse.Namespace, records: list[ImageRecord], gt: GroundTruth) -> list[str]:
    """The Hoiem-style breakdown as markdown, with the galleries drawn into ``--out``."""
    analysis = analyse_errors(records, gt.classes)
    lines = [
        "## Error analysis",
        "",
        "Each class's top-scored detections, as many as it has objects, judged in score order "
        "(Hoiem et al. 2012; definitions in `detection/evaluation/error_analysis.py`): "
        + ", ".join(CATEGORIES) + ". Shares of those detections:",
        "",
        *analysis.markdown(),
    ]
    load_image = _image_loader(args, gt)
    if load_image is None or args.gallery <= 0:
        return lines + ["", "(galleries need the images: give --images)" if args.gallery > 0 else ""]
    galleries = (
        ("false_positives.png", analysis.false_positives(args.gallery), "highest-scoring detections that are not correct"),
        ("missed.png", analysis.missed[: args.gallery], "missed objects (no detection of their class with IoU >= 0.5), largest first"),
    )
    for name, items, title in galleries:
        if items:
            crop_gallery(args.out / name, items, load_image, gt.classes, title)
            lines += ["", f"### {title.capitalize()}", "", f"![{title}]({name})"]
    return lines


def evaluate_detection(args: argparse.Namespace, details: list[str]) -> Path:
    with_masks = args.protocol in MASK_PROTOCOLS
    gt = load_ground_truth(args, with_masks=with_masks)
    results = read_coco_results(args.predictions)
    if args.coco_ann is not None and args.classes:  # a subset: results of other categories are not scored
        kept = set(gt.label_to_category_id.values())
        dropped = sum(r["category_id"] not in kept for r in results)
        results = [r for r in results if r["category_id"] in kept]
        details.append(f"categories scored: {gt.classes} ({dropped} results of other categories left out)")
    category_to_label = {c: l for l, c in gt.label_to_category_id.items()} if gt.label_to_category_id else None
    predictions = results_to_predictions(results, category_id_to_label=category_to_label)
    known = {int(t["image_id"]) for t in gt.targets}
    unknown = sorted(set(predictions) - known)
    if unknown:
        raise ValueError(f"{args.predictions}: {len(unknown)} image ids are not in the dataset, e.g. {unknown[:5]}")
    evaluator = make_evaluator(args.protocol, gt)
    # The box evaluators keep every detection as records (sorted by image id), which --voc-results
    # and the error analysis reuse; cls_loc (top guesses only) and region build their own for --voc-results.
    evaluator_records = args.protocol in ERROR_ANALYSIS_PROTOCOLS
    records: list[ImageRecord] = []
    empty = {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64), "scores": np.zeros(0)}
    for target in tqdm(gt.targets, desc="matching", unit="img", disable=args.no_progress):
        pred = dict(predictions.get(int(target["image_id"]), empty))
        if with_masks:
            height, width = target["masks"].shape[-2:]
            pred["masks"] = _dense_masks(pred.pop("masks_rle", []), height, width)
        evaluator.update([pred], [target])
        if args.voc_results is not None and not evaluator_records:
            records += make_records([pred], [target], num_classes=len(gt.classes))
    start = time.perf_counter()
    official = args.coco_ann is not None and args.protocol in ("coco", "coco_segm")
    if official:  # the annotation file itself is the ground truth, exactly as pycocotools reads it
        metrics, curves = {}, {}
        category_ids = [gt.label_to_category_id[label] for label in range(1, len(gt.classes) + 1)]
        for iou_type in evaluator.iou_types:
            coco = evaluate_annotation_file(str(args.coco_ann), results, iou_type=iou_type, category_ids=category_ids)
            metrics.update(summary_metrics(coco, gt.classes, category_ids, "" if iou_type == "bbox" else f"{iou_type}/"))
            curves = curves or class_pr_curves(coco, gt.classes, category_ids)
    else:
        metrics = evaluator.compute()
        curves = evaluator.pr_curves()
    seconds = time.perf_counter() - start
    records = evaluator.records() if evaluator_records else sorted(records, key=lambda r: r.image_id)  # VOCEvaluator's tie order
    if args.voc_results is not None:
        names = gt.image_names or {int(t["image_id"]): str(t["image_id"]) for t in gt.targets}
        write_voc_results(args.voc_results, records, classes=gt.classes, image_names=names, image_set=args.split)
    details += [
        f"dataset: {split_source(args).describe()} ({len(gt.targets)} images, {len(gt.classes)} classes)",
        f"predictions: `{args.predictions}` ({len(results)} detections)",
        f"protocol: `{args.protocol}`; scoring took {seconds:.2f} s",
    ]
    sections = error_analysis_section(args, records, gt) if args.protocol in ERROR_ANALYSIS_PROTOCOLS else []
    return write_report(
        args.out, metrics, curves, evaluator.protocol_text(), title=f"Detection evaluation ({args.protocol})", details=details,
        class_names=gt.classes, sections=sections,
    )  # fmt: skip


def _read_label_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        if image.mode not in ("P", "L"):
            raise ValueError(f"{path}: expected a palette or grayscale PNG of class indices, got mode {image.mode}")
        return np.array(image, dtype=np.uint8)  # a writable copy


def evaluate_segmentation(args: argparse.Namespace, details: list[str]) -> Path:
    """Predicted class maps ``--masks-dir/<image path relative to the image folder, as .png>`` vs the
    split's semantic ground truth (VOC ``SegmentationClass``, or COCO instances painted into a class map)."""
    split = open_split(split_source(args), task="semantic", classes=args.classes)
    reader = split.reader
    matrix = ConfusionMatrix(classes=reader.classes, ignore_index=VOID_LABEL)
    image_ids = reader.image_ids
    index_of = {image_id: i for i, image_id in enumerate(image_ids)}

    def truth(image_id: int) -> np.ndarray:
        return reader.load(index_of[image_id])[1]["semantic"]

    def prediction(image_id: int, shape: tuple[int, ...]) -> np.ndarray:
        path = args.masks_dir / mask_name(relative_path(reader.image_path(index_of[image_id]), split.images_root))
        if not path.is_file():
            raise ValueError(f"missing prediction {path}")
        pred = _read_label_png(path)
        if pred.shape != shape:
            raise ValueError(f"{path}: size {pred.shape} differs from the ground truth {shape}")
        return np.where(pred == VOID_LABEL, 0, pred)  # a void prediction counts as background

    for image_id in tqdm(image_ids, desc="pixels", unit="img", disable=args.no_progress):
        target = truth(image_id)
        matrix.add(image_id, torch.from_numpy(prediction(image_id, target.shape)), torch.from_numpy(target))
    per_image = sorted(
        ((image_id, confusion_metrics(counts, matrix.class_names)["mean_iou"]) for image_id, counts in matrix.per_image()),
        key=lambda item: (item[1], item[0]),
    )
    sections: list[str] = []
    if per_image and args.gallery > 0:
        segmentation_gallery(
            args.out / "worst_images.png", per_image[:WORST_IMAGES], lambda i: read_image(reader.image_path(index_of[i])),
            truth, lambda i: prediction(i, truth(i).shape),
        )  # fmt: skip
        sections = ["## Worst images", "", "Lowest mean IU per image: image, ground truth, prediction.", "", "![worst images](worst_images.png)"]
    details += [f"dataset: {split_source(args).describe()} ({len(image_ids)} images)", f"predictions: `{args.masks_dir}`"]
    return write_report(
        args.out, matrix.compute(), {}, matrix.protocol_text(), title="Segmentation evaluation", confusion=matrix.matrix(),
        confusion_names=matrix.class_names, details=details, class_names=reader.classes, sections=sections,
    )  # fmt: skip


def run(args: argparse.Namespace, group: Processes | None = None) -> Path | None:
    """Evaluate as ``args`` say; returns the report's path (``None`` on a process other than the main one)."""
    group = group or Processes(device=torch.device(args.device))
    args.out.mkdir(parents=True, exist_ok=True)
    details = []
    if args.checkpoint is not None:
        line = predict_split(args, group)
        group.end()  # the main process scores alone: the evaluators must not gather from the others
        if line is None:
            return None
        details.append(line)
    if args.masks_dir is not None:
        return evaluate_segmentation(args, details)
    args.protocol = args.protocol or "voc"
    if args.protocol == "semantic":
        raise ValueError("protocol semantic scores masks: give --masks-dir or a checkpoint of a semantic head")
    return evaluate_detection(args, details)


def main(argv: list[str] | None = None) -> int:
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
