"""FCN-32s/16s/8s: geometry, bilinear upsampling, skip fusion, any input size."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import vgg16

from detection.backbones import VGG16, MobileNetV3, ResNet, SmallCNN
from segmentation.fcn import FCN, pad_batch
from segmentation.geometry import INPUT, Geometry, crop_offset, trace
from segmentation.upsample import aligned_upsampler, bilinear_kernel, bilinear_upsampler


def test_geometry_reproduces_the_caffe_fcn_crop_offsets():
    """VGG-16 with the paper's 100-px padding and an unpadded fc6 gives crops 19, 5, 9, 31, 27."""
    features = vgg16(weights=None).features
    features[0].padding = (100, 100)
    pools = [i for i, layer in enumerate(features) if isinstance(layer, nn.MaxPool2d)]
    pool3 = trace(features[: pools[2] + 1])
    pool4 = trace(features[pools[2] + 1 : pools[3] + 1], pool3)
    pool5 = trace(features[pools[3] + 1 :], pool4)
    score_fr = pool5.conv(kernel=7, stride=1, padding=0)  # fc6, then 1x1 convs
    assert crop_offset(score_fr.transposed(64, 32, 0), INPUT) == 19  # FCN-32s upscore
    upscore2 = score_fr.transposed(4, 2, 0)
    assert crop_offset(pool4, upscore2) == 5  # score_pool4c
    assert crop_offset(upscore2.transposed(32, 16, 0), INPUT) == 27  # FCN-16s upscore16
    upscore_pool4 = upscore2.transposed(4, 2, 0)
    assert crop_offset(pool3, upscore_pool4) == 9  # score_pool3c
    assert crop_offset(upscore_pool4.transposed(16, 8, 0), INPUT) == 31  # FCN-8s upscore8


def test_pooled_and_strided_maps_are_centred_differently():
    assert trace(VGG16().stages["pool3"], trace(nn.Sequential(*list(VGG16().stages.values())[:2]))) == Geometry(8, 3.5)
    small = SmallCNN(width=4)
    geometry = INPUT
    for stage in small.stages.values():
        geometry = trace(stage, geometry)
    assert geometry == Geometry(32, 0.0)


def test_misaligned_maps_are_refused():
    with pytest.raises(ValueError, match="grid"):
        crop_offset(Geometry(8, 1.0), Geometry(8, 4.5))
    with pytest.raises(ValueError, match="strides"):
        crop_offset(Geometry(8, 0.0), Geometry(16, 0.0))
    with pytest.raises(ValueError, match="no fixed geometry"):
        trace(nn.AdaptiveAvgPool2d(1))


def test_bilinear_kernel_values():
    torch.testing.assert_close(bilinear_kernel(4)[0], torch.tensor([0.0625, 0.1875, 0.1875, 0.0625]))
    torch.testing.assert_close(bilinear_kernel(3)[1], torch.tensor([0.5, 1.0, 0.5]))


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_even_kernel_transposed_conv_is_bilinear_upsampling_of_pooled_maps(factor):
    """k = 2f, crop f/2: equals F.interpolate(bilinear, align_corners=False) away from the border."""
    x = torch.rand(1, 3, 7, 9)
    layer, crop = aligned_upsampler(3, Geometry(factor, (factor - 1) / 2), INPUT)
    assert layer.kernel_size == (2 * factor, 2 * factor) and crop == factor // 2
    with torch.no_grad():
        up = layer(x)[..., crop : crop + 7 * factor, crop : crop + 9 * factor]
    expected = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    inner = (slice(None), slice(None), slice(factor, -factor), slice(factor, -factor))
    torch.testing.assert_close(up[inner], expected[inner])


@pytest.mark.parametrize("factor", [2, 8])
def test_odd_kernel_transposed_conv_is_bilinear_upsampling_of_strided_maps(factor):
    """k = 2f - 1: pixel centres on the stride grid, equals align_corners=True interpolation."""
    x = torch.rand(1, 2, 5, 6)
    layer, crop = aligned_upsampler(2, Geometry(factor, 0.0), INPUT)
    assert layer.kernel_size == (2 * factor - 1, 2 * factor - 1) and crop == factor - 1
    with torch.no_grad():
        up = layer(x)[..., crop : crop + 4 * factor + 1, crop : crop + 5 * factor + 1]
    expected = F.interpolate(x, size=(4 * factor + 1, 5 * factor + 1), mode="bilinear", align_corners=True)
    torch.testing.assert_close(up, expected)


def test_upsampler_is_learnable_and_classes_are_upsampled_separately():
    layer = bilinear_upsampler(3, 2)
    assert layer.weight.requires_grad
    assert layer.weight[0, 1].abs().sum() == 0 and layer.weight[1, 1].sum() > 0


