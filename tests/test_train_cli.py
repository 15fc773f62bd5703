"""scripts/train.py: LightningCLI fit / validate / test over a YAML config, run in-process."""

import csv
import functools
import pickle
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import LearningRateMonitor
from script_loader import load_script

REPO = Path(__file__).resolve().parents[1]


train = load_script("train")


def _config(tmp_path: Path, **trainer: object) -> Path:
    config = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "max_epochs": 1,
            "enable_model_summary": False,
            "enable_progress_bar": False,
            "log_every_n_steps": 1,
            "logger": [
                {"class_path": "lightning.pytorch.loggers.TensorBoardLogger", "init_args": {"save_dir": str(tmp_path / "runs"), "name": "toy"}},
                {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(tmp_path / "runs"), "name": "toy"}},
            ],
            **trainer,
        },
        "model": {
            "model": {"class_path": "detection.tiny.TinyDetector", "init_args": {"num_classes": 2}},
            "evaluator": {"class_path": "system_toys.ToyEvaluator", "init_args": {"iou_threshold": 0.3}},
            "monitor": "cls_loc_accuracy",
            "lr": 0.05,
            "warmup_steps": 2,
        },
        "data": {"class_path": "system_toys.ToyDataModule", "init_args": {"batch_size": 2, "shuffle": False}},
    }
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_fast_dev_run_through_the_cli(tmp_path: Path) -> None:
    cli = train.main(["fit", "--config", str(_config(tmp_path)), "--trainer.fast_dev_run", "1"])
    assert cli.trainer.global_step == 1
    assert "val/cls_loc_accuracy" in cli.trainer.callback_metrics
    assert cli.model.evaluator.iou_threshold == 0.3  # evaluator init args from the config
    assert cli.model.evaluator.classes == ["red", "green"]  # classes from the data module


def test_fit_writes_one_run_dir_then_validate_test_and_resume(tmp_path: Path) -> None:
    config = _config(tmp_path)
    cli = train.main(["fit", "--config", str(config)])
    run = tmp_path / "runs" / "toy" / "version_0"
    assert (run / "config.yaml").is_file()
    assert list(run.glob("events.out.tfevents.*")), "no TensorBoard events"
    assert {cb.monitor for cb in cli.trainer.checkpoint_callbacks} == {"val/cls_loc_accuracy", None}
    assert any(isinstance(cb, LearningRateMonitor) for cb in cli.trainer.callbacks)
    with open(run / "metrics.csv") as f:
        columns = set(next(csv.reader(f)))
    assert {"train/loss_classifier_step", "train/loss_box_step", "val/cls_loc_accuracy", "lr-SGD"} <= columns
    best, last = run / "checkpoints" / "best.ckpt", run / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["hyper_parameters"]["model"]["class_path"] == "detection.tiny.TinyDetector"
    assert (ckpt["epoch"], ckpt["global_step"]) == (0, 4)

    for subcommand, prefix in (("validate", "val"), ("test", "test")):
        cli = train.main([subcommand, "--config", str(config), "--ckpt_path", str(best), "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path)])
        assert f"{prefix}/cls_loc_accuracy" in cli.trainer.callback_metrics

    cli = train.main(["fit", "--config", str(config), "--trainer.max_epochs", "2", "--ckpt_path", str(last)])
    assert cli.trainer.global_step == 8 and cli.trainer.current_epoch == 2
    assert (tmp_path / "runs" / "toy" / "version_1" / "checkpoints" / "last.ckpt").is_file()


def test_last_checkpoint_is_written_every_epoch_even_without_validation(tmp_path: Path) -> None:
    train.main(["fit", "--config", str(_config(tmp_path, check_val_every_n_epoch=5))])
    checkpoints = tmp_path / "runs" / "toy" / "version_0" / "checkpoints"
    assert not (checkpoints / "best.ckpt").exists()  # no validation ran
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"] == 4


def test_num_classes_mismatch_fails_before_training(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with pytest.raises(ValueError, match="num_classes=5 but the data has 2"):
        train.main(["fit", "--config", str(config), "--model.model.init_args.num_classes", "5", "--trainer.fast_dev_run", "1"])


def test_unknown_config_key_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        train.main(["fit", "--config", str(_config(tmp_path)), "--model.learning_rate", "0.1"])


def test_example_config_runs_one_step_on_shapes(shapes_single_root, tmp_path: Path) -> None:
    pytest.importorskip("datasets.datamodule")
    example = str(REPO / "configs" / "example_shapes.yaml")
    data = ["--data.init_args.root", str(shapes_single_root.root), "--data.init_args.num_workers", "0"]
    cli = train.main(["fit", "--config", example, *data, "--trainer.fast_dev_run", "1",
                      "--trainer.default_root_dir", str(tmp_path)])
    assert cli.trainer.global_step == 1
    assert "val/cls_loc_accuracy" in cli.trainer.callback_metrics
    assert cli.model.classes == ["circle", "square", "triangle", "cross"]


def test_resume_refuses_a_checkpoint_with_pickled_objects(tmp_path: Path) -> None:
    config = _config(tmp_path)
    train.main(["fit", "--config", str(config), "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0"])
    last = tmp_path / "runs" / "toy" / "version_0" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    evil = tmp_path / "evil.ckpt"
    torch.save({**ckpt, "payload": functools.partial(print, "pwned")}, evil)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        train.main(["fit", "--config", str(config), "--ckpt_path", str(evil)])
