"""Export: every traceable head on onnxruntime predicts what the eager head predicts; clear refusals.

Untrained, seeded heads from ``configs/<head>/shapes.yaml`` with their weights spread
(``_spread``: an untrained head scores every class and region alike, and ties make the order of
NMS, top-k and argmax depend on the last bit, which no exported graph keeps).
"""

import json
from pathlib import Path

import pytest
import torch
import yaml
from script_loader import load_script
from torch import Tensor, nn

from system_toys import save_checkpoint

from datasets.shapes import SHAPE_CLASSES
from datasets.voc import VOCDetection
from detection.checkpoint import CheckpointError, build_model
from detection.export import METADATA_KEY, ExportError, export_model
from detection.onnx_model import OrtGraph, load_any, load_onnx
from detection.predictor import predict_images

REPO = Path(__file__).resolve().parents[1]
HEADS = ["localization", "yolo", "fcn", "overfeat", "faster_rcnn"]
BOX_TOLERANCE = 1e-3  # px, after NMS
SCORE_TOLERANCE = 1e-5  # relative to max(1, score): YOLO's confidences are not bounded by 1
SPREAD_GAIN = 1.0  # unit gain: larger weights saturate boxes at the image border, where a 1e-6 change moves them


def _config(head: str, **init_args) -> dict:
    config = yaml.safe_load((REPO / "configs" / head / "shapes.yaml").read_text())["model"]["model"]
    config["init_args"].update(init_args)
    return config


@torch.no_grad()
def _spread(model: nn.Module) -> nn.Module:
    """Unit-gain random weights and biases, so that scores, objectness and class maps differ."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            fan_in = module.weight[0].numel()
            module.weight.normal_(0.0, SPREAD_GAIN / fan_in**0.5)
            if module.bias is not None:
                module.bias.normal_(0.0, 0.3)
    return model


def _model(head: str) -> tuple[nn.Module, dict]:
    torch.manual_seed(0)
    config = _config(head)
    return _spread(build_model(config)).eval(), config


@pytest.fixture(scope="module")
def images(shapes_root) -> list[Tensor]:
    """The tiny split's 96 px images, and two of other sizes (batched alike and alone)."""
    reader = VOCDetection(shapes_root.voc_root, "val", classes=list(SHAPE_CLASSES))
    generator = torch.Generator().manual_seed(1)
    return [reader[i][0] for i in range(3)] + [torch.rand(3, 80, 112, generator=generator), torch.rand(3, 130, 100, generator=generator)]


def _assert_same(eager: list[dict], exported: list[dict]) -> dict[str, float]:
    """The same semantic maps; the same detections: each eager one matches its own exported one with
    the same label, the box within BOX_TOLERANCE px and the score within SCORE_TOLERANCE (in any order:
    two scores within float error may come out either way round). Returns the worst differences."""
    worst = {"box": 0.0, "score": 0.0, "detections": 0, "same_order": 0}
    for want, got in zip(eager, exported, strict=True):
        assert set(want) == set(got)
        if "semantic" in want:
            assert got["semantic"].dtype == torch.int64 and torch.equal(want["semantic"], got["semantic"])
            continue
        assert got["labels"].dtype == torch.int64 and len(want["labels"]) == len(got["labels"])
        taken = torch.zeros(len(got["labels"]), dtype=torch.bool)
        for i, (box, label, score) in enumerate(zip(want["boxes"], want["labels"], want["scores"])):
            box_diff = (got["boxes"] - box).abs().amax(dim=1)  # [K]
            score_diff = (got["scores"] - score).abs() / score.abs().clamp(min=1)  # [K]
            fits = (got["labels"] == label) & ~taken & (box_diff <= BOX_TOLERANCE) & (score_diff <= SCORE_TOLERANCE)
            assert fits.any(), f"eager detection {i} (label {int(label)}, score {float(score):.6f}, box {box.tolist()}) not exported"
            j = i if fits[i] else int(fits.nonzero()[0])
            taken[j] = True
            worst["box"] = max(worst["box"], float(box_diff[j]))
            worst["score"] = max(worst["score"], float(score_diff[j]))
            worst["same_order"] += int(j == i)
        worst["detections"] += len(want["labels"])
    return worst


@pytest.mark.parametrize("head", HEADS)
def test_onnx_predicts_as_the_eager_head(head: str, images: list[Tensor], tmp_path: Path) -> None:
    model, config = _model(head)
    path = export_model(model, classes=list(SHAPE_CLASSES), model_config=config, format="onnx", out_dir=tmp_path)
    loaded = load_onnx(path)
    assert loaded.classes == list(SHAPE_CLASSES) and loaded.model.num_classes == model.num_classes
    assert getattr(loaded.model, "task", "detection") == getattr(model, "task", "detection")
    if head == "faster_rcnn":  # the graph takes one image per run: compare with the eager head one image at a time
        eager = [predict_images(model, [image])[0] for image in images]
    else:  # same-size images share a pass on both sides (the network graphs have a dynamic batch axis)
        eager = predict_images(model, images)
    exported = predict_images(loaded.model, images)
    worst = _assert_same(eager, exported)
    if "semantic" in eager[0]:
        assert len(torch.cat([p["semantic"].unique() for p in eager]).unique()) > 1  # not all one class
    else:
        assert worst["detections"] > 0
    print(f"{head}: {worst}")


