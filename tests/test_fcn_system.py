"""FCN through the shared system and scripts: train, eval, staged init, batch inference to VOC
palette PNGs, and evaluation from the checkpoint."""

import shutil
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from datasets.datamodule import DetectionDataModule
from datasets.folder import ImageFolder
from datasets.voc import VOCSegmentation
from detection.backbones import SmallCNN
from detection.checkpoint import init_from_checkpoint, load_detector
from detection.inference import DRAWN_DIR, MASKS_DIR, batch_predict
from detection.prediction_outputs import ERRORS_TXT
from detection.predictor import predict_images
from detection.system import DetectionSystem
from segmentation.fcn import FCN, pixel_loss
from segmentation.metrics import ConfusionMatrix
from script_loader import load_script

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["circle", "square", "triangle", "cross"]
FCN_ARGS = {"num_classes": len(CLASSES), "head_channels": 8, "dropout": 0.0}


def _fcn(variant: str = "8s") -> FCN:
    return FCN(backbone=SmallCNN(width=4), variant=variant, **FCN_ARGS)


def _system(variant: str = "8s") -> DetectionSystem:
    return DetectionSystem(model=_fcn(variant), evaluator=ConfusionMatrix, monitor="mean_iou", lr=0.01)


def _config(variant: str) -> dict:
    backbone = {"class_path": "detection.backbones.SmallCNN", "init_args": {"width": 4}}
    model = {"class_path": "segmentation.fcn.FCN", "init_args": {**FCN_ARGS, "variant": variant, "backbone": backbone}}
    return {"model": {"model": model, "classes": CLASSES}}


def _trainer(root: Path, **kwargs) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=root, **kwargs,
    )


@pytest.fixture(scope="module")
def datamodule(shapes_root) -> DetectionDataModule:
    return DetectionDataModule(format="shapes", root=str(shapes_root.root), task="semantic", batch_size=2, num_workers=0)


@pytest.fixture(scope="module")
def trained_32s(datamodule, tmp_path_factory) -> Path:
    """An FCN-32s trained for a few steps, saved as a checkpoint."""
    root = tmp_path_factory.mktemp("fcn32")
    torch.manual_seed(0)
    system = _system("32s")
    trainer = _trainer(root, max_steps=3, enable_checkpointing=False, limit_val_batches=1)
    trainer.fit(system, datamodule)
    trainer.save_checkpoint(root / "fcn32.ckpt")
    (root / "config.yaml").write_text(yaml.safe_dump(_config("32s")))  # as LightningCLI writes it
    return root / "fcn32.ckpt"


def test_train_and_eval_step_log_the_loss_and_mean_iou(datamodule, tmp_path):
    system = _system()
    before = {k: v.clone() for k, v in system.model.state_dict().items()}
    trainer = _trainer(tmp_path, fast_dev_run=1)
    trainer.fit(system, datamodule)
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss"])
    assert 0.0 <= float(metrics["val/mean_iou"]) <= 1.0
    assert {"val/pixel_accuracy", "val/fw_iou", "val/iou/background", "val/iou/circle"} <= set(metrics)
    changed = [k for k, v in system.model.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, before[k])]
    assert any(k.startswith("backbone.") for k in changed) and any(k.startswith("score.") for k in changed)


def test_void_pixels_do_not_count_in_the_loss():
    logits = torch.randn(2, 5, 6, 7)
    masks = torch.randint(0, 5, (2, 6, 7))
    masks[:, :, :3] = 255
    changed = logits.clone()
    changed[:, :, :, :3] = 100 * torch.randn(2, 5, 6, 3)  # anything at void pixels
    torch.testing.assert_close(pixel_loss(changed, masks), pixel_loss(logits, masks))
    valid = masks[:, :, 3:]
    expected = torch.nn.functional.cross_entropy(logits[:, :, :, 3:], valid)
    torch.testing.assert_close(pixel_loss(logits, masks), expected)


def test_staged_training_copies_the_coarser_net(trained_32s):
    fine = _fcn("16s")
    left = init_from_checkpoint(fine, trained_32s)
    coarse = torch.load(trained_32s, weights_only=True)["state_dict"]
    torch.testing.assert_close(fine.score.weight, coarse["model.score.weight"])
    torch.testing.assert_close(fine.backbone.stages["c5"][0].weight, coarse["model.backbone.stages.c5.0.weight"])
    assert "final_upsampler.weight" in left and any(k.startswith("skip_scores") for k in left)
    assert all(k.startswith(("skip_", "final_upsampler")) for k in left)
    with pytest.raises(ValueError, match="no parameter matches"):
        init_from_checkpoint(torch.nn.Linear(2, 2), trained_32s)


