"""Evaluation speed: our VOC and COCO evaluation vs pycocotools' COCOeval on the same data.

Generates a random but realistic result set (5,000 images x 100 detections x 20 classes: gt
boxes of all sizes, ~5% crowd, detections jittered around the gts plus random ones, wrong
labels, coarse scores with ties), then times

- ``VOCEvaluator`` (update + compute; checked against the loop transcription of the devkit on
  its first 2 classes),
- ``COCOEvaluator`` (update + compute, the numpy bbox backend; ``run_coco(backend=
  "faster_coco_eval")`` times the other one),
- pycocotools ``loadRes`` + ``evaluate`` + ``accumulate`` + ``summarize`` (gt already indexed),

and records the wall and CPU seconds (the CPU time is the fairer figure on a shared machine),
the speed-ups and the largest difference of the numbers.

    OMP_NUM_THREADS=1 python -m benchmarks run eval [--quick]

Figures: ``voc`` / ``coco`` / ``pycocotools`` ``{wall_s, cpu_s, <their headline metrics>}``,
``voc.devkit_max_ap_diff``, ``coco_stats_max_diff`` (12 stats, ours vs pycocotools) and
``speedup_vs_pycocotools.{wall,cpu}.{coco,voc}``.
"""

import contextlib
import io
import json
import time

import numpy as np
import torch

from datasets.boxes import xyxy_to_voc
from detection.evaluation.coco_eval import STAT_NAMES, COCOEvaluator, coco_ground_truth
from detection.evaluation.results_io import coco_results
from detection.evaluation.voc_devkit_loop import devkit_ap
from detection.evaluation.voc_evaluator import VOCEvaluator

IMAGE_W, IMAGE_H = 640, 480
MAX_GT = 15
CROWD_FRACTION = 0.05
DIFFICULT_FRACTION = 0.1
MATCHED_FRACTION = 0.6  # share of detections placed around a gt (the rest are random)


def make_data(seed: int, *, images: int, dets: int, classes: int) -> tuple[list[dict], list[dict]]:
    """``images`` 640x480 scenes of 1..15 gts (8 to 400 px, some crowd and difficult) and ``dets``
    detections each (60% jittered around a gt, mostly with its label): ``(preds, targets)``."""
    rng = np.random.default_rng(seed)
    preds, targets = [], []
    for image_id in range(1, images + 1):
        g = int(rng.integers(1, MAX_GT + 1))
        size = np.exp(rng.uniform(np.log(8), np.log(400), size=(g, 1))) * rng.uniform(0.5, 1.5, size=(g, 2))
        xy = rng.uniform(0, 1, size=(g, 2)) * (np.array([IMAGE_W, IMAGE_H]) - size).clip(1)
        gt = np.concatenate([xy, xy + size], axis=1)
        gt_labels = rng.integers(1, classes + 1, size=g)
        near = int(dets * MATCHED_FRACTION)
        src = rng.integers(0, g, size=near)
        wh = gt[src, 2:] - gt[src, :2]
        jitter = rng.normal(0, 0.15, size=(near, 4)) * np.concatenate([wh, wh], axis=1)
        near_boxes = gt[src] + jitter
        near_labels = np.where(rng.random(near) < 0.85, gt_labels[src], rng.integers(1, classes + 1, size=near))
        far_xy = rng.uniform(0, 1, size=(dets - near, 2)) * np.array([IMAGE_W, IMAGE_H])
        far_boxes = np.concatenate([far_xy, far_xy + rng.uniform(4, 200, size=(dets - near, 2))], axis=1)
        boxes = np.concatenate([near_boxes, far_boxes])
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        labels = np.concatenate([near_labels, rng.integers(1, classes + 1, size=dets - near)])
        scores = np.round(np.concatenate([rng.beta(4, 2, size=near), rng.beta(2, 4, size=dets - near)]), 3)
        preds.append(
            {
                "boxes": torch.tensor(boxes, dtype=torch.float32),
                "labels": torch.tensor(labels, dtype=torch.int64),
                "scores": torch.tensor(scores, dtype=torch.float32),
            }
        )
        targets.append(
            {
                "image_id": image_id,
                "boxes": torch.tensor(gt, dtype=torch.float32),
                "labels": torch.tensor(gt_labels, dtype=torch.int64),
                "difficult": torch.tensor(rng.random(g) < DIFFICULT_FRACTION),
                "iscrowd": torch.tensor(rng.random(g) < CROWD_FRACTION),
                "orig_size": (IMAGE_H, IMAGE_W),
            }
        )
    return preds, targets


