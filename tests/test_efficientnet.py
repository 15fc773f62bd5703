"""EfficientNet-Lite0: the packaged ImageNet weights load strictly and classify a real photo."""

from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models import ResNet18_Weights

from detection.backbones import EfficientNetLite0
from detection.backbones.efficientnet import EfficientNetLite0Classifier, packaged_weights_path
from detection.transform import IMAGENET_MEAN, IMAGENET_STD

# Grace Hopper in uniform, shipped with matplotlib (a dependency); ImageNet class 652
PHOTO = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
EXPECTED = "military uniform"
CATEGORIES = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]  # ImageNet's 1000 names, offline


def _photo(size: int = 224) -> torch.Tensor:
    """The centre square of the photo, ``Tensor[1, 3, size, size]`` ImageNet-normalized (as the model transform does)."""
    image = Image.open(PHOTO).convert("RGB")
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255.0
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def _top1(backbone: EfficientNetLite0, classifier: torch.nn.Module) -> tuple[str, float]:
    with torch.no_grad():
        probs = classifier(backbone.eval()(_photo())["c5"]).softmax(dim=1)[0]
    return CATEGORIES[int(probs.argmax())], float(probs.max())


def test_the_packaged_state_dict_matches_the_architecture_key_for_key():
    state = torch.load(packaged_weights_path(), map_location="cpu", weights_only=True)
    model = EfficientNetLite0Classifier()
    assert list(state) == list(model.state_dict())
    model.load_state_dict(state, strict=True)


def test_pretrained_backbone_classifies_a_real_photo_top1():
    backbone = EfficientNetLite0(weights="IMAGENET")
    name, prob = _top1(backbone, backbone.imagenet_classifier().eval())
    assert name == EXPECTED and prob > 0.2, (name, prob)


def test_random_weights_do_not_classify_it():
    torch.manual_seed(0)
    random_backbone = EfficientNetLite0()
    pretrained = EfficientNetLite0(weights="IMAGENET")
    name, _ = _top1(random_backbone, pretrained.imagenet_classifier().eval())
    assert name != EXPECTED
    with pytest.raises(ValueError, match="weights=None"):
        random_backbone.imagenet_classifier()


def test_any_input_size_keeps_the_strides_and_frozen_stages_keep_batchnorm():
    backbone = EfficientNetLite0(weights="IMAGENET", frozen_stages=3).train()
    with torch.no_grad():
        out = backbone(torch.rand(1, 3, 241, 333))
    assert {k: tuple(v.shape[1:]) for k, v in out.items()} == {
        "c2": (24, 61, 84), "c3": (40, 31, 42), "c4": (112, 16, 21), "c5": (1280, 8, 11)
    }
    frozen = list(backbone.stages.values())[:3]
    assert all(not p.requires_grad for stage in frozen for p in stage.parameters())
    assert all(p.requires_grad for p in backbone.stages["c4"].parameters())
    bns = [m for stage in frozen for m in stage.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(bn.training for bn in bns)
    backbone.truncate("c4")
    assert list(backbone.strides) == ["c2", "c3", "c4"] and backbone.out_channels == 112


def test_a_file_with_other_keys_is_refused(tmp_path):
    torch.save({"_fc.weight": torch.zeros(1000, 1280)}, tmp_path / "bad.pth")
    with pytest.raises(RuntimeError, match="Missing key"):
        EfficientNetLite0(weights=str(tmp_path / "bad.pth"))
