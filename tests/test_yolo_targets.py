"""YOLO v1 grid targets: layout, encode -> decode round trip, cell assignment, bad input."""

import pytest
import torch
from torchvision.ops import box_iou

from detection.yolo.loss import paired_iou
from detection.yolo.postprocess import select_detections
from detection.yolo.targets import CONF, SQRT_W, X, Y, GridLayout, decode_grid, encode_batch, encode_targets


@pytest.mark.parametrize(("s", "b", "c"), [(7, 2, 20), (4, 3, 1), (5, 1, 80)])
def test_layout_slices_follow_s_b_c(s: int, b: int, c: int) -> None:
    layout = GridLayout(grid_size=s, boxes_per_cell=b, num_classes=c)
    assert layout.depth == 5 * b + c
    grid = torch.arange(2 * s * s * layout.depth, dtype=torch.float32).view(2, s, s, layout.depth)
    assert layout.boxes(grid).shape == (2, s, s, b, 5)
    assert layout.class_probs(grid).shape == (2, s, s, c)
    # the class block starts right after the last box's confidence
    assert layout.class_probs(grid)[0, 0, 0, 0] == layout.boxes(grid)[0, 0, 0, -1, CONF] + 1
    with pytest.raises(ValueError, match=r"\[N, "):
        layout.boxes(grid[..., :-1])


@pytest.mark.parametrize(("s", "b", "c", "size"), [(7, 2, 20, (448, 448)), (4, 3, 3, (96, 128)), (8, 1, 4, (128, 128))])
def test_encode_decode_round_trip(s: int, b: int, c: int, size: tuple[int, int]) -> None:
    layout = GridLayout(grid_size=s, boxes_per_cell=b, num_classes=c)
    h, w = size
    # one box per cell: centres in distinct cells
    boxes = torch.tensor(
        [[0.0, 0.0, w * 0.2, h * 0.1], [w * 0.4, h * 0.35, w * 0.9, h * 0.95], [w * 0.7, h * 0.05, w, h * 0.3]]
    )
    labels = torch.tensor([1, c, max(1, c - 1)])
    grid = encode_targets(boxes, labels, image_size=size, layout=layout)
    assert grid.shape == (s, s, 5 * b + c)
    assert int((layout.boxes(grid[None])[..., 0, CONF] > 0).sum()) == 3
    dec_boxes, dec_scores = decode_grid(grid[None], image_size=size, layout=layout)
    assert dec_boxes.shape == (1, s * s * b, 4) and dec_scores.shape == (1, s * s * b, c)
    dets = select_detections(dec_boxes[0], dec_scores[0], score_threshold=0.5, nms_threshold=0.5)
    order = torch.argsort(dets["boxes"][:, 0])  # the three boxes are ordered by x1
    torch.testing.assert_close(dets["boxes"][order], boxes, atol=1e-3, rtol=0)
    assert dets["labels"][order].tolist() == labels.tolist()
    torch.testing.assert_close(dets["scores"], torch.ones(3))


def test_encode_places_centre_offset_and_sqrt_size() -> None:
    layout = GridLayout(grid_size=4, boxes_per_cell=2, num_classes=3)
    # 100 x 100 image, cells of 25 px; centre (60, 30) -> column 2, row 1, offsets (0.4, 0.2)
    grid = encode_targets(torch.tensor([[50.0, 20.0, 70.0, 40.0]]), torch.tensor([3]), image_size=(100, 100), layout=layout)
    fields = layout.boxes(grid[None])[0]  # [S, S, B, 5]
    expected = torch.tensor([0.4, 0.2, 0.2**0.5, 0.2**0.5, 1.0])
    for j in range(2):
        torch.testing.assert_close(fields[1, 2, j], expected)
    assert layout.class_probs(grid[None])[0, 1, 2].tolist() == [0.0, 0.0, 1.0]
    grid[1, 2] = 0
    assert grid.abs().sum() == 0  # nothing else was written


