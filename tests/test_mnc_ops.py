"""MNC's parts: differentiable RoI warping (against roi_align, gradcheck), mask targets, masked
pooling, mask voting, on hand-computed cases."""

import pytest
import torch
from torchvision.ops import roi_align

from detection.mnc.heads import CategoryHead, MaskHead, masked_pooling
from detection.mnc.targets import mask_targets
from detection.mnc.voting import (
    binary_mask_iou,
    frame_masks,
    vote_in_frames,
    vote_masks,
)
from detection.mnc.warp import RoIWarp, roi_warp


def _features() -> torch.Tensor:
    return torch.randn(2, 3, 10, 12, dtype=torch.float64)


def test_warp_equals_roi_align_for_axis_aligned_boxes():
    features = _features()
    boxes = [
        torch.tensor([[8.0, 4.0, 40.0, 30.0], [3.3, 0.0, 95.0, 79.0]], dtype=torch.float64),
        torch.tensor([[10.0, 12.5, 50.2, 70.0]], dtype=torch.float64),
    ]
    warped = roi_warp(features, boxes, spatial_scale=1 / 8, output_size=7)
    expected = roi_align(features, boxes, 7, spatial_scale=1 / 8, sampling_ratio=1, aligned=True)
    torch.testing.assert_close(warped, expected)


def test_warp_samples_a_hand_computed_bilinear_point():
    """A 1x1 warp of box [0, 0, 2, 2] on a stride-1 map samples its centre (1, 1), i.e. feature
    coordinate 0.5: the mean of the 2x2 top-left pixels."""
    features = torch.arange(16, dtype=torch.float64).view(1, 1, 4, 4)
    out = roi_warp(features, [torch.tensor([[0.0, 0.0, 2.0, 2.0]], dtype=torch.float64)], spatial_scale=1.0, output_size=1)
    assert out.item() == pytest.approx((0 + 1 + 4 + 5) / 4)


def test_warp_gradients_match_finite_differences_for_boxes_and_features():
    features = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    # sample points strictly inside the 5 x 6 map: the border clamp is a kink finite differences would see
    boxes = torch.tensor([[4.3, 6.1, 30.7, 27.9], [9.7, 10.2, 36.1, 33.3]], dtype=torch.float64, requires_grad=True)

    def warp(f, b):
        return roi_warp(f, [b], spatial_scale=1 / 8, output_size=4)

    assert torch.autograd.gradcheck(warp, (features, boxes), eps=1e-6, atol=1e-5)
    warp(features, boxes).sum().backward()
    assert boxes.grad.abs().sum() > 0  # roi_align would give none


def test_roi_warp_module_pools_28_to_14():
    warp = RoIWarp(stride=8)
    out = warp(torch.randn(1, 4, 16, 16), [torch.tensor([[0.0, 0.0, 64.0, 64.0]])])
    assert out.shape == (1, 4, 14, 14) and warp.output_size == 14


def test_mask_targets_crop_and_resize_a_hand_case():
    """gt 0: columns 0..2 of an 8x8 mask; gt 1: empty. Bins are sampled at their centres
    (bilinear between pixel centres) and binarised at 0.5."""
    gt = torch.zeros(2, 8, 8, dtype=torch.uint8)
    gt[0, :, :3] = 1
    boxes = torch.tensor([[0.0, 0.0, 8.0, 8.0], [0.0, 0.0, 4.0, 8.0], [2.0, 0.0, 6.0, 4.0], [0.0, 0.0, 8.0, 8.0]])
    matched = torch.tensor([0, 0, 0, 1])
    targets = mask_targets(gt, boxes, matched, mask_size=2)
    # box 0, 2x2 bins of 4 px: centres x = 2, 6 -> pixel coords 1.5 (1), 5.5 (0)
    assert targets[0].tolist() == [[1.0, 0.0], [1.0, 0.0]]
    # box 1, bins of 2 px: centres x = 1, 3 -> 0.5 (1) and 2.5 (between cols 2 and 3: 0.5 -> 1)
    assert targets[1].tolist() == [[1.0, 1.0], [1.0, 1.0]]
    # box 2 (x 2..6): centres x = 3, 5 -> 2.5 (0.5 -> 1), 4.5 (0)
    assert targets[2].tolist() == [[1.0, 0.0], [1.0, 0.0]]
    assert targets[3].sum() == 0  # matched to the empty gt
    four = mask_targets(gt, boxes[:1], matched[:1], mask_size=4)
    assert four[0, 0].tolist() == [1.0, 1.0, 0.0, 0.0]  # centres 1, 3, 5, 7 -> 0.5, 2.5, 4.5, 6.5


