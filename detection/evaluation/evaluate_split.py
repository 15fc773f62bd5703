"""Score a model, a COCO results file or predicted class maps against a dataset split; write the report.

The composition behind ``scripts/evaluate.py`` and ``detection.Detector.evaluate``: it takes
values (a ``datasets.split_source.SplitSource``, a protocol name, an output folder, a
``ReportOptions``), never parsed arguments.

- ``evaluate_model``: predict the split with a loaded model (``predict_split``: the one
  batch-inference path, on one process or many, resumable) into ``out_dir/predictions/``, then
  score those outputs as the two functions below do. Every process of a run calls it; the main
  one scores alone after the others have left the process group, and the others get ``None``.
- ``evaluate_predictions``: a COCO results JSON (``category_id`` = the dataset's category id, or
  the label ``1..C`` for VOC layouts; ``image_id`` = the reader's image id) under a box or mask
  protocol, with the Hoiem-style error analysis and its galleries for box protocols.
- ``evaluate_masks``: predicted class-index PNGs (``masks/<image path relative to the image
  folder, as .png>``, as batch inference writes them) vs the split's semantic ground truth.

Each writes ``metrics.json``, ``report.md``, ``pr_curves/<class>.png`` (or
``confusion_matrix.png``) and the galleries into ``out_dir`` and returns ``report.md``'s path.

Protocols: ``voc07`` (11-point), ``voc`` (VOC2010+ area), ``coco`` (bbox), ``coco_segm``
(bbox + segm), ``cls_loc`` (ILSVRC), ``region`` (mAP^r at mask IoU 0.5 / 0.7), ``semantic``
(FCN metrics from a confusion matrix). For a model the default follows the evaluator it was
trained with (``default_protocol``).
"""

import dataclasses
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from datasets.safe_io import read_image
from datasets.split_images import SplitImages
from datasets.split_source import Split, SplitSource, open_split
from detection.checkpoint import LoadedDetector
from detection.evaluation.cls_loc import ClsLocEvaluator
from detection.evaluation.coco_eval import COCOEvaluator, class_pr_curves, evaluate_annotation_file, summary_metrics
from detection.evaluation.error_analysis import CATEGORIES, analyse_errors
from detection.evaluation.galleries import crop_gallery, segmentation_gallery
from detection.evaluation.ground_truth import GroundTruth, coco_json_ground_truth, reader_ground_truth
from detection.evaluation.records import ImageRecord, make_records
from detection.evaluation.region_ap import RegionAPEvaluator
from detection.evaluation.report import write_report
from detection.evaluation.results_io import read_coco_results, results_to_predictions, write_voc_results
from detection.evaluation.voc_evaluator import VOCEvaluator
from detection.inference import MASKS_DIR, batch_predict, mask_name, relative_path, reset_for_run
from detection.prediction_outputs import PREDICTIONS_JSON
from detection.predictor import model_task
from detection.processes import Processes
from segmentation.metrics import VOID_LABEL, ConfusionMatrix, confusion_metrics

PROTOCOLS = ("voc07", "voc", "coco", "coco_segm", "cls_loc", "region", "semantic")
MASK_PROTOCOLS = ("coco_segm", "region")
ERROR_ANALYSIS_PROTOCOLS = ("voc07", "voc", "coco", "coco_segm")
PROTOCOL_OF_EVALUATOR = {"VOCEvaluator": "voc", "COCOEvaluator": "coco", "ClsLocEvaluator": "cls_loc", "RegionAPEvaluator": "region", "ConfusionMatrix": "semantic"}
DEFAULT_PROTOCOL = "voc"
PREDICTIONS_DIR = "predictions"  # evaluate_model's predictions, inside its out_dir
GALLERY_SIZE = 12
WORST_IMAGES = 6

Progress = Callable[[Iterable, int], Iterable]  # progress(batches, total) around batch inference's loop


@dataclass(frozen=True)
class ReportOptions:
    """What goes into the report besides the metrics.

    ``gallery``: crops per error gallery, and whether the worst segmented images are drawn (0:
    none); ``voc_results``: also write the devkit's ``comp4_det_<split>_<class>.txt`` there;
    ``progress``: tqdm bars while reading the ground truth and matching.
    """

    gallery: int = GALLERY_SIZE
    voc_results: Path | None = None
    progress: bool = False