def timed(fn):
    """``(result, (wall seconds, CPU seconds of this process))``. The CPU time is the fairer
    figure on a shared machine; both evaluations are single-threaded."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, (time.perf_counter() - wall, time.process_time() - cpu)


def _seconds(seconds: tuple[float, float]) -> dict[str, float]:
    return {"wall_s": round(seconds[0], 3), "cpu_s": round(seconds[1], 3)}


def run_voc(preds, targets, class_names):
    evaluator = VOCEvaluator(classes=class_names)
    evaluator.update(preds, targets)
    return evaluator.compute(), evaluator


def run_coco(preds, targets, class_names, backend="numpy"):
    evaluator = COCOEvaluator(classes=class_names, bbox_backend=backend)
    evaluator.update(preds, targets)
    return evaluator.compute(), evaluator


def run_pycocotools(gt: dict, results: list[dict]) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()

        def run():
            evaluator = COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
            return evaluator.stats

        return timed(run)


def voc_loop_max_diff(evaluator: VOCEvaluator, metrics: dict, class_names: list[str], limit: int) -> float:
    """Largest |AP difference| vs the loop devkit transcription, over the first ``limit`` classes."""
    records = evaluator.records()
    worst = 0.0
    for label, name in enumerate(class_names[:limit], start=1):
        gt_boxes = [xyxy_to_voc(r.gt_boxes[r.gt_labels == label]) for r in records]
        gt_difficult = [r.gt_difficult[r.gt_labels == label] for r in records]
        det_image = np.concatenate([np.full(int(np.sum(r.dt_labels == label)), i) for i, r in enumerate(records)])
        det_boxes = np.concatenate([xyxy_to_voc(r.dt_boxes[r.dt_labels == label]) for r in records])
        det_scores = np.concatenate([r.dt_scores[r.dt_labels == label] for r in records])
        ap, _, _ = devkit_ap(gt_boxes, gt_difficult, det_image, det_boxes, det_scores, min_overlap=0.5, use_07_metric=False)
        worst = max(worst, abs(ap - metrics[f"ap_50/{name}"]))
    return worst


def run(quick: bool) -> dict:
    images, dets, classes, devkit_classes = (60, 20, 3, 1) if quick else (5000, 100, 20, 2)
    class_names = [f"class{i}" for i in range(1, classes + 1)]
    (preds, targets), t_gen = timed(lambda: make_data(0, images=images, dets=dets, classes=classes))
    figures: dict = {
        "data": {"images": images, "detections": images * dets, "gts": sum(len(t["labels"]) for t in targets),
                 "classes": classes, "generate_s": round(t_gen[0], 1)},
    }  # fmt: skip

    (voc_metrics, voc_eval), t_voc = timed(lambda: run_voc(preds, targets, class_names))
    diff, t_loop = timed(lambda: voc_loop_max_diff(voc_eval, voc_metrics, class_names, devkit_classes))
    figures["voc"] = {**_seconds(t_voc), "map_50": round(voc_metrics["map_50"], 6), "devkit_classes": devkit_classes,
                      "devkit_max_ap_diff": float(f"{diff:.3g}"), "devkit_loop_s": round(t_loop[0], 1)}  # fmt: skip

    (coco_metrics, coco_eval), t_coco = timed(lambda: run_coco(preds, targets, class_names))
    figures["coco"] = {**_seconds(t_coco), "map": round(coco_metrics["map"], 6), "map_50": round(coco_metrics["map_50"], 6)}

    records = coco_eval.records()
    gt = coco_ground_truth(records, classes=class_names)
    results = json.loads(json.dumps(coco_results(records)))
    stats, t_py = run_pycocotools(gt, results)
    ours = np.array([coco_metrics[n] for n in STAT_NAMES])
    figures["pycocotools"] = {**_seconds(t_py), "map": round(float(stats[0]), 6)}
    figures["coco_stats_max_diff"] = float(f"{np.abs(ours - stats).max():.3g}")
    figures["speedup_vs_pycocotools"] = {
        kind: {"coco": round(t_py[i] / t_coco[i], 1), "voc": round(t_py[i] / t_voc[i], 1)} for i, kind in enumerate(("wall", "cpu"))
    }
    return figures
