"""R-CNN's class-specific bounding-box regression: ridge regression from pool5 features.

R-CNN appendix C (``rcnn_train_bbox_regressor.m``): for a proposal ``P`` and its ground truth
``G`` the targets are

    t_x = (G_x - P_x) / P_w,   t_y = (G_y - P_y) / P_h,   t_w = log(G_w / P_w),   t_h = log(G_h / P_h)

(``x, y`` box centres, ``w, h`` sizes): torchvision's ``BoxCoder`` with weights ``(1, 1, 1, 1)``,
shared with its decoding. One regressor per class, trained on the proposals (and the ground-truth
boxes themselves) whose IoU with a ground truth of that class is above 0.6, on pool5 features
scaled to a mean norm of 20, by ridge regression with lambda = 1000 and a bias feature of 1
(regularised like the weights).

As in the authors' code, the targets of each class are centred (mean ``mu``) and whitened
(``T = S^-1/2``, ``S`` their covariance plus 0.001) before the fit, and the prediction is mapped
back (``y T^-1 + mu``). All of that is linear, so :func:`fit_box_regressor` folds the feature scale,
the whitening and the mean into one plain ``weight [4, D]``, ``bias [4]`` per class.

Shape letters: ``n`` training examples, ``D`` feature dimension, ``k`` outputs, ``R`` regions.
"""

import torch
from torch import Tensor
from torchvision.models.detection._utils import BoxCoder

RIDGE_LAMBDA = 1000.0  # the ridge penalty
REGRESSION_MIN_IOU = 0.6  # examples: IoU > 0.6 with a ground truth of the class
WHITEN_EPS = 1e-3  # added to the targets' covariance eigenvalues before whitening
BOX_DIM = 4
BOX_CODER = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))  # appendix C's (t_x, t_y, t_w, t_h), unweighted


def box_targets(gt_boxes: Tensor, proposals: Tensor) -> Tensor:
    """``gt_boxes [R, 4]``, ``proposals [R, 4]`` xyxy -> ``(t_x, t_y, t_w, t_h) [R, 4]``."""
    return BOX_CODER.encode_single(gt_boxes, proposals)


def apply_deltas(deltas: Tensor, proposals: Tensor) -> Tensor:
    """``deltas [R, 4]`` (or ``[R, 4 k]``), ``proposals [R, 4]`` -> boxes ``[R, 4]`` (``[R, 4 k]``) xyxy."""
    return BOX_CODER.decode_single(deltas, proposals)


def ridge_regression(x: Tensor, y: Tensor, *, lam: float) -> Tensor:
    """``argmin_B ||x B - y||^2 + lam ||B||^2`` for ``x [n, D]``, ``y [n, k]`` -> ``B [D, k]``.

    Solved by Cholesky in float64, on ``x^T x + lam I`` (``D x D``) or, when there are fewer
    examples than features, on ``x x^T + lam I`` (``n x n``, the same solution: ``B = x^T (x x^T + lam I)^-1 y``).
    """
    if lam <= 0:
        raise ValueError(f"lam must be > 0, got {lam}")
    x, y = x.double(), y.double()
    n, dim = x.shape
    if n >= dim:
        gram = x.T @ x + lam * torch.eye(dim, dtype=x.dtype, device=x.device)  # [D, D]
        return torch.cholesky_solve(x.T @ y, torch.linalg.cholesky(gram))
    gram = x @ x.T + lam * torch.eye(n, dtype=x.dtype, device=x.device)  # [n, n]
    return x.T @ torch.cholesky_solve(y, torch.linalg.cholesky(gram))


def fit_box_regressor(
    features: Tensor, targets: Tensor, *, feature_scale: float = 1.0, lam: float = RIDGE_LAMBDA
) -> tuple[Tensor, Tensor]:
    """One class: ``features [n, D]`` (raw), ``targets [n, 4]`` -> ``(weight [4, D], bias [4])``.

    The fit sees ``feature_scale * features`` plus a bias feature of 1, and whitened targets;
    the returned map applies to *raw* features and predicts the targets themselves:
    ``targets ~ features @ weight.T + bias``.
    """
    if features.shape[0] == 0:
        raise ValueError("no regression examples")
    x = features.double() * feature_scale
    x = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)], dim=1)  # [n, D + 1]
    y = targets.double()
    mu = y.mean(dim=0)  # [4]
    centred = y - mu
    covariance = centred.T @ centred / y.shape[0]  # [4, 4]
    eigvals, eigvecs = torch.linalg.eigh(covariance)
    whiten = eigvecs @ torch.diag((eigvals + WHITEN_EPS).rsqrt()) @ eigvecs.T  # T
    unwhiten = eigvecs @ torch.diag((eigvals + WHITEN_EPS).sqrt()) @ eigvecs.T  # T^-1
    beta = ridge_regression(x, centred @ whiten, lam=lam)  # [D + 1, 4]
    # y = (s f @ beta[:D] + beta[D]) @ T^-1 + mu  ->  f @ weight.T + bias
    weight = (feature_scale * beta[:-1] @ unwhiten).T  # [4, D]
    bias = beta[-1] @ unwhiten + mu  # [4]
    return weight.float(), bias.float()
