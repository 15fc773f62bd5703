"""R-CNN's SVMs: the liblinear objective, and hard-negative mining against training on every negative."""

import pytest
import torch

from detection.rcnn.svm import HardNegativeMiner, SVMSettings, fit_linear_svm, svm_objective

DIM = 3
IMAGES = 8
# Solutions are compared at a tight solver tolerance: the authors' liblinear default (0.1) stops
# within ~1% of the optimum, too loose to tell two solutions of one objective apart.
TIGHT = SVMSettings(tol=1e-6)


def _problem(seed: int = 0) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Positives near x0 = +20; per image, many easy negatives far away and a few hard ones near the margin."""
    gen = torch.Generator().manual_seed(seed)
    positives = torch.randn(12, DIM, generator=gen) * 3 + torch.tensor([20.0, 0.0, 0.0])
    images = []
    for _ in range(IMAGES):
        easy = torch.randn(60, DIM, generator=gen) * 4 + torch.tensor([-60.0, 0.0, 0.0])
        hard = torch.randn(4, DIM, generator=gen) * 3 + torch.tensor([-12.0, 0.0, 0.0])
        images.append(torch.cat([easy, hard])[torch.randperm(64, generator=gen)])
    return positives, images


def test_svm_minimises_the_liblinear_objective():
    positives, images = _problem()
    negatives = torch.cat(images)
    w, b = fit_linear_svm(positives, negatives, settings=TIGHT)
    best = svm_objective(w, b, positives, negatives)
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):  # no nearby point does better
        dw, db = torch.randn(DIM, generator=gen) * 1e-3, float(torch.randn(1, generator=gen)) * 1e-2
        assert svm_objective(w + dw, b + db, positives, negatives) >= best - 1e-7
    assert (positives @ w + b).min() > 0 and (negatives @ w + b).max() < 0  # separable: separated


def test_positive_weight_and_bias_multiplier_enter_the_objective():
    positives, negatives = torch.ones(1, DIM), -torch.ones(1, DIM)
    w, b = torch.zeros(DIM), 0.0
    settings = SVMSettings(C=1.0, pos_loss_weight=2.0, bias_mult=10.0)
    assert svm_objective(w, b, positives, negatives, settings=settings) == pytest.approx(2.0 + 1.0)
    assert svm_objective(w, 10.0, positives, negatives, settings=settings) == pytest.approx(0.5 + 2.0 * 0 + 11.0)


def test_hard_negative_mining_reaches_the_all_negatives_solution():
    positives, images = _problem()
    w_all, b_all = fit_linear_svm(positives, torch.cat(images), settings=TIGHT)

    miner = HardNegativeMiner(positives=[positives], settings=TIGHT)
    for i, features in enumerate(images):
        miner.add_image(features, torch.ones(len(features), 1, dtype=torch.bool), last=i == len(images) - 1)
    weight, bias = miner.finish()

    cache = miner.caches[0]
    assert cache.negatives.shape[0] < 0.25 * sum(len(f) for f in images)  # only the hard ones were kept
    assert len(cache.history) >= 2  # trained on the first image, then retrained at the last
    everything = torch.cat(images)
    objective_all = svm_objective(w_all, b_all, positives, everything)
    objective_mined = svm_objective(weight[0], float(bias[0]), positives, everything)
    assert objective_mined == pytest.approx(objective_all, rel=1e-4)
    torch.testing.assert_close(weight[0], w_all, rtol=1e-3, atol=1e-4)
    assert float(bias[0]) == pytest.approx(b_all, rel=1e-3, abs=1e-3)


def test_first_image_negatives_all_join_then_only_hard_ones():
    positives, images = _problem()
    miner = HardNegativeMiner(positives=[positives], settings=SVMSettings(evict_thresh=-1e9))  # keep everything
    miner.add_image(images[0], torch.ones(len(images[0]), 1, dtype=torch.bool))
    assert miner.caches[0].negatives.shape[0] == len(images[0])
    scores = images[1] @ miner.weight[0] + miner.bias[0]
    miner.add_image(images[1], torch.ones(len(images[1]), 1, dtype=torch.bool))
    assert miner.caches[0].negatives.shape[0] == len(images[0]) + int((scores > -1.0001).sum())


def test_mask_selects_the_negatives_of_each_class():
    positives, images = _problem()
    mask = torch.zeros(len(images[0]), 2, dtype=torch.bool)
    mask[:10, 0] = True
    mask[10:, 1] = True
    miner = HardNegativeMiner(positives=[positives, positives], settings=SVMSettings(evict_thresh=-1e9))
    miner.add_image(images[0], mask)
    assert [c.negatives.shape[0] for c in miner.caches] == [10, len(images[0]) - 10]


def test_a_class_without_positives_never_fires():
    positives, images = _problem()
    miner = HardNegativeMiner(positives=[positives, torch.zeros(0, DIM)])
    miner.add_image(images[0], torch.ones(len(images[0]), 2, dtype=torch.bool), last=True)
    with pytest.warns(UserWarning, match="never fires"):
        weight, bias = miner.finish()
    assert torch.all(weight[1] == 0) and bias[1] < -10
