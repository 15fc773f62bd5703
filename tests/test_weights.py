"""Backbone weights as torchvision does them: cached, downloaded (mocked here), offline error, file, null."""

import pytest
import torch
import torchvision
from jsonargparse import ArgumentParser

from detection.backbones import VGG16, EfficientNetLite0, MobileNetV3, ResNet
from detection.backbones.weights import OFFLINE_ENV, hub_checkpoint_path, offline

URL = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache, and a mocked download that records its calls (nothing leaves this machine)."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    monkeypatch.delenv(OFFLINE_ENV, raising=False)
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None)
    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, progress))
        torch.save(reference.state_dict(), dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    return reference, calls


def test_a_missing_torchvision_weight_is_downloaded_into_the_hub_cache_with_a_progress_bar(hub):
    reference, calls = hub
    backbone = ResNet(depth=18, weights="IMAGENET1K_V1")
    assert calls == [(URL, True)]
    assert hub_checkpoint_path(URL).is_file()
    torch.testing.assert_close(backbone.stages["stem"][0].weight, reference.conv1.weight)
    ResNet(depth=18, weights="IMAGENET1K_V1")  # now cached: no second download
    assert len(calls) == 1


def test_offline_mode_refuses_to_download_and_names_the_file(hub, monkeypatch):
    _, calls = hub
    monkeypatch.setenv(OFFLINE_ENV, "1")
    assert offline()
    with pytest.raises(FileNotFoundError, match=rf"{OFFLINE_ENV}.*resnet18-.*\.pth"):
        ResNet(depth=18, weights="IMAGENET1K_V1")
    assert calls == []
    monkeypatch.setenv(OFFLINE_ENV, "0")
    assert not offline()


def test_unknown_weight_names_list_the_choices(hub):
    with pytest.raises(ValueError, match="unknown weights 'None' for ResNet18_Weights.*IMAGENET1K_V1"):
        ResNet(depth=18, weights="None")


def test_a_local_file_is_loaded_weights_only(tmp_path, hub):
    reference, calls = hub
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": reference.state_dict()}, path)
    backbone = ResNet(depth=18, weights=str(path))
    torch.testing.assert_close(backbone.stages["stem"][0].weight, reference.conv1.weight)
    torch.save({"model": torch.nn.Linear(1, 1)}, tmp_path / "pickled.pth")  # not loadable as data only
    with pytest.raises(Exception, match="weights_only|Unsupported global"):
        ResNet(depth=18, weights=str(tmp_path / "pickled.pth"))
    assert calls == []


@pytest.mark.parametrize("backbone", [VGG16, ResNet, MobileNetV3, EfficientNetLite0])
def test_null_on_the_command_line_means_no_weights(backbone):
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(backbone, "backbone")
    assert parser.parse_args(["--backbone.weights", "null"]).backbone.weights is None
    assert parser.parse_args(["--backbone.weights", "IMAGENET1K_V1"]).backbone.weights == "IMAGENET1K_V1"
