"""R-CNN box regression: appendix C targets round-trip, ridge regression recovers a known linear map."""

import math

import torch

from detection.rcnn.box_regression import apply_deltas, box_targets, fit_box_regressor, ridge_regression


def test_targets_are_appendix_c():
    proposal = torch.tensor([[10.0, 20.0, 30.0, 60.0]])  # centre (20, 40), 20 x 40
    gt = torch.tensor([[12.0, 30.0, 42.0, 50.0]])  # centre (27, 40), 30 x 20
    torch.testing.assert_close(box_targets(gt, proposal), torch.tensor([[7 / 20, 0.0, math.log(30 / 20), math.log(20 / 40)]]))


def test_targets_round_trip():
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 2, generator=gen) * 100
    proposals = torch.cat([xy, xy + 5 + torch.rand(50, 2, generator=gen) * 60], dim=1)
    xy = proposals[:, :2] + torch.randn(50, 2, generator=gen) * 4
    gt = torch.cat([xy, xy + 5 + torch.rand(50, 2, generator=gen) * 60], dim=1)
    torch.testing.assert_close(apply_deltas(box_targets(gt, proposals), proposals), gt, atol=1e-3, rtol=1e-5)
    torch.testing.assert_close(apply_deltas(torch.zeros(50, 4), proposals), proposals)


def test_ridge_recovers_a_known_map_in_primal_and_dual_form():
    gen = torch.Generator().manual_seed(0)
    true_map = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    x = torch.randn(400, 6, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(ridge_regression(x, x @ true_map, lam=1e-6), true_map, atol=1e-6, rtol=1e-6)
    wide = torch.randn(20, 50, generator=gen, dtype=torch.float64)  # fewer examples than features: dual form
    y = torch.randn(20, 2, generator=gen, dtype=torch.float64)
    lam = 3.0
    closed_form = torch.linalg.solve(wide.T @ wide + lam * torch.eye(50, dtype=torch.float64), wide.T @ y)
    torch.testing.assert_close(ridge_regression(wide, y, lam=lam), closed_form)


def test_ridge_shrinks_with_lambda():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(100, 4, generator=gen)
    y = x @ torch.randn(4, 1, generator=gen)
    norms = [float(ridge_regression(x, y, lam=lam).norm()) for lam in (1e-3, 10.0, 1000.0)]
    assert norms[0] > norms[1] > norms[2]


def test_class_regressor_recovers_a_linear_map_through_scale_and_whitening():
    gen = torch.Generator().manual_seed(2)
    features = torch.rand(3000, 8, generator=gen) * 5
    true_weight = torch.randn(4, 8, generator=gen) * 0.1
    true_bias = torch.tensor([0.1, -0.2, 0.05, 0.3])
    targets = features @ true_weight.T + true_bias
    weight, bias = fit_box_regressor(features, targets, feature_scale=4.0, lam=1e-4)
    torch.testing.assert_close(weight, true_weight, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(bias, true_bias, atol=1e-3, rtol=1e-3)
    # the paper's lambda on few examples: shrunk towards the mean target, never away from it
    weight, bias = fit_box_regressor(features[:30], targets[:30], feature_scale=1.0, lam=1000.0)
    predicted = features[:30] @ weight.T + bias
    assert (predicted - targets[:30]).pow(2).mean() < (targets[:30] - targets[:30].mean(0)).pow(2).mean() + 1e-6