BACKBONES = {
    "small": lambda: SmallCNN(width=4),
    "resnet18": lambda: ResNet(depth=18),
    "mobilenet": lambda: MobileNetV3(size="small"),
}


@pytest.mark.parametrize("variant", ["32s", "16s", "8s"])
@pytest.mark.parametrize("backbone", sorted(BACKBONES))
@pytest.mark.parametrize("size", [(97, 131), (33, 65), (128, 128)])
def test_output_size_equals_input_size(variant, backbone, size):
    model = FCN(backbone=BACKBONES[backbone](), num_classes=3, variant=variant, head_channels=16).eval()
    with torch.no_grad():
        logits = model.logits(torch.rand(2, 3, *size))
    assert logits.shape == (2, 4, *size)


def test_vgg16_fcn_uses_fc6_fc7_as_convolutions_and_keeps_the_size():
    model = FCN(backbone=VGG16(), num_classes=20, variant="8s").eval()
    assert model.head[0].kernel_size == (7, 7) and model.head[3].out_channels == 4096
    assert model.skip_taps == ["pool4", "pool3"]
    with torch.no_grad():
        assert model.logits(torch.rand(1, 3, 75, 101)).shape == (1, 21, 75, 101)


def test_skip_fusion_shapes():
    model = FCN(backbone=SmallCNN(width=4), num_classes=2, variant="8s", head_channels=8).eval()
    x = torch.rand(1, 3, 64, 96)
    features = model.backbone(x)
    scores = model.score(model.head(features[model.coarse_tap]))
    assert scores.shape == (1, 3, 2, 3)  # stride 32
    shapes = []
    for tap, skip_score, upsampler, aligner in zip(model.skip_taps, model.skip_scores, model.skip_upsamplers, model.skip_aligners):
        offset = aligner.offset
        skip = skip_score(features[tap])
        up = upsampler(scores)
        assert up.shape[-2] >= offset + skip.shape[-2] and up.shape[-1] >= offset + skip.shape[-1]
        scores = up[..., offset : offset + skip.shape[-2], offset : offset + skip.shape[-1]] + skip
        shapes.append(tuple(scores.shape))
    assert shapes == [(1, 3, 4, 6), (1, 3, 8, 12)]  # strides 16 and 8


def test_zero_initialised_skips_make_16s_start_as_32s():
    torch.manual_seed(0)
    coarse = FCN(backbone=SmallCNN(width=4), num_classes=2, variant="32s", head_channels=8).eval()
    fine = FCN(backbone=SmallCNN(width=4), num_classes=2, variant="16s", head_channels=8).eval()
    fine.load_state_dict({k: v for k, v in coarse.state_dict().items() if not k.startswith("final_upsampler")}, strict=False)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        c, f = coarse.logits(x), fine.logits(x)
    # Both are bilinear upsamplings of the same stride-32 scores (the 16s one in two steps),
    # so they agree away from the border.
    torch.testing.assert_close(f[..., 32:-32, 32:-32], c[..., 32:-32, 32:-32], atol=1e-5, rtol=1e-4)


def test_bad_input_is_refused():
    model = FCN(backbone=SmallCNN(width=4), num_classes=2, head_channels=8)
    with pytest.raises(ValueError, match="Tensor\\[N, 3, H, W\\]"):
        model.logits(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="variant"):
        FCN(backbone=SmallCNN(width=4), num_classes=2, variant="4s")


def test_contract_loss_in_training_and_one_semantic_map_per_image_in_eval():
    torch.manual_seed(0)
    model = FCN(backbone=SmallCNN(width=4), num_classes=2, head_channels=8, dropout=0.0)
    images = [torch.rand(3, 40, 56), torch.rand(3, 33, 64)]
    masks = [torch.randint(0, 3, (40, 56)), torch.randint(0, 3, (33, 64))]
    losses = model.train()(images, [{"semantic": m} for m in masks])
    assert set(losses) == {"loss_seg"} and torch.isfinite(losses["loss_seg"])
    losses["loss_seg"].backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    with torch.no_grad():
        preds = model.eval()(images)
    assert [p["semantic"].shape for p in preds] == [(40, 56), (33, 64)]
    assert all(p["semantic"].dtype == torch.int64 for p in preds)
    # each image is segmented alone: no padding from the larger image reaches it
    assert torch.equal(preds[1]["semantic"], model.logits(images[1][None])[0].argmax(0))


def test_training_batch_pads_images_with_zero_and_masks_with_void():
    images, masks = pad_batch([torch.ones(3, 4, 4), torch.ones(3, 2, 5)], [torch.ones(4, 4), torch.full((2, 5), 2)])
    assert images.shape == (2, 3, 4, 5) and masks.shape == (2, 4, 5)
    assert images[0, :, :, 4].abs().sum() == 0 and (masks[0, :, 4] == 255).all()
    assert (masks[1, 2:] == 255).all() and (masks[1, :2] == 2).all()
