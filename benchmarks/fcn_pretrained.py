"""FCN on real photographs: from the ImageNet EfficientNet-Lite0 vs from scratch, FCN-8s vs FCN-32s.

On ``../shared/data/roboflow_tqb_semantic`` (Roboflow mask folders: 640 x 640 indoor photographs,
11 classes; 801 train, 24 valid, 25 test after the 16 empty oversized masks its configs exclude),
each run is ``scripts/train.py fit`` in a subprocess, ended by its config's epochs, with a
``--trainer.max_time`` of 15 minutes as a safety stop, then ``scripts/evaluate.py --checkpoint``
on the best checkpoint (validation mean IU) over the test split (the confusion-matrix evaluator,
FCN protocol). The runs:

- ``fcn8s_pretrained``: ``configs/fcn/roboflow_tqb_pretrained.yaml``;
- ``fcn8s_scratch``: its twin from random weights, ``configs/fcn/roboflow_tqb_scratch.yaml``;
- ``fcn32s_pretrained``: the first with ``variant 32s`` (no skips: what the skips add).

Run it on a quiet machine with one thread per process (about 40 minutes on 2 cores):

    OMP_NUM_THREADS=1 python -m benchmarks run fcn_pretrained [--quick]

Figures: per run ``{config, epochs, train_min, test_mean_iou, test_pixel_accuracy, test_iou (per
class), min_class_iou, min_class}``; ``classes_absent_from_test`` (classes without a pixel in the
test masks: their IU is 0 when predicted and left out otherwise, and they are left out of
``min_class_iou``); the differences ``pretrained_minus_scratch`` and ``fcn8s_minus_fcn32s`` (test
mean IU) and ``targets`` (issue 38: pretrained beats scratch by >= 0.10, FCN-8s >= FCN-32s, no
class at 0 IU); ``drawn``: one test image, its ground truth and the pretrained FCN-8s prediction
side by side, written to ``docs/images/fcn_roboflow_tqb_test.png`` (the test image of median
per-image mean IU, neither the best nor the worst).

The quick run trains the first config for two batches on a few images of each split (copied into a
temporary folder), or on a tiny generated mask folder when ``../shared/data`` is absent, and draws
into the temporary folder.
"""

import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

from benchmarks.runs import QUICK_TRAIN, REPO, epochs_done, evaluate_checkpoint, fit
from datasets.mask_folder import MaskFolderOptions, MaskFolderSegmentation
from datasets.safe_io import read_image
from detection.evaluation.galleries import segmentation_gallery
from segmentation.metrics import ConfusionMatrix

ROBOFLOW = REPO.parent / "shared" / "data" / "roboflow_tqb_semantic"
PRETRAINED = "configs/fcn/roboflow_tqb_pretrained.yaml"
RUNS = {  # name -> (config, extra command-line overrides)
    "fcn8s_pretrained": (PRETRAINED, []),
    "fcn8s_scratch": ("configs/fcn/roboflow_tqb_scratch.yaml", []),
    "fcn32s_pretrained": (PRETRAINED, ["--model.model.init_args.variant", "32s"]),
}
MINUTES = 15.0  # safety stop per run; the configs end by epochs well before it on 2 quiet cores
TARGET_PRETRAINED_GAIN = 0.10  # issue 38: pretrained minus scratch, test mean IU
DRAWN = REPO / "docs" / "images" / "fcn_roboflow_tqb_test.png"
QUICK_SIZES = {"train": 4, "valid": 2, "test": 2}
QUICK_IMAGE_SIZE = 96  # the generated images of a quick run without ../shared/data
CLASSES_CSV = "_classes.csv"


def mask_folder_subset(source: Path, out: Path, sizes: dict[str, int]) -> Path:
    """A Roboflow folder at ``out`` with copies of the first ``sizes[split]`` images (and masks) of each
    split of ``source`` and their class files (copies: the readers refuse files outside their root)."""
    for split, count in sizes.items():
        (out / split).mkdir(parents=True)
        shutil.copy(source / split / CLASSES_CSV, out / split)
        for mask in sorted((source / split).glob("*_mask.png"))[:count]:
            shutil.copy(mask, out / split)
            shutil.copy(source / split / f"{mask.name.removesuffix('_mask.png')}.jpg", out / split)
    return out


def tiny_mask_folder(out: Path, num_classes: int, sizes: dict[str, int]) -> Path:
    """A generated Roboflow folder (seeded): noise images with one coloured square per class."""
    rng = np.random.default_rng(0)
    rows = ["Pixel Value, Class", "0, background", *(f"{label}, class_{label}" for label in range(1, num_classes + 1))]
    for split, count in sizes.items():
        (out / split).mkdir(parents=True)
        (out / split / CLASSES_CSV).write_text("\n".join(rows) + "\n")
        for i in range(count):
            image = rng.integers(0, 256, (QUICK_IMAGE_SIZE, QUICK_IMAGE_SIZE, 3), dtype=np.uint8)
            labels = np.zeros((QUICK_IMAGE_SIZE, QUICK_IMAGE_SIZE), np.uint8)
            for label in range(1, num_classes + 1):
                y, x = rng.integers(0, QUICK_IMAGE_SIZE - 16, 2)
                image[y : y + 16, x : x + 16] = rng.integers(0, 256, 3, dtype=np.uint8)
                labels[y : y + 16, x : x + 16] = label
            Image.fromarray(image).save(out / split / f"{split}_{i}.jpg", quality=95)
            Image.fromarray(labels, mode="L").save(out / split / f"{split}_{i}_mask.png")
    return out


