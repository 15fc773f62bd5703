"""OverFeat at test time: the padding-free backbone of the efficiency benchmark, the paper's
classification rule over scales and flips, flipped views mapped back, and the (k, threshold)
choice on the validation split."""

import pytest
import torch
from torch import nn

from detection.backbones import SmallCNN, ValidCNN
from detection.overfeat import OverFeat, OverFeatNet
from benchmarks import overfeat_localization, overfeat_speed

C = 4


@pytest.mark.parametrize("tap,cells", [("c2", 1), ("c3", 6), ("c4", 2)])
def test_valid_cnn_input_size_is_the_smallest_input_giving_the_cells(tap, cells):
    backbone = ValidCNN(width=2).eval()
    backbone.truncate(tap)
    size = backbone.input_size(tap, cells)
    with torch.no_grad():
        assert backbone(torch.zeros(1, 3, size, size))[tap].shape[-1] == cells
        if cells > 1:
            assert backbone(torch.zeros(1, 3, size - 1, size - 1))[tap].shape[-1] == cells - 1
        else:
            with pytest.raises(RuntimeError):  # too small for the last convolution
                backbone(torch.zeros(1, 3, size - 1, size - 1))


def _valid_net(pool_size: int = 3, kernel: int = 2) -> OverFeatNet:
    torch.manual_seed(0)
    backbone = ValidCNN(width=2)
    for module in backbone.modules():  # non-trivial BatchNorm statistics
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return OverFeatNet(
        backbone=backbone, num_classes=C, feature="c3", window_size=8 * pool_size * kernel, pool_size=pool_size,
        class_agnostic=False, hidden=8,
    ).eval()


@pytest.mark.parametrize("size", [79, 100, 131])
def test_speed_benchmark_window_by_window_equals_the_dense_pass(size):
    bench = overfeat_speed
    net = _valid_net()
    crop = net.backbone.input_size("c3", net.kernel * net.pool_size)
    images = torch.rand(2, 3, size, size + 8)
    with torch.no_grad():
        dense = net.dense(images)
        windows = bench.window_by_window(net, images, crop, chunk=7)  # chunks that do not divide the count
    assert windows.shape == dense.shape and dense.shape[-1] == dense.shape[-2] + 1
    assert (windows - dense).abs().max().item() <= 1e-4
    # The crop of window (u, v) is the image at pixel (u * s, v * s).
    u, v = dense.shape[-2] - 1, 1
    y, x = u * net.stride, v * net.stride
    with torch.no_grad():
        single = net.dense(images[:, :, y : y + crop, x : x + crop])[:, :, 0, 0]
    assert (single - dense[:, :, u, v]).abs().max().item() <= 1e-4


def _model(**kwargs) -> OverFeat:
    torch.manual_seed(0)
    args = dict(backbone=SmallCNN(width=4), num_classes=C, window_size=64, test_scales=[64, 96], hidden=16, top_k_classes=2)
    args.update(kwargs)
    return OverFeat(**args).eval()


def test_class_scores_average_the_spatial_max_over_scales_and_flips():
    model = _model(test_flip=True)
    image = torch.rand(3, 80, 70)
    with torch.no_grad():
        views = model.view_outputs(image)
        assert len(views) == 4  # 2 scales x (image, mirror)
        expected = torch.zeros(C)
        for scale in (64, 96):
            for flipped in (image, image.flip(-1)):
                logits, _ = model.net(model.transforms[str(scale)]([flipped])[0].tensors)
                expected += logits[0, 1:].softmax(dim=0).flatten(1).max(dim=1).values / 4  # localization: no background
        torch.testing.assert_close(model.class_scores(views), expected)
        # Localization mode: the top-1 guess has the class of the classification rule.
        (result,) = model([image])
    assert result["labels"][0].item() == int(expected.argmax()) + 1
    assert result["scores"][0].item() == pytest.approx(expected.max().item(), rel=1e-5)


@pytest.mark.parametrize("mode", ["localization", "detection"])
def test_flipped_views_map_boxes_back_to_the_image(mode):
    """With flips on, an image and its mirror have the same views, mirrored, so the detections
    of the mirror image are the mirrored detections of the image (wrongly mapped boxes break it)."""
    model = _model(mode=mode, test_flip=True, merge_threshold=0.8)
    image = torch.rand(3, 90, 120)
    with torch.no_grad():
        (plain,) = model([image])
        (mirror,) = model([image.flip(-1)])
    width = image.shape[-1]
    mirrored = torch.stack([width - plain["boxes"][:, 2], plain["boxes"][:, 1], width - plain["boxes"][:, 0], plain["boxes"][:, 3]], 1)
    assert len(plain["boxes"]) > 0
    torch.testing.assert_close(mirror["scores"], plain["scores"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mirror["labels"], plain["labels"])
    torch.testing.assert_close(mirror["boxes"], mirrored, atol=1e-3, rtol=1e-5)
    # A mirrored view alone gives the mirror image's boxes flipped back.
    with torch.no_grad():
        _, boxes_back = model._view(image, 96, flip=True)
        _, boxes_mirror = model._view(image.flip(-1), 96, flip=False)
    flipped = torch.stack([width - boxes_mirror[..., 2], boxes_mirror[..., 1], width - boxes_mirror[..., 0], boxes_mirror[..., 3]], -1)
    torch.testing.assert_close(boxes_back, flipped)


def test_flips_off_by_default_and_double_the_views():
    image = torch.rand(3, 64, 64)
    with torch.no_grad():
        assert len(_model().view_outputs(image)) == 2
        assert len(_model(test_flip=True).view_outputs(image)) == 4


def test_tune_scores_every_pair_on_cached_views_and_restores_the_model(shapes_single_root):
    bench = overfeat_localization
    model = _model(test_flip=True)
    reader = bench.split_reader(shapes_single_root.root, "val")
    views, targets = bench.cache_views(model, reader, limit=4)
    evaluator = bench.evaluator_for(model)
    # The cached views merged with the model's settings are exactly the model's predictions.
    with torch.no_grad():
        direct = [model([reader[i][0]])[0] for i in range(4)]
    for image_views, expected in zip(views, direct):
        merged = model.merge_views(image_views)
        for key in ("boxes", "labels", "scores"):
            torch.testing.assert_close(merged[key], expected[key])
    assert bench.view_keys(model) == [(64, False), (64, True), (96, False), (96, True)]
    one = bench.score(model, views, targets, evaluator, keep=[(64, False)])
    assert set(one) >= {"cls_loc_accuracy", "cls_accuracy"}
    grid = {"top_k_classes": [1, 2, 9], "merge_threshold": [0.3, 0.9], "pre_merge_top_n": [1, 50]}
    results, best = bench.tune_grid(model, views, targets, grid)
    assert set(results) == {(k, t, n) for k in (1, 2) for t in (0.3, 0.9) for n in (1, 50)}  # k > C is skipped
    assert results[best] == max(results.values())
    settings = (model.top_k_classes, model.merge_threshold, model.pre_merge_top_n)
    assert settings == (2, 0.6, 50)  # the model's own settings are back


def test_tune_grid_breaks_ties_towards_the_models_own_settings(monkeypatch):
    model = _model()  # top_k_classes 2, merge_threshold 0.6
    monkeypatch.setattr(overfeat_localization, "score", lambda *args, **kwargs: {"cls_loc_accuracy": 0.5})
    grid = {"top_k_classes": [1, 2, 3], "merge_threshold": [0.2, 0.6, 1.5]}
    results, best = overfeat_localization.tune_grid(model, [], [], grid)
    assert len(results) == 9 and best == (2, 0.6)
