"""The Python API (``detection/api.py``): each verb gives what its command gives, and the example of
``docs/python_api.md`` runs as it stands there.

A YOLO head of ``configs/yolo/shapes.yaml``, untrained and seeded, with its weights spread (as in
``tests/test_export.py``: distinct scores, so no tie decides an order), saved as a checkpoint.
"""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from script_loader import load_script
from torch import nn

import detection
from system_toys import save_checkpoint

from datasets.base import image_to_tensor
from datasets.safe_io import read_image
from datasets.shapes import SHAPE_CLASSES
from datasets.split_source import SplitSource
from detection import Detector, SplitSource as ExportedSplitSource, train
from detection.checkpoint import build_model
from detection.export import ExportError
from detection.predictor import predict_images

REPO = Path(__file__).resolve().parents[1]
HEAD = "yolo"
DOC = REPO / "docs" / "python_api.md"
BOX_TOLERANCE = 1e-3  # px: onnxruntime vs eager (tests/test_export.py)


@torch.no_grad()
def _spread(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            module.weight.normal_(0.0, 1.0 / module.weight[0].numel() ** 0.5)
            if module.bias is not None:
                module.bias.normal_(0.0, 0.3)
    return model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    config = yaml.safe_load((REPO / "configs" / HEAD / "shapes.yaml").read_text())["model"]["model"]
    model = _spread(build_model(config))
    path = tmp_path_factory.mktemp("api") / "best.ckpt"
    save_checkpoint(model, config, path)
    return path


@pytest.fixture()
def photos(shapes_root, tmp_path: Path) -> Path:
    """Four test images of the tiny shapes as a folder."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in sorted((shapes_root.voc_root / "JPEGImages").glob("*.jpg"))[:4]:
        shutil.copy(path, folder / path.name)
    return folder


def test_the_api_is_importable_from_detection() -> None:
    assert ExportedSplitSource is SplitSource and callable(train)
    with pytest.raises(AttributeError, match="no attribute 'Detektor'"):
        detection.Detektor  # noqa: B018


def test_predict_takes_paths_pil_arrays_and_tensors(checkpoint: Path, photos: Path) -> None:
    detector = Detector.load(checkpoint)
    assert detector.classes == list(SHAPE_CLASSES) and detector.task == "detection" and not detector.model.training
    paths = sorted(photos.iterdir())
    arrays = [read_image(p) for p in paths]
    expected = predict_images(detector.model, [image_to_tensor(a) for a in arrays])
    assert all(len(p["scores"]) > 0 for p in expected)  # comparisons of nothing would prove nothing
    inputs = {
        "path": paths,
        "str": [str(p) for p in paths],
        "pil": [Image.open(p) for p in paths],
        "array": arrays,
        "tensor": [image_to_tensor(a) for a in arrays],
        "uint8 tensor": [torch.from_numpy(a).permute(2, 0, 1).contiguous() for a in arrays],
    }
    for kind, images in inputs.items():
        got = detector.predict(images, batch_size=3)  # two batches
        assert len(got) == len(expected), kind
        for want, pred in zip(expected, got, strict=True):
            assert pred.keys() == want.keys() == {"boxes", "labels", "scores"}, kind
            for key in want:
                torch.testing.assert_close(pred[key], want[key], msg=f"{kind}: {key}")
    one = detector(paths[0])  # one image in, one dict out
    torch.testing.assert_close(one["boxes"], expected[0]["boxes"])
    threshold = float(one["scores"].median())
    kept = detector(paths[0], score_threshold=threshold)
    mask = one["scores"] >= threshold
    assert 0 < int(mask.sum()) < len(mask), "the threshold should keep some detections and drop others"
    for key in ("boxes", "labels", "scores"):
        assert torch.equal(kept[key], one[key][mask]), key


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((20, 30), np.uint8), r"\[H, W, 3\] uint8 RGB, got shape \(20, 30\)"),
        (np.zeros((20, 30, 3), np.float32), r"got shape \(20, 30, 3\) float32"),
        (torch.zeros(20, 30, 3), r"\[3, H, W\], got shape \[20, 30, 3\]"),
        (torch.zeros(3, 20, 30, dtype=torch.int64), r"float in \[0, 1\] or uint8, got torch.int64"),
    ],
)
def test_predict_refuses_images_it_cannot_read_saying_why(checkpoint: Path, image, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Detector.load(checkpoint).predict(image)


def _outputs(folder: Path) -> dict[str, str]:
    return {name: (folder / name).read_text() for name in ("predictions.json", "predictions.csv", "images.json")}


def test_predict_folder_writes_what_predict_py_writes(checkpoint: Path, photos: Path, shapes_root, tmp_path: Path, capsys) -> None:
    detector = Detector.load(checkpoint)
    summary = detector.predict_folder(photos, tmp_path / "api", draw=False)
    assert (summary.total, summary.processed, summary.errors) == (4, 4, 0) and summary.detections > 0
    argv = ["--checkpoint", str(checkpoint), "--num-workers", "0", "--no-progress", "--no-draw", "--device", "cpu"]
    assert load_script("predict").main([*argv, "--input", str(photos), "--out", str(tmp_path / "cli")]) == 0
    assert _outputs(tmp_path / "api") == _outputs(tmp_path / "cli")
    again = detector.predict_folder(photos, tmp_path / "api", draw=False)  # resumes: nothing left to do
    assert (again.skipped, again.processed) == (4, 0)

    split = SplitSource(shapes=shapes_root.root, split="test")
    detector.predict_folder(split, tmp_path / "api_split", draw=False)
    assert load_script("predict").main([*argv, "--shapes", str(shapes_root.root), "--split", "test", "--out", str(tmp_path / "cli_split")]) == 0
    assert _outputs(tmp_path / "api_split") == _outputs(tmp_path / "cli_split")
    capsys.readouterr()


def test_evaluate_returns_the_metrics_evaluate_py_writes(checkpoint: Path, shapes_root, tmp_path: Path, capsys) -> None:
    detector = Detector.load(checkpoint)
    split = SplitSource(shapes=shapes_root.root, split="test")
    for protocol in ("voc", "coco"):
        metrics = detector.evaluate(split, protocol=protocol, out_dir=tmp_path / f"api_{protocol}", gallery=0)
        argv = ["--checkpoint", str(checkpoint), "--shapes", str(shapes_root.root), "--split", "test", "--protocol", protocol,
                "--out", str(tmp_path / f"cli_{protocol}"), "--gallery", "0", "--num-workers", "0", "--no-progress", "--device", "cpu"]  # fmt: skip
        assert load_script("evaluate").main(argv) == 0
        assert metrics == json.loads((tmp_path / f"cli_{protocol}" / "metrics.json").read_text()), protocol
        assert (tmp_path / f"api_{protocol}" / "report.md").is_file()
    assert {"map", "map_50", "ap/circle"} <= metrics.keys()  # COCO's names
    before = set(tmp_path.iterdir())
    assert detector.evaluate(split, protocol="coco", gallery=0) == metrics  # no out_dir: nothing left behind
    assert set(tmp_path.iterdir()) == before
    with pytest.raises(ValueError, match="protocol semantic does not fit a detection model"):
        detector.evaluate(split, protocol="semantic")
    capsys.readouterr()


def test_export_then_load_the_onnx_model(checkpoint: Path, photos: Path, tmp_path: Path) -> None:
    detector = Detector.load(checkpoint)
    path = detector.export(tmp_path / "exported")
    assert path == tmp_path / "exported" / "model.onnx" and (tmp_path / "exported" / "metadata.json").is_file()
    exported = Detector.load(path)
    assert exported.classes == detector.classes
    images = sorted(photos.iterdir())
    for want, got in zip(detector(images), exported(images), strict=True):
        assert torch.equal(want["labels"], got["labels"])
        torch.testing.assert_close(got["boxes"], want["boxes"], atol=BOX_TOLERANCE, rtol=0)
    with pytest.raises(ExportError, match="an exported model already"):
        exported.export(tmp_path / "again")


def test_train_is_the_run_of_train_py(shapes_root, tmp_path: Path) -> None:
    """The same seeded config and overrides through ``detection.train`` and ``scripts/train.py fit``
    give the same weights; the run's checkpoints load as a ``Detector``."""

    def overrides(run: Path) -> list[str]:
        return [
            "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1", "--trainer.check_val_every_n_epoch", "1",
            "--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.default_root_dir", str(run), "--checkpoint.dirpath", str(run / "ckpt"), "--last_checkpoint.dirpath", str(run / "ckpt"),
            "--data.init_args.root", str(shapes_root.root), "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "2",
        ]  # fmt: skip

    config = REPO / "configs" / HEAD / "shapes.yaml"
    run = train(config, overrides(tmp_path / "api"))
    assert run.trainer.state.finished and run.trainer.global_step == 2
    assert run.best_checkpoint == tmp_path / "api" / "ckpt" / "best.ckpt" and run.best_checkpoint.is_file()
    assert run.last_checkpoint == tmp_path / "api" / "ckpt" / "last.ckpt" and run.last_checkpoint.is_file()
    cli = load_script("train").main(["fit", "--config", str(config), *overrides(tmp_path / "cli")])
    ours, theirs = run.system.state_dict(), cli.model.state_dict()
    assert ours.keys() == theirs.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=0, msg=key)
    assert Detector.load(run.best_checkpoint).classes == list(SHAPE_CLASSES)


