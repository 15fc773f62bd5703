import pytest
import torch

from detection.backbones import VGG16, EfficientNetLite0, MobileNetV3, ResNet, SmallCNN, vgg16_fc_as_conv
from detection.backbones.weights import OFFLINE_ENV

# (constructor, expected {tap: (stride, channels)})
BACKBONES = [
    (lambda: SmallCNN(width=8), {"c2": (4, 16), "c3": (8, 32), "c4": (16, 64), "c5": (32, 64)}),
    (lambda: VGG16(), {"pool3": (8, 256), "pool4": (16, 512), "conv5_3": (16, 512), "pool5": (32, 512)}),
    (lambda: ResNet(depth=18), {"c2": (4, 64), "c3": (8, 128), "c4": (16, 256), "c5": (32, 512)}),
    (lambda: ResNet(depth=50), {"c2": (4, 256), "c3": (8, 512), "c4": (16, 1024), "c5": (32, 2048)}),
    (lambda: MobileNetV3(size="small"), {"c2": (4, 16), "c3": (8, 24), "c4": (16, 48), "c5": (32, 576)}),
    (lambda: MobileNetV3(size="large"), {"c2": (4, 24), "c3": (8, 40), "c4": (16, 112), "c5": (32, 960)}),
    (lambda: EfficientNetLite0(), {"c2": (4, 24), "c3": (8, 40), "c4": (16, 112), "c5": (32, 1280)}),
]


@pytest.mark.parametrize("build,expected", BACKBONES)
def test_documented_taps_strides_and_channels(build, expected):
    backbone = build().eval()
    assert {k: (backbone.strides[k], backbone.channels[k]) for k in backbone.strides} == expected
    assert backbone.out_channels == list(expected.values())[-1][1]
    with torch.no_grad():
        out = backbone(torch.rand(1, 3, 64, 96))
    assert list(out) == list(expected)
    for name, (stride, channels) in expected.items():
        assert out[name].shape == (1, channels, 64 // stride, 96 // stride)
    assert backbone.tap_for_stride(16) == [k for k, (s, _) in expected.items() if s == 16][-1]


def test_frozen_stages_stop_gradients_and_keep_batchnorm_statistics():
    backbone = SmallCNN(width=8, frozen_stages=2).train()
    frozen, trainable = list(backbone.stages.values())[:2], list(backbone.stages.values())[2:]
    assert all(not p.requires_grad for stage in frozen for p in stage.parameters())
    assert all(p.requires_grad for stage in trainable for p in stage.parameters())
    assert not frozen[0][1].training and trainable[0][1].training  # frozen BN stays in eval mode
    before = frozen[0][1].running_mean.clone()
    backbone(torch.rand(2, 3, 32, 32))
    torch.testing.assert_close(frozen[0][1].running_mean, before)


def test_frozen_bn_keeps_the_statistics_and_output_and_never_updates():
    reference = ResNet(depth=18).eval()
    with torch.no_grad():  # non-trivial statistics, as pretrained ones are
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5), module.running_var.uniform_(0.5, 2.0)
    frozen = ResNet(depth=18, frozen_bn=True)
    missing, unexpected = frozen.load_state_dict(reference.state_dict(), strict=False)
    assert not missing and all(key.endswith("num_batches_tracked") for key in unexpected)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in frozen.modules())
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = reference(x)["c5"]
        frozen.train()(x)  # training mode changes nothing
        torch.testing.assert_close(frozen(x)["c5"], expected)
    converted = EfficientNetLite0(frozen_bn=True)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in converted.modules())


def test_weights_from_a_local_file_and_offline_names(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv(OFFLINE_ENV, "1")  # never download here (tests/test_weights.py mocks the download)
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    backbone = ResNet(depth=18, weights=str(path))
    torch.testing.assert_close(backbone.stages["stem"][0].weight, reference.conv1.weight)
    with pytest.raises((FileNotFoundError, ValueError), match="cache|unknown"):
        ResNet(depth=18, weights="IMAGENET1K_V1" if not _cached("resnet18") else "NOT_A_WEIGHT")
    torch.save({"foo": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not a resnet18 state dict"):
        ResNet(depth=18, weights=str(tmp_path / "bad.pth"))


def _cached(arch: str) -> bool:
    from pathlib import Path

    return any(Path(torch.hub.get_dir(), "checkpoints").glob(f"{arch}-*.pth"))


def test_vgg_fc_layers_as_convolutions_equal_the_classifier():
    import torchvision

    vgg = torchvision.models.vgg16(weights=None).eval()
    fc = vgg16_fc_as_conv(vgg.classifier.state_dict()).eval()
    pool5 = torch.rand(1, 512, 7, 7)
    expected = vgg.classifier[:5](pool5.flatten(1))  # fc6, relu, dropout, fc7, relu
    torch.testing.assert_close(fc(pool5).flatten(1), expected, rtol=1e-4, atol=1e-4)


def test_truncate_drops_the_stages_after_a_tap():
    backbone = SmallCNN(width=8)
    backbone.truncate("c3")
    assert list(backbone.strides) == ["c2", "c3"] and backbone.out_channels == 32
    assert list(backbone(torch.rand(1, 3, 32, 32))) == ["c2", "c3"]
    with pytest.raises(ValueError, match="not a tap"):
        backbone.truncate("c5")
