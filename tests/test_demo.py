"""scripts/demo.py (the README's main job) end to end on a tiny dataset, from another directory."""

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_demo_runs_every_step_with_relative_paths(shapes_root, tmp_path):
    config = yaml.safe_load((REPO / "configs" / "faster_rcnn" / "shapes.yaml").read_text())
    config["trainer"].update(max_epochs=1, log_every_n_steps=1)
    config["data"]["init_args"].update(root=str(shapes_root.root), batch_size=4, num_workers=0)
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    # relative --config and --out, resolved against the caller's directory (the steps run in the repo)
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "demo.py"), "--config", "tiny.yaml", "--out", "out"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "out"
    for written in ("report/report.md", "report/metrics.json", "predictions/predictions.json", "train/checkpoints/best.ckpt"):
        assert (out / written).is_file(), written
    assert "test metrics:  {'map_50': " in result.stdout
