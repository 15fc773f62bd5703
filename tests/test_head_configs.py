"""Every head's shapes config: one train step and one eval step through LightningCLI (fast_dev_run)."""

from pathlib import Path

import pytest
import yaml
from script_loader import load_script

REPO = Path(__file__).resolve().parents[1]
SHAPES_CONFIGS = sorted((REPO / "configs").glob("*/shapes.yaml"))


def test_there_are_head_configs():
    assert {p.parent.name for p in SHAPES_CONFIGS} >= {"localization"}


@pytest.mark.parametrize("config", SHAPES_CONFIGS, ids=lambda p: p.parent.name)
def test_fast_dev_run_on_generated_shapes(config, shapes_root, shapes_single_root, tmp_path):
    data = yaml.safe_load(config.read_text())["data"]["init_args"]
    root = shapes_single_root if data.get("shapes_single_object") else shapes_root
    cli = load_script("train").main([
        "fit", "--config", str(config), "--trainer.fast_dev_run", "1", "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path),
        "--data.init_args.root", str(root.root), "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "2",
    ])
    assert cli.trainer.global_step == 1
    monitor = cli.model.monitor if hasattr(cli.model, "monitor") else None
    assert any(key.startswith("val/") for key in cli.trainer.callback_metrics), monitor


DATASET_CONFIGS = sorted(p for p in (REPO / "configs").glob("*/*.yaml") if p.name != "shapes.yaml")


@pytest.mark.parametrize("config", DATASET_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_dataset_configs_parse(config, capsys):
    """The VOC / COCO / BCCD configs name real classes and arguments (their data is not here)."""
    with pytest.raises(SystemExit) as exit_info:
        load_script("train").main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["model"]["class_path"].startswith(("detection.", "segmentation."))
