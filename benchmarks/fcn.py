"""FCN-32s vs 16s vs 8s on the shapes semantic masks, from scratch: test mean IU side by side.

Each variant trains with ``configs/fcn/shapes.yaml`` (same backbone, schedule and data: only
``variant`` changes) through ``scripts/train.py fit`` and is scored on the test split by
``scripts/evaluate.py --checkpoint`` (the confusion-matrix evaluator). The paper's ordering is
8s >= 16s >= 32s.
"""

import tempfile
from pathlib import Path

from benchmarks.runs import QUICK_TRAIN, REPO, epochs_done, evaluate_checkpoint, fit, shapes, tiny_shapes

CONFIG = REPO / "configs" / "fcn" / "shapes.yaml"
VARIANTS = ("32s", "16s", "8s")


def run(quick: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_fcn_") as tmp:
        work = Path(tmp)
        root = tiny_shapes(work / "shapes") if quick else shapes()
        figures = {}
        for variant in VARIANTS[-1:] if quick else VARIANTS:  # quick: the same path, once
            extra = ["--model.model.init_args.variant", variant, "--data.init_args.root", str(root),
                     *(QUICK_TRAIN if quick else [])]  # fmt: skip
            run_dir, seconds = fit(CONFIG, work / variant, extra)
            best = run_dir / "checkpoints" / "best.ckpt"
            metrics = evaluate_checkpoint(best, ["--shapes", str(root), "--split", "test"], work / variant / "report")
            figures[variant] = {
                "mean_iou": round(metrics["mean_iou"], 4),
                "pixel_accuracy": round(metrics["pixel_accuracy"], 4),
                "epochs": epochs_done(run_dir),
                "train_min": round(seconds / 60, 2),
            }
    return figures
