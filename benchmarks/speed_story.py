"""The speed story in one run: each detector against the one that replaced it, test time on the same machine.

- R-CNN vs Fast R-CNN: the same network, the CNN on every warped region vs one pass per image
  (``benchmarks.rcnn_speed``); Fast R-CNN with selective search vs Faster R-CNN's RPN
  (``benchmarks.fast_vs_faster``);
- YOLO vs Faster R-CNN on YOLO's backbone, tap and input size (``benchmarks.yolo_speed``);
- OverFeat's dense pass vs the same network window by window at 512 px (``benchmarks.overfeat_speed``);
- MNC (5 stages, mask voting) vs torchvision's Mask R-CNN on the same backbone, tap and 128-px
  input (the ``configs/mnc`` shapes configs), untrained: timing does not depend on the weights,
  and both keep every candidate (score threshold 0), so both run their full test-time path.

``ratios`` are slower / faster (how many times the newer method is faster); the details of each
comparison sit beside them. Quick: each comparison's quick settings.
"""

import tempfile
from pathlib import Path

import torch
import yaml

from benchmarks import fast_vs_faster, overfeat_speed, rcnn_speed, yolo_speed
from benchmarks.runs import REPO, shapes, tiny_shapes
from benchmarks.timing import best_of_rounds, torch_threads
from detection.checkpoint import build_model

MNC_CONFIGS = {"mnc": REPO / "configs" / "mnc" / "shapes.yaml", "mask_rcnn": REPO / "configs" / "mnc" / "shapes_maskrcnn.yaml"}
THREADS, ROUNDS, IMAGES = 2, 3, 30


def mnc_vs_mask_rcnn(quick: bool) -> dict:
    """Batch-1 seconds per shapes test image of the two untrained instance models, best of interleaved rounds."""
    torch.manual_seed(0)
    models = {}
    for name, config in MNC_CONFIGS.items():
        model_config = yaml.safe_load(config.read_text())["model"]["model"]
        model_config["init_args"]["score_thresh"] = 0.0
        models[name] = build_model(model_config).eval()
    with tempfile.TemporaryDirectory(prefix="bench_speed_story_") as tmp, torch_threads(1 if quick else THREADS):
        root = tiny_shapes(Path(tmp) / "shapes") if quick else shapes()
        images = fast_vs_faster.split_images(root, 2 if quick else IMAGES)
        best = best_of_rounds({name: (lambda im, m=m: m([im])) for name, m in models.items()}, images, 1 if quick else ROUNDS)
    return {"mnc_s_per_image": round(best["mnc"], 4), "mask_rcnn_s_per_image": round(best["mask_rcnn"], 4),
            "images": len(images), "threads": 1 if quick else THREADS}  # fmt: skip


def run(quick: bool) -> dict:
    details = {
        "rcnn_vs_fast_rcnn": rcnn_speed.run(quick),
        "fast_rcnn_vs_faster_rcnn": fast_vs_faster.run(quick),
        "yolo_vs_faster_rcnn": yolo_speed.run(quick),
        "overfeat_dense_vs_windows": overfeat_speed.run(quick),
        "mnc_vs_mask_rcnn": mnc_vs_mask_rcnn(quick),
    }
    largest = str(max(int(size) for size in details["overfeat_dense_vs_windows"] if size.isdigit()))
    mnc = details["mnc_vs_mask_rcnn"]
    ratios = {
        "rcnn_over_fast_rcnn": details["rcnn_vs_fast_rcnn"]["ratio"],
        "fast_rcnn_over_faster_rcnn": details["fast_rcnn_vs_faster_rcnn"]["fast"]["total_vs_faster"],
        "faster_rcnn_over_yolo_batch_1": details["yolo_vs_faster_rcnn"]["batch_1"]["ratio"],  # YOLO images/s over Faster R-CNN's
        f"overfeat_windows_over_dense_{largest}px": details["overfeat_dense_vs_windows"][largest]["ratio"],
        "mnc_over_mask_rcnn": round(mnc["mnc_s_per_image"] / mnc["mask_rcnn_s_per_image"], 2),
    }
    return {"ratios": ratios, **details}
