"""R-CNN through Lightning: one fit runs all three stages, the checkpoints hold them and reload identically.

Selective search is a coarse fixed grid (36 boxes on the tiny 96-px shapes) so that a fit, the
stages and the evaluation stay within seconds.
"""

import functools
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint

import detection.proposals.cache as cache_module
from proposal_stubs import grid_search as grid_stub
from datasets.datamodule import DetectionDataModule
from detection.backbones import SmallCNN
from detection.checkpoint import load_detector
from detection.evaluation import VOCEvaluator
from detection.rcnn import RCNN, RCNNStages
from detection.rcnn.stages import unaugmented_training_set
from detection.system import DetectionSystem
from script_loader import load_script

REPO = Path(__file__).resolve().parents[1]
GRID_STEP = 32


@pytest.fixture
def grid_search(monkeypatch):
    monkeypatch.setattr(cache_module, "selective_search", grid_stub(GRID_STEP))


def _predict(model: RCNN, images: list[torch.Tensor]) -> list[dict]:
    with torch.no_grad():
        return model.eval()(images)


def _same(a: list[dict], b: list[dict]) -> bool:
    return all(torch.equal(x[k], y[k]) for x, y in zip(a, b, strict=True) for k in ("boxes", "labels", "scores"))


def test_fit_runs_all_three_stages_and_the_checkpoints_reload(grid_search, shapes_root, tmp_path):
    model = RCNN(
        backbone=SmallCNN(width=8), num_classes=4, feature="c3", crop_size=32, pool_size=2,
        representation_size=32, crops_per_batch=32, cache_dir=tmp_path / "proposals",
    )
    system = DetectionSystem(model=model, evaluator=functools.partial(VOCEvaluator), lr=0.01)
    data = DetectionDataModule(format="shapes", root=str(shapes_root.root), augment="flip", batch_size=4, num_workers=0)
    best = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="best", monitor="val/map_50", mode="max")
    last = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="last", monitor=None, save_top_k=1, enable_version_counter=False)
    stages = RCNNStages(batch_size=4)
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, limit_train_batches=2, logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, callbacks=[stages, best, last],
        num_sanity_val_steps=0,
    )
    trainer.fit(system, data)

    assert bool(model.svm_fitted) and bool(model.regressor_fitted)
    assert model.svm_weight.abs().sum() > 0 and model.bbox_weight.abs().sum() > 0
    assert stages.summary["fc7_mean_norm"] > 0 and stages.summary["svm/positives_1"] > 0
    images = [data.dataset("val")[i][0] for i in range(3)]
    expected = _predict(model, images)
    assert any(len(p["boxes"]) for p in expected)
    for path in (tmp_path / "ckpt" / "best.ckpt", tmp_path / "ckpt" / "last.ckpt"):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        state = {k[len("model."):]: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
        assert bool(state["svm_fitted"]) and bool(state["regressor_fitted"])
        assert checkpoint["optimizer_states"]  # re-saved whole, so last.ckpt still resumes
        fresh = RCNN(
            backbone=SmallCNN(width=8), num_classes=4, feature="c3", crop_size=32, pool_size=2,
            representation_size=32, crops_per_batch=32, cache_dir=tmp_path / "proposals",
        )
        fresh.load_state_dict(state)  # strict
        assert _same(_predict(fresh, images), expected)


def test_one_command_trains_all_stages_from_the_shapes_config(grid_search, shapes_root, tmp_path):
    config = REPO / "configs" / "rcnn" / "shapes.yaml"
    cli = load_script("train").main([
        "fit", "--config", str(config), "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
        "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false",
        "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path),
        "--data.init_args.root", str(shapes_root.root), "--data.init_args.num_workers", "0",
        "--data.init_args.batch_size", "4",
        "--model.model.init_args.crop_size", "32", "--model.model.init_args.pool_size", "2",
        "--model.model.init_args.representation_size", "32", "--model.model.init_args.crops_per_batch", "32",
        "--model.model.init_args.cache_dir", str(tmp_path / "proposals"),
    ])
    model = cli.model.model
    assert isinstance(model, RCNN) and bool(model.svm_fitted) and bool(model.regressor_fitted)
    best = Path(cli.trainer.checkpoint_callback.best_model_path)
    assert best.is_file()
    loaded = load_detector(best)  # weights_only, rebuilt from the checkpoint's own config
    assert bool(loaded.model.svm_fitted) and loaded.classes == list(cli.datamodule.classes)
    images = [cli.datamodule.dataset("val")[i][0] for i in range(2)]
    assert _same(_predict(loaded.model, images), _predict(model, images))


@pytest.mark.parametrize("name", ["voc07", "coco2017"])
def test_dataset_configs_parse(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_script("train").main(["fit", "--config", str(REPO / "configs" / "rcnn" / f"{name}.yaml"), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["model"]["class_path"] == "detection.rcnn.RCNN"
    assert printed["model"]["model"]["init_args"]["crop_size"] == 227
    assert printed["trainer"]["callbacks"][0]["class_path"] == "detection.rcnn.RCNNStages"
    assert "max_time" not in yaml.safe_load((REPO / "configs" / "rcnn" / f"{name}.yaml").read_text())["trainer"]


def test_shapes_config_ends_by_epochs():
    trainer = yaml.safe_load((REPO / "configs" / "rcnn" / "shapes.yaml").read_text())["trainer"]
    assert trainer["max_epochs"] > 0 and "max_time" not in trainer


def test_the_stages_read_the_training_split_without_augmentation(shapes_root):
    data = DetectionDataModule(format="shapes", root=str(shapes_root.root), augment="flip", num_workers=0)
    plain = unaugmented_training_set(data)
    reference = DetectionDataModule(format="shapes", root=str(shapes_root.root), augment=False, num_workers=0)
    for i in range(3):
        assert torch.equal(plain[i][0], reference.dataset("train")[i][0])


def test_training_start_forgets_stages_fitted_to_an_earlier_network():
    model = RCNN(backbone=SmallCNN(width=8), num_classes=2, feature="c3", crop_size=32, pool_size=2, representation_size=16)
    with torch.no_grad():
        model.svm_fitted.fill_(True)
        model.regressor_fitted.fill_(True)
    system = DetectionSystem(model=model, evaluator=functools.partial(VOCEvaluator))
    RCNNStages().on_train_start(None, system)
    assert not bool(model.svm_fitted) and not bool(model.regressor_fitted)
