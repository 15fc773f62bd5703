"""MNC vs torchvision's Mask R-CNN on generated shapes with instance masks, from scratch, one time budget each.

For each config (``configs/mnc/shapes.yaml``, ``configs/mnc/shapes_maskrcnn.yaml``: the same
SmallCNN, tap and 128-px input): ``scripts/train.py fit`` in a subprocess on the generated shapes
(``data/shapes``, no loader workers) within 15 minutes of wall time (``--trainer.max_time``),
then ``scripts/evaluate.py --checkpoint`` on the best checkpoint and the test split with the
``region`` protocol (mAP^r at mask IoU 0.5 / 0.7), the same predictions rescored with
``coco_segm`` (COCO mask AP, ``evaluate.py --predictions``: the model runs once), and the
inference time per image (batch 1, 30 test images after 3 warm-up ones, the model's own
transform). MNC's checkpoint is scored with 3- vs 5-stage inference and mask voting on / off,
through ``evaluate.py --checkpoint --config <variant>.yaml`` (the variant's ``model.model``
rebuilds the network, the checkpoint fills its weights). Run it on a quiet machine with one
thread per process (2 threads on 2 shared cores stall): other load changes every figure.

    OMP_NUM_THREADS=1 python -m benchmarks run mnc [--quick]

Figures: ``mnc.variants.<variant>`` and ``mask_rcnn``, each ``{map_r_50, map_r_70, segm_map,
s_per_image}``, with ``epochs`` and ``train_min`` per model (variants ``3_stage``,
``3_stage_voting``, ``5_stage``, ``5_stage_voting``). The quick run trains MNC only, scores one
variant and skips the ``coco_segm`` rescoring (one more process).
"""

import json
import tempfile
from pathlib import Path

import yaml

from benchmarks.runs import QUICK_TRAIN, REPO, epochs_done, evaluate_checkpoint, fit, run_script, shapes, tiny_shapes
from benchmarks.timing import seconds_per_image
from datasets.shapes import SHAPE_CLASSES
from datasets.voc import VOCDetection
from detection.checkpoint import load_detector

MNC_CONFIG = REPO / "configs" / "mnc" / "shapes.yaml"
MASK_RCNN_CONFIG = REPO / "configs" / "mnc" / "shapes_maskrcnn.yaml"
MINUTES = 15.0  # training budget per model
VARIANTS = {  # name -> MNC inference settings
    "3_stage": {"inference_stages": 3, "mask_voting": False},
    "3_stage_voting": {"inference_stages": 3, "mask_voting": True},
    "5_stage": {"inference_stages": 5, "mask_voting": False},
    "5_stage_voting": {"inference_stages": 5, "mask_voting": True},
}
SPEED_WARMUP, SPEED_IMAGES = 3, 30


def variant_config(base: Path, settings: dict, path: Path) -> Path:
    """``base`` with ``settings`` in ``model.model.init_args``, written to ``path`` (only ``model.model``)."""
    config = yaml.safe_load(base.read_text())
    config["model"]["model"]["init_args"].update(settings)
    path.write_text(yaml.safe_dump({"model": {"model": config["model"]["model"]}}))
    return path


def scores(checkpoint: Path, root: Path, report: Path, config: Path | None, *, rescore: bool) -> dict[str, float]:
    """Region AP from the checkpoint (``--checkpoint [--config]``), then (``rescore``) COCO mask AP of
    the same predictions (``--predictions``, so the model runs once)."""
    split = ["--shapes", str(root), "--split", "test", "--gallery", "0"]
    model = ["--device", "cpu", *(["--config", str(config)] if config is not None else [])]
    region = evaluate_checkpoint(checkpoint, [*split, "--protocol", "region", *model], report / "region")
    figures = {"map_r_50": round(region["map_r_50"], 4), "map_r_70": round(region["map_r_70"], 4)}
    if rescore:
        predictions = report / "region" / "predictions" / "predictions.json"
        run_script("evaluate.py", ["--predictions", str(predictions), *split, "--protocol", "coco_segm",
                                   "--out", str(report / "coco_segm"), "--no-progress"])  # fmt: skip
        segm = json.loads((report / "coco_segm" / "metrics.json").read_text())
        figures["segm_map"] = round(segm["segm/map"], 4)
    return figures


def seconds_per_test_image(checkpoint: Path, root: Path, config: Path | None, *, warmup: int, images: int) -> float:
    """Batch-1 inference seconds per test image of the checkpoint's model (rebuilt by ``config`` if given)."""
    model = load_detector(checkpoint, config=config).model  # in eval mode
    reader = VOCDetection(root / "VOC", "test", classes=list(SHAPE_CLASSES))
    pictures = [reader[i % len(reader)][0] for i in range(images)]
    return seconds_per_image(lambda image: model([image]), pictures, warmup=warmup)


def run(quick: bool) -> dict:
    figures = {}
    with tempfile.TemporaryDirectory(prefix="bench_mnc_") as tmp:
        work = Path(tmp)
        root = tiny_shapes(work / "shapes") if quick else shapes()
        warmup, images = (1, 2) if quick else (SPEED_WARMUP, SPEED_IMAGES)
        for name, config in (("mnc", MNC_CONFIG), ("mask_rcnn", MASK_RCNN_CONFIG))[: 1 if quick else 2]:
            extra = ["--data.init_args.num_workers=0", f"--data.init_args.root={root}", *(QUICK_TRAIN if quick else [])]
            run_dir, seconds = fit(config, work / config.stem, extra, minutes=MINUTES)
            best = run_dir / "checkpoints" / "best.ckpt"
            model = {"epochs": epochs_done(run_dir), "train_min": round(seconds / 60, 2)}
            if config == MASK_RCNN_CONFIG:
                variants = {"": None}
            else:
                chosen = list(VARIANTS.items())[-1:] if quick else VARIANTS.items()
                variants = {label: variant_config(config, settings, run_dir / f"{label}.yaml") for label, settings in chosen}
            for label, variant in variants.items():
                row = scores(best, root, run_dir / f"report_{label or 'default'}", variant, rescore=not quick)
                row["s_per_image"] = round(seconds_per_test_image(best, root, variant, warmup=warmup, images=images), 4)
                if label:
                    model.setdefault("variants", {})[label] = row
                else:
                    model.update(row)
            figures[name] = model
    return figures
