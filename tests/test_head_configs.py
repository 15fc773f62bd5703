"""Every head's shapes config: one train step and one eval step through LightningCLI (fast_dev_run)."""

import pytest
import yaml
from config_runs import REPO, fit_fast_dev_run
from script_loader import load_script

SHAPES_CONFIGS = sorted((REPO / "configs").glob("*/shapes.yaml"))


def test_there_are_head_configs():
    assert {p.parent.name for p in SHAPES_CONFIGS} >= {"localization"}


@pytest.mark.parametrize("config", SHAPES_CONFIGS, ids=lambda p: p.parent.name)
def test_fast_dev_run_on_generated_shapes(config, shapes_root, shapes_single_root, tmp_path):
    cli = fit_fast_dev_run(config, shapes_root, shapes_single_root, tmp_path)
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
