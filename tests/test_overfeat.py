"""OverFeat: dense evaluation = window by window, offset pooling, greedy merging, the contract."""

import functools
from collections import OrderedDict

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_iou

from datasets.datamodule import DetectionDataModule
from detection.backbones import SmallCNN
from detection.backbones.base import Backbone
from detection.evaluation import ClsLocEvaluator, VOCEvaluator
from detection.overfeat import (
    OverFeat,
    OverFeatNet,
    decode_edges,
    encode_edges,
    greedy_merge,
    match_scores,
    offset_pool_interleave,
    window_targets,
)
from detection.overfeat.network import PAPER_POOL_SIZE
from detection.system import DetectionSystem

C = 4


def _valid_backbone() -> Backbone:
    """Convolutions without padding: exactly translation-equivariant at multiples of the stride,
    so a window crop sees the same pixels as the dense pass (SmallCNN's zero padding would not)."""

    def stage(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2), nn.BatchNorm2d(cout), nn.ReLU())

    stages = OrderedDict(c1=stage(3, 8), c2=stage(8, 8), c3=stage(8, 16))
    backbone = Backbone(stages=stages, taps={"c2": (4, 8), "c3": (8, 16)})
    for module in backbone.modules():  # non-trivial BatchNorm statistics
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return backbone.eval()


def _crop_size(net: OverFeatNet, cells: int) -> int:
    """The smallest input giving a tap map of ``cells x cells``: one window of the network."""
    for size in range(16, 400):
        if size < 15 + 8 * (cells - 1):  # three valid 3x3 stride-2 convolutions need this much
            continue
        features = net.backbone(torch.zeros(1, 3, size, size))[net.feature]
        if features.shape[-1] == cells:
            return size
    raise AssertionError("no crop size found")


@pytest.mark.parametrize("offset_pooling", [True, False])
@pytest.mark.parametrize("pool_size", [2, PAPER_POOL_SIZE])
def test_dense_evaluation_equals_the_network_on_every_window_crop(offset_pooling, pool_size):
    net = OverFeatNet(
        backbone=_valid_backbone(), num_classes=C, feature="c3", window_size=8 * pool_size * 2,
        pool_size=pool_size, offset_pooling=offset_pooling, class_agnostic=False, hidden=16,
    ).eval()
    crop = _crop_size(net, net.kernel * pool_size)
    with torch.no_grad():
        assert net.dense(torch.rand(1, 3, crop, crop)).shape[-2:] == (1, 1)
        for extra_h, extra_w in [(0, 0), (8, 24), (40, 16), (37, 53)]:  # several sizes, some off the stride
            image = torch.rand(2, 3, crop + extra_h, crop + extra_w)
            dense = net.dense(image)  # [2, K, Ho, Wo]
            rows, cols = dense.shape[-2:]
            assert (rows, cols) == ((extra_h // net.stride) + 1, (extra_w // net.stride) + 1)
            worst = 0.0
            for u in range(rows):
                for v in range(cols):
                    y, x = u * net.stride, v * net.stride
                    window = net.dense(image[:, :, y : y + crop, x : x + crop])  # [2, K, 1, 1]
                    worst = max(worst, (window[:, :, 0, 0] - dense[:, :, u, v]).abs().max().item())
            assert worst <= 1e-4, (extra_h, extra_w, worst)


@pytest.mark.parametrize("pool_size,kernel", [(2, 4), (3, 2), (3, 1)])
def test_offset_pooling_equals_pooling_at_each_shift_interleaved(pool_size, kernel):
    features = torch.randn(2, 5, 13, 17)
    classifier = nn.Conv2d(5, 3, kernel)
    with torch.no_grad():
        out = offset_pool_interleave(features, classifier, pool_size, kernel=kernel)
        assert out.shape == (2, 3, 13 - kernel * pool_size + 1, 17 - kernel * pool_size + 1)
        filled = torch.zeros(out.shape[-2:], dtype=torch.int64)
        for dy in range(pool_size):
            for dx in range(pool_size):
                expected = classifier(F.max_pool2d(features[:, :, dy:, dx:], pool_size, pool_size))
                placed = out[:, :, dy::pool_size, dx::pool_size]
                torch.testing.assert_close(placed, expected[:, :, : placed.shape[-2], : placed.shape[-1]])
                assert placed.shape[-2:] == expected.shape[-2:]  # nothing computed is dropped
                filled[dy::pool_size, dx::pool_size] += 1
        assert (filled == 1).all()  # every output position comes from exactly one offset
        # And each output position is the window whose pooled cells start at that tap position.
        u, v = 3, 4
        window = features[:, :, u : u + kernel * pool_size, v : v + kernel * pool_size]
        torch.testing.assert_close(out[:, :, u, v], classifier(F.max_pool2d(window, pool_size))[:, :, 0, 0])


def test_offset_pooling_divides_the_output_stride_on_smallcnn():
    backbone = SmallCNN(width=4).eval()
    fine = OverFeatNet(backbone=backbone, num_classes=C, window_size=96, pool_size=PAPER_POOL_SIZE, feature="c3", hidden=8).eval()
    assert fine.kernel == 4 and fine.stride == 8
    with torch.no_grad():
        features = fine.backbone(torch.rand(1, 3, 160, 160))["c3"]  # [1, 16, 20, 20]
        dense = fine.dense(torch.rand(1, 3, 160, 160))
    assert dense.shape[-2:] == (20 - 12 + 1, 20 - 12 + 1)
    fine.offset_pooling = False
    assert fine.stride == 24
    with torch.no_grad():
        assert fine.dense(torch.rand(1, 3, 160, 160)).shape[-2:] == (20 // 3 - 4 + 1,) * 2
    assert features.shape[-1] == 20


def test_merge_joins_two_boxes_of_one_object_and_sums_their_scores():
    boxes = torch.tensor([[10.0, 10.0, 50.0, 50.0], [14.0, 12.0, 54.0, 52.0]])
    scores = torch.tensor([0.75, 0.25])
    merged, merged_scores = greedy_merge(boxes, scores, threshold=0.6)
    assert merged.shape == (1, 4)
    torch.testing.assert_close(merged_scores, torch.tensor([1.0]))
    torch.testing.assert_close(merged[0], 0.75 * boxes[0] + 0.25 * boxes[1])  # score-weighted average


def test_merge_keeps_distant_boxes_apart_and_chains_clusters():
    boxes = torch.tensor([
        [0.0, 0.0, 20.0, 20.0], [1.0, 1.0, 21.0, 21.0], [2.0, 0.0, 22.0, 20.0],  # one object, 3 boxes
        [80.0, 80.0, 100.0, 100.0],  # far away
    ])
    scores = torch.tensor([0.5, 0.2, 0.1, 0.9])
    merged, merged_scores = greedy_merge(boxes, scores, threshold=0.6)
    assert merged.shape == (2, 4)
    torch.testing.assert_close(merged_scores, torch.tensor([0.9, 0.8]))
    torch.testing.assert_close(merged[0], boxes[3])
    expected = (0.5 * boxes[0] + 0.2 * boxes[1] + 0.1 * boxes[2]) / 0.8
    torch.testing.assert_close(merged[1], expected)
    # A threshold below every pair's score merges nothing.
    kept, kept_scores = greedy_merge(boxes, scores, threshold=0.0)
    assert len(kept) == 4 and torch.equal(kept_scores, scores.sort(descending=True).values)


def test_match_score_formula_on_hand_values():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0]])
    match = match_scores(boxes)
    assert match[0, 1].item() == pytest.approx(0.0, abs=1e-6)
    iou = box_iou(boxes[:1], boxes[2:]).item()  # 50 / 150
    assert match[0, 2].item() == pytest.approx(5.0 / (200**0.5) + 1 - iou, rel=1e-5)
    assert greedy_merge(torch.zeros(0, 4), torch.zeros(0))[0].shape == (0, 4)


