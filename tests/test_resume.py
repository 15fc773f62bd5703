"""Resume equivalence: 2 epochs straight == 1 epoch, stop, resume from last.ckpt for the 2nd."""

import functools
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from system_toys import ToyDataModule, ToyEvaluator

from detection.system import DetectionSystem
from detection.tiny import TinyDetector

EPOCHS = 2


class _StopAfterFirstEpoch(L.Callback):
    """Simulates an interrupted run: same config (max_epochs=2), stops after epoch 0."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.should_stop = True


def _system(seed: int) -> DetectionSystem:
    torch.manual_seed(seed)
    return DetectionSystem(
        model=TinyDetector(num_classes=2),
        evaluator=functools.partial(ToyEvaluator),
        monitor="cls_loc_accuracy",
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        scheduler="cosine",
        warmup_steps=3,
    )


def _fit(system: DetectionSystem, root: Path, *, stop_early: bool = False, ckpt_path: Path | None = None) -> L.Trainer:
    last = ModelCheckpoint(dirpath=root, filename="last", monitor=None, save_top_k=1, enable_version_counter=False)
    callbacks: list[L.Callback] = [last] + ([_StopAfterFirstEpoch()] if stop_early else [])
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=EPOCHS,
        logger=False,
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
    )
    # shuffle=False: the plain RandomSampler draws from the global RNG, which a checkpoint does not hold.
    trainer.fit(system, ToyDataModule(train_count=8, val_count=2, batch_size=2, shuffle=False), ckpt_path=ckpt_path)
    return trainer


def test_resumed_run_continues_where_it_stopped(tmp_path: Path) -> None:
    straight = _system(seed=0)
    straight_trainer = _fit(straight, tmp_path / "straight")

    interrupted = _system(seed=0)
    stopped_trainer = _fit(interrupted, tmp_path / "interrupted", stop_early=True)
    assert stopped_trainer.current_epoch == 1 and stopped_trainer.global_step == 4
    ckpt = tmp_path / "interrupted" / "last.ckpt"
    saved = torch.load(ckpt, weights_only=True)
    assert (saved["epoch"], saved["global_step"]) == (0, 4)

    resumed = _system(seed=123)  # different initial weights: everything must come from the checkpoint
    resumed_trainer = _fit(resumed, tmp_path / "resumed", ckpt_path=ckpt)

    assert resumed_trainer.global_step == straight_trainer.global_step == 8
    assert resumed_trainer.current_epoch == straight_trainer.current_epoch == EPOCHS
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=f"weights differ: {name}")
    opt_a = straight_trainer.optimizers[0].state_dict()
    opt_b = resumed_trainer.optimizers[0].state_dict()
    assert opt_a["param_groups"][0]["lr"] == opt_b["param_groups"][0]["lr"]
    for key, state in opt_a["state"].items():
        torch.testing.assert_close(state["momentum_buffer"], opt_b["state"][key]["momentum_buffer"], rtol=0, atol=0)
    sched_a = straight_trainer.lr_scheduler_configs[0].scheduler.state_dict()
    sched_b = resumed_trainer.lr_scheduler_configs[0].scheduler.state_dict()
    assert sched_a["last_epoch"] == sched_b["last_epoch"] == 8
    assert sched_a["_last_lr"] == sched_b["_last_lr"]
    # The interrupted run's weights after epoch 0 are not the final ones: resuming did train.
    assert not torch.equal(interrupted.model.box_head.weight, resumed.model.box_head.weight)
