"""Does the classification + localization head reach the issue's accuracy in its time budget?

Reads single-object shapes (``data/shapes_single_4000``: 4,000 train, 200 val, 500 test images, generated when missing),
trains ``ClassLocalizationNet`` (SmallCNN width 16, 96-px input, box loss weight 2) from scratch
through the Lightning system in this process for at most 5 minutes of wall time (AdamW, lr 3e-3,
a 14-epoch cosine schedule), then scores the test split with the ILSVRC classification +
localization criterion (class right and IoU >= 0.5; the goal is 0.9) and mean IoU.

    OMP_NUM_THREADS=1 python -m benchmarks run localization [--quick]

Figures: ``cls_loc_accuracy``, ``cls_loc_error``, ``cls_accuracy``, ``mean_iou`` (test split),
``epochs``, ``train_s``, ``threads``.
"""

import functools
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import lightning as L
import torch

from benchmarks.runs import single_object_shapes, tiny_shapes
from datasets.datamodule import DetectionDataModule
from detection.backbones import SmallCNN
from detection.evaluation import ClsLocEvaluator
from detection.localization import ClassLocalizationNet
from detection.system import DetectionSystem

MINUTES = 5.0  # training wall-time budget
EPOCHS = 14  # the cosine schedule's length (the budget stops it earlier)
WIDTH, IMAGE_SIZE, LR, BOX_WEIGHT = 16, 96, 3e-3, 2.0


def run(quick: bool) -> dict:
    L.seed_everything(0)
    with tempfile.TemporaryDirectory(prefix="bench_localization_") as tmp:
        if quick:
            root = tiny_shapes(Path(tmp), single_object=True)
        else:
            root = single_object_shapes()
        data = DetectionDataModule(format="shapes", root=str(root), batch_size=2 if quick else 32, num_workers=0 if quick else 2)
        model = ClassLocalizationNet(
            backbone=SmallCNN(width=WIDTH), num_classes=data.num_classes, image_size=IMAGE_SIZE, box_loss_weight=BOX_WEIGHT
        )
        system = DetectionSystem(
            model=model, evaluator=functools.partial(ClsLocEvaluator), monitor="cls_loc_accuracy",
            optimizer="adamw", lr=LR, weight_decay=1e-4, scheduler="cosine", warmup_steps=50,
        )  # fmt: skip
        trainer = L.Trainer(
            max_epochs=1 if quick else EPOCHS, max_time=timedelta(minutes=MINUTES), logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=not quick, num_sanity_val_steps=0,
            check_val_every_n_epoch=1000, limit_train_batches=2 if quick else None,
        )  # fmt: skip
        start = time.perf_counter()
        trainer.fit(system, datamodule=data)
        train_s = time.perf_counter() - start
        metrics = trainer.test(system, datamodule=data, verbose=False)[0]
    return {
        "cls_loc_accuracy": round(metrics["test/cls_loc_accuracy"], 4),
        "cls_loc_error": round(metrics["test/cls_loc_error"], 4),
        "cls_accuracy": round(metrics["test/cls_accuracy"], 4),
        "mean_iou": round(metrics["test/mean_iou"], 4),
        "epochs": trainer.current_epoch,
        "train_s": round(train_s, 1),
        "threads": torch.get_num_threads(),
    }
