"""Optimisation shared by the detection and segmentation systems.

Both systems carry the same plain hyperparameters (``optimizer``, ``lr``, ``momentum``,
``weight_decay``, ``scheduler``, ``warmup_steps``, ``warmup_start_factor``, ``lr_milestones``,
``lr_gamma``, ``backbone_lr_mult``); the schedule is stepped per optimizer step, after a linear warm-up.

The schedule's length is fixed when fitting starts, from ``trainer.max_epochs`` (or
``max_steps``), as detectron2 and torchvision's references fix theirs by iterations; most detseg
configs end by epochs, ``configs/faster_rcnn/photos_pretrained.yaml`` by steps (``max_epochs: -1``,
``max_steps``: the cosine then spans ``max_steps`` whatever the data set's size).
``trainer.max_time`` can end the run before that, with the LR never decayed: a warning says so
when fitting starts, and again when the clock did stop the run.
"""

import math
from datetime import timedelta
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

WARMUP_START_FACTOR = 1e-3  # by default the LR starts at lr / 1000 and rises linearly (torchvision references)


class NonFiniteLossError(FloatingPointError):
    """Raised when a training loss is NaN or infinite; the message names the step and the terms."""


class WarmupSchedule:
    """LR multiplier per optimizer step: linear warm-up, then cosine, step or constant.

    A callable object rather than a closure so that ``LambdaLR.state_dict`` saves its
    (plain-number) state and a resumed run continues the same schedule.
    """

    def __init__(
        self,
        *,
        kind: str,
        warmup_steps: int,
        total_steps: int,
        milestones: list[int],
        gamma: float,
        start_factor: float = WARMUP_START_FACTOR,
    ) -> None:
        self.kind = kind
        self.start_factor = start_factor
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.milestones = list(milestones)
        self.gamma = gamma

    def __call__(self, step: int) -> float:
        warmup = 1.0
        if step < self.warmup_steps:
            alpha = step / self.warmup_steps
            warmup = self.start_factor * (1.0 - alpha) + alpha
        if self.kind == "cosine":
            progress = min(step / max(1, self.total_steps), 1.0)
            return warmup * 0.5 * (1.0 + math.cos(math.pi * progress))
        if self.kind == "step":
            return warmup * self.gamma ** sum(step >= m for m in self.milestones)
        return warmup


def layer_grad_norms(model: torch.nn.Module) -> dict[str, Tensor]:
    """L2 norm of the gradient of each layer (each module owning parameters that have a
    gradient), keyed by the module's name: where a head's learning signal goes, or does not."""
    norms = {}
    for name, module in model.named_modules():
        grads = [p.grad for p in module.parameters(recurse=False) if p.grad is not None]
        if grads:
            norms[name] = torch.nn.utils.get_total_norm(grads)
    return norms


def check_finite(system: L.LightningModule, loss: Tensor, loss_dict: dict[str, Tensor], batch_idx: int) -> None:
    """Stop training on a NaN / infinite loss, naming the step and every term (all DDP ranks together)."""
    finite = bool(torch.isfinite(loss))
    if system.trainer.world_size > 1:  # every rank stops together instead of hanging in the next all-reduce
        finite = system.trainer.strategy.reduce_boolean_decision(finite, all=True)
    if not finite:
        terms = ", ".join(f"{name}={value.item():.6g}" for name, value in loss_dict.items())
        raise NonFiniteLossError(
            f"non-finite training loss at global step {system.global_step} "
            f"(epoch {system.current_epoch}, batch {batch_idx}): {terms}"
        )


def _timer(trainer: L.Trainer) -> Timer | None:
    """The ``Timer`` callback that ``trainer.max_time`` adds (None without a time limit)."""
    return next((callback for callback in trainer.callbacks if isinstance(callback, Timer)), None)


def _run_length(trainer: L.Trainer) -> str:
    if trainer.max_steps > 0 and trainer.max_epochs in (None, -1):  # a run that ends by steps only
        return f"max_steps={trainer.max_steps}"
    if trainer.max_steps > 0:
        return f"max_epochs={trainer.max_epochs}, max_steps={trainer.max_steps}"
    return f"max_epochs={trainer.max_epochs}"


