"""YOLO v1 learning on the generated shapes: trained from scratch within the demo budget, test mAP@0.5.

``configs/yolo/shapes.yaml`` trains through ``scripts/train.py fit`` for at most 8 minutes of wall
time (the config's 36-epoch cosine schedule; validation every 5 epochs), then
``scripts/evaluate.py --checkpoint`` scores ``best.ckpt`` on the test split (VOC area AP, the
config's evaluator). ``benchmarks/yolo_speed.py`` times it against Faster R-CNN;
``benchmarks/fast_yolo.py`` runs the same for Fast YOLO.

    OMP_NUM_THREADS=1 python -m benchmarks run yolo [--quick]

Figures: ``test_map_50``, ``val_map_50`` (by epoch), ``epochs``, ``train_min`` (the fit command's
wall time, validation and start-up included), ``train_loss_terms`` (by epoch: the five terms of
eq. 3 per image, averaged over the epoch's training steps).
"""

import csv
import tempfile
from pathlib import Path

from benchmarks.runs import QUICK_TRAIN, REPO, epochs_done, evaluate_checkpoint, fit, shapes, tiny_shapes

CONFIG = REPO / "configs" / "yolo" / "shapes.yaml"
MINUTES = 8.0  # the demo budget


LOSS_TERMS = ("class", "coord", "size", "obj", "noobj")


def val_map_by_epoch(run_dir: Path) -> dict[str, float]:
    """``{epoch: val map_50}`` from the run's ``metrics.csv``."""
    with open(run_dir / "metrics.csv", newline="") as f:
        return {r["epoch"]: round(float(r["val/map_50"]), 4) for r in csv.DictReader(f) if r.get("val/map_50")}


def loss_terms_by_epoch(run_dir: Path) -> dict[str, dict[str, float]]:
    """``{epoch: {term: training loss}}`` from the run's ``metrics.csv`` (the epoch means)."""
    with open(run_dir / "metrics.csv", newline="") as f:
        return {
            r["epoch"]: {t: round(float(r[f"train/loss_{t}_epoch"]), 3) for t in LOSS_TERMS}
            for r in csv.DictReader(f)
            if r.get("train/loss_class_epoch")
        }


def run(quick: bool) -> dict:
    return train_and_score(CONFIG, quick)


def train_and_score(config: Path, quick: bool) -> dict:
    """Train ``config`` on the shapes within ``MINUTES``, then score its ``best.ckpt`` on the test split."""
    with tempfile.TemporaryDirectory(prefix="bench_yolo_") as tmp:
        work = Path(tmp)
        root = tiny_shapes(work / "shapes") if quick else shapes()
        extra = ["--data.init_args.root", str(root)]
        if quick:
            extra += [*QUICK_TRAIN, "--trainer.check_val_every_n_epoch", "1"]  # a best.ckpt after the one epoch
        run_dir, seconds = fit(config, work / "run", extra, minutes=MINUTES)
        test_split = ["--shapes", str(root), "--split", "test"]
        metrics = evaluate_checkpoint(run_dir / "checkpoints" / "best.ckpt", test_split, work / "report")
        return {
            "test_map_50": round(metrics["map_50"], 4),
            "val_map_50": val_map_by_epoch(run_dir),
            "train_loss_terms": loss_terms_by_epoch(run_dir),
            "epochs": epochs_done(run_dir),
            "train_min": round(seconds / 60, 2),
        }
