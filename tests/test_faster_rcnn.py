from collections import OrderedDict

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign, roi_pool

from detection.backbones import SmallCNN
from detection.faster_rcnn import FasterRCNN
from detection.roi_heads import RoIAlignPool, RoIMaxPool, build_roi_heads


def _naive_roi_pool(features: torch.Tensor, box: torch.Tensor, size: int, scale: float) -> torch.Tensor:
    """Fast R-CNN's RoI max pooling written out: round the RoI, split it into size x size bins, max each."""
    x1, y1, x2, y2 = torch.floor(box * scale + 0.5).long().tolist()  # C's round(): halves away from zero
    height, width = max(y2 - y1 + 1, 1), max(x2 - x1 + 1, 1)
    out = torch.zeros(features.shape[0], size, size)
    for i in range(size):
        for j in range(size):
            ys = y1 + int(torch.floor(torch.tensor(i * height / size))), y1 + int(torch.ceil(torch.tensor((i + 1) * height / size)))
            xs = x1 + int(torch.floor(torch.tensor(j * width / size))), x1 + int(torch.ceil(torch.tensor((j + 1) * width / size)))
            ys = max(ys[0], 0), min(ys[1], features.shape[1])
            xs = max(xs[0], 0), min(xs[1], features.shape[2])
            region = features[:, ys[0] : ys[1], xs[0] : xs[1]]
            out[:, i, j] = region.amax(dim=(1, 2)) if region.numel() else 0
    return out


def test_roi_max_pool_matches_a_naive_implementation():
    torch.manual_seed(0)
    features = torch.randn(1, 3, 16, 16)
    boxes = torch.tensor([[8.0, 8.0, 100.0, 60.0], [0.0, 0.0, 127.0, 127.0], [40.0, 24.0, 56.0, 90.0]])
    pool = RoIMaxPool(feature="c3", output_size=4, stride=8)
    out = pool({"c3": features}, [boxes], [(128, 128)])
    assert out.shape == (3, 3, 4, 4)
    for k, box in enumerate(boxes):
        torch.testing.assert_close(out[k], _naive_roi_pool(features[0], box, 4, 1 / 8))
    torch.testing.assert_close(out, roi_pool(features, [boxes], 4, 1 / 8))


def test_roi_align_pool_samples_a_ramp_at_bin_centres_without_rounding():
    """On ``f(y, x) = x`` every bilinear sample is exact, so each bin's mean is the ramp at its centre."""
    stride, size = 8, 4
    features = torch.arange(16.0).repeat(1, 2, 16, 1)  # [1, 2, 16, 16], value = column
    box = torch.tensor([[13.0, 20.0, 61.0, 52.0]])  # not on the feature grid
    out = RoIAlignPool(feature="c3", output_size=size, stride=stride)({"c3": features}, [box], [(128, 128)])
    centres = (box[0, 0] + (torch.arange(size) + 0.5) * (box[0, 2] - box[0, 0]) / size) / stride - 0.5  # aligned=True
    torch.testing.assert_close(out[0, 0], centres.expand(size, size))
    assert not torch.allclose(out, RoIMaxPool(feature="c3", output_size=size, stride=stride)({"c3": features}, [box], [(128, 128)]))


def test_roi_heads_choose_their_pooling_and_reject_unknown_ones():
    one, pyramid = {"c3": 8}, {"c3": 8, "c4": 16}
    assert isinstance(build_roi_heads(strides=one, in_channels=4, num_classes=2).box_roi_pool, RoIMaxPool)
    assert isinstance(build_roi_heads(strides=one, in_channels=4, num_classes=2, roi_pool="align").box_roi_pool, RoIAlignPool)
    assert isinstance(build_roi_heads(strides=pyramid, in_channels=4, num_classes=2, roi_pool="align").box_roi_pool, MultiScaleRoIAlign)
    with pytest.raises(ValueError, match="roi_pool"):
        build_roi_heads(strides=one, in_channels=4, num_classes=2, roi_pool="avg")
    with pytest.raises(ValueError, match="pools with RoIAlign"):
        build_roi_heads(strides=pyramid, in_channels=4, num_classes=2, roi_pool="max")


