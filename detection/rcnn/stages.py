"""The Lightning callback that runs R-CNN's stages 2 and 3 when fine-tuning ends.

``scripts/train.py fit --config configs/rcnn/<dataset>.yaml`` trains all three stages:

1. fine-tuning is the ordinary training loop of ``DetectionSystem`` (``RCNN``'s loss dict);
2. + 3. this callback, listed under the config's ``trainer.callbacks``, then
   - loads the best checkpoint's weights (``ModelCheckpoint`` on ``val/<monitor>``), if any, so the
     SVMs and regressors are fitted on the network that will be shipped;
   - rebuilds the training split without augmentation (a ``DetectionDataModule`` clone with
     ``augment=False``; another data module's ``train_dataloader().dataset`` as it is);
   - fits the SVMs and box regressors (``fit_stages.fit_svms_and_regressors``) on rank 0 and
     broadcasts them, so every rank holds the same model under DDP;
   - writes them into the model's buffers and re-saves the best checkpoint and the unmonitored
     ("last") checkpoints with ``trainer.save_checkpoint``, so each holds all three stages.
     Those files then all hold the best fine-tuned weights: one consistent detector. Other
     top-k files keep their fine-tuned weights only (they still load; they score with the softmax).

It runs in ``on_train_end``, not ``on_fit_end``: by ``on_fit_end`` the strategy has torn down and
moved the model to the CPU, while ``on_train_end`` still has it on its device, after the last
checkpoint of the loop was written. Under ``fast_dev_run`` only the first few training images are
used (nothing is saved then).

Under DDP the other ranks wait in the broadcast while rank 0 fits; on VOC or COCO that can take
longer than the process group's timeout (Lightning's ``DDPStrategy(timeout=...)``, 30 min by
default): raise it in the config's ``trainer.strategy`` for such runs.
"""

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import Dataset, Subset

from detection.rcnn.box_regression import REGRESSION_MIN_IOU, RIDGE_LAMBDA
from detection.rcnn.fit_stages import STATS_BOXES, STATS_IMAGES, StageResult, StageSettings, fit_svms_and_regressors, store_in_model
from detection.rcnn.model import RCNN
from detection.rcnn.svm import (
    BIAS_MULT,
    EVICT_THRESH,
    HARD_THRESH,
    NEG_IOU,
    POS_LOSS_WEIGHT,
    RETRAIN_LIMIT,
    SVM_C,
    TARGET_FEATURE_NORM,
    SVMSettings,
)

FAST_DEV_RUN_IMAGES = 4  # training images the stages see under fast_dev_run
STATE_PREFIX = "model."  # DetectionSystem holds the detector as `self.model`


def unaugmented_training_set(datamodule: L.LightningDataModule) -> Dataset:
    """The training split as ``(image, target)`` samples without random augmentation
    (``DetectionDataModule.unaugmented``; another data module's training set as it is)."""
    if hasattr(datamodule, "unaugmented"):
        return datamodule.unaugmented("train")
    return datamodule.train_dataloader().dataset


def best_checkpoint(trainer: L.Trainer) -> Path | None:
    """The best file of the first monitored ``ModelCheckpoint``, if it wrote one."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.monitor is not None and callback.best_model_path:
            return Path(callback.best_model_path)
    return None


def checkpoints_to_refresh(trainer: L.Trainer) -> list[Path]:
    """The best checkpoint, every unmonitored callback's latest file and every ``save_last`` file."""
    paths: list[Path] = []
    for callback in trainer.checkpoint_callbacks:
        if not isinstance(callback, ModelCheckpoint):
            continue
        candidates = [callback.best_model_path, callback.last_model_path]
        for path in candidates:
            if path and Path(path) not in paths:
                paths.append(Path(path))
    return paths


