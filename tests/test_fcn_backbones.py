"""FCN-32s/16s/8s on every shared backbone: traced crops where exact, resampling where not, heads sized per backbone."""

import pytest
import torch

from detection.backbones import VGG16, EfficientNetLite0, MobileNetV3, ResNet, SmallCNN, ValidCNN
from detection.backbones.efficientnet import SameConv2d
from segmentation.fcn import FCN
from segmentation.geometry import INPUT, Geometry, trace
from segmentation.upsample import Crop, Resample, upsampler_onto

BACKBONES = {  # weights=None everywhere: offline
    "small": lambda: SmallCNN(width=4),
    "valid_cnn": lambda: ValidCNN(width=4),
    "vgg16": lambda: VGG16(),
    "resnet18": lambda: ResNet(depth=18),
    "resnet50": lambda: ResNet(depth=50),
    "mobilenet_large": lambda: MobileNetV3(size="large"),
    "mobilenet_small": lambda: MobileNetV3(size="small"),
    "efficientnet_lite0": lambda: EfficientNetLite0(),
}
EXACT = sorted(set(BACKBONES) - {"valid_cnn"})  # backbones whose skips align by a crop
SIZES = [(37, 53), (64, 96)]  # odd sizes, and multiples of 32


def _ramp(geometry: Geometry, height: int, width: int) -> torch.Tensor:
    """``Tensor[1, 2, height, width]``: channel 0 the input row, channel 1 the input column of each pixel centre."""
    rows = geometry.offset + geometry.stride * torch.arange(height, dtype=torch.float64)
    cols = geometry.offset + geometry.stride * torch.arange(width, dtype=torch.float64)
    return torch.stack(torch.meshgrid(rows, cols, indexing="ij"))[None]


@pytest.mark.parametrize("variant", ["32s", "16s", "8s"])
@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_fcn_builds_on_every_backbone_and_keeps_the_input_size(name, variant):
    torch.manual_seed(0)
    model = FCN(backbone=BACKBONES[name](), num_classes=3, variant=variant).eval()
    with torch.no_grad():
        for height, width in SIZES:
            logits = model.logits(torch.rand(1, 3, height, width))
            assert logits.shape == (1, 4, height, width)
            assert torch.isfinite(logits).all()
        (prediction,) = model([torch.rand(3, 41, 29)])
    assert prediction["semantic"].shape == (41, 29) and prediction["semantic"].dtype == torch.int64


@pytest.mark.parametrize("name", EXACT)
def test_exact_backbones_align_every_skip_by_a_crop(name):
    model = FCN(backbone=BACKBONES[name](), num_classes=2, variant="8s")
    assert all(isinstance(a, Crop) for a in [*model.skip_aligners, model.final_aligner])


def test_efficientnet_same_padding_is_traced_and_its_skips_crop_exactly():
    """The ValueError of issue 38: "SAME" convolutions were traced without their run-time padding."""
    model = FCN(backbone=EfficientNetLite0(), num_classes=2, variant="8s")
    geometry = model._tap_geometry(model.backbone)
    assert (geometry["c3"], geometry["c4"], geometry["c5"]) == (Geometry(8, 7.0), Geometry(16, 15.0), Geometry(32, 31.0))
    assert [a.offset for a in model.skip_aligners] == [0, 0] and model.final_aligner.offset == 0


@pytest.mark.parametrize("kernel", [3, 5])
def test_same_conv_geometry_matches_what_the_layer_computes(kernel):
    """A centre-tap "SAME" conv on a ramp returns, at output ``j``, the traced centre ``offset + stride j``."""
    conv = SameConv2d(1, 1, kernel, stride=2, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, kernel // 2, kernel // 2] = 1.0
        ramp = torch.arange(32, dtype=torch.float32).repeat(32, 1)[None, None]  # value = column
        out = conv(ramp)
    geometry = trace(conv, INPUT)
    expected = geometry.offset + geometry.stride * torch.arange(out.shape[-1], dtype=torch.float32)
    torch.testing.assert_close(out[0, 0, 5], expected)


def test_valid_cnn_has_no_exact_crop_and_resamples_onto_the_finer_grid():
    model = FCN(backbone=ValidCNN(width=4), num_classes=2, variant="8s")
    assert all(isinstance(a, Resample) for a in [*model.skip_aligners, model.final_aligner])


@pytest.mark.parametrize(
    ("source", "target"),
    [(Geometry(32, 91.0), Geometry(16, 43.0)), (Geometry(16, 5.0), Geometry(8, 0.0)), (Geometry(8, 19.0), INPUT)],
)
def test_resampled_upsampling_lands_within_half_a_pixel_of_the_finer_grid(source, target):
    """Upsample a map holding its own pixel centres: where the source covers the target, the
    fused value is the target's own centre to float precision (bound: half a target pixel)."""
    upsampler, aligner = upsampler_onto(2, source, target)
    assert isinstance(aligner, Resample)
    height, width = 6, 7
    x = _ramp(source, height, width).float()
    out_h, out_w = int(height * source.stride / target.stride), int(width * source.stride / target.stride)
    with torch.no_grad():
        out = aligner(upsampler(x), out_h, out_w).double()
    expected = _ramp(target, out_h, out_w)
    # inside the source's span: an interpolation of a linear ramp is the ramp itself
    first = source.offset + source.stride  # one pixel in from the source border (the deconvolution's own border)
    last = source.offset + source.stride * (height - 2)
    inside = (expected[0, 0] >= first) & (expected[0, 0] <= last) & (expected[0, 1] >= first) & (expected[0, 1] <= source.offset + source.stride * (width - 2))
    assert inside.sum() > 0
    error = (out - expected).abs()[0, :, inside] / target.stride
    assert error.max() < 1e-3 < 0.5


def test_resample_equals_a_crop_where_a_crop_is_exact():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 9, 11)
    resampled = Resample(Geometry(8, -8.0), Geometry(8, 0.0))(x, 7, 8)
    torch.testing.assert_close(resampled, Crop(1)(x, 7, 8))


def test_head_is_sized_for_the_backbone_and_vgg_keeps_its_own_fc_layers():
    efficientnet = FCN(backbone=EfficientNetLite0(), num_classes=2)
    assert efficientnet.head[0].kernel_size == (3, 3) and efficientnet.head[0].out_channels == 512  # 1280-channel c5
    small = FCN(backbone=SmallCNN(width=4), num_classes=2)
    assert small.head[0].out_channels == 32  # its own 32 channels, below 512
    custom = FCN(backbone=SmallCNN(width=4), num_classes=2, head_channels=16, head_kernel=1)
    assert custom.head[0].kernel_size == (1, 1) and custom.head[0].out_channels == 16
    vgg = FCN(backbone=VGG16(), num_classes=2)
    assert vgg.head[0].kernel_size == (7, 7) and vgg.head[0].out_channels == 4096
    assert sum(p.numel() for p in efficientnet.parameters()) < 15e6  # not the 850 MB VGG-sized head


@pytest.mark.parametrize("name", ["efficientnet_lite0", "valid_cnn"])
def test_one_training_step_gives_a_finite_loss_and_gradients_everywhere(name):
    torch.manual_seed(0)
    model = FCN(backbone=BACKBONES[name](), num_classes=2, variant="8s", dropout=0.0).train()
    images = [torch.rand(3, 45, 61), torch.rand(3, 64, 50)]
    targets = [{"semantic": torch.randint(0, 3, image.shape[-2:])} for image in images]
    losses = model(images, targets)
    assert set(losses) == {"loss_seg"} and torch.isfinite(losses["loss_seg"])
    losses["loss_seg"].backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    optimizer.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())

