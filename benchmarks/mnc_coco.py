"""MNC vs torchvision's Mask R-CNN on real photographs: COCO people, fine-tuned from ImageNet.

For each config (``configs/mnc/coco_person_pretrained.yaml`` and its ``_maskrcnn`` twin: the same
EfficientNet-Lite0 with frozen BatchNorm, tap ``c4``, input size and recipe): ``scripts/train.py
fit`` in a subprocess on ``../shared/data/coco_mini`` restricted to ``person`` (36 train2017
images) within 15 minutes of wall time (``--trainer.max_time``; the configs end by epochs, sized
to fit), then ``scripts/evaluate.py --checkpoint last.ckpt`` on val2017 (39 images with people;
the last checkpoint, as val2017 is the scored split) with ``coco_segm`` (COCO box and mask AP),
the same predictions rescored with ``region`` (mAP^r at mask IoU 0.5 / 0.7, MNC's protocol), and
the inference time per image (batch 1, the model's own transform, 10 val images after 2 warm-up
ones), in all and per stage (``benchmarks.timing.seconds_in``; training time includes each
validation, every 6 epochs). Run it on a quiet machine with one thread per process:

    OMP_NUM_THREADS=1 python -m benchmarks run mnc_coco [--quick]

Figures: ``mnc`` and ``mask_rcnn``, each ``{epochs, train_min, segm_map, segm_map_50, bbox_map_50,
map_r_50, map_r_70, s_per_image, s_per_image_by_stage}``, ``mnc_minus_mask_rcnn_segm_map_50`` and
``mnc_over_mask_rcnn`` (training seconds per epoch, inference seconds per image). The quick run
trains MNC for two batches, scores two val2017 images (tiny generated shapes when
``../shared/data`` is absent) and skips the region rescoring.
"""

import json
import tempfile
from pathlib import Path

from benchmarks.runs import QUICK_TRAIN, REPO, epochs_done, evaluate_checkpoint, fit, run_script, tiny_shapes
from torch import nn

from benchmarks.timing import seconds_in, seconds_per_image
from datasets.split_source import SplitSource, open_split
from detection.checkpoint import load_detector
from detection.mnc import MNC

COCO_MINI = REPO.parent / "shared" / "data" / "coco_mini"
CONFIGS = {
    "mnc": REPO / "configs" / "mnc" / "coco_person_pretrained.yaml",
    "mask_rcnn": REPO / "configs" / "mnc" / "coco_person_pretrained_maskrcnn.yaml",
}
MINUTES = 15.0  # training budget per model
SPEED_WARMUP, SPEED_IMAGES = 2, 10
QUICK_VAL_IMAGES = 2  # the quick run scores the first val2017 images only


def first_images(annotations: Path, out: Path, count: int) -> Path:
    """A copy of a COCO annotation file with its first ``count`` images and their annotations, at ``out``."""
    data = json.loads(annotations.read_text())
    kept = data["images"][:count]
    ids = {image["id"] for image in kept}
    out.write_text(json.dumps({**data, "images": kept, "annotations": [a for a in data["annotations"] if a["image_id"] in ids]}))
    return out


def data_arguments(work: Path, quick: bool) -> tuple[list[str], list[str], SplitSource]:
    """``(train.py overrides, evaluate.py data arguments, the scored split)``: COCO people, or tiny
    shapes for a quick run without ``../shared/data``."""
    if COCO_MINI.is_dir():
        annotations, images = COCO_MINI / "annotations" / "instances_val2017.json", COCO_MINI / "val2017"
        if quick:
            annotations = first_images(annotations, work / "instances_val_quick.json", QUICK_VAL_IMAGES)
        data = ["--coco-ann", str(annotations), "--images", str(images), "--classes", "person"]
        return [], data, SplitSource(coco_ann=annotations, images=images, classes=("person",))
    if not quick:
        raise FileNotFoundError(f"coco_mini is missing: {COCO_MINI} (from ../shared/data)")
    root = tiny_shapes(work / "shapes")
    overrides = [f"--data.init_args.{key}={value}" for key, value in
                 (("format", "shapes"), ("root", root), ("classes", "null"), ("train_split", "train"),
                  ("val_split", "val"), ("test_split", "test"))]  # fmt: skip
    return overrides, ["--shapes", str(root), "--split", "test"], SplitSource(shapes=root, split="test")


