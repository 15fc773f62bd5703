"""YOLOv1 model: the detector contract, any S/B/C, any backbone tap, Lightning train + eval steps."""

import functools
import math

import lightning as L
import pytest
import torch
from torch import Tensor

from detection.backbones import SmallCNN
from detection.yolo import YOLOv1
from detection.yolo.targets import GridLayout

LOSS_KEYS = {"loss_coord", "loss_size", "loss_obj", "loss_noobj", "loss_class"}


def _model(**kwargs) -> YOLOv1:
    defaults = dict(
        backbone=SmallCNN(width=4),
        num_classes=3,
        grid_size=4,
        boxes_per_cell=2,
        image_size=64,
        feature="c4",
        head_convs=1,
        head_channels=16,
        hidden_dim=32,
    )
    return YOLOv1(**{**defaults, **kwargs})


def _images_and_targets() -> tuple[list[Tensor], list[dict]]:
    images = [torch.rand(3, 60, 80), torch.rand(3, 64, 64)]
    targets = [
        {"boxes": torch.tensor([[5.0, 6.0, 30.0, 40.0], [40.0, 10.0, 70.0, 50.0]]), "labels": torch.tensor([1, 3])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},  # an image with no objects
    ]
    return images, targets


@pytest.mark.parametrize(("s", "b", "c", "feature"), [(7, 2, 20, "c5"), (4, 3, 1, "c3"), (5, 1, 80, "c4")])
def test_train_step_any_s_b_c_and_tap(s: int, b: int, c: int, feature: str) -> None:
    model = _model(grid_size=s, boxes_per_cell=b, num_classes=c, feature=feature)
    images, targets = _images_and_targets()
    targets[0]["labels"] = torch.tensor([1, c])
    model.train()
    losses = model(images, targets)
    assert set(losses) == LOSS_KEYS
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    used = [n for n in ("c1", "c2", "c3", "c4", "c5") if n <= feature]  # backbone stages up to the tap
    for name, param in model.named_parameters():
        if name.startswith("head.") or any(name.startswith(f"backbone.stages.{n}.") for n in used):
            assert param.grad is not None and torch.isfinite(param.grad).all(), name
            assert param.grad.abs().sum() > 0, name
    assert model.head.predictor[-1].out_features == s * s * (5 * b + c)


def test_targets_are_not_modified() -> None:
    model = _model()
    images, targets = _images_and_targets()
    before = [t["boxes"].clone() for t in targets]
    model.train()
    model(images, targets)
    for t, b in zip(targets, before):
        assert torch.equal(t["boxes"], b)


def test_eval_contract_in_original_pixels() -> None:
    torch.manual_seed(0)
    model = _model(score_threshold=0.0)
    model.eval()
    images, _ = _images_and_targets()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2
    for det, image in zip(out, images):
        assert set(det) == {"boxes", "labels", "scores"}
        assert det["boxes"].dtype == torch.float32 and det["boxes"].shape[1:] == (4,)
        assert det["labels"].dtype == torch.int64 and det["scores"].dtype == torch.float32
        assert len(det["boxes"]) == len(det["labels"]) == len(det["scores"]) > 0
        assert det["labels"].min() >= 1 and det["labels"].max() <= 3
        assert (det["scores"][:-1] >= det["scores"][1:]).all()  # best first
        h, w = image.shape[-2:]
        assert det["boxes"][:, 0::2].max() <= w + 1e-4 and det["boxes"][:, 1::2].max() <= h + 1e-4


def test_eval_maps_a_perfect_grid_back_to_the_original_image() -> None:
    """Feed the encoded target as the prediction: the detections are the input boxes."""
    model = _model(score_threshold=0.5)
    model.eval()
    image = torch.rand(3, 96, 128)  # resized to 64 x 64: x / 2, y / 1.5
    boxes = torch.tensor([[8.0, 12.0, 40.0, 48.0], [70.0, 50.0, 120.0, 90.0]])
    labels = torch.tensor([2, 3])
    from detection.yolo.targets import encode_targets

    scale = torch.tensor([64 / 128, 64 / 96, 64 / 128, 64 / 96])
    grid = encode_targets(boxes * scale, labels, image_size=(64, 64), layout=model.layout)[None]
    model.predict_grid = lambda batch: grid  # type: ignore[method-assign]
    (det,) = model([image])
    order = torch.argsort(det["boxes"][:, 0])
    torch.testing.assert_close(det["boxes"][order], boxes, atol=1e-3, rtol=0)
    assert det["labels"][order].tolist() == [2, 3]


