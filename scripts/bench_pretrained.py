"""Fine-tuning from the ImageNet-pretrained EfficientNet-Lite0 on BCCD, in one time budget per config.

    python scripts/bench_pretrained.py                     # 10 minutes of training per config
    python scripts/bench_pretrained.py --minutes 0.5 --configs configs/faster_rcnn/bccd_pretrained.yaml

For each config: ``scripts/train.py fit`` (a subprocess, ``--trainer.max_time`` = the budget; the
config's own ``max_epochs`` still ends it earlier), then ``scripts/evaluate.py --checkpoint`` on
the best checkpoint (test mAP@0.5, VOC area AP, report beside the run), then inference images/s at BCCD size (640 x 480, batch 1, the model's
own transform, after warm-up). Default runs: Faster R-CNN pretrained; the same config from
random weights (``weights null``: what pretraining buys on the same network); the SmallCNN from
scratch (``configs/faster_rcnn/bccd.yaml``, the same input size and RPN/RoI settings, the best
from-scratch backbone we have); and YOLO with the paper's FC head and with per-cell 1 x 1
convolutions. Run it on a quiet machine: other load changes every figure. Prints one row per run.
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
RANDOM_INIT = ["--model.model.init_args.backbone.init_args.weights", "null"]
DEFAULT_RUNS = [  # (config, extra command-line overrides)
    ("configs/faster_rcnn/bccd_pretrained.yaml", []),
    ("configs/faster_rcnn/bccd_pretrained.yaml", RANDOM_INIT),
    ("configs/faster_rcnn/bccd.yaml", []),
    ("configs/yolo/bccd_pretrained.yaml", []),
    ("configs/yolo/bccd_pretrained_conv.yaml", []),
]
BCCD_SIZE = (480, 640)  # (H, W)
SPEED_WARMUP, SPEED_IMAGES = 3, 20


def _test_map(config: Path, checkpoint: Path, report: Path) -> float:
    """Test mAP@0.5 of ``checkpoint`` on the config's VOC-layout test split (``scripts/evaluate.py --checkpoint``)."""
    data = yaml.safe_load(config.read_text())["data"]["init_args"]
    args = [
        sys.executable, str(REPO / "scripts" / "evaluate.py"), "--checkpoint", str(checkpoint), "--voc", str(REPO / data["root"]),
        "--split", data.get("test_split", "test"), "--protocol", "voc", "--out", str(report), "--no-progress",
    ]  # fmt: skip
    subprocess.run(args, cwd=REPO, check=True, capture_output=True, text=True)
    return float(json.loads((report / "metrics.json").read_text())["map_50"])


def _images_per_second(checkpoint: Path) -> float:
    sys.path.insert(0, str(REPO))
    from detection.checkpoint import load_detector  # noqa: PLC0415 (the repo is on the path only here)

    model = load_detector(checkpoint).model  # in eval mode
    image = torch.rand(3, *BCCD_SIZE)
    with torch.no_grad():
        for _ in range(SPEED_WARMUP):
            model([image])
        start = time.perf_counter()
        for _ in range(SPEED_IMAGES):
            model([image])
    return SPEED_IMAGES / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget per config (--trainer.max_time)")
    parser.add_argument("--configs", nargs="+", default=None, help="configs to train, in order (default: the runs above)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench_pretrained", help="run directories go here")
    parser.add_argument("--num-workers", type=int, default=1, help="DataLoader workers")
    args = parser.parse_args(argv)
    if (os.cpu_count() or 1) <= 2:
        os.environ.setdefault("OMP_NUM_THREADS", "1")  # see the README: 2 threads on 2 shared cores stall

    runs = DEFAULT_RUNS if args.configs is None else [(name, []) for name in args.configs]
    rows = []
    for name, overrides in runs:
        config = (REPO / name).resolve()
        run_root = args.out / config.parent.name / (config.stem + ("_random_init" if overrides == RANDOM_INIT else ""))
        extra = [f"--data.init_args.num_workers={args.num_workers}", *overrides]
        name += " (weights null)" if overrides == RANDOM_INIT else ""
        started = time.perf_counter()
        run = fit(config, run_root, args.minutes, extra)
        trained = time.perf_counter() - started
        best = run / "checkpoints" / "best.ckpt"
        rows.append((name, epochs_done(run), trained / 60, _test_map(config, best, run / "report"), _images_per_second(best)))
        print(f"{name}: {rows[-1][1]} epochs in {rows[-1][2]:.1f} min, test mAP@0.5 {rows[-1][3]:.3f}, "
              f"{rows[-1][4]:.2f} images/s", flush=True)

    print(f"\nBCCD, {args.minutes:g} min of training per config, test split, {BCCD_SIZE[1]}x{BCCD_SIZE[0]} images/s (batch 1)")
    print(f"{'config':<60} {'epochs':>6} {'min':>5} {'mAP@0.5':>8} {'img/s':>7}")
    for name, epochs, minutes, map50, speed in rows:
        print(f"{name:<60} {epochs:>6} {minutes:>5.1f} {map50:>8.3f} {speed:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