def test_fcn_trains_through_the_shared_cli(shapes_root, tmp_path):
    cli = load_script("train").main([
        "fit", "--config", str(REPO / "configs" / "fcn" / "shapes.yaml"), "--trainer.fast_dev_run", "1",
        "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(tmp_path), "--data.init_args.root", str(shapes_root.root),
        "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "2",
        "--model.model.init_args.variant", "16s",
    ])
    assert cli.trainer.global_step == 1 and "val/mean_iou" in cli.trainer.callback_metrics


@pytest.fixture()
def folder(shapes_root, tmp_path) -> Path:
    """Three shapes images (one in a subfolder), a grayscale PNG and a corrupt JPEG."""
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    jpegs = sorted((shapes_root.root / "VOC" / "JPEGImages").glob("*.jpg"))[:3]
    for i, path in enumerate(jpegs):
        shutil.copy(path, (root / "sub" if i == 2 else root) / path.name)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (37, 53), dtype=np.uint8), mode="L").save(root / "gray.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    return root


def test_predicted_palette_masks_read_back_through_the_voc_reader(trained_32s, folder, tmp_path):
    loaded = load_detector(trained_32s)
    out = tmp_path / "out"
    summary = batch_predict(loaded.model, loaded.classes, ImageFolder(folder), root=folder, out_dir=out, batch_size=2)
    assert (summary.total, summary.processed, summary.errors) == (5, 4, 1)
    assert (out / ERRORS_TXT).read_text().startswith("broken.jpg\t")
    assert (out / DRAWN_DIR / "gray.png.png").is_file()

    # The masks are a VOC SegmentationClass folder: read them back with the VOC reader.
    voc = tmp_path / "voc"
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "JPEGImages").mkdir()
    (voc / "SegmentationClass").mkdir()
    names = []
    for image in [*folder.glob("*.jpg"), *(folder / "sub").glob("*.jpg")]:
        if image.name == "broken.jpg":
            continue
        shutil.copy(image, voc / "JPEGImages" / image.name)
        shutil.copy(out / MASKS_DIR / image.relative_to(folder).with_suffix(".png"), voc / "SegmentationClass" / f"{image.stem}.png")
        names.append(image.stem)
    (voc / "ImageSets" / "Segmentation" / "test.txt").write_text("\n".join(names) + "\n")
    dataset = VOCSegmentation(voc, "test", classes=CLASSES)
    for index in range(len(dataset)):
        image, target = dataset[index]
        (expected,) = predict_images(loaded.model, [image])
        assert torch.equal(target["semantic"].long(), expected["semantic"])


def test_segmentation_resumes_without_redoing_finished_images(trained_32s, folder, tmp_path):
    loaded = load_detector(trained_32s)
    out = tmp_path / "out"
    first = batch_predict(loaded.model, loaded.classes, ImageFolder(folder), root=folder, out_dir=out, batch_size=1, draw=False)
    written = {p: p.stat().st_mtime_ns for p in (out / MASKS_DIR).rglob("*.png")}
    second = batch_predict(loaded.model, loaded.classes, ImageFolder(folder), root=folder, out_dir=out, batch_size=1, draw=False)
    assert first.processed == 4 and second.skipped == 5 and second.processed == 0 and second.errors == 1
    assert {p: p.stat().st_mtime_ns for p in (out / MASKS_DIR).rglob("*.png")} == written


def test_predict_script_writes_masks_and_evaluate_scores_the_checkpoint(trained_32s, datamodule, folder, shapes_root, tmp_path, capsys):
    predict = load_script("predict")
    code = predict.main(["--checkpoint", str(trained_32s), "--input", str(folder), "--out", str(tmp_path / "o"), "--num-workers", "0", "--no-progress"])
    assert code == 0 and "4 predicted now" in capsys.readouterr().out
    assert len(list((tmp_path / "o" / MASKS_DIR).rglob("*.png"))) == 4
    assert predict.main(["--checkpoint", str(trained_32s), "--input", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2

    # evaluate.py --checkpoint gives the numbers of Trainer.test on the same split
    evaluate = load_script("evaluate")
    out = tmp_path / "report"
    assert evaluate.main(["--checkpoint", str(trained_32s), "--shapes", str(shapes_root.root), "--split", "val",
                          "--out", str(out), "--num-workers", "0", "--no-progress"]) == 0
    metrics = yaml.safe_load((out / "metrics.json").read_text())
    system = _system("32s")
    trainer = _trainer(tmp_path)
    (tested,) = trainer.validate(system, datamodule, ckpt_path=str(trained_32s), verbose=False)
    for key in ("mean_iou", "pixel_accuracy", "fw_iou", "iou/circle"):
        assert metrics[key] == pytest.approx(tested[f"val/{key}"], abs=1e-6), key
    report = (out / "report.md").read_text()
    assert "| mean_iou |" in report and "worst_images.png" in report and (out / "worst_images.png").is_file()
    assert "| circle |" in report
