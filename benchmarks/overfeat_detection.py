"""OverFeat detection mode on the generated multi-object shapes: test mAP@0.5 per test setting.

``configs/overfeat/shapes_detection.yaml`` trains through ``scripts/train.py fit`` on the
generated shapes (``data/shapes``) within 15 minutes of wall time (``--trainer.max_time``; the
config itself ends by epochs), into a temporary directory. The best checkpoint (``last.ckpt``
when no validation ran within the budget) runs once per test image and view (scale x flip), and
the cached views are merged for each test setting (one scale vs the configured scales, without
and with flips; ``benchmarks/overfeat_localization.py``) and scored with ``VOCEvaluator``. The
issue's goal is mAP@0.5 >= 0.60 with the configured test settings (``multi_scale_flips_merge``).

    OMP_NUM_THREADS=1 python -m benchmarks run overfeat_detection [--quick]

Figures: ``map_50.<setting>``, ``epochs``, ``train_min``, ``test_scales``.
"""

import tempfile
from pathlib import Path

from benchmarks.overfeat_localization import cache_views, score, split_reader, train, view_settings
from benchmarks.runs import REPO, shapes, tiny_shapes
from datasets.shapes import SHAPE_CLASSES
from detection.checkpoint import load_detector
from detection.evaluation import VOCEvaluator
from detection.overfeat import OverFeat

CONFIG = REPO / "configs" / "overfeat" / "shapes_detection.yaml"
MINUTES = 15.0
GOAL = 0.60  # the issue: mAP@0.5 on multi-object shapes


def run(quick: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_overfeat_detection_") as tmp:
        work = Path(tmp)
        root = tiny_shapes(work / "shapes") if quick else shapes()
        checkpoint, figures = train(CONFIG, root, work, minutes=MINUTES, quick=quick)
        model = load_detector(checkpoint).model.eval()
        if not isinstance(model, OverFeat):
            raise TypeError(f"{CONFIG}: not an OverFeat model ({type(model).__name__})")
        views, targets = cache_views(model, split_reader(root, "test"))
        evaluator = VOCEvaluator(classes=list(SHAPE_CLASSES))
        figures["test_scales"] = list(model.test_scales)
        figures["map_50"] = {
            setting: round(score(model, views, targets, evaluator, keep=keep)["map_50"], 4)
            for setting, keep in view_settings(model).items()
        }
    return figures
