"""Batch inference: safe checkpoint loading, outputs, unreadable files, resume after interruption."""

import csv
import functools
import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from system_toys import ToyDataModule, ToyEvaluator, save_checkpoint

from detection.checkpoint import CheckpointError, load_detector
from detection.inference import batch_predict
from detection.journal import JOURNAL, JournalIndex
from detection.system import DetectionSystem
from datasets.folder import ImageFolder
from detection.tiny import TinyDetector
from script_loader import load_script

MODEL_CONFIG = {"class_path": "detection.tiny.TinyDetector", "init_args": {"num_classes": 2, "width": 8, "image_size": 32}}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint trained for two steps in plain Python, with the run's config.yaml beside it."""
    run = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    system = DetectionSystem(
        model=TinyDetector(num_classes=2), evaluator=functools.partial(ToyEvaluator), monitor="cls_loc_accuracy"
    )
    trainer = L.Trainer(
        accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0,
    )
    trainer.fit(system, ToyDataModule())
    (run / "checkpoints").mkdir()
    trainer.save_checkpoint(run / "checkpoints" / "model.ckpt")
    (run / "config.yaml").write_text(yaml.safe_dump({"model": {"model": MODEL_CONFIG}}))
    return run / "checkpoints" / "model.ckpt"


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """An RGB JPEG, a grayscale PNG (in a subfolder), a corrupt JPEG and a non-image file."""
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(root / "a_rgb.jpg")
    Image.fromarray(rng.integers(0, 255, (30, 30), dtype=np.uint8), mode="L").save(root / "sub" / "b_gray.png")
    (root / "c_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (root / "notes.txt").write_text("not an image")
    return root


class _CountingModel(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.images_seen: list[tuple[int, ...]] = []

    def forward(self, images, targets=None):
        self.images_seen.extend(tuple(im.shape) for im in images)
        return self.model(images, targets)


def _predict(detector, folder: Path, out: Path, **kwargs):
    return batch_predict(detector.model, detector.classes, ImageFolder(folder), root=folder, out_dir=out, **kwargs)


def test_checkpoint_loads_weights_only_and_matches_training(checkpoint: Path) -> None:
    detector = load_detector(checkpoint)  # config.yaml discovered one directory up
    assert detector.classes == ["red", "green"]
    assert not detector.model.training
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    torch.testing.assert_close(detector.model.box_head.weight, state["model.box_head.weight"])


def test_checkpoint_with_pickled_objects_or_foreign_class_path_is_refused(checkpoint: Path, tmp_path: Path) -> None:
    ckpt = torch.load(checkpoint, weights_only=True)
    evil = tmp_path / "evil.ckpt"
    torch.save({**ckpt, "payload": functools.partial(print, "pwned")}, evil)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_detector(evil, config=checkpoint.parent.parent / "config.yaml")
    foreign = tmp_path / "foreign.yaml"
    foreign.write_text(yaml.safe_dump({"model": {"model": {"class_path": "os.system", "init_args": {}}}}))
    with pytest.raises(CheckpointError, match="outside the allowed packages"):
        load_detector(checkpoint, config=foreign)


def test_folder_with_grayscale_and_corrupt_files(checkpoint: Path, folder: Path, tmp_path: Path) -> None:
    detector = load_detector(checkpoint)
    counting = _CountingModel(detector.model)
    detector.model = counting
    out = tmp_path / "out"
    summary = _predict(detector, folder, out, batch_size=2, score_threshold=0.0)
    assert (summary.total, summary.processed, summary.errors) == (3, 2, 1)
    assert sorted(counting.images_seen) == [(3, 30, 30), (3, 40, 56)]  # the gray PNG arrives as RGB

    images = json.loads((out / "images.json").read_text())
    assert [(im["id"], im["file_name"], im["width"], im["height"]) for im in images["images"]] == [
        (1, "a_rgb.jpg", 56, 40), (3, "sub/b_gray.png", 30, 30)  # ids number sorted paths: 2 is the corrupt one
    ]
    assert images["categories"] == [{"id": 1, "name": "red"}, {"id": 2, "name": "green"}]
    results = json.loads((out / "predictions.json").read_text())
    assert sorted(r["image_id"] for r in results) == [1, 3]  # TinyDetector: one box per image
    assert (out / "errors.txt").read_text().startswith("c_corrupt.jpg\t")
    with open(out / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == ["a_rgb.jpg", "sub/b_gray.png"]
    assert all(r["label"] in ("red", "green") for r in rows)
    for row, result in zip(rows, sorted(results, key=lambda r: r["image_id"])):
        x1, y1, x2, y2 = (float(row[k]) for k in ("x1", "y1", "x2", "y2"))
        assert result["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=0.01)
    drawn = Image.open(out / "drawn" / "sub" / "b_gray.png.png")
    assert drawn.mode == "RGB" and drawn.size == (30, 30)
    assert (out / "drawn" / "a_rgb.jpg.png").is_file()

    # The results load into pycocotools against images.json.
    from pycocotools.coco import COCO

    gt = COCO()
    gt.dataset = {**images, "annotations": []}
    gt.createIndex()
    assert len(gt.loadRes(str(out / "predictions.json")).getAnnIds()) == len(results)


def test_score_threshold_drops_detections(checkpoint: Path, folder: Path, tmp_path: Path) -> None:
    summary = _predict(load_detector(checkpoint), folder, tmp_path / "out", score_threshold=1.01, draw=False)
    assert summary.detections == 0 and summary.processed == 2
    assert not (tmp_path / "out" / "drawn").exists()


def test_interrupted_run_resumes_without_redoing_or_losing(checkpoint: Path, folder: Path, tmp_path: Path) -> None:
    detector = load_detector(checkpoint)
    counting = _CountingModel(detector.model)
    detector.model = counting
    out = tmp_path / "out"

    def interrupt_after_first_batch(batches, total):
        for i, batch in enumerate(batches):
            if i == 1:
                raise KeyboardInterrupt
            yield batch

    with pytest.raises(KeyboardInterrupt):
        _predict(detector, folder, out, batch_size=1, score_threshold=0.0, progress=interrupt_after_first_batch)
    assert counting.images_seen == [(3, 40, 56)]
    first_results = json.loads((out / "predictions.json").read_text())  # written on the way out
    assert [r["image_id"] for r in first_results] == [1]
    first_drawing = (out / "drawn" / "a_rgb.jpg.png").read_bytes()
    with open(out / JOURNAL, "a") as journal:
        journal.write('{"path": "sub/b_gray.png", "width": 3')  # a line cut short by a crash

    summary = _predict(detector, folder, out, batch_size=1, score_threshold=0.0)
    assert counting.images_seen == [(3, 40, 56), (3, 30, 30)]  # the first image was not redone
    assert (summary.skipped, summary.processed, summary.errors) == (1, 1, 1)
    results = json.loads((out / "predictions.json").read_text())
    assert sorted(r["image_id"] for r in results) == [1, 3]
    assert [r for r in results if r["image_id"] == 1] == first_results
    assert (out / "drawn" / "a_rgb.jpg.png").read_bytes() == first_drawing
    assert set(JournalIndex.read(out).lines) == {"a_rgb.jpg", "sub/b_gray.png", "c_corrupt.jpg"}

    again = _predict(detector, folder, out, batch_size=1)
    assert again.processed == 0 and again.skipped == 3 and len(counting.images_seen) == 2


def test_out_inside_input_is_refused(checkpoint: Path, folder: Path) -> None:
    with pytest.raises(ValueError, match="inside the input"):
        _predict(load_detector(checkpoint), folder, folder / "predictions")


def test_predict_script_end_to_end(checkpoint: Path, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    script = load_script("predict")
    out = tmp_path / "out"
    argv = ["--checkpoint", str(checkpoint), "--input", str(folder), "--out", str(out), "--num-workers", "0", "--no-progress"]
    assert script.main(argv) == 0
    assert "3 images: 2 predicted now" in capsys.readouterr().out
    assert len(json.loads((out / "predictions.json").read_text())) == 2
    assert script.main(argv) == 0
    assert "0 predicted now" in capsys.readouterr().out
    # bad input: exit status 2 and one line naming what is wrong, nothing written
    for bad, says in (
        (["--input", str(tmp_path / "missing")], "missing: input folder does not exist"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
        (["--checkpoint", str(folder / "a_rgb.jpg")], "a_rgb.jpg: not loadable with weights_only=True"),
    ):
        assert script.main([*argv, *bad, "--out", str(tmp_path / "bad")]) == 2
        assert says in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()


def test_relative_input_path_gives_paths_relative_to_the_input(
    checkpoint: Path, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(folder.parent)
    detector = load_detector(checkpoint)
    batch_predict(detector.model, detector.classes, ImageFolder("images"), root="images", out_dir="out", draw=False)
    images = json.loads((tmp_path / "out" / "images.json").read_text())
    assert [im["file_name"] for im in images["images"]] == ["a_rgb.jpg", "sub/b_gray.png"]


def test_instance_masks_flow_to_rle_and_mask_protocols(shapes_root, tmp_path: Path) -> None:
    """A mask head's masks: RLE in predictions.json that pycocotools decodes to the predicted
    masks, and ``evaluate.py --checkpoint`` scores them with ``coco_segm`` and ``region``."""
    from pycocotools import mask as mask_utils
    from system_toys import ToyMaskDetector

    from datasets.shapes import SHAPE_CLASSES
    from datasets.voc import VOCDetection
    from detection.predictor import predict_images

    torch.manual_seed(0)
    model = ToyMaskDetector(num_classes=len(SHAPE_CLASSES))
    config = {"class_path": "system_toys.ToyMaskDetector", "init_args": {"num_classes": len(SHAPE_CLASSES)}}
    checkpoint = tmp_path / "mask.ckpt"
    save_checkpoint(model, config, checkpoint)
    common = ["--checkpoint", str(checkpoint), "--allow-class-prefix", "system_toys.", "--shapes", str(shapes_root.root),
              "--split", "val", "--num-workers", "0", "--no-progress"]  # fmt: skip
    assert load_script("predict").main([*common, "--out", str(tmp_path / "pred")]) == 0
    results = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    reader = VOCDetection(shapes_root.voc_root, "val", classes=list(SHAPE_CLASSES))
    expected = predict_images(model.eval(), [reader[i][0] for i in range(len(reader))])
    assert len(results) == len(expected) and all("segmentation" in r for r in results)
    for result in results:
        decoded = mask_utils.decode({"size": result["segmentation"]["size"], "counts": result["segmentation"]["counts"].encode()})
        assert np.array_equal(decoded, expected[result["image_id"]]["masks"][0].numpy().astype(np.uint8))
    for protocol, key in (("coco_segm", "segm/map"), ("region", "map_r_50")):
        out = tmp_path / protocol
        assert load_script("evaluate").main([*common, "--protocol", protocol, "--out", str(out)]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert key in metrics and 0.0 <= metrics[key] <= 1.0
