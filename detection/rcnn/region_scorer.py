"""R-CNN's exported part: the region network with its SVMs and box regressors, as one module.

``RCNN.export_cut()`` (``detection/rcnn/model.py``) traces this; selective search, warping and
NMS stay in Python. Shape letters: ``R`` regions, ``S`` the crop size, ``C`` foreground classes,
``H`` fc7 width, ``D`` pool5 dimension.
"""

import torch
from torch import Tensor, nn


class RegionScorer(nn.Module):
    """Crops ``[R, 3, S, S]`` -> ``(scores [R, C], box_deltas [R, 4C])``: the region network, then
    the SVMs (or the softmax before they are fitted) and the box regressors (zeros when off or unfitted).

    The formulas of ``RCNN.class_scores`` / ``class_boxes``, with the stage flags (buffers) read once
    here, since a graph cannot branch on a buffer; ``tests/test_export.py`` compares the scores with
    ``class_scores``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model  # an RCNN
        self.svm = model.scorer == "svm" and bool(model.svm_fitted)
        self.regression = model.box_regression and bool(model.regressor_fitted)

    def forward(self, crops: Tensor) -> tuple[Tensor, Tensor]:
        model = self.model
        outputs = model.region_net(crops)
        if self.svm:
            scores = torch.sigmoid(outputs.fc7 @ model.svm_weight.T + model.svm_bias)  # [R, H] @ [H, C] -> [R, C]
        else:
            scores = outputs.class_logits.softmax(dim=1)[:, 1:]  # [R, C + 1] -> [R, C]
        if self.regression:
            deltas = outputs.pool5 @ model.bbox_weight.flatten(0, 1).T + model.bbox_bias.flatten()  # [R, D] @ [D, 4C] -> [R, 4C]
        else:
            deltas = torch.zeros_like(scores).repeat(1, 4)  # [R, 4C]
        return scores, deltas
