"""YOLO v1 vs Faster R-CNN inference speed: images per second on the same backbone and input size.

Times ``model(images)`` in eval mode (``torch.inference_mode``, 2 threads) over 32 random images
at batch 1 and 8, the best of 3 passes after 2 warm-up batches, counting the model-side
transform and the postprocessing. YOLO is built from ``configs/yolo/shapes.yaml``;
``detection.faster_rcnn.FasterRCNN`` from ``configs/faster_rcnn/shapes.yaml`` (anchors, proposal
counts, RoI head) with YOLO's backbone, tap and fixed input size swapped in
(``faster_config_like``). Weights are random (nothing is downloaded), so both run their full
test-time path: Faster R-CNN sends its configured test proposals through the RoI head; YOLO
decodes its S*S*B boxes and thresholds at the configured score.

    OMP_NUM_THREADS=1 python -m benchmarks run yolo_speed [--quick]

Figures: ``batch_<n>: {yolo_images_per_s, faster_rcnn_images_per_s, ratio}`` (ratio = YOLO /
Faster R-CNN), with the ``backbone``, ``feature``, ``image_size`` and ``threads`` they ran with.
"""

from typing import Any

import torch
import yaml

from benchmarks.runs import REPO
from benchmarks.timing import images_per_second, torch_threads
from detection.checkpoint import build_model

YOLO_CONFIG = REPO / "configs" / "yolo" / "shapes.yaml"
FASTER_CONFIG = REPO / "configs" / "faster_rcnn" / "shapes.yaml"
THREADS = 2


def model_config(config) -> dict[str, Any]:
    """The ``model.model`` entry (``class_path`` / ``init_args``) of a training config."""
    return yaml.safe_load(config.read_text())["model"]["model"]


def faster_config_like(shared: dict[str, Any], faster_config=FASTER_CONFIG) -> dict[str, Any]:
    """Faster R-CNN's model config with YOLO's backbone, tap and fixed input size (``shared``) swapped in."""
    faster = model_config(faster_config)
    size = shared["image_size"]
    faster["init_args"].update(backbone=shared["backbone"], feature=shared["feature"], min_size=size, max_size=size)
    return faster


def run(quick: bool) -> dict:
    images_count, batch_sizes, warmup, repeats, threads = (2, (1,), 0, 1, 1) if quick else (32, (1, 8), 2, 3, THREADS)
    torch.manual_seed(0)
    yolo_config = model_config(YOLO_CONFIG)
    shared = yolo_config["init_args"]
    size = shared["image_size"]
    yolo = build_model(yolo_config).eval()
    faster = build_model(faster_config_like(shared)).eval()
    images = [torch.rand(3, size, size) for _ in range(images_count)]
    figures: dict = {"backbone": shared["backbone"]["class_path"], "feature": shared["feature"], "image_size": size,
                     "images": images_count, "threads": threads}  # fmt: skip
    with torch_threads(threads):
        for batch_size in batch_sizes:
            y = images_per_second(yolo, images, batch_size=batch_size, warmup=warmup, repeats=repeats)
            f = images_per_second(faster, images, batch_size=batch_size, warmup=warmup, repeats=repeats)
            figures[f"batch_{batch_size}"] = {"yolo_images_per_s": round(y, 1), "faster_rcnn_images_per_s": round(f, 1),
                                              "ratio": round(y / f, 2)}  # fmt: skip
    return figures
