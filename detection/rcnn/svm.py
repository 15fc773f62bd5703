"""R-CNN's per-class linear SVMs on fc7 features, trained with hard-negative mining.

R-CNN (section 2.3, appendix B; ``rcnn_train.m``):

- one binary linear SVM per class on fc7 features, scaled so that their mean L2 norm is 20
  (``rcnn_scale_features.m``: the SVM's C was chosen on features of that norm);
- positives are the class's ground-truth boxes only; negatives are the proposals whose IoU with
  every ground truth of the class is below 0.3 (proposals in between are ignored);
- the objective is liblinear's L2-regularised L1-loss (hinge) SVM (``-s 3``) with ``C = 0.001``,
  positive loss weight 2 and a bias feature of value 10 (``-B 10``, so ``b = 10 w_bias`` and
  the regulariser is ``||w||^2 + (b / 10)^2``)::

      min  1/2 ||w||^2 + 1/2 (b / 10)^2 + C (2 sum_pos max(0, 1 - z) + sum_neg max(0, 1 + z)),   z = w.x + b

  scikit-learn's ``LinearSVC(loss="hinge")`` wraps that same liblinear solver;
- hard-negative mining (Felzenszwalb et al.'s): the first image's negatives all join the cache
  and the SVM is trained; from then on only negatives scoring above -1 (inside the margin) join;
  the SVM is retrained once more than 2000 negatives were added since the last training, and at
  the last image; each retraining evicts the cached negatives scoring below -1.2. One pass over
  the training images (``max_hard_epochs = 1``).

Shape letters: ``P`` positives, ``Q`` negatives, ``R`` regions of one image, ``D`` feature
dimension, ``C`` foreground classes.
"""

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC
from torch import Tensor

SVM_C = 1e-3  # liblinear -c
POS_LOSS_WEIGHT = 2.0  # liblinear -w1
BIAS_MULT = 10.0  # liblinear -B: the bias feature's value
TARGET_FEATURE_NORM = 20.0  # features are scaled to this mean L2 norm
NEG_IOU = 0.3  # negatives: IoU < 0.3 with every ground truth of the class
HARD_THRESH = -1.0001  # a cached SVM scoring a negative above this adds it (authors: -1 - eps)
EVICT_THRESH = -1.2  # retraining drops cached negatives scoring below this
RETRAIN_LIMIT = 2000  # retrain once more negatives than this were added
SOLVER_TOL = 0.1  # liblinear's default stopping tolerance for -s 3, which the authors kept
SOLVER_MAX_ITER = 20_000
NO_POSITIVES_BIAS = -100.0  # a class without training positives never fires


@dataclass(frozen=True)
class SVMSettings:
    """The SVM objective and the miner's thresholds; defaults are the authors'."""

    C: float = SVM_C
    pos_loss_weight: float = POS_LOSS_WEIGHT
    bias_mult: float = BIAS_MULT
    hard_thresh: float = HARD_THRESH
    evict_thresh: float = EVICT_THRESH
    retrain_limit: int = RETRAIN_LIMIT
    tol: float = SOLVER_TOL