def test_metadata_carries_classes_and_preprocessing(tmp_path: Path) -> None:
    import onnx

    model, config = _model("yolo")
    path = export_model(model, classes=list(SHAPE_CLASSES), model_config=config, format="onnx", out_dir=tmp_path, evaluator="VOCEvaluator")
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    metadata = json.loads(props[METADATA_KEY])
    assert metadata == json.loads((tmp_path / "metadata.json").read_text())
    assert metadata["classes"] == list(SHAPE_CLASSES) and metadata["head"] == "detection.yolo.YOLOv1"
    assert metadata["task"] == "detection" and metadata["cut"] == "network" and metadata["evaluator"] == "VOCEvaluator"
    assert metadata["input"]["shape"] == ["N", 3, 128, 128] and metadata["dynamic_axes"] == {"0": "batch"}
    assert metadata["input"]["transform"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert "NMS" in metadata["python_side"]


def test_torch_export_holds_the_network_and_refuses_faster_rcnn(tmp_path: Path) -> None:
    model, config = _model("yolo")
    path = export_model(model, classes=list(SHAPE_CLASSES), model_config=config, format="torch-export", out_dir=tmp_path)
    extra = {f"{METADATA_KEY}.json": ""}
    program = torch.export.load(str(path), extra_files=extra)
    assert json.loads(extra[f"{METADATA_KEY}.json"])["classes"] == list(SHAPE_CLASSES)
    batch = torch.rand(3, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(batch)[0], model.predict_grid(batch))
    frcnn, frcnn_config = _model("faster_rcnn")
    with pytest.raises(ExportError, match="FasterRCNN: torch.export cannot capture torchvision's data-dependent NMS"):
        export_model(frcnn, classes=list(SHAPE_CLASSES), model_config=frcnn_config, format="torch-export", out_dir=tmp_path / "f")
    assert not (tmp_path / "f").exists()


def test_rcnn_exports_its_region_network_only_and_mnc_is_refused(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = _config("rcnn", cache_dir=None)
    rcnn = build_model(config).eval()
    path = export_model(rcnn, classes=list(SHAPE_CLASSES), model_config=config, format="onnx", out_dir=tmp_path / "rcnn")
    with pytest.raises(CheckpointError, match="region_network only; in Python stay: selective search"):
        load_onnx(path)
    crops = torch.rand(5, 3, rcnn.crop_size, rcnn.crop_size)
    graph = OrtGraph(path)  # the graph itself runs: the eager head's scores
    scores, deltas = graph(crops)
    with torch.no_grad():
        torch.testing.assert_close(scores, rcnn.class_scores(rcnn.region_net(crops)))
    assert deltas.shape == (5, 4 * rcnn.num_classes)

    mnc = build_model(_config("mnc")).eval()
    with pytest.raises(ExportError, match="MNC cannot be exported: .*mask voting"):
        export_model(mnc, classes=list(SHAPE_CLASSES), model_config=_config("mnc"), format="onnx", out_dir=tmp_path / "mnc")
    assert not (tmp_path / "mnc").exists()


def _checkpoint(tmp_path: Path, head: str) -> tuple[Path, nn.Module]:
    model, config = _model(head)
    checkpoint = tmp_path / f"{head}.ckpt"
    save_checkpoint(model, config, checkpoint)
    return checkpoint, model


def test_export_script_then_predict_on_onnx_equals_eager_predict(shapes_root, tmp_path: Path, capsys) -> None:
    checkpoint, _ = _checkpoint(tmp_path, "yolo")
    export = load_script("export")
    assert export.main(["--checkpoint", str(checkpoint), "--format", "onnx", "--out", str(tmp_path / "exported")]) == 0
    assert "YOLOv1 -> " in capsys.readouterr().out
    onnx_path = tmp_path / "exported" / "model.onnx"

    predict = load_script("predict")
    common = ["--shapes", str(shapes_root.root), "--split", "val", "--num-workers", "0", "--no-progress"]
    assert predict.main(["--checkpoint", str(checkpoint), *common, "--out", str(tmp_path / "eager")]) == 0
    assert predict.main(["--checkpoint", str(onnx_path), *common, "--out", str(tmp_path / "onnx")]) == 0
    eager = json.loads((tmp_path / "eager" / "predictions.json").read_text())
    exported = json.loads((tmp_path / "onnx" / "predictions.json").read_text())
    assert len(eager) == len(exported) > 0
    for want, got in zip(eager, exported):
        assert (want["image_id"], want["category_id"]) == (got["image_id"], got["category_id"])
        assert max(abs(a - b) for a, b in zip(want["bbox"], got["bbox"])) <= BOX_TOLERANCE
        assert abs(want["score"] - got["score"]) <= SCORE_TOLERANCE * max(1.0, abs(want["score"]))
    for name in ("images.json", "errors.txt"):
        assert (tmp_path / "eager" / name).read_text() == (tmp_path / "onnx" / name).read_text()
    assert sorted(p.name for p in (tmp_path / "onnx" / "drawn").rglob("*.png")) == sorted(p.name for p in (tmp_path / "eager" / "drawn").rglob("*.png"))
    with pytest.raises(CheckpointError, match="carries its own config; drop --config"):
        load_any(onnx_path, config=REPO / "configs" / "yolo" / "shapes.yaml")


def test_bad_input_gives_one_clear_error(tmp_path: Path, capsys) -> None:
    export = load_script("export")
    checkpoint, _ = _checkpoint(tmp_path, "localization")
    for argv, says in (
        (["--format", "tflite"], "--format must be one of ['onnx', 'torch-export'], got 'tflite'"),
        (["--checkpoint", str(tmp_path / "missing.ckpt")], "missing.ckpt: no such checkpoint file"),
    ):
        assert export.main(["--checkpoint", str(checkpoint), "--format", "onnx", "--out", str(tmp_path / "out"), *argv]) == 2
        assert says in capsys.readouterr().err
        assert not (tmp_path / "out").exists()
    not_onnx = tmp_path / "model.onnx"
    not_onnx.write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="model.onnx: not loadable by onnxruntime"):
        load_onnx(not_onnx)
