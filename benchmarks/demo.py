"""``make demo`` as a fresh clone runs it: seconds per step (data, check, train, evaluate, predict) and test mAP@0.5.

Runs ``scripts/demo.py`` with the default config (``configs/faster_rcnn/shapes.yaml``) on a
shapes dataset generated into a temporary directory, so the data step is timed as on a fresh
clone, and reads the ``summary.json`` it writes. ``--config`` and ``--out`` are given relative to
another working directory. Quick: one epoch of two batches on tiny shapes.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from benchmarks.runs import REPO, tiny_shapes

CONFIG = REPO / "configs" / "faster_rcnn" / "shapes.yaml"


def run(quick: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_demo_") as tmp:
        work = Path(tmp)
        config = yaml.safe_load(CONFIG.read_text())
        config["data"]["init_args"]["root"] = str(tiny_shapes(work / "shapes") if quick else work / "shapes")
        if quick:
            config["trainer"].update(max_epochs=1, limit_train_batches=2, limit_val_batches=1)
            config["data"]["init_args"].update(batch_size=2, num_workers=0)
        (work / "demo.yaml").write_text(yaml.safe_dump(config))
        # relative --config and --out from another directory, as a user may give them
        subprocess.run([sys.executable, str(REPO / "scripts" / "demo.py"), "--config", "demo.yaml", "--out", "out"],
                       cwd=work, check=True)  # fmt: skip
        summary = json.loads((work / "out" / "summary.json").read_text())
    return {"total_s": summary["total_s"], "steps_s": summary["steps_s"], "map_50": summary["test_metrics"]["map_50"]}
