"""The lectures' table: all eight heads on one backbone (SmallCNN width 16) and one data family (generated shapes).

Each head trains from scratch with its shapes config as written (the config's epochs) through
``scripts/train.py fit``, is scored on the test split by ``scripts/evaluate.py --checkpoint`` with
the config's own protocol, and is timed at batch 1 on the first ``SPEED_IMAGES`` test images
(the model's own transform and postprocess, after one warm-up image, with the process's torch
threads). Headline metric per head: mAP@0.5 (VOC area AP) for detectors, mean IU for FCN-8s,
cls+loc accuracy for the localization heads, mAP^r@0.5 for MNC. R-CNN and Fast R-CNN read
selective-search proposals from the cache (``scripts/make_proposals.py`` fills it first): their
``s/image`` is a cache hit plus the network; ``with proposals`` adds selective search on the image.
The two localization heads read single-object shapes (``data/shapes_single_4000``, their
configs' data: 4,000 training images). R-CNN's ablations (SVM vs softmax scores, with and
without box regression) reuse its checkpoint on the whole test split.

Full run: about 80 minutes on 2 quiet cores. Quick: R-CNN alone (the generic path, proposals and
ablations), one epoch of two batches on tiny shapes, two test images.
"""

import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from benchmarks.runs import (
    QUICK_TRAIN, REPO, epochs_done, evaluate_checkpoint, fit, run_script, shapes, single_object_shapes,
    tiny_shapes,
)  # fmt: skip
from benchmarks.timing import seconds_per_image
from datasets.datamodule import DetectionDataModule
from detection.checkpoint import load_detector
from detection.evaluation import VOCEvaluator
from detection.proposals.selective_search import image_to_uint8

SPEED_IMAGES = 50


@dataclass(frozen=True)
class Head:
    name: str
    config: str
    metric: str  # the key of evaluate.py's metrics.json that the table shows
    single_object: bool = False
    proposals: bool = False  # reads selective-search boxes from the cache


HEADS = (
    Head("classification + localization", "configs/localization/shapes.yaml", "cls_loc_accuracy", single_object=True),
    Head("OverFeat", "configs/overfeat/shapes.yaml", "cls_loc_accuracy", single_object=True),
    Head("R-CNN", "configs/rcnn/shapes.yaml", "map_50", proposals=True),
    Head("Fast R-CNN", "configs/fast_rcnn/shapes.yaml", "map_50", proposals=True),
    Head("Faster R-CNN", "configs/faster_rcnn/shapes.yaml", "map_50"),
    Head("YOLO v1", "configs/yolo/shapes.yaml", "map_50"),
    Head("FCN-8s", "configs/fcn/shapes.yaml", "mean_iou"),
    Head("MNC", "configs/mnc/shapes.yaml", "map_r_50"),
)
QUICK_HEADS = ("R-CNN",)  # the generic path plus proposals and ablations
ABLATIONS = (("svm", True), ("softmax", True), ("svm", False), ("softmax", False))


def network_and_search_seconds(model: nn.Module, images: list[Tensor], *, proposals: bool) -> tuple[float, float]:
    """Batch-1 ``(network s/image, selective-search s/image)`` (``benchmarks.timing``; 0 without proposals)."""
    network = seconds_per_image(lambda image: model([image]), images)
    search = seconds_per_image(lambda image: model.proposals.compute(image_to_uint8(image)), images) if proposals else 0.0
    return network, search


def rcnn_ablations(model: nn.Module, classes: list[str], images: list[Tensor], targets: list[dict]) -> dict[str, float]:
    """Test mAP@0.5 of R-CNN's scorer x box-regression settings on one checkpoint."""
    results = {}
    for scorer, box_regression in ABLATIONS:
        model.scorer, model.box_regression = scorer, box_regression
        evaluator = VOCEvaluator(classes=classes, use_07_metric=False)
        with torch.inference_mode():
            for image, target in zip(images, targets):
                evaluator.update(model([image]), [target])
        results[f"{scorer}{'+bbox' if box_regression else ''}"] = round(evaluator.compute()["map_50"], 4)
    return results


def run(quick: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_lectures_") as tmp:
        work = Path(tmp)
        multi = tiny_shapes(work / "shapes") if quick else shapes()
        if quick:
            single = tiny_shapes(work / "shapes_single", single_object=True)
        else:
            single = single_object_shapes()
        cache = work / "proposals" if quick else REPO / "data" / "proposals"
        run_script("make_proposals.py", ["--config", "configs/rcnn/shapes.yaml", "--root", str(multi), "--cache-dir", str(cache),
                                         "--splits", "train", "val", "test", "--no-progress"])  # fmt: skip
        figures = {}
        for head in HEADS:
            if quick and head.name not in QUICK_HEADS:
                continue
            root = single if head.single_object else multi
            extra = ["--data.init_args.root", str(root), *(QUICK_TRAIN if quick else [])]
            if head.proposals:
                extra += ["--model.model.init_args.cache_dir", str(cache)]
            run_dir, train_s = fit(REPO / head.config, work / head.config.split("/")[1], extra)
            best = run_dir / "checkpoints" / "best.ckpt"
            metrics = evaluate_checkpoint(best, ["--shapes", str(root), "--split", "test"], run_dir / "report")
            loaded = load_detector(best)
            test = DetectionDataModule(format="shapes", root=str(root), shapes_single_object=head.single_object,
                                       augment=False).dataset("test")  # fmt: skip
            images, targets = zip(*(test[i] for i in range(2 if quick else len(test))))
            network_s, search_s = network_and_search_seconds(loaded.model, list(images[:SPEED_IMAGES]), proposals=head.proposals)
            figures[head.name] = {
                "config": head.config,
                "metric": head.metric,
                "value": round(metrics[head.metric], 4),
                "epochs": epochs_done(run_dir),
                "train_min": round(train_s / 60, 2),
                "s_per_image": round(network_s, 4),
                "s_per_image_with_proposals": round(network_s + search_s, 4),
            }
            if head.name == "R-CNN":
                figures[head.name]["ablations_map_50"] = rcnn_ablations(loaded.model, loaded.classes, list(images), list(targets))
    return figures
