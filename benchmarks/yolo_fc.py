"""The paper's fully connected YOLO v1 head on the generated shapes: the YOLO v1 benchmark on
``configs/yolo/shapes_fc.yaml``.

The same run as ``benchmarks/yolo.py`` (at most 8 minutes of ``scripts/train.py fit``, then
``scripts/evaluate.py --checkpoint`` on ``best.ckpt`` and the test split), with the head of the
paper: two fully connected layers (4096 hidden units, dropout 0.5) where ``configs/yolo/shapes.yaml``
shares them over the cells as 1 x 1 convolutions. Together the two runs measure that deviation.

    OMP_NUM_THREADS=1 python -m benchmarks run yolo_fc [--quick]

Figures: those of ``yolo``: ``test_map_50``, ``val_map_50`` (by epoch), ``epochs``, ``train_min``,
``train_loss_terms`` (by epoch).
"""

from benchmarks.runs import REPO
from benchmarks.yolo import train_and_score

CONFIG = REPO / "configs" / "yolo" / "shapes_fc.yaml"


def run(quick: bool) -> dict:
    return train_and_score(CONFIG, quick)