def split_reader(root: Path, options: dict) -> MaskFolderSegmentation:
    """The test split of the mask folder at ``root``, read with the config's ``mask_folder`` options."""
    return MaskFolderSegmentation(root, "test", options=MaskFolderOptions.from_dict(options))


def classes_in_masks(reader: MaskFolderSegmentation) -> set[str]:
    """The classes with at least one pixel in the split's masks."""
    present: set[str] = set()
    for index in range(len(reader)):
        problems, labels = reader.check(index)
        if problems or labels is None:
            raise ValueError(f"{reader.image_path(index)}: {problems}")
        present.update(reader.classes[int(label) - 1] for label in labels)
    return present


def predicted_mask(masks_dir: Path, reader: MaskFolderSegmentation, index: int) -> np.ndarray:
    """The class-index PNG that ``evaluate.py --checkpoint`` wrote for test image ``index``."""
    path = masks_dir / f"{reader.image_path(index).stem}.png"
    return np.array(Image.open(path), dtype=np.uint8)


def draw_median_image(masks_dir: Path, reader: MaskFolderSegmentation, path: Path) -> dict:
    """The test image of median per-image mean IU, its ground truth and its prediction, side by side at ``path``."""
    truths = {index: reader.load(index)[1]["semantic"] for index in range(len(reader))}
    scores = []
    for index, truth in truths.items():
        matrix = ConfusionMatrix(classes=reader.classes)
        matrix.add(index, torch.from_numpy(predicted_mask(masks_dir, reader, index)), torch.from_numpy(truth))
        scores.append((matrix.compute()["mean_iou"], index))
    iou, index = sorted(scores)[len(scores) // 2]
    path.parent.mkdir(parents=True, exist_ok=True)
    segmentation_gallery(
        path, [(index, iou)], lambda i: read_image(reader.image_path(i)), truths.__getitem__,
        lambda i: predicted_mask(masks_dir, reader, i),
    )  # fmt: skip
    return {"path": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name,
            "image": reader.image_path(index).name, "image_mean_iou": round(iou, 4)}  # fmt: skip


def run(quick: bool) -> dict:
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench_fcn_pretrained_") as tmp:
        work = Path(tmp)
        data = yaml.safe_load((REPO / PRETRAINED).read_text())["data"]["init_args"]
        options = data["mask_folder"]
        if quick:
            num_classes = yaml.safe_load((REPO / PRETRAINED).read_text())["model"]["model"]["init_args"]["num_classes"]
            root = (mask_folder_subset(ROBOFLOW, work / "data", QUICK_SIZES) if ROBOFLOW.is_dir()
                    else tiny_mask_folder(work / "data", num_classes, QUICK_SIZES))  # fmt: skip
            figures["data"] = "roboflow_tqb_semantic subset" if ROBOFLOW.is_dir() else "generated mask folder (no ../shared/data)"
        elif not ROBOFLOW.is_dir():
            raise FileNotFoundError(f"roboflow_tqb_semantic is missing: {ROBOFLOW} (from ../shared/data)")
        else:
            root = REPO / data["root"]
        reader = split_reader(root, options)
        present = classes_in_masks(reader)
        figures["classes_absent_from_test"] = [name for name in reader.classes if name not in present]
        for name, (config_name, overrides) in list(RUNS.items())[: 1 if quick else None]:
            extra = [*overrides, *([f"--data.init_args.root={root}", *QUICK_TRAIN] if quick else [])]
            run_dir, seconds = fit(REPO / config_name, work / name, extra, minutes=MINUTES)
            report = run_dir / "report"
            metrics = evaluate_checkpoint(run_dir / "checkpoints" / "best.ckpt", ["--mask-folder", str(root), "--split", "test"], report)
            per_class = {key.split("/", 1)[1]: round(value, 4) for key, value in metrics.items() if key.startswith("iou/")}
            scored = {key: value for key, value in per_class.items() if key in present or key == "background"}
            min_class = min(scored, key=scored.get)
            figures[name] = {
                "config": config_name + (" (variant 32s)" if overrides else ""),
                "epochs": epochs_done(run_dir),
                "train_min": round(seconds / 60, 2),
                "test_mean_iou": round(metrics["mean_iou"], 4),
                "test_pixel_accuracy": round(metrics["pixel_accuracy"], 4),
                "test_iou": per_class,
                "min_class_iou": scored[min_class],
                "min_class": min_class,
            }
            if name == "fcn8s_pretrained":
                figures["drawn"] = draw_median_image(report / "predictions" / "masks", reader, work / DRAWN.name if quick else DRAWN)
    if not quick:
        pretrained, scratch, fcn32s = (figures[name]["test_mean_iou"] for name in RUNS)
        figures["pretrained_minus_scratch"] = round(pretrained - scratch, 4)
        figures["fcn8s_minus_fcn32s"] = round(pretrained - fcn32s, 4)
        figures["targets"] = {
            f"pretrained_minus_scratch_at_least_{TARGET_PRETRAINED_GAIN}": figures["pretrained_minus_scratch"] >= TARGET_PRETRAINED_GAIN,
            "fcn8s_at_least_fcn32s": figures["fcn8s_minus_fcn32s"] >= 0,
            "no_class_at_0_iou": figures["fcn8s_pretrained"]["min_class_iou"] > 0,
        }
    return figures