def test_bad_configuration_is_reported() -> None:
    with pytest.raises(ValueError, match="no tap 'pool5'"):
        _model(feature="pool5")
    model = _model()
    model.train()
    with pytest.raises(ValueError, match="targets"):
        model([torch.rand(3, 64, 64)])


def test_grid_layout_exposed() -> None:
    model = _model(grid_size=6, boxes_per_cell=3, num_classes=5)
    assert model.layout == GridLayout(grid_size=6, boxes_per_cell=3, num_classes=5)
    assert model.predict_grid(torch.rand(2, 3, 64, 64)).shape == (2, 6, 6, 20)


def test_train_and_eval_step_through_lightning(shapes_root) -> None:
    from datasets.datamodule import DetectionDataModule
    from detection.evaluation import VOCEvaluator
    from detection.system import DetectionSystem

    model = _model(num_classes=4, image_size=96, grid_size=6)
    system = DetectionSystem(model=model, evaluator=functools.partial(VOCEvaluator), monitor="map_50", lr=0.01)
    data = DetectionDataModule(format="shapes", root=str(shapes_root.root), batch_size=4, num_workers=0)
    trainer = L.Trainer(
        accelerator="cpu", fast_dev_run=2, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )
    before = [p.detach().clone() for p in model.head.parameters()]
    trainer.fit(system, data)
    metrics = trainer.callback_metrics
    for key in ("train/loss", "train/loss_coord", "train/loss_size", "train/loss_obj", "train/loss_noobj",
                "train/loss_class", "val/map_50"):
        assert key in metrics, f"{key} not logged: {sorted(metrics)}"
        assert math.isfinite(float(metrics[key])), key
    assert 0.0 <= float(metrics["val/map_50"]) <= 1.0
    assert any(not torch.equal(b, p) for b, p in zip(before, model.head.parameters()))


def test_conv_prediction_shares_one_predictor_across_cells() -> None:
    """``prediction="conv"``: same grid layout; a cell's output depends only on its own pooled features."""
    from detection.yolo.model import YOLOHead

    torch.manual_seed(0)
    layout = GridLayout(grid_size=4, boxes_per_cell=2, num_classes=3)
    head = YOLOHead(in_channels=8, layout=layout, num_convs=0, hidden_dim=16, dropout=0.0, prediction="conv").eval()
    feature = torch.rand(2, 8, 4, 4)
    grid = head(feature)
    assert grid.shape == (2, 4, 4, layout.depth)
    changed = feature.clone()
    changed[:, :, 1, 2] += 1.0  # only cell (row 1, col 2) sees new features
    diff = (head(changed) - grid).abs().sum(dim=-1)  # [N, S, S]
    assert (diff[:, 1, 2] > 0).all()
    diff[:, 1, 2] = 0
    assert diff.max() == 0
    # the same features in two cells give the same prediction
    feature[:, :, 3, 0] = feature[:, :, 0, 3]
    grid = head(feature)
    torch.testing.assert_close(grid[:, 3, 0], grid[:, 0, 3])


def test_conv_prediction_trains_and_detects() -> None:
    model = _model(prediction="conv")
    images, targets = _images_and_targets()
    model.train()
    losses = model(images, targets)
    assert set(losses) == LOSS_KEYS
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.head.parameters())
    model.eval()
    with torch.no_grad():
        assert len(model(images)) == 2


def test_unknown_prediction_is_refused() -> None:
    with pytest.raises(ValueError, match="prediction must be one of"):
        _model(prediction="attention")
