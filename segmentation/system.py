"""The semantic-segmentation LightningModule: per-pixel cross-entropy, mean IU from a confusion matrix.

The detection system's machinery (class names from the data module, optimizer and LR schedule,
non-finite loss check, metric logging, class names in the checkpoint) serves unchanged; only the
loss and the evaluation step differ, so this system extends it.

Batches are ``SegmentationBatch(images [N, 3, H, W], masks [N, H, W], image_ids)``
(``datasets/collate.py``); masks hold ``0`` background, ``1..C`` classes and ``255`` void, which
both the loss and the metrics ignore. The model returns logits ``[N, C + 1, H, W]``.
"""

from collections.abc import Sequence
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from datasets.collate import SegmentationBatch
from datasets.palette import VOID_INDEX
from detection.optim import check_finite
from detection.system import DetectionSystem
from segmentation.metrics import ConfusionMatrix

BACKGROUND = "background"


def pixel_loss(logits: Tensor, masks: Tensor) -> Tensor:
    """``logits [N, K, H, W]``, ``masks [N, H, W]`` -> the mean cross-entropy over non-void pixels (FCN, sec. 3)."""
    return F.cross_entropy(logits, masks, ignore_index=VOID_INDEX)


def semantic_evaluator(classes: Sequence[str]) -> ConfusionMatrix:
    """The streaming confusion matrix over background + ``classes`` (``iou/<name>`` keys)."""
    return ConfusionMatrix(len(classes) + 1, ignore_index=VOID_INDEX, class_names=[BACKGROUND, *classes])


class SegmentationSystem(DetectionSystem):
    """Train / validate / test a semantic segmentation model (``model(images) -> logits``).

    Args:
        model: e.g. ``segmentation.fcn.FCN``; ``num_classes`` counts foreground classes.
        monitor: the metric ModelCheckpoint watches (``val/<monitor>``): ``mean_iou``,
            ``pixel_accuracy``, ``mean_accuracy`` or ``fw_iou``.
        init_from: a checkpoint of a coarser model to start from (FCN-32s -> 16s -> 8s, the
            paper's staged training; see ``DetectionSystem``).
        The remaining arguments are the detection system's.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        monitor: str = "mean_iou",
        classes: list[str] | None = None,
        init_from: str | None = None,
        optimizer: Literal["sgd", "adamw"] = "sgd",
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        scheduler: Literal["cosine", "step", "none"] = "cosine",
        warmup_steps: int = 0,
        lr_milestones: list[int] | None = None,
        lr_gamma: float = 0.1,
    ) -> None:
        super().__init__(
            model=model, evaluator=semantic_evaluator, monitor=monitor, classes=classes, optimizer=optimizer,
            lr=lr, momentum=momentum, weight_decay=weight_decay, scheduler=scheduler, warmup_steps=warmup_steps,
            lr_milestones=lr_milestones, lr_gamma=lr_gamma, init_from=init_from,
        )

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images)

    def training_step(self, batch: SegmentationBatch, batch_idx: int) -> Tensor:
        images, masks, _ = batch
        logits = self.model(images)  # [N, C + 1, H, W]
        loss = pixel_loss(logits, masks)
        check_finite(self, loss, {"loss_seg": loss}, batch_idx)
        self.log("train/loss", loss, batch_size=len(images), prog_bar=True, on_step=True, on_epoch=True, sync_dist=True)
        return loss

    def _eval_step(self, batch: SegmentationBatch) -> None:
        images, masks, image_ids = batch
        labels = self.model(images).argmax(dim=1)  # [N, H, W]
        self._require_evaluator().update(labels, masks, image_ids)
