"""YOLO v1 benchmarks: learning on generated shapes through Lightning, and inference speed vs Faster R-CNN.

    # learning: train from scratch within the demo budget, then test mAP@0.5 (VOC area AP)
    python scripts/bench_yolo.py learn --config configs/yolo/shapes.yaml [-- --model.lr 0.02 ...]
    # speed: images per second, YOLO vs Faster R-CNN on the same backbone and input size
    python scripts/bench_yolo.py speed --config configs/yolo/shapes.yaml --batch-sizes 1 8

``learn`` runs ``scripts/train.py fit`` and ``test`` (the shared LightningCLI) and prints the
training wall time and the validation / test ``map_50`` it logged.

``speed`` times ``model(images)`` in eval mode (``torch.inference_mode``, the given number of
threads), counting the model-side transform and the postprocessing. YOLO is built from
``--config``; ``detection.faster_rcnn.FasterRCNN`` from ``--faster-config`` (anchors, proposal
counts, RoI head) with YOLO's backbone, tap and fixed input size swapped in. Weights are
random (nothing is downloaded), so both run their full test-time path: Faster R-CNN sends its
configured test proposals through the RoI head; YOLO decodes its S*S*B boxes and thresholds
at the configured score.
"""

import argparse
import csv
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch  # noqa: E402
import yaml  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from detection.checkpoint import build_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- learning
def _latest_run(save_dir: Path, name: str) -> Path:
    versions = sorted((save_dir / name).glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    if not versions:
        raise FileNotFoundError(f"no run under {save_dir / name}")
    return versions[-1]


def _metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def learn(args: argparse.Namespace) -> None:
    train = [sys.executable, str(REPO / "scripts" / "train.py")]
    extra = ["--trainer.max_time", args.max_time, *args.overrides]
    start = time.perf_counter()
    subprocess.run([*train, "fit", "--config", args.config, *extra], check=True, cwd=REPO)
    fit_s = time.perf_counter() - start
    logger = yaml.safe_load(Path(REPO / args.config).read_text())["trainer"]["logger"][0]["init_args"]
    run = _latest_run(REPO / logger["save_dir"], logger["name"])
    rows = _metrics(run)
    val = [(r.get("epoch"), float(r["val/map_50"])) for r in rows if r.get("val/map_50")]
    train_time = [float(r["train_time_s"]) for r in rows if r.get("train_time_s")]
    best = run / "checkpoints" / "best.ckpt"
    subprocess.run([*train, "test", "--config", args.config, *extra, "--ckpt_path", str(best)], check=True, cwd=REPO)
    test_rows = _metrics(_latest_run(REPO / logger["save_dir"], logger["name"]))
    test_map = [float(r["test/map_50"]) for r in test_rows if r.get("test/map_50")]
    print(f"\nrun: {run}")
    print(f"fit wall time (incl. validation and start-up): {fit_s:.0f} s  (budget {args.max_time})")
    if train_time:
        print(f"training time logged: {train_time[-1]:.0f} s")
    print("val map_50 by epoch: " + ", ".join(f"{e}: {m:.3f}" for e, m in val))
    print(f"test map_50 (best.ckpt): {test_map[-1]:.4f}" if test_map else "test map_50: not logged")


# ----------------------------------------------------------------------------- speed
def _model_config(config: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / config).read_text())["model"]["model"]


def _faster_config_like(shared: dict[str, Any], faster_config: str) -> dict[str, Any]:
    """Faster R-CNN's model config with YOLO's backbone, tap and fixed input size (``shared``) swapped in."""
    faster_cfg = _model_config(faster_config)
    size = shared["image_size"]
    faster_cfg["init_args"].update(backbone=shared["backbone"], feature=shared["feature"], min_size=size, max_size=size)
    return faster_cfg


def _images_per_second(model: nn.Module, images: list[Tensor], *, batch_size: int, warmup: int, repeats: int) -> float:
    batches = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
    with torch.inference_mode():
        for batch in batches[:warmup]:
            model(batch)
        best = float("inf")
        for _ in range(repeats):  # best of `repeats` passes over the images: least disturbed by other load
            start = time.perf_counter()
            for batch in batches:
                model(batch)
            best = min(best, time.perf_counter() - start)
    return len(images) / best


def speed(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    yolo_cfg = _model_config(args.config)
    shared, size = yolo_cfg["init_args"], yolo_cfg["init_args"]["image_size"]
    yolo = build_model(yolo_cfg).eval()
    frcnn = build_model(_faster_config_like(shared, args.faster_config)).eval()
    images = [torch.rand(3, size, size) for _ in range(args.images)]
    print(f"backbone {shared['backbone']} tap {shared['feature']}, input {size} px, {args.images} images, "
          f"{args.threads} threads")
    print(f"YOLO: {args.config}; Faster R-CNN: {args.faster_config} with the same backbone, tap and size")
    print(f"{'batch':>5} {'YOLO img/s':>11} {'Faster R-CNN img/s':>19} {'ratio':>6}")
    for bs in args.batch_sizes:
        y = _images_per_second(yolo, images, batch_size=bs, warmup=args.warmup, repeats=args.repeats)
        f = _images_per_second(frcnn, images, batch_size=bs, warmup=args.warmup, repeats=args.repeats)
        print(f"{bs:>5} {y:>11.1f} {f:>19.1f} {y / f:>5.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("learn", help="train through scripts/train.py and report mAP@0.5")
    p.add_argument("--config", default="configs/yolo/shapes.yaml")
    p.add_argument("--max-time", default="00:00:08:00", help="trainer.max_time (DD:HH:MM:SS)")
    p.add_argument("overrides", nargs="*", help="extra train.py overrides, after --, e.g. -- --model.lr 0.02")
    p.set_defaults(func=learn)
    p = sub.add_parser("speed", help="inference images/s, YOLO vs Faster R-CNN")
    p.add_argument("--config", default="configs/yolo/shapes.yaml", help="the YOLO model (and backbone, size)")
    p.add_argument("--faster-config", default="configs/faster_rcnn/shapes.yaml", help="the Faster R-CNN head")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(func=speed)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