@dataclass(frozen=True)
class SplitPredictions:
    """What ``predict_split`` wrote: ``predictions.json`` (box and instance heads) or ``masks/``
    (semantic heads), and the report's line about the run."""

    predictions: Path | None
    masks_dir: Path | None
    detail: str


def default_protocol(loaded: LoadedDetector, protocol: str | None = None) -> str:
    """``protocol``, else the one of the evaluator ``loaded`` was trained with (``semantic`` for a
    semantic head, ``voc`` when unknown); ``ValueError`` when it does not fit the model's task."""
    task = model_task(loaded.model)
    protocol = protocol or ("semantic" if task == "semantic" else PROTOCOL_OF_EVALUATOR.get(loaded.evaluator or "", DEFAULT_PROTOCOL))
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {list(PROTOCOLS)}, got {protocol!r}")
    if (task == "semantic") != (protocol == "semantic"):
        raise ValueError(f"protocol {protocol} does not fit a {task} model ({loaded.model_config['class_path']})")
    return protocol


def open_model_split(source: SplitSource, task: str, classes: list[str]) -> Split:
    """The split a model of ``task`` and ``classes`` runs on; ``ValueError`` when its classes differ."""
    split = open_split(source, task=task, classes=classes)
    if split.reader.classes != classes:
        raise ValueError(f"{split.source}: classes {split.reader.classes} differ from the checkpoint's {classes}")
    return split


def predict_split(
    loaded: LoadedDetector,
    source: SplitSource,
    out_dir: Path,
    *,
    model_file: Path,
    config: Path | None = None,
    batch_size: int = 8,
    num_workers: int = 0,
    progress: Progress | None = None,
    processes: Processes | None = None,
) -> SplitPredictions | None:
    """Predict every image of the split into ``out_dir`` with every detection kept (score threshold 0).

    ``model_file`` (the checkpoint or ``.onnx`` the model came from) and ``config`` name the run with
    the split and batch size: the outputs of another run are removed first, and the same run
    rerun after an interruption resumes (``detection.inference.reset_for_run``). Every image must be
    readable: a skipped image would count as one with no detections and lower the score silently.
    Returns the outputs on the main process, ``None`` on the others.
    """
    processes = processes or Processes()
    task = model_task(loaded.model)
    split = open_model_split(source, task, loaded.classes)
    resolved = model_file.resolve()
    run = {"checkpoint": str(resolved), "bytes": resolved.stat().st_size, "mtime_ns": resolved.stat().st_mtime_ns,
           "config": str(config), "split": source.describe(), "image_set": source.image_set, "batch_size": batch_size}  # fmt: skip
    reset_for_run(out_dir, run, processes)
    start = time.perf_counter()
    summary = batch_predict(
        loaded.model, loaded.classes, SplitImages(split.reader), root=split.images_root, out_dir=out_dir,
        batch_size=batch_size, score_threshold=0.0, draw=False, num_workers=num_workers,
        label_to_category_id=split.label_to_category_id, progress=progress, processes=processes,
    )  # fmt: skip
    if summary is None:
        return None
    seconds = time.perf_counter() - start
    if summary.errors:
        raise ValueError(f"{summary.errors} images of {split.source} could not be read; see {out_dir / 'errors.txt'}")
    where = f"{processes.world_size} processes on {processes.device.type}" if processes.world_size > 1 else str(processes.device)
    detail = f"checkpoint: `{model_file}`; inference {seconds:.1f} s for {summary.total} images ({seconds / max(summary.total, 1):.3f} s/image on {where})"
    if task == "semantic":
        return SplitPredictions(predictions=None, masks_dir=out_dir / MASKS_DIR, detail=detail)
    return SplitPredictions(predictions=out_dir / PREDICTIONS_JSON, masks_dir=None, detail=detail)