def test_the_documented_example_runs(checkpoint: Path, shapes_root, tmp_path: Path, monkeypatch, capsys) -> None:
    """The first ``python`` block of ``docs/python_api.md``, as it stands, in a folder holding the
    files it names: ``best.ckpt``, ``photo.jpg`` and ``data/shapes``."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert blocks, f"{DOC} has no python block"
    example = blocks[0]
    assert len(example.strip().splitlines()) <= 12, "the example stays short enough for the README"
    shutil.copy(checkpoint, tmp_path / "best.ckpt")
    shutil.copy(sorted((shapes_root.voc_root / "JPEGImages").glob("*.jpg"))[0], tmp_path / "photo.jpg")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "shapes").symlink_to(shapes_root.root)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(example, str(DOC), "exec"), namespace)  # noqa: S102 - our own documentation
    assert set(namespace["names"]) <= set(SHAPE_CLASSES) and namespace["names"]
    assert (tmp_path / "report" / "report.md").is_file() and (tmp_path / "exported" / "model.onnx").is_file()
    assert namespace["metrics"] == json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert str(namespace["metrics"]["map_50"]) in capsys.readouterr().out


def test_the_readme_shows_the_documented_example() -> None:
    """A README block that uses the API is the example above, word for word, so it runs too."""
    doc_example = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)[0]
    readme = [b for b in re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.DOTALL) if "Detector" in b]
    if not readme:
        pytest.skip("README.md shows no Python API example yet")
    assert all(block == doc_example for block in readme), "README.md's API example differs from docs/python_api.md's"
