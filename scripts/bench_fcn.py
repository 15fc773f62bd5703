"""FCN-32s vs 16s vs 8s on the shapes semantic masks, trained from scratch: mean IU side by side.

Each variant trains with ``configs/fcn/shapes.yaml`` (same backbone, schedule and budget) and is
scored on the test split by the confusion-matrix evaluator (``segmentation/metrics.py``). With
``--staged`` the 16s starts from the trained 32s and the 8s from the 16s, as in the paper.

    OMP_NUM_THREADS=1 python scripts/bench_fcn.py            # direct: about 6 minutes per variant
    OMP_NUM_THREADS=1 python scripts/bench_fcn.py --staged

One thread per process is the fastest setting on a 2-core machine with anything else running
(two threads then wait on each other); with the machine to itself two threads help a little.
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import train  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "fcn" / "shapes.yaml"
VARIANTS = ("32s", "16s", "8s")
ORDER_TOLERANCE = 0.01  # a step down within 0.01 still counts as the paper's ordering


def train_and_test(variant: str, args: argparse.Namespace, init_from: str | None) -> tuple[dict[str, float], str, float]:
    overrides = [
        "--model.model.init_args.variant", variant, "--data.init_args.root", str(args.data),
        "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(args.runs),
        "--trainer.logger.init_args.save_dir", str(args.runs), "--trainer.logger.init_args.name", f"fcn_{variant}",
    ]
    if args.epochs:
        overrides += ["--trainer.max_epochs", str(args.epochs)]
    if init_from:
        overrides += ["--model.init_from", init_from]
    start = time.perf_counter()
    cli = train.main(["fit", "--config", str(CONFIG), "--trainer.logger", "lightning.pytorch.loggers.CSVLogger", *overrides])
    seconds = time.perf_counter() - start
    best = cli.trainer.checkpoint_callback.best_model_path
    metrics = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=best, verbose=False)[0]
    return {k.removeprefix("test/"): float(v) for k, v in metrics.items()}, best, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/shapes"), help="shapes root (generated if missing)")
    parser.add_argument("--runs", type=Path, default=Path("runs/bench_fcn"))
    parser.add_argument("--epochs", type=int, default=None, help="override the config's max_epochs")
    parser.add_argument("--staged", action="store_true", help="16s from the trained 32s, 8s from the 16s")
    args = parser.parse_args()

    results: dict[str, tuple[dict[str, float], float]] = {}
    previous = None
    for variant in VARIANTS:
        metrics, best, seconds = train_and_test(variant, args, previous if args.staged else None)
        results[variant] = (metrics, seconds)
        previous = best
    classes = sorted(k.removeprefix("iou/") for k in results["8s"][0] if k.startswith("iou/"))
    print(f"\nFCN on shapes test ({'staged' if args.staged else 'each trained directly'}):")
    print(f"{'variant':8} {'mean IU':>8} {'pixel acc':>10} {'fw IU':>7} {'train s':>8}  " + " ".join(f"{c:>10}" for c in classes))
    for variant, (m, seconds) in results.items():
        per_class = " ".join(f"{m['iou/' + c]:10.3f}" for c in classes)
        print(f"{variant:8} {m['mean_iou']:8.3f} {m['pixel_accuracy']:10.3f} {m['fw_iou']:7.3f} {seconds:8.0f}  {per_class}")
    ious = [results[v][0]["mean_iou"] for v in VARIANTS]
    holds = all(finer >= coarser - ORDER_TOLERANCE for coarser, finer in zip(ious, ious[1:]))
    print(f"8s mean IU >= 0.75: {ious[2] >= 0.75}; ordering 8s >= 16s >= 32s (within {ORDER_TOLERANCE}): {holds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
