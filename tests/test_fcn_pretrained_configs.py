"""The pretrained FCN config and its from-scratch twin (benchmarks/fcn_pretrained.py compares them)."""

from pathlib import Path

import yaml

from benchmarks.fcn_pretrained import RUNS

REPO = Path(__file__).resolve().parents[1]
PRETRAINED, SCRATCH, EXAMPLE = (REPO / "configs" / "fcn" / f"{name}.yaml" for name in ("roboflow_tqb_pretrained", "roboflow_tqb_scratch", "mask_folder_example"))


def without_run_names(config: dict) -> dict:
    """The config less its loggers (whose run names differ) and the backbone's initialisation."""
    config = yaml.safe_load(yaml.safe_dump(config))
    config["trainer"].pop("logger")
    config["model"]["model"]["init_args"]["backbone"]["init_args"] = None
    return config


def test_the_twins_differ_in_the_backbone_initialisation_only():
    pretrained, scratch = (yaml.safe_load(path.read_text()) for path in (PRETRAINED, SCRATCH))
    assert without_run_names(pretrained) == without_run_names(scratch)
    def backbone(config: dict) -> dict:
        return config["model"]["model"]["init_args"]["backbone"]["init_args"]

    assert backbone(pretrained) == {"weights": "IMAGENET", "frozen_stages": 2, "frozen_bn": True}
    assert backbone(scratch) == {"weights": None, "frozen_stages": 0, "frozen_bn": False}


def test_the_twins_leave_out_the_bad_masks_the_example_config_names():
    example = yaml.safe_load(EXAMPLE.read_text())["data"]["init_args"]["mask_folder"]["exclude"]
    assert len(example) == 16
    for path in (PRETRAINED, SCRATCH):
        assert yaml.safe_load(path.read_text())["data"]["init_args"]["mask_folder"]["exclude"] == example


def test_the_benchmark_runs_both_twins_and_the_32s_variant():
    assert {config for config, _ in RUNS.values()} == {str(p.relative_to(REPO)) for p in (PRETRAINED, SCRATCH)}
    assert RUNS["fcn32s_pretrained"] == (str(PRETRAINED.relative_to(REPO)), ["--model.model.init_args.variant", "32s"])
    assert yaml.safe_load(PRETRAINED.read_text())["model"]["model"]["init_args"]["variant"] == "8s"
