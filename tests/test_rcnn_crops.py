"""R-CNN region crops: context dilation, the warp, zeros outside the image, against crops computed by hand."""

import math

import pytest
import torch

from detection.rcnn.crops import dilate_boxes, scaled_context_padding, warp_batch, warp_regions


def _bilinear_by_hand(image: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """``image [3, H, W]`` at continuous pixel coordinates (pixel ``i``'s centre at ``i + 0.5``), zero outside."""
    _, height, width = image.shape
    u, v = x - 0.5, y - 0.5
    x0, y0 = math.floor(u), math.floor(v)
    ax, ay = u - x0, v - y0
    value = torch.zeros(3)
    for dy, wy in ((0, 1 - ay), (1, ay)):
        for dx, wx in ((0, 1 - ax), (1, ax)):
            row, col = y0 + dy, x0 + dx
            if 0 <= row < height and 0 <= col < width:
                value += wy * wx * image[:, row, col]
    return value


def _crop_by_hand(image: torch.Tensor, box: tuple[float, float, float, float], crop: int, padding: float) -> torch.Tensor:
    x1, y1, x2, y2 = box
    scale = crop / (crop - 2 * padding)
    cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2 * scale, (y2 - y1) / 2 * scale
    dx1, dy1, dw, dh = cx - hw, cy - hh, 2 * hw, 2 * hh
    out = torch.zeros(3, crop, crop)
    for i in range(crop):
        for j in range(crop):
            out[:, i, j] = _bilinear_by_hand(image, dx1 + (j + 0.5) * dw / crop, dy1 + (i + 0.5) * dh / crop)
    return out


def test_paper_padding_scales_with_the_crop():
    assert scaled_context_padding(227) == 16
    assert scaled_context_padding(64) == pytest.approx(16 * 64 / 227)


def test_dilation_leaves_padding_pixels_of_context_after_the_warp():
    box = torch.tensor([[10.0, 20.0, 40.0, 30.0]])  # 30 x 10 px
    crop, padding = 64, 8.0
    dilated = dilate_boxes(box, crop_size=crop, padding=padding)
    # the box spans the central crop - 2 * padding crop pixels on each axis
    width, height = dilated[0, 2] - dilated[0, 0], dilated[0, 3] - dilated[0, 1]
    assert float(30 / width * crop) == pytest.approx(crop - 2 * padding)
    assert float(10 / height * crop) == pytest.approx(crop - 2 * padding)
    torch.testing.assert_close((dilated[:, :2] + dilated[:, 2:]) / 2, torch.tensor([[25.0, 25.0]]))  # same centre


def test_an_integer_aligned_warp_is_the_image_window_itself():
    # crop 8, padding 2: scale 2, the 4 x 4 box [10, 14) dilates to [8, 16): 8 px sampled at their centres
    image = torch.rand(3, 24, 24)
    crops = warp_regions(image, torch.tensor([[10.0, 10.0, 14.0, 14.0]]), crop_size=8, padding=2)
    assert crops.shape == (1, 3, 8, 8)
    torch.testing.assert_close(crops[0], image[:, 8:16, 8:16])


def test_outside_the_image_is_zero():
    image = torch.rand(3, 16, 16) + 1.0  # no zero inside the image
    crops = warp_regions(image, torch.tensor([[0.0, 0.0, 4.0, 4.0]]), crop_size=8, padding=2)  # dilated [-2, 6)
    assert torch.all(crops[0, :, :2, :] == 0) and torch.all(crops[0, :, :, :2] == 0)
    torch.testing.assert_close(crops[0, :, 2:, 2:], image[:, 0:6, 0:6])


def test_anisotropic_warp_matches_bilinear_by_hand():
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(3, 20, 30, generator=gen)
    boxes = [(3.0, 5.0, 13.0, 9.0), (17.3, 2.2, 29.5, 19.1), (-4.0, 12.5, 6.0, 30.0)]  # wide, tall, off the image
    crops = warp_regions(image, torch.tensor(boxes), crop_size=7, padding=1.25)
    for crop, box in zip(crops, boxes):
        torch.testing.assert_close(crop, _crop_by_hand(image, box, 7, 1.25), atol=1e-5, rtol=1e-5)


def test_batched_crops_keep_each_image_and_leave_inputs_untouched():
    images = [torch.rand(3, 20, 30), torch.rand(3, 12, 12)]
    before = [image.clone() for image in images]
    boxes = [torch.tensor([[2.0, 2.0, 10.0, 12.0], [0.0, 0.0, 30.0, 20.0]]), torch.zeros(0, 4), ]
    boxes.append(torch.tensor([[1.0, 1.0, 5.0, 9.0]]))
    images.append(images[1])
    crops = warp_batch(images, boxes, crop_size=6, padding=1)
    assert crops.shape == (3, 3, 6, 6)
    torch.testing.assert_close(crops[2], _crop_by_hand(images[1], (1.0, 1.0, 5.0, 9.0), 6, 1))
    assert all(torch.equal(a, b) for a, b in zip(images, before))


def test_bad_padding_is_refused():
    with pytest.raises(ValueError, match="padding"):
        dilate_boxes(torch.zeros(1, 4), crop_size=8, padding=4)