def evaluate_model(
    loaded: LoadedDetector,
    source: SplitSource,
    out_dir: Path,
    *,
    model_file: Path,
    config: Path | None = None,
    protocol: str | None = None,
    batch_size: int = 8,
    num_workers: int = 0,
    progress: Progress | None = None,
    options: ReportOptions = ReportOptions(),
    processes: Processes | None = None,
) -> Path | None:
    """Predict the split (``predict_split``, into ``out_dir/predictions/``), then score it under
    ``protocol`` (default: ``default_protocol``) and write the report into ``out_dir``.

    Every process of the run calls this with the same arguments; the main process scores alone
    (the evaluators must not gather from the others) and returns ``report.md``'s path, the others
    ``None``. The split is read with the model's classes.
    """
    processes = processes or Processes()
    out_dir.mkdir(parents=True, exist_ok=True)
    protocol = default_protocol(loaded, protocol)
    predicted = predict_split(
        loaded, source, out_dir / PREDICTIONS_DIR, model_file=model_file, config=config, batch_size=batch_size,
        num_workers=num_workers, progress=progress, processes=processes,
    )  # fmt: skip
    processes.end()  # the main process scores alone
    if predicted is None:
        return None
    source = dataclasses.replace(source, classes=tuple(loaded.classes))
    if predicted.masks_dir is not None:
        return evaluate_masks(predicted.masks_dir, source, out_dir, options=options, details=[predicted.detail])
    return evaluate_predictions(predicted.predictions, source, out_dir, protocol=protocol, options=options, details=[predicted.detail])


def load_ground_truth(source: SplitSource, *, with_masks: bool, progress: bool = False) -> GroundTruth:
    """The split's boxes (and instance masks): a COCO file as pycocotools reads it, else the reader's."""
    if source.coco_ann is not None:
        return coco_json_ground_truth(source.coco_ann, with_masks=with_masks, categories=list(source.classes) if source.classes else None)
    reader = open_split(source, task="detection", with_masks=with_masks).reader
    return reader_ground_truth(reader, progress=tqdm(range(len(reader)), desc="ground truth", unit="img", disable=not progress))


def _dense_masks(rles: list[dict], height: int, width: int) -> np.ndarray:
    """COCO RLEs (``counts`` as text) -> ``uint8 [K, height, width]``."""
    from faster_coco_eval.core import mask as mask_utils

    if not rles:
        return np.zeros((0, height, width), dtype=np.uint8)
    encoded = [{"size": r["size"], "counts": r["counts"].encode("ascii")} for r in rles]
    return mask_utils.decode(encoded).transpose(2, 0, 1)  # [H, W, K] -> [K, H, W]


def make_evaluator(protocol: str, gt: GroundTruth) -> VOCEvaluator | COCOEvaluator | ClsLocEvaluator | RegionAPEvaluator:
    """The evaluator of a box or mask ``protocol`` over ``gt``'s classes."""
    if protocol in ("voc07", "voc"):
        return VOCEvaluator(classes=gt.classes, use_07_metric=protocol == "voc07")
    if protocol in ("coco", "coco_segm"):
        iou_types = ("bbox", "segm") if protocol == "coco_segm" else ("bbox",)
        return COCOEvaluator(classes=gt.classes, iou_types=iou_types, label_to_category_id=gt.label_to_category_id)
    if protocol == "cls_loc":
        return ClsLocEvaluator(classes=gt.classes)
    return RegionAPEvaluator(classes=gt.classes)


def _image_loader(source: SplitSource, gt: GroundTruth) -> Callable[[int], np.ndarray] | None:
    """``image_id -> np.ndarray[H, W, 3]`` for the galleries, or ``None`` when the images are unknown."""
    if source.coco_ann is not None and source.images is None:
        return None
    folder = source.images if source.coco_ann is not None else Path()
    return lambda image_id: read_image(folder / gt.image_files[image_id])


def error_analysis_section(
    records: list[ImageRecord], gt: GroundTruth, out_dir: Path, *, load_image: Callable[[int], np.ndarray] | None, gallery: int
) -> list[str]:
    """The Hoiem-style breakdown as markdown, with the galleries (``gallery`` crops each) drawn into ``out_dir``."""
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
    if load_image is None or gallery <= 0:
        return lines + ["", "(galleries need the images: give --images)" if gallery > 0 else ""]
    galleries = (
        ("false_positives.png", analysis.false_positives(gallery), "highest-scoring detections that are not correct"),
        ("missed.png", analysis.missed[:gallery], "missed objects (no detection of their class with IoU >= 0.5), largest first"),
    )
    for name, items, title in galleries:
        if items:
            crop_gallery(out_dir / name, items, load_image, gt.classes, title)
            lines += ["", f"### {title.capitalize()}", "", f"![{title}]({name})"]
    return lines


