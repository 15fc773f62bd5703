"""One class's precision-recall curve, as evaluators hand it to the report."""

from dataclasses import dataclass

import numpy as np

UNDEFINED_AP = -1.0  # a class with no (non-difficult, non-crowd) ground truth, as pycocotools' -1


@dataclass(frozen=True)
class PRCurve:
    """``precision [N]`` and ``recall [N]`` float64 along the curve, the class's ``ap`` (or
    ``UNDEFINED_AP``), its number of counted gts ``num_gt`` and of detections ``num_det``."""

    precision: np.ndarray
    recall: np.ndarray
    ap: float
    num_gt: int
    num_det: int


def mean_defined(values: list[float]) -> float:
    """Mean of the values that are not ``UNDEFINED_AP``; ``UNDEFINED_AP`` when none is."""
    defined = [v for v in values if v != UNDEFINED_AP]
    return float(np.mean(defined)) if defined else UNDEFINED_AP
