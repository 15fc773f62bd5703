"""Every configs/*/coco2017.yaml on real COCO 2017 files (../shared/data/coco_mini): fit a few steps,
evaluate the checkpoint with the COCO protocol (the FCN metrics for FCN) on a two-image subset of
val2017, and batch-predict val images.

Small overrides keep each run to seconds on one CPU thread: tiny input sizes and heads, one or two
batches, random backbone weights given as ``weights null`` on the command line (the documented way
to train from scratch), logger off.
"""

import json
import shutil
from pathlib import Path

import pytest
from script_loader import load_script

from benchmarks.mnc_coco import first_images

REPO = Path(__file__).resolve().parents[1]
COCO_CONFIGS = sorted((REPO / "configs").glob("*/coco2017.yaml"))
MODEL = "--model.model.init_args."
# per head: what shrinks the paper's network to a CPU smoke test (names as in its config)
SMALL = {
    "faster_rcnn": {"min_size": 128, "max_size": 160, "representation_size": 64, "rpn_pre_nms_top_n": "[200, 100]",
                    "rpn_post_nms_top_n": "[50, 50]", "rois_per_image": 32},
    "fast_rcnn": {"min_size": 128, "max_size": 160, "representation_size": 64, "max_proposals": 50},
    "yolo": {"image_size": 224, "head_convs": 1, "head_channels": 32, "hidden_dim": 64},
    "rcnn": {"representation_size": 64, "max_proposals": 50, "crops_per_batch": 16, "eval_chunk": 16},
    "localization": {"image_size": 64},
    "fcn": {},
    "overfeat": {"window_size": 64, "pool_size": 2, "hidden": 32, "train_scales": "[64]", "test_scales": "[64, 96]"},
    "mnc": {"min_size": 128, "max_size": 160, "representation_size": 64, "rpn_pre_nms_top_n": "[200, 100]",
            "rpn_post_nms_top_n": "[50, 50]", "rois_per_image": 32},
}


def test_every_head_has_a_coco2017_config():
    assert {p.parent.name for p in COCO_CONFIGS} == set(SMALL)


SLOW = {  # head -> why it is not run here (each is a reason to give it smaller overrides, not a pass)
    "rcnn": "R-CNN (selective search + a CNN pass per warped crop) ran > 500 s on coco_mini at one thread",
}


@pytest.mark.parametrize(
    "config",
    [pytest.param(c, marks=pytest.mark.skip(reason=SLOW[c.parent.name])) if c.parent.name in SLOW else c for c in COCO_CONFIGS],
    ids=lambda p: p.parent.name,
)
def test_coco2017_config_fits_and_predicts_on_coco_mini(config, shared_data, tmp_path):
    root = shared_data / "coco_mini"
    head = config.parent.name
    overrides = [f"{MODEL}{key}={value}" for key, value in SMALL[head].items()]
    if head in ("fast_rcnn", "rcnn"):
        overrides.append(f"{MODEL}cache_dir={tmp_path / 'proposals'}")
    if head == "fcn":
        overrides += ["--data.init_args.crop_size=96"]
    run = tmp_path / "run"
    cli = load_script("train").main([
        "fit", "--config", str(config), *overrides,
        f"{MODEL}backbone.init_args.weights", "null",
        "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
        "--trainer.logger=false", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        "--trainer.accelerator=cpu", "--trainer.devices=1", f"--trainer.default_root_dir={run}",
        f"--data.init_args.root={root}", "--data.init_args.num_workers=0", "--data.init_args.batch_size=1",
        "--data.init_args.eval_batch_size=1",
    ])
    assert cli.trainer.global_step == 2 and cli.datamodule.num_classes == 80
    assert any(key.startswith("val/") for key in cli.trainer.callback_metrics)
    checkpoint = run / "checkpoints" / "last.ckpt"
    assert checkpoint.is_file()
    subset = first_images(root / "annotations" / "instances_val2017.json", tmp_path / "instances_val_subset.json", 2)
    report = tmp_path / "report"
    status = load_script("evaluate").main([
        "--checkpoint", str(checkpoint), "--coco-ann", str(subset), "--images", str(root / "val2017"), "--out", str(report),
        "--device", "cpu", "--num-workers", "0", "--no-progress", "--protocol", "semantic" if head == "fcn" else "coco",
    ])  # fmt: skip
    assert status == 0
    metrics = json.loads((report / "metrics.json").read_text())
    assert ("mean_iou" if head == "fcn" else "map") in metrics

    photos = tmp_path / "photos"
    photos.mkdir()
    for image in sorted((root / "val2017").glob("*.jpg"))[:2]:
        shutil.copy(image, photos / image.name)
    out = tmp_path / "predictions"
    status = load_script("predict").main([
        "--checkpoint", str(checkpoint), "--input", str(photos), "--out", str(out),
        "--device", "cpu", "--num-workers", "0", "--no-progress", "--no-draw",
    ])
    assert status == 0
    written = {p.name for p in out.iterdir()}
    assert "errors.txt" in written and not (out / "errors.txt").read_text().strip()
    if head != "fcn":
        predictions = json.loads((out / "predictions.json").read_text())
        assert isinstance(predictions, list)
