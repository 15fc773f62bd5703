"""R-CNN fine-tuning batches: region labels at IoU 0.5 and the 32 / 96 foreground / background counts."""

import torch

from detection.rcnn.sampler import CROPS_PER_BATCH, FG_FRACTION, label_regions, sample_regions

NUM_FG = round(CROPS_PER_BATCH * FG_FRACTION)


def test_paper_batch_is_32_foreground_and_96_background():
    assert (CROPS_PER_BATCH, NUM_FG) == (128, 32)


def test_labels_take_the_best_ground_truth_at_iou_half():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 40.0]])
    labels = torch.tensor([3, 1])
    boxes = torch.tensor([
        [0.0, 0.0, 10.0, 10.0],  # IoU 1 with gt 0
        [0.0, 0.0, 10.0, 20.0],  # IoU 0.5 exactly: foreground
        [0.0, 0.0, 10.0, 21.0],  # IoU < 0.5: background
        [20.0, 20.0, 40.0, 38.0],  # IoU 0.9 with gt 1
        [50.0, 50.0, 60.0, 60.0],  # nothing
    ])
    region_labels, max_iou, matched = label_regions(boxes, gt, labels)
    assert region_labels.tolist() == [3, 3, 0, 1, 0]
    assert region_labels.dtype == torch.int64
    assert matched[:2].tolist() == [0, 0] and matched[3] == 1
    assert max_iou[1] == 0.5


def test_no_ground_truth_means_all_background():
    region_labels, max_iou, _ = label_regions(torch.rand(5, 4) * 10 + torch.tensor([0, 0, 10, 10]), torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    assert region_labels.tolist() == [0] * 5 and torch.all(max_iou == 0)


def test_fractions_with_plenty_of_both_are_exact_and_without_repeats():
    labels = torch.cat([torch.randint(1, 5, (50,)), torch.zeros(500, dtype=torch.int64)])[torch.randperm(550)]
    chosen = sample_regions(labels, generator=torch.Generator().manual_seed(0))
    assert len(chosen) == 128
    assert int((labels[chosen] > 0).sum()) == 32 and int((labels[chosen] == 0).sum()) == 96
    assert len(set(chosen.tolist())) == 128


def test_few_foreground_regions_are_repeated_to_keep_the_fraction():
    labels = torch.cat([torch.ones(5, dtype=torch.int64), torch.zeros(300, dtype=torch.int64)])
    chosen = sample_regions(labels, generator=torch.Generator().manual_seed(1))
    fg = chosen[labels[chosen] > 0]
    assert len(fg) == 32 and set(fg.tolist()) == set(range(5))  # every positive, repeated
    assert int((labels[chosen] == 0).sum()) == 96


def test_without_foreground_the_batch_is_all_background():
    chosen = sample_regions(torch.zeros(200, dtype=torch.int64), generator=torch.Generator().manual_seed(2))
    assert len(chosen) == 128 and len(set(chosen.tolist())) == 128


def test_no_region_gives_an_empty_batch():
    assert sample_regions(torch.zeros(0, dtype=torch.int64)).numel() == 0


def test_sampling_is_seeded():
    labels = torch.cat([torch.ones(40, dtype=torch.int64), torch.zeros(400, dtype=torch.int64)])
    first = sample_regions(labels, generator=torch.Generator().manual_seed(3))
    second = sample_regions(labels, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, second)
