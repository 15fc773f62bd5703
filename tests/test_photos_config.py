"""configs/faster_rcnn/photos_pretrained.yaml: the natural-photo fine-tuning recipe, whose schedule
is a number of optimizer steps (``max_steps``) rather than epochs.

- one train and one eval step through LightningCLI on the tiny generated shapes;
- the schedule: two data sets of different sizes give the same optimizer steps, validations and
  learning-rate trajectory (the cosine spans ``max_steps``); the max_time warning names max_steps;
- step-based checkpoints: ``last.ckpt`` at ``max_steps`` in the middle of an epoch, ``best.ckpt``
  from a validation step;
- the header's two command lines (BCCD, coco_mini persons) parse and their data modules read the
  real samples in ../shared/data (skipped when it is absent).
"""

import functools
import json
import re
from datetime import timedelta

import lightning as L
import pytest
import torch
import yaml
from config_runs import REPO, fit_fast_dev_run
from script_loader import load_script
from system_toys import ToyDataModule, ToyEvaluator

from benchmarks.photos_pretrained import PRETRAINED_RESULTS, _from_scratch, header_commands
from datasets.datamodule import DetectionDataModule
from detection.system import DetectionSystem
from detection.tiny import TinyDetector

CONFIG = REPO / "configs" / "faster_rcnn" / "photos_pretrained.yaml"
SMALL_MODEL = ["--model.model.init_args.min_size", "128", "--model.model.init_args.max_size", "160"]


def _config() -> dict:
    return yaml.safe_load(CONFIG.read_text())


def test_the_recipe_ends_by_steps_and_validates_its_last_step():
    trainer = _config()["trainer"]
    assert trainer["max_epochs"] == -1 and trainer["check_val_every_n_epoch"] is None
    assert trainer["max_steps"] % trainer["val_check_interval"] == 0, "the last step would not be validated"
    assert _config()["last_checkpoint"]["every_n_train_steps"] == trainer["val_check_interval"]
    data = _config()["data"]["init_args"]
    assert not data.get("vertical_flip", False) and data.get("augment", True) is True  # horizontal flips only


def test_fast_dev_run_on_generated_shapes(shapes_root, shapes_single_root, tmp_path):
    cli = fit_fast_dev_run(CONFIG, shapes_root, shapes_single_root, tmp_path,
                           "--data.init_args.root", str(shapes_root.voc_root), *SMALL_MODEL)  # fmt: skip
    assert cli.trainer.global_step == 1
    assert "val/map_50" in cli.trainer.callback_metrics
    assert cli.model.classes == sorted(shapes_root.classes)  # VOC: the sorted names of the annotations


class _LearningRates(L.Callback):
    """The heads' learning rate before every optimizer step, and the global step of every validation."""

    def __init__(self) -> None:
        self.lrs: list[float] = []
        self.validated_at: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.validated_at.append(trainer.global_step)


def _fit_by_steps(
    train_count: int, *, callbacks_extra: tuple = (), ckpt_path: str | None = None, **trainer_args
) -> tuple[L.Trainer, _LearningRates]:
    """The config's step-based trainer settings, scaled down (12 steps, validation every 4), on a toy
    data set of ``train_count`` images in batches of 2 (resumed from ``ckpt_path`` when given)."""
    torch.manual_seed(0)
    config = _config()["trainer"]
    system = DetectionSystem(model=TinyDetector(num_classes=2), evaluator=functools.partial(ToyEvaluator),
                             monitor="cls_loc_accuracy", lr=0.1, scheduler="cosine", warmup_steps=3)  # fmt: skip
    recorder = _LearningRates()
    trainer = L.Trainer(**{
        "accelerator": "cpu", "logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
        "enable_model_summary": False, "max_epochs": config["max_epochs"], "max_steps": 12, "val_check_interval": 4,
        "check_val_every_n_epoch": config["check_val_every_n_epoch"], "num_sanity_val_steps": 0,
        "callbacks": [recorder, *callbacks_extra], **trainer_args,
    })  # fmt: skip
    trainer.fit(system, ToyDataModule(train_count=train_count, val_count=2, batch_size=2), ckpt_path=ckpt_path)
    return trainer, recorder


def test_schedule_spans_max_steps_whatever_the_data_set_size():
    (small, small_lrs), (large, large_lrs) = _fit_by_steps(4), _fit_by_steps(20)  # 2 and 10 batches per epoch
    assert small.current_epoch != large.current_epoch  # 6 epochs against 1.2: the epochs differ ...
    for trainer in (small, large):  # ... the steps and the schedule do not
        schedule = trainer.lr_scheduler_configs[0].scheduler.lr_lambdas[0]
        assert trainer.global_step == 12 and schedule.total_steps == 12
    assert small_lrs.lrs == pytest.approx(large_lrs.lrs) and len(small_lrs.lrs) == 12
    peak = max(small_lrs.lrs)
    assert small_lrs.lrs[0] < 0.01 * peak and small_lrs.lrs[-1] < 0.1 * peak  # warm-up, then decay
    for trainer in (small, large):  # the cosine reaches 0 at max_steps, not at some epoch
        assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert small_lrs.validated_at == large_lrs.validated_at == [4, 8, 12]


