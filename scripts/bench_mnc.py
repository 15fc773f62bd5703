"""MNC vs torchvision's Mask R-CNN on generated shapes with instance masks, from scratch, one time budget each.

    python scripts/bench_mnc.py                 # 15 minutes of training per model
    python scripts/bench_mnc.py --minutes 1     # a smoke run
    OMP_NUM_THREADS=2 python scripts/bench_mnc.py   # both cores to the one training (quiet machine, no loader workers)

For each config (``configs/mnc/shapes.yaml``, ``configs/mnc/shapes_maskrcnn.yaml``: the same
SmallCNN, tap and 128-px input): ``scripts/train.py fit`` in a subprocess with
``--trainer.max_time`` = the budget, then ``scripts/evaluate.py --checkpoint`` on the best
checkpoint and the shapes test split with the ``region`` (mAP^r at mask IoU 0.5 / 0.7) and
``coco_segm`` (COCO mask AP) protocols, and the inference time per image (batch 1, after
warm-up, the model's own transform). MNC's checkpoint is also scored with 3- vs 5-stage
inference and mask voting on / off, through ``evaluate.py --checkpoint --config <variant>.yaml``
(the variant's ``model.model`` rebuilds the network, the checkpoint fills its weights).
Run it on a quiet machine: other load changes every figure. Prints one table.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from bench_runs import epochs_done, fit  # scripts/ is on the path when this runs

REPO = Path(__file__).resolve().parents[1]
MNC_CONFIG = "configs/mnc/shapes.yaml"
MASK_RCNN_CONFIG = "configs/mnc/shapes_maskrcnn.yaml"
VARIANTS = {  # name -> MNC inference settings
    "3-stage, no voting": {"inference_stages": 3, "mask_voting": False},
    "3-stage, voting": {"inference_stages": 3, "mask_voting": True},
    "5-stage, no voting": {"inference_stages": 5, "mask_voting": False},
    "5-stage, voting": {"inference_stages": 5, "mask_voting": True},
}
SPEED_WARMUP, SPEED_IMAGES = 3, 30


def _evaluate(source: list[str], shapes: Path, protocol: str, report: Path) -> dict[str, float]:
    """``scripts/evaluate.py <source>`` on the shapes test split -> its metrics."""
    args = [
        sys.executable, str(REPO / "scripts" / "evaluate.py"), *source, "--shapes", str(shapes), "--split", "test",
        "--protocol", protocol, "--out", str(report), "--no-progress", "--gallery", "0",
    ]  # fmt: skip
    subprocess.run(args, cwd=REPO, check=True, capture_output=True, text=True)
    return json.loads((report / "metrics.json").read_text())


def _score(checkpoint: Path, shapes: Path, report: Path, config: Path | None) -> tuple[dict[str, float], dict[str, float]]:
    """Region AP from the checkpoint (``--checkpoint [--config]``), then COCO mask AP of the same
    predictions (``--predictions``, so the model runs once)."""
    model = ["--checkpoint", str(checkpoint), "--device", "cpu", *(["--config", str(config)] if config is not None else [])]
    region = _evaluate(model, shapes, "region", report / "region")
    predictions = report / "region" / "predictions" / "predictions.json"
    return region, _evaluate(["--predictions", str(predictions)], shapes, "coco_segm", report / "coco_segm")


def _variant_config(base: Path, settings: dict, path: Path) -> Path:
    """``base`` with ``settings`` in ``model.model.init_args``, written to ``path``."""
    config = yaml.safe_load(base.read_text())
    config["model"]["model"]["init_args"].update(settings)
    path.write_text(yaml.safe_dump({"model": {"model": config["model"]["model"]}}))
    return path


def _seconds_per_image(checkpoint: Path, shapes: Path, config: Path | None = None) -> float:
    sys.path.insert(0, str(REPO))
    from datasets.shapes import SHAPE_CLASSES
    from datasets.voc import VOCDetection
    from detection.checkpoint import load_detector

    model = load_detector(checkpoint, config=config).model  # in eval mode
    reader = VOCDetection(shapes / "VOC", "test", classes=list(SHAPE_CLASSES))
    images = [reader[i % len(reader)][0] for i in range(SPEED_WARMUP + SPEED_IMAGES)]
    with torch.inference_mode():
        for image in images[:SPEED_WARMUP]:
            model([image])
        start = time.perf_counter()
        for image in images[SPEED_WARMUP:]:
            model([image])
    return (time.perf_counter() - start) / SPEED_IMAGES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=15.0, help="training budget per model (--trainer.max_time)")
    parser.add_argument("--shapes", type=Path, default=REPO / "data" / "shapes", help="generated shapes root")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench_mnc", help="run directories go here")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers")
    args = parser.parse_args(argv)
    if (os.cpu_count() or 1) <= 2:
        os.environ.setdefault("OMP_NUM_THREADS", "1")  # see the README: 2 threads on 2 shared cores stall
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))

    rows = []  # (model, inference, epochs, minutes, map_r_50, map_r_70, segm AP, s/image)
    for name in (MNC_CONFIG, MASK_RCNN_CONFIG):
        config = (REPO / name).resolve()
        extra = [f"--data.init_args.num_workers={args.num_workers}", f"--data.init_args.root={args.shapes}"]
        started = time.perf_counter()
        run = fit(config, args.out / config.stem, args.minutes, extra)
        minutes = (time.perf_counter() - started) / 60
        best = run / "checkpoints" / "best.ckpt"
        variants = {"": None} if name == MASK_RCNN_CONFIG else {
            label: _variant_config(config, settings, run / f"variant_{i}.yaml") for i, (label, settings) in enumerate(VARIANTS.items())
        }  # fmt: skip
        for label, variant in variants.items():
            region, segm = _score(best, args.shapes, run / f"report_{list(variants).index(label)}", variant)
            rows.append((config.stem, label or "default", epochs_done(run), minutes, region["map_r_50"], region["map_r_70"],
                         segm["segm/map"], _seconds_per_image(best, args.shapes, variant)))  # fmt: skip
            print(" | ".join(str(v) for v in rows[-1]), flush=True)

    print(f"\nshapes test split, {args.minutes:g} min of training per model from scratch, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, s/image at batch 1 (128 px)")  # fmt: skip
    print(f"{'model':<16} {'inference':<20} {'epochs':>6} {'min':>5} {'mAP^r@0.5':>9} {'mAP^r@0.7':>9} {'segm AP':>8} {'s/img':>7}")
    for model, label, epochs, minutes, r50, r70, segm, speed in rows:
        print(f"{model:<16} {label:<20} {epochs:>6} {minutes:>5.1f} {r50:>9.3f} {r70:>9.3f} {segm:>8.3f} {speed:>7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
