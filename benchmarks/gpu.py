"""The GPU check: every shapes head's training and inference speed on CUDA, AMP on vs off, and peak memory.

For each shapes config's model (untrained, 4 classes, the config's own input size and data
settings, ``data/shapes`` or ``data/shapes_single``):

- training images/s over ``TRAIN_STEPS`` steps of the config's batch size after ``WARMUP`` steps:
  fp32, AMP (``torch.autocast`` float16 with a ``GradScaler``) and AMP + ``channels_last``
  weights;
- inference images/s at batch 1 and 16 (``predict_images``: same-size images share a pass),
  fp32 and AMP;
- peak memory (``torch.cuda.max_memory_allocated``) of the AMP training and of inference at
  batch 16.

torchvision's own ``FasterRCNN`` on the same SmallCNN tap, anchors and sizes
(``benchmarks.faster_rcnn_speed.twin_models``) is timed the same way for inference; torchvision's
Mask R-CNN is the ``mnc/shapes_maskrcnn`` row. R-CNN and Fast R-CNN compute selective search on
the CPU inside every step (their cache is off), as a first run on new images does.

On a machine without CUDA the full run says so and returns at once (exit 0). Quick: two heads,
two steps, batches 1 and 2, on whatever device there is (the CPU here), to keep the code alive.
"""

import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import yaml
from torch import Tensor, nn

from benchmarks.faster_rcnn_speed import twin_models
from benchmarks.runs import REPO, shapes, tiny_shapes
from datasets.collate import collate_detection
from datasets.datamodule import DetectionDataModule
from detection.checkpoint import build_model
from detection.predictor import predict_images

CONFIGS = (
    "localization/shapes.yaml", "overfeat/shapes.yaml", "overfeat/shapes_detection.yaml", "rcnn/shapes.yaml",
    "fast_rcnn/shapes.yaml", "faster_rcnn/shapes.yaml", "yolo/shapes.yaml", "fast_yolo/shapes.yaml", "fcn/shapes.yaml",
    "mnc/shapes.yaml", "mnc/shapes_maskrcnn.yaml",
)  # fmt: skip
QUICK_CONFIGS = ("faster_rcnn/shapes.yaml", "fcn/shapes.yaml")
WARMUP, TRAIN_STEPS, INFER_BATCHES = 3, 20, 8
BATCH_SIZES = (1, 16)


def _autocast(device: torch.device, amp: bool):  # noqa: ANN202 - a context manager
    if not amp:
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _to(batch: tuple[list[Tensor], list[dict]], device: torch.device) -> tuple[list[Tensor], list[dict]]:
    images, targets = batch
    moved = [{k: v.to(device) if isinstance(v, Tensor) else v for k, v in t.items()} for t in targets]
    return [image.to(device) for image in images], moved


def train_images_per_second(model: nn.Module, batches: list, device: torch.device, *, amp: bool, steps: int, warmup: int) -> float:
    """Images/s of ``steps`` SGD steps (after ``warmup``) over ``batches`` cycled; fp16 AMP scales the loss."""
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=amp and device.type == "cuda")
    seen, start = 0, 0.0
    for step in range(warmup + steps):
        if step == warmup:
            _sync(device)
            start = time.perf_counter()
        images, targets = _to(batches[step % len(batches)], device)
        with _autocast(device, amp):
            loss = sum(model(images, targets).values())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        seen += len(images) if step >= warmup else 0
    _sync(device)
    return seen / (time.perf_counter() - start)


def infer_images_per_second(model: nn.Module, images: list[Tensor], device: torch.device, *, amp: bool, batch_size: int) -> float:
    """Images/s of ``predict_images`` over ``images`` in batches of ``batch_size`` (one warm-up batch)."""
    model.eval()
    batches = [[im.to(device) for im in images[i : i + batch_size]] for i in range(0, len(images), batch_size)]
    with _autocast(device, amp):
        predict_images(model, batches[0])
        _sync(device)
        start = time.perf_counter()
        for batch in batches:
            predict_images(model, batch)
        _sync(device)
    return len(images) / (time.perf_counter() - start)


def _peak_mb(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def measure(model: nn.Module, data_args: dict, root: Path, device: torch.device, *, quick: bool) -> dict:
    """The figures of one model: training (fp32, AMP, AMP + channels_last), inference (fp32, AMP), peak memory."""
    steps, warmup = (2, 1) if quick else (TRAIN_STEPS, WARMUP)
    sizes = (1, 2) if quick else BATCH_SIZES
    data = DetectionDataModule(**{**data_args, "root": str(root), "num_workers": 0, "augment": False})
    train = data.dataset("train")
    batch_size = 2 if quick else data_args.get("batch_size", 8)
    batches = [collate_detection([train[(i * batch_size + j) % len(train)] for j in range(batch_size)]) for i in range(4)]
    images = [train[i % len(train)][0] for i in range(max(sizes) * (1 if quick else INFER_BATCHES))]
    model = model.to(device)
    figures: dict = {}
    for name, amp, channels_last in (("fp32", False, False), ("amp", True, False), ("amp_channels_last", True, True)):
        model = model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        _reset_peak(device)
        figures[f"train_images_per_s_{name}"] = round(train_images_per_second(model, batches, device, amp=amp, steps=steps, warmup=warmup), 1)
        figures[f"train_peak_mb_{name}"] = _peak_mb(device)
    model = model.to(memory_format=torch.contiguous_format)
    for amp in (False, True):
        for size in sizes:
            _reset_peak(device)
            key = f"infer_images_per_s_batch_{size}_{'amp' if amp else 'fp32'}"
            figures[key] = round(infer_images_per_second(model, images, device, amp=amp, batch_size=size), 1)
        figures[f"infer_peak_mb_batch_{max(sizes)}_{'amp' if amp else 'fp32'}"] = _peak_mb(device)
    return figures


def run(quick: bool) -> dict:
    if not torch.cuda.is_available() and not quick:
        print("gpu: no CUDA device here, nothing measured (run it where one is)")
        return {"cuda": False}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    figures: dict = {"cuda": device.type == "cuda", "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        for config in QUICK_CONFIGS if quick else CONFIGS:
            full = yaml.safe_load((REPO / "configs" / config).read_text())
            data_args = full["data"]["init_args"]
            single = bool(data_args.get("shapes_single_object"))
            if quick:
                root = tiny_shapes(Path(tmp) / ("single" if single else "multi"), single_object=single)
            else:
                root = shapes(REPO / "data" / ("shapes_single" if single else "shapes"), single_object=single)
            model_config = full["model"]["model"]
            model_config["init_args"]["num_classes"] = 4
            if "cache_dir" in model_config["init_args"]:
                model_config["init_args"]["cache_dir"] = None
            torch.manual_seed(0)
            figures[config.removesuffix(".yaml")] = measure(build_model(model_config), data_args, root, device, quick=quick)
        if not quick:  # torchvision's Faster R-CNN beside ours, inference only (its training API is the same loss dict)
            _, theirs = twin_models(128)
            images = [torch.rand(3, 128, 128) for _ in range(max(BATCH_SIZES) * INFER_BATCHES)]
            theirs = theirs.to(device)
            figures["torchvision_faster_rcnn"] = {
                f"infer_images_per_s_batch_{size}_{'amp' if amp else 'fp32'}": round(
                    infer_images_per_second(theirs, images, device, amp=amp, batch_size=size), 1)
                for amp in (False, True) for size in BATCH_SIZES
            }  # fmt: skip
    return figures
