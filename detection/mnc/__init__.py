"""MNC (Multi-task Network Cascades, Dai, He & Sun 2016): instance segmentation as three cascaded
stages over one shared backbone (boxes -> masks -> categories), trained end to end.

``warp.py`` differentiable RoI warping, ``rpn.py`` stage 1 with proposals that keep their
gradient, ``targets.py`` RoI sampling and mask targets, ``heads.py`` the stage 2 and 3 heads,
``voting.py`` mask voting, ``model.py`` the model; ``mask_rcnn.py`` torchvision's Mask R-CNN on a
detseg backbone (the benchmark's anchor).
"""

from detection.mnc.mask_rcnn import MaskRCNNBaseline
from detection.mnc.model import MNC

__all__ = ["MNC", "MaskRCNNBaseline"]