def test_max_time_warning_names_the_steps():
    with pytest.warns(UserWarning, match=r"scheduler='cosine' spans max_steps=12 \(12 optimizer steps\)"):
        _fit_by_steps(4, max_time=timedelta(hours=1))


def test_last_and_best_checkpoints_with_validation_every_n_steps(shapes_root, tmp_path):
    """12 training images in batches of 2 are 6 steps an epoch: max_steps 4 ends inside the first
    epoch, and last.ckpt is still written at step 4; best.ckpt comes from a validation step."""
    load_script("train").main([
        "fit", "--config", str(CONFIG), "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(tmp_path), "--data.init_args.root", str(shapes_root.voc_root),
        "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "2", *SMALL_MODEL,
        "--trainer.max_steps", "4", "--trainer.val_check_interval", "2", "--trainer.num_sanity_val_steps", "0",
        "--last_checkpoint.every_n_train_steps", "2",
    ])  # fmt: skip
    checkpoints = tmp_path / "checkpoints"
    last = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=True)
    best = torch.load(checkpoints / "best.ckpt", map_location="cpu", weights_only=True)
    assert (last["global_step"], last["epoch"]) == (4, 0)
    assert best["global_step"] in (2, 4)
    monitor = next(state for key, state in best["callbacks"].items() if "val/map_50" in key)
    assert monitor["best_model_path"].endswith("best.ckpt")


def test_header_commands_are_bccd_and_coco_persons():
    commands = header_commands(CONFIG)  # what python -m benchmarks run photos_pretrained runs
    roots = {name: args[args.index("--data.init_args.root") + 1] for name, args in commands.items()}
    assert roots == {"bccd": "../shared/data/voc_bccd/BCCD", "coco_mini_person": "../shared/data/coco_mini"}


@pytest.mark.parametrize(
    "name,classes,train_images", [("bccd", ["Platelets", "RBC", "WBC"], 205), ("coco_mini_person", ["person"], 36)]
)
def test_header_command_reads_the_shared_data(name, classes, train_images, shared_data, capsys):
    """The command as the header prints it parses, and its data section reads the real sample."""
    with pytest.raises(SystemExit) as exit_info:
        load_script("train").main([*header_commands(CONFIG)[name], "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    overrides = [a for a in header_commands(CONFIG)[name] if a.startswith("--") and a != "--config"]
    assert {a.split(".")[-1] for a in overrides} <= {"root", "format", "classes", "train_split", "val_split", "test_split"}
    init_args = printed["data"]["init_args"]
    init_args["root"] = str(REPO / init_args["root"])
    assert (REPO / init_args["root"]).resolve().is_relative_to(shared_data.resolve())
    data = DetectionDataModule(**{**init_args, "num_workers": 0})
    data.setup("fit")
    assert data.classes == classes and len(data.datasets["train"]) == train_images
    assert len(data.datasets["val"]) > 0


def test_the_own_dataset_guide_copies_this_config():
    """docs/own_dataset.md step 2: its cp + sed lines name this config, and each sed pattern is in it."""
    guide = (REPO / "docs" / "own_dataset.md").read_text()
    assert "cp configs/faster_rcnn/photos_pretrained.yaml " in guide
    sed = next(line for line in guide.splitlines() if line.startswith("sed -i") and "my_photos" in line)
    patterns = re.findall(r"s#([^#]+)#[^#]*#", sed)
    assert len(patterns) == 2 and all(pattern in CONFIG.read_text() for pattern in patterns), patterns


class _StopAfter(L.Callback):
    """Stop the run after ``step`` optimizer steps, in the middle of an epoch (as a kill would)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


def test_resuming_from_a_mid_epoch_last_ckpt_continues_the_step_schedule(tmp_path):
    """last.ckpt every 4 steps (the config's every_n_train_steps, scaled): a run stopped at step 6 of
    12 (epoch 0 of 10-batch epochs) resumes from step 4 and ends at step 12 on the same LRs."""
    every = {"every_n_train_steps": 4, "monitor": None, "filename": "last", "save_top_k": 1, "enable_version_counter": False}
    last = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, **every)
    _, uninterrupted = _fit_by_steps(20)
    stopped, _ = _fit_by_steps(20, callbacks_extra=[last, _StopAfter(6)], enable_checkpointing=True)
    assert stopped.global_step == 6  # inside the first 10-step epoch
    assert torch.load(tmp_path / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] == 4
    resumed, lrs = _fit_by_steps(20, ckpt_path=str(tmp_path / "last.ckpt"))
    assert resumed.global_step == 12
    assert lrs.lrs == pytest.approx(uninterrupted.lrs[4:])


def test_the_from_scratch_figure_is_read_from_the_pretrained_results():
    """The benchmark's full run compares with the recorded quiet BCCD runs (not rerun): the best
    from-scratch mAP and the margin pretraining had over it there."""
    scratch = _from_scratch()
    recorded = json.loads(PRETRAINED_RESULTS.read_text())["figures"]
    assert 0 < scratch["bccd_best_from_scratch_map_50"] < recorded["faster_rcnn_pretrained"]["test_map_50"]
    assert scratch["bccd_margin_to_keep"] == pytest.approx(
        recorded["faster_rcnn_pretrained"]["test_map_50"] - scratch["bccd_best_from_scratch_map_50"], abs=1e-4
    )