def inference_stages(model: nn.Module) -> dict[str, tuple[object, str]]:
    """The parts of one inference pass to time (``benchmarks.timing.seconds_in``), per model."""
    if isinstance(model, MNC):
        return {
            "resize": (model.transform, "forward"), "backbone": (model.backbone, "forward"), "rpn": (model.rpn, "forward"),
            "stages_3_and_5": (model, "_candidates"), "nms_and_voting": (model, "_select"), "paste": (model, "_postprocess"),
        }  # fmt: skip
    detector = model.detector  # torchvision's MaskRCNN
    return {
        "resize": (detector.transform, "forward"), "backbone": (detector.backbone, "forward"), "rpn": (detector.rpn, "forward"),
        "roi_heads": (detector.roi_heads, "forward"), "paste": (detector.transform, "postprocess"),
    }  # fmt: skip


def inference_seconds(
    checkpoint: Path, source: SplitSource, *, warmup: int, images: int, config: Path | None = None
) -> tuple[float, dict[str, float]]:
    """Batch-1 inference seconds per image of the scored split, in all and per stage (the model
    rebuilt from ``config`` when given, e.g. other inference settings, as ``evaluate.py --config``)."""
    model = load_detector(checkpoint, config=config).model  # in eval mode
    reader = open_split(source, task="detection").reader
    pictures = [reader[i % len(reader)][0] for i in range(images)]
    seconds_per_image(lambda image: model([image]), pictures[:warmup], warmup=0)  # the warm-up, off the stage clocks
    with seconds_in(inference_stages(model)) as stages:
        total = seconds_per_image(lambda image: model([image]), pictures, warmup=0)
    return total, {name: round(seconds / images, 4) for name, seconds in stages.items()}


def run(quick: bool) -> dict:
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench_mnc_coco_") as tmp:
        work = Path(tmp)
        overrides, data, source = data_arguments(work, quick)
        warmup, images = (1, 2) if quick else (SPEED_WARMUP, SPEED_IMAGES)
        for name, config in list(CONFIGS.items())[: 1 if quick else None]:
            extra = ["--data.init_args.num_workers=1", *overrides, *(QUICK_TRAIN if quick else [])]
            run_dir, seconds = fit(config, work / name, extra, minutes=MINUTES)
            last = run_dir / "checkpoints" / "last.ckpt"
            report = run_dir / "report"
            segm = evaluate_checkpoint(last, [*data, "--protocol", "coco_segm"], report / "coco_segm")
            row = {
                "epochs": epochs_done(run_dir),
                "train_min": round(seconds / 60, 2),
                "segm_map": round(segm["segm/map"], 4),
                "segm_map_50": round(segm["segm/map_50"], 4),
                "bbox_map_50": round(segm["map_50"], 4),
            }
            if not quick:
                predictions = report / "coco_segm" / "predictions" / "predictions.json"
                run_script("evaluate.py", ["--predictions", str(predictions), *data, "--protocol", "region",
                                           "--out", str(report / "region"), "--no-progress"])  # fmt: skip
                region = json.loads((report / "region" / "metrics.json").read_text())
                row |= {"map_r_50": round(region["map_r_50"], 4), "map_r_70": round(region["map_r_70"], 4)}
            total, stages = inference_seconds(last, source, warmup=warmup, images=images)
            row |= {"s_per_image": round(total, 4), "s_per_image_by_stage": stages}
            figures[name] = row
    if not quick:
        mnc, mask_rcnn = figures["mnc"], figures["mask_rcnn"]
        figures["mnc_minus_mask_rcnn_segm_map_50"] = round(mnc["segm_map_50"] - mask_rcnn["segm_map_50"], 4)
        figures["mnc_over_mask_rcnn"] = {
            "train_s_per_epoch": round((mnc["train_min"] / mnc["epochs"]) / (mask_rcnn["train_min"] / mask_rcnn["epochs"]), 2),
            "s_per_image": round(mnc["s_per_image"] / mask_rcnn["s_per_image"], 2),
        }
    return figures