def test_a_pyramid_splits_the_anchor_sizes_over_its_levels_and_trains():
    torch.manual_seed(0)
    model = _model(feature=["c3", "c4"], roi_pool="align")
    images = model.transform([torch.rand(3, 64, 64)])[0]
    tapped = model.backbone(images.tensors)
    features = model.fpn(OrderedDict((tap, tapped[tap]) for tap in model.taps))
    assert list(features) == ["c3", "c4"] and all(f.shape[1] == 128 for f in features.values())
    anchors = model.rpn.anchor_generator(images, list(features.values()))
    assert model.rpn.anchor_generator.sizes == ((16,), (32,))  # finest level, smallest anchors
    assert anchors[0].shape == ((8 * 8 + 4 * 4) * 3, 4)  # one size x 3 ratios per position, strides 8 and 16
    boxed = {"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0]]), "labels": torch.tensor([2])}
    sum(model.train()([torch.rand(3, 64, 64)], [boxed]).values()).backward()
    assert all(p.grad is not None for p in model.fpn.parameters())
    with torch.no_grad():
        out = model.eval()([torch.rand(3, 80, 120)])
    assert set(out[0]) == {"boxes", "labels", "scores"}
    with pytest.raises(ValueError, match="split evenly"):
        _model(feature=["c3", "c4", "c5"], roi_pool="align")
    with pytest.raises(ValueError, match="increasing strides"):
        _model(feature=["c4", "c3"], roi_pool="align")


def _model(**kwargs) -> FasterRCNN:
    settings = dict(
        backbone=SmallCNN(width=8), num_classes=3, feature="c3", min_size=64, max_size=64,
        anchor_sizes=(16, 32), aspect_ratios=(0.5, 1.0, 2.0), rpn_pre_nms_top_n=(100, 50),
        rpn_post_nms_top_n=(50, 20), representation_size=32,
    )  # fmt: skip
    return FasterRCNN(**{**settings, **kwargs})


def test_anchor_counts():
    model = _model().eval()
    images = model.transform([torch.rand(3, 64, 64)])[0]
    features = [model.backbone(images.tensors)["c3"]]
    anchors = model.rpn.anchor_generator(images, features)
    assert model.rpn.anchor_generator.num_anchors_per_location() == [6]  # 2 sizes x 3 ratios
    assert anchors[0].shape == (8 * 8 * 6, 4)  # stride 8 on 64 px


@pytest.mark.parametrize("roi_pool", ["max", "align"])
def test_losses_are_finite_and_an_empty_image_has_zero_box_loss(roi_pool: str):
    torch.manual_seed(0)
    model = _model(roi_pool=roi_pool).train()
    boxed = {"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0]]), "labels": torch.tensor([2])}
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    losses = model([torch.rand(3, 64, 64), torch.rand(3, 64, 64)], [boxed, empty])
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    only_empty = model([torch.rand(3, 64, 64)], [empty])
    assert only_empty["loss_box_reg"].item() == 0.0 and only_empty["loss_rpn_box_reg"].item() == 0.0
    assert only_empty["loss_classifier"].item() > 0.0  # background is still classified


@pytest.mark.parametrize("roi_pool", ["max", "align"])
def test_eval_contract_in_original_coordinates(roi_pool: str):
    model = _model(score_thresh=0.0, roi_pool=roi_pool).eval()
    with torch.no_grad():
        out = model([torch.rand(3, 80, 120), torch.rand(3, 64, 64)])
    assert len(out) == 2
    for result, (h, w) in zip(out, [(80, 120), (64, 64)]):
        assert set(result) == {"boxes", "labels", "scores"}
        assert result["boxes"].dtype == torch.float32 and result["labels"].dtype == torch.int64
        assert ((result["labels"] >= 1) & (result["labels"] <= 3)).all()
        assert (result["boxes"][:, 2] <= w + 1e-3).all() and (result["boxes"][:, 3] <= h + 1e-3).all()


def test_unknown_feature_tap_is_refused():
    with pytest.raises(ValueError, match="not a tap"):
        FasterRCNN(backbone=SmallCNN(width=8), num_classes=3, feature="pool5")
