"""Fine-tuning from the ImageNet-pretrained EfficientNet-Lite0 on BCCD, in one time budget per config.

For each run: ``scripts/train.py fit`` (a subprocess within 10 minutes of wall time,
``--trainer.max_time``; the config's own ``max_epochs`` still ends it earlier; one loader worker)
on BCCD (``../shared/data/voc_bccd/BCCD``, VOC layout), then ``scripts/evaluate.py --checkpoint``
on the best checkpoint (test mAP@0.5, VOC area AP), then inference images/s at BCCD size (640 x
480, batch 1, the model's own transform, 20 images after 3 warm-up ones). The runs:

- ``faster_rcnn_pretrained``: ``configs/faster_rcnn/bccd_pretrained.yaml``;
- ``faster_rcnn_random_init``: the same config from random weights (``weights null``, with
  BatchNorm trained and one learning rate, as from scratch: what pretraining buys on the same
  network);
- ``faster_rcnn_smallcnn``: the SmallCNN from scratch (``configs/faster_rcnn/bccd.yaml``, the same
  input size and RPN/RoI settings, the best from-scratch backbone we have);
- ``yolo_pretrained_fc`` / ``yolo_pretrained_conv``: YOLO with the paper's FC head
  (``configs/yolo/bccd_pretrained.yaml``) and with per-cell 1 x 1 convolutions
  (``configs/yolo/bccd_pretrained_conv.yaml``).

Run it on a quiet machine with one thread per process: other load changes every figure.

    OMP_NUM_THREADS=1 python -m benchmarks run pretrained [--quick]

Figures: per run ``{config, epochs, train_min, test_map_50, test_ap_50 (per class), images_per_s}``,
and ``pretrained_minus_best_from_scratch`` (test mAP@0.5 of ``faster_rcnn_pretrained`` minus the
better of ``faster_rcnn_random_init`` and ``faster_rcnn_smallcnn``). The quick run trains
the first config for two batches on a few BCCD images (copied into a temporary VOC folder), or on
tiny generated shapes when ``../shared/data`` is absent.
"""

import shutil
import tempfile
from pathlib import Path

import torch
import yaml

from benchmarks.runs import QUICK_TRAIN, REPO, epochs_done, evaluate_checkpoint, fit, map50_figures, tiny_shapes
from benchmarks.timing import seconds_per_image
from detection.checkpoint import load_detector

SHARED_DATA = REPO.parent / "shared" / "data"
BCCD = SHARED_DATA / "voc_bccd" / "BCCD"
RANDOM_INIT = ["--model.model.init_args.backbone.init_args.weights", "null",
               "--model.model.init_args.backbone.init_args.frozen_bn", "false", "--model.backbone_lr_mult", "1.0"]  # fmt: skip
RUNS = {  # name -> (config, extra command-line overrides)
    "faster_rcnn_pretrained": ("configs/faster_rcnn/bccd_pretrained.yaml", []),
    "faster_rcnn_random_init": ("configs/faster_rcnn/bccd_pretrained.yaml", RANDOM_INIT),
    "faster_rcnn_smallcnn": ("configs/faster_rcnn/bccd.yaml", []),
    "yolo_pretrained_fc": ("configs/yolo/bccd_pretrained.yaml", []),
    "yolo_pretrained_conv": ("configs/yolo/bccd_pretrained_conv.yaml", []),
}
MINUTES = 10.0  # training budget per run
BCCD_SIZE = (480, 640)  # (H, W)
SPEED_WARMUP, SPEED_IMAGES = 3, 20
QUICK_SIZES = {"train": 4, "val": 2, "test": 2}


def voc_subset(source: Path, out: Path, sizes: dict[str, int]) -> Path:
    """A VOC folder at ``out`` with copies of the first ``sizes[split]`` images of each split of
    ``source`` (copies: the readers refuse files that resolve outside their root)."""
    for folder in ("ImageSets/Main", "Annotations", "JPEGImages"):
        (out / folder).mkdir(parents=True)
    for split, count in sizes.items():
        ids = (source / "ImageSets" / "Main" / f"{split}.txt").read_text().split()[:count]
        (out / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
        for image_id in ids:
            shutil.copy(source / "Annotations" / f"{image_id}.xml", out / "Annotations")
            shutil.copy(source / "JPEGImages" / f"{image_id}.jpg", out / "JPEGImages")
    return out


def images_per_second(checkpoint: Path, *, warmup: int, images: int) -> float:
    """Batch-1 inference images/s of the checkpoint's model on a random BCCD-sized image."""
    model = load_detector(checkpoint).model  # in eval mode
    image = torch.rand(3, *BCCD_SIZE)
    return 1.0 / seconds_per_image(lambda x: model([x]), [image] * images, warmup=warmup)


def run(quick: bool) -> dict:
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench_pretrained_") as tmp:
        work = Path(tmp)
        if quick:
            root = voc_subset(BCCD, work / "BCCD", QUICK_SIZES) if BCCD.is_dir() else tiny_shapes(work / "shapes") / "VOC"
            figures["data"] = "BCCD subset" if BCCD.is_dir() else "generated shapes (no ../shared/data)"
        elif not BCCD.is_dir():
            raise FileNotFoundError(f"BCCD is missing: {BCCD} (VOC layout, from ../shared/data/voc_bccd)")
        warmup, images = (1, 2) if quick else (SPEED_WARMUP, SPEED_IMAGES)
        for name, (config_name, overrides) in list(RUNS.items())[: 1 if quick else None]:
            config = REPO / config_name
            data = yaml.safe_load(config.read_text())["data"]["init_args"]
            data_root = root if quick else REPO / data["root"]
            extra = ["--data.init_args.num_workers=1", *overrides]
            if quick:
                extra += [f"--data.init_args.root={data_root}", *QUICK_TRAIN]
            run_dir, seconds = fit(config, work / name, extra, minutes=MINUTES)
            best = run_dir / "checkpoints" / "best.ckpt"
            split = ["--voc", str(data_root), "--split", data.get("test_split", "test"), "--protocol", "voc"]
            metrics = evaluate_checkpoint(best, split, run_dir / "report")
            figures[name] = {
                "config": config_name + (" (weights null)" if overrides == RANDOM_INIT else ""),
                "epochs": epochs_done(run_dir),
                "train_min": round(seconds / 60, 2),
                **map50_figures(metrics),
                "images_per_s": round(images_per_second(best, warmup=warmup, images=images), 2),
            }
    if not quick:
        scratch = max(figures[name]["test_map_50"] for name in ("faster_rcnn_random_init", "faster_rcnn_smallcnn"))
        figures["pretrained_minus_best_from_scratch"] = round(figures["faster_rcnn_pretrained"]["test_map_50"] - scratch, 4)
    return figures