def evaluate_predictions(
    predictions: Path,
    source: SplitSource,
    out_dir: Path,
    *,
    protocol: str | None = None,
    options: ReportOptions = ReportOptions(),
    details: Iterable[str] = (),
) -> Path:
    """Score a COCO results JSON against the split under a box or mask ``protocol`` (default ``voc``);
    returns ``report.md``'s path. ``source.classes`` of a COCO file keeps those categories only
    (the results of the others are left out and counted); ``details``: report lines before the
    dataset's (e.g. ``SplitPredictions.detail``)."""
    protocol = protocol or DEFAULT_PROTOCOL
    if protocol == "semantic":
        raise ValueError("protocol semantic scores masks: give --masks-dir or a checkpoint of a semantic head")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {list(PROTOCOLS)}, got {protocol!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    details = list(details)
    with_masks = protocol in MASK_PROTOCOLS
    gt = load_ground_truth(source, with_masks=with_masks, progress=options.progress)
    results = read_coco_results(predictions)
    if source.coco_ann is not None and source.classes:  # a subset: results of other categories are not scored
        kept = set(gt.label_to_category_id.values())
        dropped = sum(r["category_id"] not in kept for r in results)
        results = [r for r in results if r["category_id"] in kept]
        details.append(f"categories scored: {gt.classes} ({dropped} results of other categories left out)")
    category_to_label = {c: l for l, c in gt.label_to_category_id.items()} if gt.label_to_category_id else None
    by_image = results_to_predictions(results, category_id_to_label=category_to_label)
    known = {int(t["image_id"]) for t in gt.targets}
    unknown = sorted(set(by_image) - known)
    if unknown:
        raise ValueError(f"{predictions}: {len(unknown)} image ids are not in the dataset, e.g. {unknown[:5]}")
    evaluator = make_evaluator(protocol, gt)
    # The box evaluators keep every detection as records (sorted by image id), which voc_results
    # and the error analysis reuse; cls_loc (top guesses only) and region build their own for voc_results.
    evaluator_records = protocol in ERROR_ANALYSIS_PROTOCOLS
    records: list[ImageRecord] = []
    empty = {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64), "scores": np.zeros(0)}
    for target in tqdm(gt.targets, desc="matching", unit="img", disable=not options.progress):
        pred = dict(by_image.get(int(target["image_id"]), empty))
        if with_masks:
            height, width = target["masks"].shape[-2:]
            pred["masks"] = _dense_masks(pred.pop("masks_rle", []), height, width)
        evaluator.update([pred], [target])
        if options.voc_results is not None and not evaluator_records:
            records += make_records([pred], [target], num_classes=len(gt.classes))
    start = time.perf_counter()
    official = source.coco_ann is not None and protocol in ("coco", "coco_segm")
    if official:  # the annotation file itself is the ground truth, exactly as pycocotools reads it
        metrics: dict[str, float] = {}
        curves: dict[str, Any] = {}
        category_ids = [gt.label_to_category_id[label] for label in range(1, len(gt.classes) + 1)]
        for iou_type in evaluator.iou_types:
            coco = evaluate_annotation_file(str(source.coco_ann), results, iou_type=iou_type, category_ids=category_ids)
            metrics.update(summary_metrics(coco, gt.classes, category_ids, "" if iou_type == "bbox" else f"{iou_type}/"))
            curves = curves or class_pr_curves(coco, gt.classes, category_ids)
    else:
        metrics = evaluator.compute()
        curves = evaluator.pr_curves()
    seconds = time.perf_counter() - start
    records = evaluator.records() if evaluator_records else sorted(records, key=lambda r: r.image_id)  # VOCEvaluator's tie order
    if options.voc_results is not None:
        names = gt.image_names or {int(t["image_id"]): str(t["image_id"]) for t in gt.targets}
        write_voc_results(options.voc_results, records, classes=gt.classes, image_names=names, image_set=source.split)
    details += [
        f"dataset: {source.describe()} ({len(gt.targets)} images, {len(gt.classes)} classes)",
        f"predictions: `{predictions}` ({len(results)} detections)",
        f"protocol: `{protocol}`; scoring took {seconds:.2f} s",
    ]
    sections = []
    if protocol in ERROR_ANALYSIS_PROTOCOLS:
        sections = error_analysis_section(records, gt, out_dir, load_image=_image_loader(source, gt), gallery=options.gallery)
    return write_report(
        out_dir, metrics, curves, evaluator.protocol_text(), title=f"Detection evaluation ({protocol})", details=details,
        class_names=gt.classes, sections=sections,
    )  # fmt: skip


