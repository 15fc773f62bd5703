"""scripts/bench_yolo.py speed: both detectors build from the shapes configs and are timed."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_speed_builds_both_detectors_from_the_configs() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_yolo.py"), "speed", "--images", "2", "--batch-sizes", "1",
         "--warmup", "0", "--repeats", "1", "--threads", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=True,
    )
    assert "tap c4, input 128 px" in result.stdout  # configs/yolo/shapes.yaml's, used by both
    row = re.search(r"^\s+1\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)x$", result.stdout, re.MULTILINE)
    assert row is not None, result.stdout
    yolo, faster, ratio = map(float, row.groups())
    assert yolo > 0 and faster > 0 and abs(ratio - yolo / faster) < 0.1