def test_shared_cell_keeps_largest_box() -> None:
    layout = GridLayout(grid_size=2, boxes_per_cell=1, num_classes=2)
    small = [10.0, 10.0, 20.0, 20.0]
    large = [0.0, 0.0, 30.0, 30.0]
    for order in ([small, large], [large, small]):
        labels = torch.tensor([1, 2]) if order[0] is small else torch.tensor([2, 1])
        grid = encode_targets(torch.tensor(order), labels, image_size=(64, 64), layout=layout)
        torch.testing.assert_close(grid[0, 0, SQRT_W], torch.tensor((30 / 64) ** 0.5))
        assert layout.class_probs(grid[None])[0, 0, 0].tolist() == [0.0, 1.0]  # the large box's class


def test_boxes_on_the_border_and_empty_images() -> None:
    layout = GridLayout(grid_size=4, boxes_per_cell=2, num_classes=2)
    # a box touching the right/bottom edge has its centre in the last cell; one outside is clipped
    grid = encode_targets(torch.tensor([[60.0, 60.0, 64.0, 64.0]]), torch.tensor([1]), image_size=(64, 64), layout=layout)
    assert grid[3, 3, CONF] == 1
    grid = encode_targets(torch.tensor([[-10.0, 5.0, 8.0, 9.0]]), torch.tensor([2]), image_size=(64, 64), layout=layout)
    torch.testing.assert_close(grid[0, 0, X], torch.tensor(4.0 / 16.0))
    torch.testing.assert_close(grid[0, 0, Y], torch.tensor(7.0 / 16.0))
    empty = encode_batch(
        [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}], image_size=(64, 64), layout=layout
    )
    assert empty.shape == (1, 4, 4, 12) and empty.abs().sum() == 0


def test_bad_labels_are_rejected() -> None:
    layout = GridLayout(grid_size=4, boxes_per_cell=2, num_classes=2)
    with pytest.raises(ValueError, match=r"1\.\.2"):
        encode_targets(torch.tensor([[0.0, 0.0, 5.0, 5.0]]), torch.tensor([0]), image_size=(32, 32), layout=layout)
    with pytest.raises(ValueError, match=r"1\.\.2"):
        encode_targets(torch.tensor([[0.0, 0.0, 5.0, 5.0]]), torch.tensor([3]), image_size=(32, 32), layout=layout)
    with pytest.raises(ValueError, match="grid_size"):
        GridLayout(grid_size=0, boxes_per_cell=2, num_classes=2)


def test_paired_iou_matches_torchvision_box_iou() -> None:
    torch.manual_seed(0)
    xy = torch.rand(50, 2) * 50
    boxes1 = torch.cat([xy, xy + torch.rand(50, 2) * 30 + 1], dim=1)
    xy = torch.rand(50, 2) * 50
    boxes2 = torch.cat([xy, xy + torch.rand(50, 2) * 30 + 1], dim=1)
    torch.testing.assert_close(paired_iou(boxes1, boxes2), box_iou(boxes1, boxes2).diagonal())
    assert paired_iou(boxes1[:0], boxes2[:0]).shape == (0,)


def test_class_specific_confidence_is_product() -> None:
    layout = GridLayout(grid_size=1, boxes_per_cell=2, num_classes=3)
    grid = torch.zeros(1, 1, 1, layout.depth)
    grid[0, 0, 0, [X, Y]] = 0.5
    grid[0, 0, 0, 2:4] = 0.5  # sqrt sizes
    grid[0, 0, 0, CONF] = 0.8
    grid[0, 0, 0, 5 + CONF] = -0.3  # negative (linear) confidence counts as 0
    grid[0, 0, 0, layout.class_slice] = torch.tensor([0.5, 0.25, -1.0])
    _, scores = decode_grid(grid, image_size=(10, 10), layout=layout)
    torch.testing.assert_close(scores[0], torch.tensor([[0.4, 0.2, 0.0], [0.0, 0.0, 0.0]]))
