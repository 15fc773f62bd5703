"""The model-side transform: ImageNet normalisation, resize, batching, postprocess to original size."""

import torch

from detection.transform import IMAGENET_MEAN, IMAGENET_STD, build_transform


def test_fixed_size_resizes_every_image_and_rescales_target_boxes():
    transform = build_transform(fixed_size=64).train()
    images = [torch.rand(3, 128, 32), torch.rand(3, 50, 100)]
    targets = [
        {"boxes": torch.tensor([[0.0, 0.0, 16.0, 64.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.tensor([[50.0, 25.0, 100.0, 50.0]]), "labels": torch.tensor([2])},
    ]
    boxes_before = [t["boxes"].clone() for t in targets]
    batch, out_targets = transform(images, targets)
    assert batch.tensors.shape == (2, 3, 64, 64)
    assert batch.image_sizes == [(64, 64), (64, 64)]
    torch.testing.assert_close(out_targets[0]["boxes"], torch.tensor([[0.0, 0.0, 32.0, 32.0]]))
    torch.testing.assert_close(out_targets[1]["boxes"], torch.tensor([[32.0, 32.0, 64.0, 64.0]]))
    for target, before in zip(targets, boxes_before):  # the caller's targets are left untouched
        torch.testing.assert_close(target["boxes"], before)


def test_normalises_with_imagenet_statistics():
    transform = build_transform(fixed_size=32).eval()
    image = torch.full((3, 32, 32), 0.5)
    batch, _ = transform([image])
    expected = (0.5 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(batch.tensors[0, :, 7, 11], expected)


def test_min_max_resize_keeps_aspect_and_pads_to_the_stride():
    transform = build_transform(min_size=100, max_size=1000, size_divisible=32).eval()
    batch, _ = transform([torch.rand(3, 50, 75), torch.rand(3, 60, 60)])
    assert batch.image_sizes == [(100, 150), (100, 100)]
    assert batch.tensors.shape == (2, 3, 128, 160)  # padded up to multiples of 32
    assert (batch.tensors[1, :, :, 100:] == 0).all()  # padding is zeros after normalisation


def test_postprocess_maps_boxes_back_to_the_original_image():
    transform = build_transform(min_size=100, max_size=1000).eval()
    images = [torch.rand(3, 50, 75), torch.rand(3, 200, 100)]
    batch, _ = transform(images)
    assert batch.image_sizes == [(100, 150), (200, 100)]
    # A box on the resized image: the right half, top quarter.
    predictions = [
        {"boxes": torch.tensor([[75.0, 0.0, 150.0, 25.0]]), "labels": torch.tensor([1]), "scores": torch.tensor([0.9])},
        {"boxes": torch.tensor([[50.0, 0.0, 100.0, 50.0]]), "labels": torch.tensor([1]), "scores": torch.tensor([0.9])},
    ]
    original_sizes = [tuple(image.shape[-2:]) for image in images]
    out = transform.postprocess(predictions, batch.image_sizes, original_sizes)
    torch.testing.assert_close(out[0]["boxes"], torch.tensor([[37.5, 0.0, 75.0, 12.5]]))
    torch.testing.assert_close(out[1]["boxes"], torch.tensor([[50.0, 0.0, 100.0, 50.0]]))