def _read_label_png(path: Path) -> np.ndarray:
    """A palette or grayscale PNG of class indices -> ``uint8 [H, W]`` (a writable copy)."""
    with Image.open(path) as image:
        if image.mode not in ("P", "L"):
            raise ValueError(f"{path}: expected a palette or grayscale PNG of class indices, got mode {image.mode}")
        return np.array(image, dtype=np.uint8)


def evaluate_masks(
    masks_dir: Path, source: SplitSource, out_dir: Path, *, options: ReportOptions = ReportOptions(), details: Iterable[str] = ()
) -> Path:
    """Predicted class maps ``masks_dir/<image path relative to the image folder, as .png>`` vs the
    split's semantic ground truth (VOC ``SegmentationClass``, a mask folder's masks, or COCO
    instances painted into a class map); returns ``report.md``'s path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    details = list(details)
    split = open_split(source, task="semantic", classes=list(source.classes) if source.classes else None)
    reader = split.reader
    matrix = ConfusionMatrix(classes=reader.classes, ignore_index=VOID_LABEL)
    image_ids = reader.image_ids
    index_of = {image_id: i for i, image_id in enumerate(image_ids)}

    def truth(image_id: int) -> np.ndarray:
        return reader.load(index_of[image_id])[1]["semantic"]

    def prediction(image_id: int, shape: tuple[int, ...]) -> np.ndarray:
        path = masks_dir / mask_name(relative_path(reader.image_path(index_of[image_id]), split.images_root))
        if not path.is_file():
            raise ValueError(f"missing prediction {path}")
        pred = _read_label_png(path)
        if pred.shape != shape:
            raise ValueError(f"{path}: size {pred.shape} differs from the ground truth {shape}")
        return np.where(pred == VOID_LABEL, 0, pred)  # a void prediction counts as background

    for image_id in tqdm(image_ids, desc="pixels", unit="img", disable=not options.progress):
        target = truth(image_id)
        matrix.add(image_id, torch.from_numpy(prediction(image_id, target.shape)), torch.from_numpy(target))
    per_image = sorted(
        ((image_id, confusion_metrics(counts, matrix.class_names)["mean_iou"]) for image_id, counts in matrix.per_image()),
        key=lambda item: (item[1], item[0]),
    )
    sections: list[str] = []
    if per_image and options.gallery > 0:
        segmentation_gallery(
            out_dir / "worst_images.png", per_image[:WORST_IMAGES], lambda i: read_image(reader.image_path(index_of[i])),
            truth, lambda i: prediction(i, truth(i).shape),
        )  # fmt: skip
        sections = ["## Worst images", "", "Lowest mean IU per image: image, ground truth, prediction.", "", "![worst images](worst_images.png)"]
    details += [f"dataset: {source.describe()} ({len(image_ids)} images)", f"predictions: `{masks_dir}`"]
    return write_report(
        out_dir, matrix.compute(), {}, matrix.protocol_text(), title="Segmentation evaluation", confusion=matrix.matrix(),
        confusion_names=matrix.class_names, details=details, class_names=reader.classes, sections=sections,
    )  # fmt: skip


def read_metrics(report: Path) -> dict[str, Any]:
    """The ``metrics.json`` written beside ``report``."""
    return json.loads((report.parent / "metrics.json").read_text())

