"""Fast YOLO learning on the generated shapes: the YOLO v1 benchmark on ``configs/fast_yolo/shapes.yaml``.

The same run as ``benchmarks/yolo.py`` (at most 8 minutes of ``scripts/train.py fit``, then
``scripts/evaluate.py --checkpoint`` on ``best.ckpt`` and the test split) for the smaller network:
the c4 tap and one 64-channel head convolution (the paper's Fast YOLO has 9 conv layers instead
of 24).

    OMP_NUM_THREADS=1 python -m benchmarks run fast_yolo [--quick]

Figures: those of ``yolo``: ``test_map_50``, ``val_map_50`` and ``train_loss_terms`` (by epoch),
``epochs``, ``train_min``.
"""

from benchmarks.runs import REPO
from benchmarks.yolo import train_and_score

CONFIG = REPO / "configs" / "fast_yolo" / "shapes.yaml"


def run(quick: bool) -> dict:
    return train_and_score(CONFIG, quick)
