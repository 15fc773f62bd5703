"""R-CNN (Girshick et al. 2014): warped region crops, a fine-tuned CNN, per-class SVMs, box regression.

``model.RCNN`` is the detector (the detector contract of ``docs/ARCHITECTURE.md``);
``stages.RCNNStages`` is the Lightning callback that fits the SVMs and box regressors when
fine-tuning ends. One concept per file: ``crops``, ``sampler``, ``head``, ``svm``,
``box_regression``, ``postprocess``, ``fit_stages``.
"""

from detection.rcnn.model import RCNN
from detection.rcnn.stages import RCNNStages

__all__ = ["RCNN", "RCNNStages"]
