"""Running a head's shapes config through ``scripts/train.py`` on the tiny generated shapes
(``conftest.py``), for the config tests (``test_head_configs.py``, ``test_precision.py``)."""

from pathlib import Path

import yaml
from script_loader import load_script

from datasets.shapes_writer import ShapesLayout

REPO = Path(__file__).resolve().parents[1]


def fit_fast_dev_run(config: Path, shapes_root: ShapesLayout, shapes_single_root: ShapesLayout, tmp_path: Path, *args: str):
    """``scripts/train.py fit --config config`` with one train and one val batch of 2 images
    (``fast_dev_run``), on the single-object shapes when the config asks for them; ``args`` are
    further overrides. Returns the LightningCLI."""
    data = yaml.safe_load(config.read_text())["data"]["init_args"]
    root = shapes_single_root if data.get("shapes_single_object") else shapes_root
    return load_script("train").main([
        "fit", "--config", str(config), "--trainer.fast_dev_run", "1", "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path),
        "--data.init_args.root", str(root.root), "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "2",
        *args,
    ])
