import pytest
import torch

from detection.backbones import SmallCNN
from detection.localization import ClassLocalizationNet, slot_targets

C = 4


def _targets():
    return [
        {"boxes": torch.tensor([[10.0, 10.0, 50.0, 60.0], [0.0, 0.0, 5.0, 5.0]]), "labels": torch.tensor([2, 3])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]


@pytest.mark.parametrize("class_agnostic", [False, True])
def test_train_step_has_finite_losses_and_gradients_everywhere(class_agnostic):
    model = ClassLocalizationNet(backbone=SmallCNN(width=8), num_classes=C, num_objects=2, class_agnostic=class_agnostic, image_size=64)
    images = [torch.rand(3, 80, 100), torch.rand(3, 64, 64)]
    losses = model(images, _targets())
    assert set(losses) == {"loss_classifier", "loss_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    outputs = 1 if class_agnostic else C
    assert model.box_head[-1].out_features == 2 * outputs * 4


def test_image_without_objects_gives_zero_loss():
    model = ClassLocalizationNet(backbone=SmallCNN(width=8), num_classes=C, image_size=64)
    losses = model([torch.rand(3, 64, 64)], [_targets()[1]])
    assert all(v.item() == 0.0 for v in losses.values())


def test_slot_targets_take_the_largest_objects_first():
    labels, boxes, filled = slot_targets(_targets(), num_objects=3, image_size=100)
    assert labels[0].tolist() == [1, 2, 0] and filled.tolist() == [[True, True, False], [False, False, False]]
    torch.testing.assert_close(boxes[0, 0], torch.tensor([0.30, 0.35, 0.40, 0.50]))


def test_eval_contract_and_boxes_in_original_coordinates():
    model = ClassLocalizationNet(backbone=SmallCNN(width=8), num_classes=C, num_objects=2, image_size=64).eval()
    # Make the box head predict (cx, cy, w, h) = (0.5, 0.25, 0.5, 0.5) of the resized input, whatever the image.
    last = model.box_head[-1]
    torch.nn.init.zeros_(last.weight)
    wanted = torch.tensor([0.5, 0.25, 0.5, 0.5]).logit().repeat(2 * C)
    last.bias.data.copy_(wanted)
    images = [torch.rand(3, 200, 100), torch.rand(3, 64, 64)]
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2
    for image, result in zip(images, out):
        assert set(result) == {"boxes", "labels", "scores"}
        assert result["boxes"].dtype == torch.float32 and result["boxes"].shape == (2, 4)
        assert result["labels"].dtype == torch.int64 and ((result["labels"] >= 1) & (result["labels"] <= C)).all()
        assert result["scores"].dtype == torch.float32
        h, w = image.shape[1:]
        expected = torch.tensor([0.25 * w, 0.0, 0.75 * w, 0.5 * h])  # mapped back from the 64x64 input
        torch.testing.assert_close(result["boxes"][0], expected, rtol=1e-4, atol=1e-3)
