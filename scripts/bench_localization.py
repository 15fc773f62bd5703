"""Does the classification + localization head reach the issue's accuracy in its time budget?

Generates single-object shapes, trains ``ClassLocalizationNet`` from scratch through the
Lightning system for at most ``--minutes`` of wall time, then scores the test split with the
ILSVRC classification+localization criterion (class right and IoU >= 0.5) and mean IoU.

    OMP_NUM_THREADS=1 python scripts/bench_localization.py --minutes 5 --data /tmp/single4000
"""

import argparse
import functools
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import lightning as L
import torch

from datasets.datamodule import DetectionDataModule
from datasets.shapes_writer import write_shapes
from detection.backbones import SmallCNN
from detection.evaluation import ClsLocEvaluator
from detection.localization import ClassLocalizationNet
from detection.system import DetectionSystem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0, help="training wall-time budget")
    parser.add_argument("--epochs", type=int, default=14, help="cosine schedule length (stops earlier at the budget)")
    parser.add_argument("--data", type=Path, default=None, help="shapes root (default: a temporary directory)")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--train-images", type=int, default=4000)
    parser.add_argument("--image-size", type=int, default=96, help="the head's fixed input size")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--box-weight", type=float, default=2.0, help="weight of the box loss against the class loss")
    args = parser.parse_args()

    L.seed_everything(0)
    root = args.data or Path(tempfile.mkdtemp(prefix="shapes_single_"))
    if not (root / "VOC").is_dir():
        write_shapes(root, sizes={"train": args.train_images, "val": 200, "test": 500}, single_object=True)
    data = DetectionDataModule(format="shapes", root=str(root), batch_size=32, num_workers=2)
    model = ClassLocalizationNet(
        backbone=SmallCNN(width=args.width), num_classes=data.num_classes, image_size=args.image_size,
        box_loss_weight=args.box_weight,
    )
    system = DetectionSystem(
        model=model, evaluator=functools.partial(ClsLocEvaluator), monitor="cls_loc_accuracy",
        optimizer="adamw", lr=args.lr, weight_decay=1e-4, scheduler="cosine", warmup_steps=50,
    )
    trainer = L.Trainer(
        max_epochs=args.epochs, max_time=timedelta(minutes=args.minutes), logger=False,
        enable_checkpointing=False, enable_progress_bar=False, num_sanity_val_steps=0, check_val_every_n_epoch=1000,
    )
    start = time.perf_counter()
    trainer.fit(system, datamodule=data)
    train_s = time.perf_counter() - start
    metrics = trainer.test(system, datamodule=data, verbose=False)[0]
    print(f"threads: {torch.get_num_threads()}, trained {trainer.current_epoch} epochs in {train_s:.0f} s")
    print(f"test cls+loc accuracy (IoU >= 0.5): {metrics['test/cls_loc_accuracy']:.3f}  (goal >= 0.9)")
    print(f"test cls+loc error:                 {metrics['test/cls_loc_error']:.3f}")
    print(f"test classification accuracy:       {metrics['test/cls_accuracy']:.3f}")
    print(f"test mean IoU:                      {metrics['test/mean_iou']:.3f}")


if __name__ == "__main__":
    main()