def warn_if_time_limited(trainer: L.Trainer, scheduler: str, total_steps: int) -> None:
    """Warn, when fitting starts, that ``trainer.max_time`` may stop the run before the schedule ends."""
    timer = _timer(trainer)
    if timer is None or scheduler == "none":
        return
    left = timedelta(seconds=round(timer.time_remaining() or 0))
    rank_zero_warn(
        f"scheduler={scheduler!r} spans {_run_length(trainer)} ({total_steps} optimizer steps), but "
        f"trainer.max_time ({left} left) may stop the run before its last step, with the learning rate "
        "not decayed as planned. As in detectron2 and torchvision's references the schedule is fixed "
        "by the run's length (detseg configs end by epochs or by max_steps), not by the clock: set "
        "trainer.max_epochs (or max_steps) to what fits in the time, or keep max_time only as a safety stop."
    )


def warn_if_stopped_by_time(system: L.LightningModule) -> None:
    """Warn, when training ends, if ``trainer.max_time`` cut the LR schedule short (epoch, step, LR reached)."""
    trainer = system.trainer
    timer, configs = _timer(trainer), trainer.lr_scheduler_configs
    if timer is None or not configs or (timer.time_remaining() or 0) > 0:
        return
    schedule = getattr(configs[0].scheduler, "lr_lambdas", [None])[0]
    if not isinstance(schedule, WarmupSchedule) or schedule.kind == "none":
        return
    total = schedule.total_steps if schedule.kind == "cosine" else max(schedule.milestones, default=0)
    if trainer.global_step >= total:
        return
    lr = trainer.optimizers[0].param_groups[0]["lr"]
    share = f" ({lr / system.hparams.lr:.0%} of lr)" if system.hparams.lr else ""
    rank_zero_warn(
        f"trainer.max_time stopped the run after {trainer.current_epoch} complete epochs of {_run_length(trainer)} "
        f"(optimizer step {trainer.global_step} of the schedule's {total}): the {schedule.kind} schedule "
        f"left the learning rate at {lr:.3g}{share}, not decayed."
    )


def parameter_groups(model: torch.nn.Module, lr: float, backbone_lr_mult: float) -> list[dict[str, Any]]:
    """The trained parameters: one group at ``lr``, or, with ``backbone_lr_mult != 1``, the heads
    at ``lr`` first (group 0, whose LR the warnings report), then ``model.backbone`` at
    ``lr * backbone_lr_mult``."""
    trained = [p for p in model.parameters() if p.requires_grad]
    if backbone_lr_mult == 1.0:
        return [{"params": trained, "lr": lr}]
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, torch.nn.Module):
        raise ValueError(f"backbone_lr_mult={backbone_lr_mult}: {type(model).__name__} has no .backbone")
    in_backbone = {id(p) for p in backbone.parameters()}
    heads = [p for p in trained if id(p) not in in_backbone]
    backbone_params = [p for p in trained if id(p) in in_backbone]
    return [{"params": heads, "lr": lr}, {"params": backbone_params, "lr": lr * backbone_lr_mult}]


def configure_optimization(system: L.LightningModule) -> dict[str, Any]:
    """``configure_optimizers`` for a system whose hparams hold the settings above and whose ``model`` is trained."""
    hp, trainer = system.hparams, system.trainer
    params = parameter_groups(system.model, hp.lr, hp.get("backbone_lr_mult", 1.0))
    if hp.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay
        )
    else:
        optimizer = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
    total_steps = trainer.estimated_stepping_batches
    if hp.scheduler == "cosine" and not math.isfinite(total_steps):
        raise ValueError("scheduler='cosine' needs trainer.max_epochs or trainer.max_steps")
    milestones: list[int] = []
    if hp.scheduler == "step":
        if trainer.train_dataloader is None:  # max_steps-only runs skip this in the estimate above
            trainer.fit_loop.setup_data()
        batches = trainer.num_training_batches
        if not math.isfinite(batches):
            raise ValueError("scheduler='step' has milestones in epochs: the train loader needs a length")
        steps_per_epoch = max(1, math.ceil(batches / trainer.accumulate_grad_batches))
        milestones = [m * steps_per_epoch for m in hp.lr_milestones]
    schedule = WarmupSchedule(
        kind=hp.scheduler,
        warmup_steps=hp.warmup_steps,
        total_steps=int(total_steps) if math.isfinite(total_steps) else 0,
        milestones=milestones,
        gamma=hp.lr_gamma,
        start_factor=hp.get("warmup_start_factor", WARMUP_START_FACTOR),
    )
    warn_if_time_limited(trainer, hp.scheduler, schedule.total_steps)
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": lr_scheduler, "interval": "step"}}