def test_masked_pooling_multiplies_by_the_resized_mask_and_passes_gradients():
    features = torch.ones(1, 2, 4, 4)
    mask = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]], requires_grad=True)  # [R, m, m], top half on
    out = masked_pooling(features, mask)
    # bilinear 2 -> 4 rows (half-pixel centres, edge-clamped): 1, 0.75, 0.25, 0
    expected_rows = torch.tensor([1.0, 0.75, 0.25, 0.0])
    torch.testing.assert_close(out[0, 0], expected_rows[:, None].expand(4, 4))
    torch.testing.assert_close(out[0, 1], out[0, 0])
    out.sum().backward()
    assert mask.grad.abs().sum() > 0


def test_heads_shapes():
    roi = torch.randn(3, 4, 14, 14)
    mask_logits = MaskHead(in_channels=4, roi_size=14, mask_size=21)(roi)
    assert mask_logits.shape == (3, 21, 21)
    logits, deltas = CategoryHead(in_channels=4, roi_size=14, num_classes=5, representation_size=8)(roi, masked_pooling(roi, mask_logits.sigmoid()))
    assert logits.shape == (3, 6) and deltas.shape == (3, 24)


def test_mask_voting_hand_case():
    """Mask 0 (kept) and mask 1 overlap with IoU 2/3 >= 0.5 and vote; mask 2 (IoU 1/4) does not.
    Pixel 2: (0.9 * 0.5 + 0.6 * 0) / 1.5 = 0.3 < 0.4, so voting turns it off."""
    masks = torch.tensor([[[0.9, 0.8, 0.5, 0.1]], [[1.0, 0.6, 0.0, 0.0]], [[0.0, 0.0, 0.7, 0.9]]])  # [N, 1, 4]
    scores = torch.tensor([0.9, 0.6, 0.5])
    voted = vote_masks(masks, scores, torch.tensor([0, 2]))
    torch.testing.assert_close(voted[0, 0], (0.9 * masks[0, 0] + 0.6 * masks[1, 0]) / 1.5)
    torch.testing.assert_close(voted[1, 0], masks[2, 0])  # alone: its own mask
    assert (voted[0, 0] >= 0.4).tolist() == [True, True, False, False]
    iou = binary_mask_iou(masks[:1] >= 0.4, masks >= 0.4)
    torch.testing.assert_close(iou, torch.tensor([[1.0, 2 / 3, 0.25]]))


def test_frame_masks_place_box_masks_on_a_common_grid():
    masks = torch.ones(2, 2, 2)
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [4.0, 0.0, 8.0, 4.0]])
    framed = frame_masks(masks, boxes, torch.tensor([0.0, 0.0, 8.0, 4.0]), size=4)
    # frame bins of 2 x 1 px; box 0 covers columns 0-1, box 1 columns 2-3 (centres inside each box)
    assert (framed[0, :, :2] > 0.5).all() and (framed[0, :, 2:] < 0.5).all()
    assert (framed[1, :, 2:] > 0.5).all() and (framed[1, :, :2] < 0.5).all()


def test_vote_in_frames_only_mixes_a_class_with_itself():
    masks = torch.ones(3, 4, 4)
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    scores, labels = torch.tensor([0.9, 0.8, 0.7]), torch.tensor([1, 1, 2])
    voted, frames = vote_in_frames(masks, boxes, scores, labels, torch.tensor([0, 2]), frame_size=8)
    assert voted.shape == (2, 8, 8) and frames.shape == (2, 4)
    torch.testing.assert_close(frames[0], torch.tensor([0.0, 0.0, 10.0, 10.0]))
    torch.testing.assert_close(frames[1], boxes[2])  # class 2 has no other candidate


def test_clip_gradient_is_the_identity_forward_and_clamps_backward():
    from detection.mnc.rpn import clip_gradient

    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = clip_gradient(x, 0.5)
    assert torch.equal(y, x)
    (y * torch.tensor([-2.0, 0.1, 3.0])).sum().backward()
    assert x.grad.tolist() == [-0.5, pytest.approx(0.1), 0.5]