def test_window_targets_and_edge_coding():
    origins = torch.tensor([[0.0, 0.0], [20.0, 0.0], [100.0, 100.0], [32.0, 0.0]])  # coverage 1, 0.75, 0, 0.45
    gt = torch.tensor([[10.0, 10.0, 50.0, 60.0]])
    labels, edges, positive = window_targets(gt, torch.tensor([3]), origins, 64)
    assert labels.tolist() == [3, 3, -1, -1] and positive.tolist() == [True, True, False, False]  # no background
    torch.testing.assert_close(decode_edges(edges[:2], origins[:2], 64), gt.expand(2, 4))
    labels, _, positive = window_targets(gt, torch.tensor([3]), origins, 64, positive_iou=0.4, negative_iou=0.2)
    assert labels.tolist() == [3, -1, 0, 0] and positive.tolist() == [True, False, False, False]  # IoU .49 .33 0 .17
    empty, _, none = window_targets(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), origins, 64, negative_iou=0.2)
    assert empty.tolist() == [0, 0, 0, 0] and not none.any()
    torch.testing.assert_close(encode_edges(gt, origins[:1], 64), torch.tensor([[10 / 64, 10 / 64, 50 / 64, 60 / 64]]))


def _targets():
    return [
        {"boxes": torch.tensor([[10.0, 10.0, 70.0, 80.0]]), "labels": torch.tensor([2])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]


@pytest.mark.parametrize("mode,class_agnostic,regression", [
    ("localization", False, "joint"), ("localization", True, "frozen"), ("detection", True, "joint"), ("detection", False, "frozen"),
])
def test_train_step_has_finite_losses_and_gradients_everywhere(mode, class_agnostic, regression):
    model = OverFeat(
        backbone=SmallCNN(width=4), num_classes=C, mode=mode, window_size=64, class_agnostic=class_agnostic,
        regression=regression, train_scales=[96], hidden=16,
    )
    losses = model([torch.rand(3, 96, 96), torch.rand(3, 80, 100)], _targets())
    assert set(losses) == {"loss_classifier", "loss_box_reg"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    backbone_grad = sum(p.grad.abs().sum() for p in model.net.backbone.parameters())
    assert backbone_grad > 0


def test_frozen_regression_leaves_the_features_to_the_classifier():
    model = OverFeat(backbone=SmallCNN(width=4), num_classes=C, window_size=64, regression="frozen", hidden=16)
    losses = model([torch.rand(3, 64, 64)], _targets()[:1])
    losses["loss_box_reg"].backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.net.backbone.parameters())
    assert model.net.heads.regressor[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", ["localization", "detection"])
def test_image_without_objects_gives_zero_box_loss(mode):
    model = OverFeat(backbone=SmallCNN(width=4), num_classes=C, mode=mode, window_size=64, train_scales=[96], hidden=16)
    losses = model([torch.rand(3, 64, 64)], _targets()[1:])
    assert losses["loss_box_reg"].item() == 0.0
    # Detection mode still learns background from it; localization mode has nothing to learn.
    assert (losses["loss_classifier"].item() > 0) == (mode == "detection")


@pytest.mark.parametrize("mode", ["localization", "detection"])
def test_eval_contract_in_original_coordinates(mode):
    model = OverFeat(
        backbone=SmallCNN(width=4), num_classes=C, mode=mode, window_size=64, test_scales=[64, 96],
        top_k_classes=2, hidden=16,
    ).eval()
    # Make every window predict its own full extent: boxes then tile the image.
    last = model.net.heads.regressor[-1]
    nn.init.zeros_(last.weight)
    images = [torch.rand(3, 200, 100), torch.rand(3, 64, 64)]
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2
    for image, result in zip(images, out):
        assert set(result) == {"boxes", "labels", "scores"}
        assert result["boxes"].dtype == torch.float32 and result["boxes"].shape[1] == 4
        assert result["labels"].dtype == torch.int64 and ((result["labels"] >= 1) & (result["labels"] <= C)).all()
        assert result["scores"].dtype == torch.float32 and len(result["scores"]) == len(result["boxes"]) > 0
        assert (result["scores"][:-1] >= result["scores"][1:]).all()
        h, w = image.shape[1:]
        assert (result["boxes"][:, 2] <= w + 1e-3).all() and (result["boxes"][:, 3] <= h + 1e-3).all()
    # At scale 64 (one window) the box is the whole image, mapped back to 200 x 100 pixels.
    single = OverFeat(backbone=SmallCNN(width=4), num_classes=C, window_size=64, hidden=16).eval()
    nn.init.zeros_(single.net.heads.regressor[-1].weight)
    with torch.no_grad():
        (result,) = single([torch.rand(3, 200, 100)])
    torch.testing.assert_close(result["boxes"], torch.tensor([[0.0, 0.0, 100.0, 200.0]]))


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="multiple of"):
        OverFeatNet(backbone=SmallCNN(width=4), num_classes=C, window_size=100)
    with pytest.raises(ValueError, match="smaller than window_size"):
        OverFeat(backbone=SmallCNN(width=4), num_classes=C, window_size=128, test_scales=[96])
    with pytest.raises(ValueError, match="max_merge_candidates must be >= 1"):
        OverFeat(backbone=SmallCNN(width=4), num_classes=C, window_size=64, max_merge_candidates=0)
    with pytest.raises(ValueError, match="probability floor"):
        OverFeat(backbone=SmallCNN(width=4), num_classes=C, window_size=64, score_threshold=1.5)
    with pytest.raises(ValueError, match="smaller than one window"):
        offset_pool_interleave(torch.zeros(1, 2, 5, 5), nn.Identity(), 2, kernel=3)


def _trainer() -> L.Trainer:
    return L.Trainer(
        accelerator="cpu", fast_dev_run=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )


@pytest.mark.parametrize("mode", ["localization", "detection"])
def test_lightning_train_and_eval_step(mode, shapes_root, shapes_single_root, tmp_path):
    single = mode == "localization"
    root = shapes_single_root if single else shapes_root
    model = OverFeat(
        backbone=SmallCNN(width=4), num_classes=C, mode=mode, window_size=64, train_scales=[96],
        test_scales=[96, 128], hidden=16,
    )
    system = DetectionSystem(
        model=model,
        evaluator=functools.partial(ClsLocEvaluator if single else VOCEvaluator),
        monitor="cls_loc_accuracy" if single else "map_50",
        optimizer="adamw",
        lr=0.001,
    )
    data = DetectionDataModule(format="shapes", root=str(root.root), shapes_single_object=single, batch_size=2, num_workers=0)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = _trainer()
    trainer.fit(system, data)
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss"])
    assert f"val/{system.monitor}" in metrics
    assert any(not torch.equal(b, a) for b, a in zip(before, model.parameters()))
