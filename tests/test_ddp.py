"""Every shapes config fits on 2 CPU processes (DDP, gloo), and validation gives the same numbers on
1 and 2 processes, on an odd number of images of different sizes, with the configs' own batch sizes.

The 2-process fit is ``scripts/train.py`` in a subprocess, exactly as a user starts it:
Lightning's DDP launcher then starts the second process by running the same command again. Its
end-of-epoch validation (2 processes) is compared with ``validate`` of the checkpoint it saved
right after, run by the same script in this process (1 process). That predictions themselves do
not depend on which images share a batch is shown sharply in ``tests/test_predictor.py``; here
the barely trained models may score 0 (YOLO), which is why that test exists.
"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch.distributed as dist
import yaml
from PIL import Image

from datasets.shapes_writer import write_shapes
from script_loader import load_script

REPO = Path(__file__).resolve().parents[1]
SHAPES_CONFIGS = sorted((REPO / "configs").glob("*/shapes.yaml"))
SIZES = {"train": 8, "val": 7, "test": 3}  # 7: the padded sampler repeats one image on the second rank
IMAGE_SIZE = 96
EXTRA_PIXELS = [(0, 0), (32, 0), (0, 24), (16, 40), (8, 8), (40, 16), (0, 0)]  # (right, bottom) per val image
TIMEOUT_S = 300
# Validation keeps every detection of the barely trained models, so that any difference between
# the predictions of 1 and 2 processes has a chance to show in the metrics.
KEEP_ALL_DETECTIONS = {"faster_rcnn": "score_thresh", "fast_rcnn": "score_thresh", "yolo": "score_threshold", "fast_yolo": "score_threshold", "mnc": "score_thresh"}

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed with gloo is not available")


def _pad_split(voc: Path, split: str) -> None:
    """Pad every image of ``split`` (right and bottom, grey) so the images differ in size; boxes stay valid."""
    names = (voc / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
    for name, (right, bottom) in zip(names, EXTRA_PIXELS, strict=True):
        for folder, suffix, fill in (("JPEGImages", "jpg", 128), ("SegmentationClass", "png", 0), ("SegmentationObject", "png", 0)):
            path = voc / folder / f"{name}.{suffix}"
            with Image.open(path) as image:
                padded = Image.new(image.mode, (image.width + right, image.height + bottom), fill if image.mode != "RGB" else (fill,) * 3)
                if image.mode == "P":
                    padded.putpalette(image.getpalette())
                padded.paste(image, (0, 0))
            padded.save(path, quality=95) if suffix == "jpg" else padded.save(path)
        xml = voc / "Annotations" / f"{name}.xml"
        text = xml.read_text()
        width, height = IMAGE_SIZE + right, IMAGE_SIZE + bottom
        xml.write_text(text.replace(f"<width>{IMAGE_SIZE}</width>", f"<width>{width}</width>", 1).replace(f"<height>{IMAGE_SIZE}</height>", f"<height>{height}</height>", 1))


@pytest.fixture(scope="module")
def mixed_roots(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Path]:
    """Shapes roots (multi- and single-object) whose validation images have different sizes."""
    roots = {}
    for single in (False, True):
        layout = write_shapes(tmp_path_factory.mktemp(f"mixed_{int(single)}"), sizes=SIZES, image_size=IMAGE_SIZE, seed=3, single_object=single)
        _pad_split(layout.voc_root, "val")
        roots[single] = layout.root
    return roots


def _train(args: list[str], cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert result.returncode == 0, result.stderr[-4000:]


def _common(config: Path, root: Path, devices: int, name: str, out: Path) -> list[str]:
    logger = {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(out), "name": name}}
    return [
        "--config", str(config), "--data.init_args.root", str(root), "--data.init_args.num_workers", "0",
        "--trainer.accelerator", "cpu", "--trainer.devices", str(devices),
        "--trainer.strategy", "ddp" if devices > 1 else "auto", "--trainer.logger", json.dumps(logger),
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
    ]  # fmt: skip


def _logged(out: Path, name: str) -> dict[str, float]:
    """The ``val/*`` values of a ``validate`` run's CSV log."""
    (path,) = (out / name).glob("version_*/metrics.csv")
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {k: float(v) for row in rows for k, v in row.items() if k.startswith("val/") and v != ""}


@pytest.mark.parametrize("config", SHAPES_CONFIGS, ids=lambda p: p.parent.name)
def test_two_process_fit_and_validation_equal_to_one_process(config: Path, mixed_roots: dict[bool, Path], tmp_path: Path) -> None:
    data = yaml.safe_load(config.read_text())["data"]["init_args"]
    root = mixed_roots[bool(data.get("shapes_single_object"))]
    checkpoints = tmp_path / "checkpoints"
    extra = []
    model = yaml.safe_load(config.read_text())["model"]["model"]
    init_args = model.get("init_args", {})
    if "cache_dir" in init_args:  # Fast R-CNN / R-CNN: keep the proposal cache out of the repo
        extra = ["--model.model.init_args.cache_dir", str(tmp_path / "proposals")]
    head = config.parent.name
    keep_all = [f"--model.model.init_args.{KEEP_ALL_DETECTIONS[head]}=0.0"] if head in KEEP_ALL_DETECTIONS else []
    # the 2-process fit validates at the end of its epoch, then saves last.ckpt with those weights
    _train(
        ["fit", *_common(config, root, 2, "val2", tmp_path), *extra, *keep_all, "--trainer.max_epochs", "1",
         "--trainer.limit_train_batches", "2", "--trainer.check_val_every_n_epoch", "1",
         "--checkpoint.dirpath", str(checkpoints), "--last_checkpoint.dirpath", str(checkpoints)],
        tmp_path,
    )  # fmt: skip
    last = checkpoints / "last.ckpt"
    assert last.is_file()
    two_name = "val2"
    if "callbacks" in yaml.safe_load(config.read_text()).get("trainer", {}):  # stages after fit (R-CNN's SVMs) change the model
        two_name = "val2_after_fit"
        _train(["validate", *_common(config, root, 2, two_name, tmp_path), *extra, *keep_all, "--ckpt_path", str(last)], tmp_path)
    load_script("train").main(["validate", *_common(config, root, 1, "val1", tmp_path), *extra, *keep_all, "--ckpt_path", str(last)])
    one, two = _logged(tmp_path, "val1"), _logged(tmp_path, two_name)
    assert one and one.keys() == two.keys()
    for key, value in one.items():
        assert two[key] == pytest.approx(value, abs=1e-9), key
    assert np.isfinite(list(one.values())).all()
