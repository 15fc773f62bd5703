"""The LightningModule of every head: a thin system around any model honouring the contract.

The model decides what it returns from its own ``train()`` / ``eval()`` mode (which Lightning
switches): a ``dict[str, Tensor]`` of ``loss_*`` terms in training, a ``list[dict]`` per image in
eval (``boxes [K, 4]`` xyxy pixels, ``labels [K]``, ``scores [K]``, ``masks [K, H, W]`` for instance
heads, ``semantic [H, W]`` for semantic heads; ``docs/ARCHITECTURE.md``). The system sums and logs
the loss terms, feeds the injected evaluator during validation and test through the one inference
path (``detection.predictor``: same-size images share a forward pass, others do not, so the
numbers do not depend on the eval batch size or the number of processes), and owns the optimizer and the LR schedule.

Batches are ``(images: list[Tensor[3, H, W]], targets: list[dict])`` (``datasets/collate.py``);
``N = len(images)`` is passed to every ``self.log`` as ``batch_size`` because Lightning would
otherwise guess it from the first tensor it finds.
"""

import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import lightning as L
import torch
from torch import Tensor, nn

from detection.checkpoint import init_from_checkpoint
from detection.predictor import predict_images
from detection.optim import (
    WARMUP_START_FACTOR,
    check_finite,
    configure_optimization,
    layer_grad_norms,
    warn_if_stopped_by_time,
)


@runtime_checkable
class Evaluator(Protocol):
    """``docs/ARCHITECTURE.md``: reset, update with predictions and targets, compute flat metrics."""

    def reset(self) -> None: ...

    def update(self, preds: list[dict], targets: list[dict]) -> None: ...

    def compute(self) -> dict[str, float]: ...


# An evaluator class with its other init args bound; the system passes ``classes=...`` at setup.
EvaluatorFactory = Callable[[Sequence[str]], Evaluator]

Batch = tuple[list[Tensor], list[dict[str, Any]]]


