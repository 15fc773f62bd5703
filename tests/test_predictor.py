"""The one inference path: predictions do not depend on which images share a batch."""

import pytest
import torch

from detection.backbones import SmallCNN
from detection.faster_rcnn import FasterRCNN
from detection.predictor import predict_images


@pytest.fixture()
def detector() -> FasterRCNN:
    torch.manual_seed(0)
    model = FasterRCNN(
        backbone=SmallCNN(width=8), num_classes=3, min_size=64, max_size=128, anchor_sizes=(16, 32),
        representation_size=32, score_thresh=0.0,
    )  # fmt: skip
    return model.eval()


def _images() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.rand(3, 64, 48, generator=generator), torch.rand(3, 64, 128, generator=generator)]


def test_batched_forward_depends_on_the_batch_but_predict_images_does_not(detector: FasterRCNN) -> None:
    small, large = _images()
    with torch.no_grad():
        alone = detector([small])[0]
        padded = detector([small, large])[0]  # the small image is padded to the large one's width
    assert len(alone["boxes"]) > 0
    same = alone["boxes"].shape == padded["boxes"].shape and torch.equal(alone["scores"], padded["scores"])
    assert not same, "the model should see the padding; otherwise this test proves nothing"

    (one,) = predict_images(detector, [small])
    together = predict_images(detector, [small, large])
    for key in ("boxes", "labels", "scores"):
        assert torch.equal(one[key], together[0][key])


def test_predict_images_needs_eval_mode(detector: FasterRCNN) -> None:
    with pytest.raises(RuntimeError, match="eval mode"):
        predict_images(detector.train(), _images())