class RCNNStages(Callback):
    """Fit R-CNN's SVMs and box regressors when fine-tuning ends (see the module docstring).

    Args (keyword-only; defaults are the authors'):
        svm_c, pos_loss_weight, bias_mult: the SVM objective (``svm.py``).
        neg_iou, hard_thresh, evict_thresh, retrain_limit: hard-negative mining.
        regression_lambda, regression_min_iou: the ridge box regressors.
        target_norm, stats_images, stats_boxes: feature scaling.
        batch_size, num_workers: the feature-extraction loader.
        max_images: use only the first ``max_images`` training images (``None``: all).
        use_best: fit on the best checkpoint's weights (else the final weights).
    """

    def __init__(
        self,
        *,
        svm_c: float = SVM_C,
        pos_loss_weight: float = POS_LOSS_WEIGHT,
        bias_mult: float = BIAS_MULT,
        neg_iou: float = NEG_IOU,
        hard_thresh: float = HARD_THRESH,
        evict_thresh: float = EVICT_THRESH,
        retrain_limit: int = RETRAIN_LIMIT,
        regression_lambda: float = RIDGE_LAMBDA,
        regression_min_iou: float = REGRESSION_MIN_IOU,
        target_norm: float = TARGET_FEATURE_NORM,
        stats_images: int = STATS_IMAGES,
        stats_boxes: int = STATS_BOXES,
        batch_size: int = 8,
        num_workers: int = 0,
        max_images: int | None = None,
        use_best: bool = True,
    ) -> None:
        super().__init__()
        self.settings = StageSettings(
            svm=SVMSettings(
                C=svm_c, pos_loss_weight=pos_loss_weight, bias_mult=bias_mult, hard_thresh=hard_thresh,
                evict_thresh=evict_thresh, retrain_limit=retrain_limit,
            ),
            neg_iou=neg_iou,
            regression_lambda=regression_lambda,
            regression_min_iou=regression_min_iou,
            target_norm=target_norm,
            stats_images=stats_images,
            stats_boxes=stats_boxes,
            batch_size=batch_size,
            num_workers=num_workers,
        )
        self.max_images = max_images
        self.use_best = use_best
        self.summary: dict[str, float] = {}

    def _training_set(self, trainer: L.Trainer) -> Dataset:
        datamodule = trainer.datamodule
        if datamodule is None:
            raise RuntimeError("RCNNStages needs the trainer's datamodule (trainer.fit(system, datamodule=...))")
        dataset = unaugmented_training_set(datamodule)
        limit = FAST_DEV_RUN_IMAGES if trainer.fast_dev_run else self.max_images
        if limit is not None and limit < len(dataset):
            dataset = Subset(dataset, range(limit))
        return dataset

    @staticmethod
    def _rcnn(pl_module: L.LightningModule) -> RCNN:
        model = getattr(pl_module, "model", None)
        if not isinstance(model, RCNN):
            raise TypeError(f"RCNNStages needs a system whose .model is an RCNN, got {type(model).__name__}")
        return model

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """SVMs and regressors from a resumed or ``init_from`` checkpoint fit the network *before*
        this fine-tuning: until they are refitted, validation scores with the softmax."""
        model = self._rcnn(pl_module)
        with torch.no_grad():
            model.svm_fitted.fill_(False)
            model.regressor_fitted.fill_(False)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model = self._rcnn(pl_module)
        best = best_checkpoint(trainer) if self.use_best else None
        if best is not None and best.is_file():
            state = torch.load(best, map_location=pl_module.device, weights_only=True)["state_dict"]
            pl_module.load_state_dict(state)
            rank_zero_info(f"R-CNN stages: fine-tuned weights from {best}")
        result: StageResult | None = None
        if trainer.is_global_zero:
            result = fit_svms_and_regressors(model, self._training_set(trainer), self.settings)
        result = trainer.strategy.broadcast(result, src=0)
        store_in_model(model, result)
        self.summary = dict(result.summary)
        if trainer.is_global_zero:
            rank_zero_info("R-CNN stages: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(self.summary.items())))
            for logger in trainer.loggers:
                logger.log_metrics({f"rcnn/{k}": v for k, v in self.summary.items()}, step=trainer.global_step)
        for path in checkpoints_to_refresh(trainer):
            trainer.save_checkpoint(path, weights_only=False)  # the whole state, as ModelCheckpoint saves it: last.ckpt resumes
            rank_zero_info(f"R-CNN stages: re-saved {path} with the SVMs and box regressors")