class DetectionSystem(L.LightningModule):
    """Train / validate / test any model honouring the contract (detectors, FCN, ...).

    Args:
        model: the detector (``nn.Module``).
        evaluator: an evaluator factory, called as ``evaluator(classes=[...])`` at ``setup``.
        monitor: the evaluator key that ModelCheckpoint watches (logged as ``val/<monitor>``).
        classes: foreground class names, used only when the data module exposes none.
        optimizer, lr, momentum, weight_decay: the optimizer (``momentum`` is SGD's only).
        scheduler: ``cosine`` decay to 0 over the run, ``step`` (x ``lr_gamma`` at each epoch
            of ``lr_milestones``) or ``none``; stepped per optimizer step, after a linear warm-up
            of ``warmup_steps`` steps from ``lr * warmup_start_factor`` (YOLO's paper: 0.1, from
            1e-3 to 1e-2).
        grad_norms_every: log each layer's gradient L2 norm (``grad_norm/<module>``) every
            this many optimizer steps (0: never), to see where a head's learning signal goes.
        backbone_lr_mult: the backbone's learning rate as a multiple of ``lr`` (mmdetection's
            ``lr_mult``): below 1, fine-tuning moves pretrained features less than the new heads.
        init_from: a Lightning checkpoint to start the model from: every parameter whose name
            and shape match is copied (``detection.checkpoint.init_from_checkpoint``), e.g. a
            backbone trained on classification, as the YOLO and R-CNN papers pretrain theirs.
            Applied once at construction; ``fit --ckpt_path`` (resume) then overrides it.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        evaluator: EvaluatorFactory,
        monitor: str = "map_50",
        classes: list[str] | None = None,
        optimizer: Literal["sgd", "adamw"] = "sgd",
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        scheduler: Literal["cosine", "step", "none"] = "cosine",
        warmup_steps: int = 0,
        warmup_start_factor: float = WARMUP_START_FACTOR,
        lr_milestones: list[int] | None = None,
        lr_gamma: float = 0.1,
        backbone_lr_mult: float = 1.0,
        grad_norms_every: int = 0,
        init_from: str | None = None,
    ) -> None:
        super().__init__()
        with warnings.catch_warnings():
            # Under LightningCLI `model` and `evaluator` arrive as their plain config dicts; in
            # plain Python they are objects, which are dropped below instead of pickled.
            warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`.*")
            self.save_hyperparameters()
        self.remove_ignored_hparams([k for k in ("model", "evaluator") if not isinstance(self.hparams.get(k), dict)])
        if not callable(evaluator) or (not isinstance(evaluator, type) and isinstance(evaluator, Evaluator)):
            raise TypeError(
                f"evaluator must be a factory called with classes=..., e.g. functools.partial(VOCEvaluator), "
                f"got {type(evaluator).__name__}"
            )
        if scheduler == "step" and not lr_milestones:
            raise ValueError("scheduler='step' needs lr_milestones (epochs), e.g. [8, 11]")
        self.model = model
        if init_from is not None:
            init_from_checkpoint(model, init_from)
        self.evaluator_factory = evaluator
        self.evaluator: Evaluator | None = None
        self.monitor = monitor
        self.classes: list[str] | None = list(classes) if classes is not None else None

    # ----------------------------------------------------------------------------- setup
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        data_classes = getattr(datamodule, "classes", None)
        if data_classes is not None:
            self.classes = list(data_classes)
        model_classes = getattr(self.model, "num_classes", None)
        if self.classes is None:
            if model_classes is None:
                raise ValueError("no class names: give `classes=` or use a data module that exposes `classes`")
            self.classes = [f"class_{i}" for i in range(1, model_classes + 1)]
        if model_classes is not None and model_classes != len(self.classes):
            raise ValueError(
                f"the model has num_classes={model_classes} but the data has {len(self.classes)} "
                f"foreground classes {self.classes}; set model.init_args.num_classes to {len(self.classes)}"
            )
        self.evaluator = self.evaluator_factory(classes=list(self.classes))

    # ----------------------------------------------------------------------------- train
    def forward(self, images: list[Tensor], targets: list[dict] | None = None) -> Any:
        return self.model(images, targets)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor | None:
        images, targets = batch
        if not images:  # every image of the batch was unreadable and skipped (datasets.base.BadImageLog)
            return None  # Lightning skips the optimizer step
        loss_dict: dict[str, Tensor] = self.model(images, targets)
        if not isinstance(loss_dict, dict) or not loss_dict:
            raise TypeError(f"in train mode the model must return a non-empty dict of loss terms, got {loss_dict!r:.200}")
        loss = sum(loss_dict.values())
        check_finite(self, loss, loss_dict, batch_idx)
        batch_size = len(images)
        # sync_dist: the epoch means average over every rank's batches (a no-op on one device).
        self.log("train/loss", loss, batch_size=batch_size, prog_bar=True, on_step=True, on_epoch=True, sync_dist=True)
        for name, value in loss_dict.items():
            self.log(f"train/{name}", value, batch_size=batch_size, on_step=True, on_epoch=True, sync_dist=True)
        return loss

    # ----------------------------------------------------------------------------- eval
    def _require_evaluator(self) -> Evaluator:
        if self.evaluator is None:
            raise RuntimeError("the evaluator is built in setup(); run through a Trainer")
        return self.evaluator

    def _eval_step(self, batch: Batch) -> None:
        images, targets = batch
        self._require_evaluator().update(predict_images(self.model, images), targets)

    def _log_metrics(self, prefix: str) -> dict[str, float]:
        metrics = self._require_evaluator().compute()
        if prefix == "val" and not self.trainer.sanity_checking and self.monitor not in metrics:
            raise KeyError(f"monitor {self.monitor!r} is not among the evaluator's metrics {sorted(metrics)}")
        # compute() already gathers from every rank, so the values are global: no sync_dist.
        for key, value in metrics.items():
            self.log(f"{prefix}/{key}", float(value), prog_bar=key == self.monitor, sync_dist=False)
        return metrics

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        every = self.hparams.get("grad_norms_every", 0)
        if every and self.trainer.global_step % every == 0:
            for name, norm in layer_grad_norms(self.model).items():
                self.log(f"grad_norm/{name}", norm, on_step=True, on_epoch=False)

    def on_validation_epoch_start(self) -> None:
        self._require_evaluator().reset()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_start(self) -> None:
        self._require_evaluator().reset()

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch)

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    # ----------------------------------------------------------------------------- optim
    def configure_optimizers(self) -> dict[str, Any]:
        return configure_optimization(self)  # warns when trainer.max_time may cut the schedule short

    def on_train_end(self) -> None:
        warn_if_stopped_by_time(self)  # and again when it did

    # ----------------------------------------------------------------------------- checkpoint
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["detseg_classes"] = list(self.classes) if self.classes is not None else None

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if checkpoint.get("detseg_classes") is not None:
            self.classes = list(checkpoint["detseg_classes"])
