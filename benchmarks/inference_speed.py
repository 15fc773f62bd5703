"""Inference at deployment speed on the CPU: images/s at batch 1 / 8 / 32, eager vs onnxruntime, 512-px images.

YOLO, FCN-8s and Faster R-CNN are built from their shapes configs (untrained, 4 classes: timing
does not depend on the weights; SmallCNN width 16) at a 512 x 512 input (YOLO: S = 32 cells on
its stride-16 tap), exported with ``detection.export.export_model`` to ONNX and loaded on
onnxruntime (``detection.onnx_model.load_onnx``); torchvision's own ``FasterRCNN`` on the same
SmallCNN tap, anchors and sizes (``benchmarks.faster_rcnn_speed.twin_models``) is timed beside
them. Every measure: ``model(batch)`` over ``IMAGES`` same-size generated shapes images (so a
batch is one forward pass, ``detection.predictor``), the best of ``REPEATS`` passes after one
warm-up batch, with ``THREADS`` torch and onnxruntime threads. Faster R-CNN's ONNX graph takes
one image per run (``detection/export.py``): its batches are runs of one.

The issue's targets, reported with the figures: batched YOLO and FCN >= 2x their batch-1 images/s;
onnxruntime >= 1.3x eager for YOLO and FCN; Faster R-CNN at batch 8 >= torchvision's at batch 8.
``smallcnn_backbone`` times YOLO's backbone alone on the stacked batch: whether batching helps the
convolutions themselves on this machine. Quick: YOLO alone at 128 px, batches 1 and 2, four images.
"""

import tempfile
from pathlib import Path

from collections.abc import Callable

import torch
import yaml
from torch import Tensor, nn

from benchmarks.faster_rcnn_speed import twin_models
from benchmarks.fast_vs_faster import split_images
from benchmarks.timing import images_per_second, torch_threads
from datasets.shapes_writer import write_shapes
from detection.checkpoint import build_model
from detection.export import export_model
from detection.onnx_model import load_onnx

REPO = Path(__file__).resolve().parents[1]
SIZE, IMAGES, BATCH_SIZES, REPEATS, THREADS = 512, 64, (1, 8, 32), 2, 2
HEADS = {"yolo": "configs/yolo/shapes.yaml", "fcn_8s": "configs/fcn/shapes.yaml", "faster_rcnn": "configs/faster_rcnn/shapes.yaml"}
YOLO_STRIDE = 16  # the c4 tap of the YOLO shapes config


def _model_config(config: str, size: int) -> dict:
    """The config's ``model.model`` at a ``size`` x ``size`` input."""
    model_config = yaml.safe_load((REPO / config).read_text())["model"]["model"]
    init_args = model_config["init_args"]
    init_args["num_classes"] = 4
    if "image_size" in init_args:  # YOLO: a fixed input and one cell per stride-16 position
        init_args.update(image_size=size, grid_size=size // YOLO_STRIDE)
    if "min_size" in init_args:  # Faster R-CNN: the shorter side, capped by the longer
        init_args.update(min_size=size, max_size=size)
    return model_config


def _on_onnxruntime(model: nn.Module, model_config: dict, out_dir: Path) -> nn.Module:
    path = export_model(model, classes=["circle", "square", "triangle", "cross"], model_config=model_config,
                        format="onnx", out_dir=out_dir)  # fmt: skip
    return load_onnx(path).model


def _rates(model: Callable[[list[Tensor]], object], images: list, batch_sizes: tuple[int, ...], repeats: int) -> dict[str, float]:
    return {f"batch_{b}": round(images_per_second(model, images, batch_size=b, warmup=1, repeats=repeats), 2) for b in batch_sizes}


def run(quick: bool) -> dict:
    size, count, batch_sizes, repeats, threads = (128, 4, (1, 2), 1, 1) if quick else (SIZE, IMAGES, BATCH_SIZES, REPEATS, THREADS)
    heads = {"yolo": HEADS["yolo"]} if quick else HEADS
    figures: dict = {"image_size": size, "images": count, "threads": threads, "repeats": repeats}
    with tempfile.TemporaryDirectory(prefix="bench_inference_") as tmp, torch_threads(threads):
        root = write_shapes(Path(tmp) / "shapes", sizes={"test": count}, image_size=size).root
        images = split_images(root, count)
        for name, config in heads.items():
            torch.manual_seed(0)
            model_config = _model_config(config, size)
            eager = build_model(model_config).eval()
            onnx = _on_onnxruntime(eager, model_config, Path(tmp) / name)  # the session takes `threads` threads
            figures[name] = {"eager": _rates(eager, images, batch_sizes, repeats), "onnxruntime": _rates(onnx, images, batch_sizes, repeats)}
            if name == "yolo":  # the backbone alone: how batching changes the convolutions themselves
                backbone = eager.backbone
                figures["smallcnn_backbone"] = {"eager": _rates(lambda batch: backbone(torch.stack(batch)), images, batch_sizes, repeats)}
        if not quick:
            _, torchvision_faster = twin_models(size)
            figures["torchvision_faster_rcnn"] = {"eager": _rates(torchvision_faster, images, batch_sizes, repeats)}
    batch, last = f"batch_{batch_sizes[1]}", f"batch_{batch_sizes[-1]}"
    targets = {}
    for name in ("yolo", "fcn_8s"):
        if name in figures:
            eager = figures[name]["eager"]
            targets[f"{name}_batched_over_batch_1"] = round(max(eager[batch], eager[last]) / eager["batch_1"], 2)  # goal >= 2
            targets[f"{name}_onnxruntime_over_eager_{last}"] = round(figures[name]["onnxruntime"][last] / eager[last], 2)  # goal >= 1.3
    if "torchvision_faster_rcnn" in figures:
        targets[f"faster_rcnn_over_torchvision_{batch}"] = round(
            figures["faster_rcnn"]["eager"][batch] / figures["torchvision_faster_rcnn"]["eager"][batch], 2)  # goal >= 1
    figures["targets"] = targets
    return figures