def fit_linear_svm(positives: Tensor, negatives: Tensor, *, settings: SVMSettings = SVMSettings()) -> tuple[Tensor, float]:
    """``positives [P, D]``, ``negatives [Q, D]`` -> ``(w [D], b)`` minimising the module's objective."""
    if positives.shape[0] == 0 or negatives.shape[0] == 0:
        raise ValueError(f"an SVM needs positives and negatives, got {positives.shape[0]} and {negatives.shape[0]}")
    x = torch.cat([positives, negatives]).double().cpu().numpy()
    y = np.concatenate([np.ones(positives.shape[0]), -np.ones(negatives.shape[0])])
    svm = LinearSVC(
        loss="hinge",
        dual=True,  # liblinear -s 3 is solved in the dual
        C=settings.C,
        class_weight={1: settings.pos_loss_weight, -1: 1.0},
        fit_intercept=True,
        intercept_scaling=settings.bias_mult,  # the bias feature; sklearn returns b = bias_mult * w_bias
        tol=settings.tol,
        max_iter=SOLVER_MAX_ITER,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        svm.fit(x, y)
    w = torch.as_tensor(svm.coef_[0], dtype=torch.float32)
    return w, float(svm.intercept_[0])


def svm_objective(w: Tensor, b: float, positives: Tensor, negatives: Tensor, *, settings: SVMSettings = SVMSettings()) -> float:
    """The primal objective of the module docstring (what liblinear minimises)."""
    w = w.double()
    z_pos = positives.double() @ w + b
    z_neg = negatives.double() @ w + b
    hinge = settings.pos_loss_weight * (1 - z_pos).clamp(min=0).sum() + (1 + z_neg).clamp(min=0).sum()
    regulariser = 0.5 * (w @ w) + 0.5 * (b / settings.bias_mult) ** 2
    return float(regulariser + settings.C * hinge)


@dataclass
class _ClassCache:
    positives: Tensor  # [P, D]
    negatives: Tensor  # [Q, D] the hard negatives held
    added: int = 0  # negatives added since the last training
    history: list[float] = field(default_factory=list)  # objective after each training


class HardNegativeMiner:
    """One pass of hard-negative mining over the training images, all classes at once.

    ``miner = HardNegativeMiner(positives=[Tensor[P_c, D]] * C)``, then
    ``miner.add_image(features [R, D], negative [R, C])`` for every training image in order, then
    ``weight [C, D], bias [C] = miner.finish()``. Features are already scaled.
    """

    def __init__(self, *, positives: list[Tensor], settings: SVMSettings = SVMSettings()) -> None:
        if not positives:
            raise ValueError("positives must hold one Tensor[P_c, D] per class")
        dim = positives[0].shape[1]
        self.settings = settings
        self.caches = [_ClassCache(positives=p.float().cpu(), negatives=torch.zeros(0, dim)) for p in positives]
        self.weight = torch.zeros(len(positives), dim)  # [C, D]
        self.bias = torch.zeros(len(positives))  # [C]
        self.trained = [False] * len(positives)
        self.first_image = True

    @property
    def num_classes(self) -> int:
        return len(self.caches)

    def _train(self, c: int) -> None:
        cache = self.caches[c]
        w, b = fit_linear_svm(cache.positives, cache.negatives, settings=self.settings)
        self.weight[c], self.bias[c] = w, b
        self.trained[c] = True
        cache.added = 0
        cache.history.append(svm_objective(w, b, cache.positives, cache.negatives, settings=self.settings))
        z_neg = cache.negatives @ w + b
        cache.negatives = cache.negatives[z_neg >= self.settings.evict_thresh]  # evict the easy ones

    def add_image(self, features: Tensor, negative: Tensor, *, last: bool = False) -> None:
        """One image: ``features [R, D]`` (scaled) and ``negative [R, C]`` bool (IoU < 0.3 with the class).

        ``last=True`` on the final image retrains every class that has negatives.
        """
        if negative.shape != (features.shape[0], self.num_classes):
            raise ValueError(f"negative must be [R, C] = [{features.shape[0]}, {self.num_classes}], got {tuple(negative.shape)}")
        features, negative = features.float().cpu(), negative.cpu()
        scores = features @ self.weight.T + self.bias  # [R, C] under the current SVMs
        for c, cache in enumerate(self.caches):
            if self.first_image:
                chosen = negative[:, c]
            else:
                chosen = negative[:, c] & (scores[:, c] > self.settings.hard_thresh)
            if chosen.any():
                cache.negatives = torch.cat([cache.negatives, features[chosen]])
                cache.added += int(chosen.sum())
            retrain = self.first_image or cache.added > self.settings.retrain_limit or last
            if retrain and cache.negatives.shape[0] and cache.positives.shape[0]:
                self._train(c)
        self.first_image = False

    def finish(self) -> tuple[Tensor, Tensor]:
        """``(weight [C, D], bias [C])``; a class never trained (no positives or negatives) never fires."""
        for c, cache in enumerate(self.caches):
            if not self.trained[c] and cache.negatives.shape[0] and cache.positives.shape[0]:
                self._train(c)
            if not self.trained[c]:
                warnings.warn(f"class index {c}: no {'positives' if not cache.positives.shape[0] else 'negatives'}; "
                              "its SVM never fires")
                self.weight[c], self.bias[c] = 0.0, NO_POSITIVES_BIAS
        return self.weight.clone(), self.bias.clone()
