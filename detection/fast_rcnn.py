"""Fast R-CNN (Girshick 2015): selective-search proposals, one shared conv pass, RoI heads.

The data flow:

1. ``proposals``: selective search (Uijlings et al. 2013) on each *original* image, as uint8
   (``round(x * 255)``), looked up in or added to a :class:`ProposalCache`
   (``detection/proposals/``); ``Tensor[R_i, 4]`` xyxy pixels, computed without gradients;
2. ``transform``: normalise, resize, batch (``detection/transform.py``); the proposals are
   scaled by the same per-image resize ratios as the targets;
3. ``backbone``: one tapped feature map ``Tensor[N, F, H/s, W/s]`` for the whole image (the
   paper's single forward pass, instead of R-CNN's one pass per region);
4. ``roi_heads``: RoI max pooling + FC + softmax classifier + class-specific regression
   (``detection/roi_heads.py``, shared with Faster R-CNN). In training torchvision's
   ``RoIHeads`` appends the ground-truth boxes to the proposals (``add_gt_proposals``, as the
   paper does) and samples ``rois_per_image`` RoIs per image, 25% foreground;
5. ``postprocess``: boxes back to each original image size.

The only trainable parts are the backbone and the head: the loss is the paper's multi-task
loss (eq. 1), ``loss_classifier`` + ``loss_box_reg``.

Shape letters: ``N`` images, ``R_i`` proposals of image ``i``, ``F`` feature channels.
"""

from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models.detection.transform import resize_boxes

from detection.backbones.base import Backbone
from detection.exportable import ExportCut, NotExportable
from detection.proposals.cache import ProposalCache
from detection.proposals.selective_search import MAX_PROPOSALS, MIN_BOX_SIDE, SelectiveSearchMode, image_to_uint8
from detection.roi_heads import ROIS_PER_IMAGE, build_roi_heads
from detection.transform import build_transform


class FastRCNN(nn.Module):
    """``model(images, targets)``: ``loss_classifier``, ``loss_box_reg`` in training;
    ``{boxes, labels, scores}`` per image in eval, in original image coordinates.

    Args (keyword-only):
        backbone, feature: the backbone and the tap the RoIs are pooled from.
        num_classes: foreground classes ``C``.
        min_size, max_size: the model transform's resize (``detection/transform.py``).
        proposal_mode, max_proposals, proposal_min_size: the selective-search settings.
        cache_dir: the proposal cache directory (``None``: compute on every call).
        precomputed_proposals: a ``.pt`` bundle from ``scripts/make_proposals.py --bundle``.
        rois_per_image, pool_size, representation_size, score_thresh, nms_thresh,
            detections_per_img: the RoI head (``build_roi_heads``).
    """

    def __init__(
        self,
        *,
        backbone: Backbone,
        num_classes: int,
        feature: str = "c4",
        min_size: int = 600,
        max_size: int = 1000,
        proposal_mode: SelectiveSearchMode = "fast",
        max_proposals: int = MAX_PROPOSALS,
        proposal_min_size: int = MIN_BOX_SIDE,
        cache_dir: str | Path | None = None,
        precomputed_proposals: str | Path | None = None,
        rois_per_image: int = ROIS_PER_IMAGE,
        pool_size: int = 7,
        representation_size: int = 1024,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
    ) -> None:
        super().__init__()
        if feature not in backbone.strides:
            raise ValueError(f"feature {feature!r} is not a tap of the backbone: {list(backbone.strides)}")
        self.num_classes = num_classes
        self.feature = feature
        self.proposals = ProposalCache(
            cache_dir, mode=proposal_mode, max_proposals=max_proposals, min_size=proposal_min_size,
            precomputed=precomputed_proposals,
        )
        self.transform = build_transform(min_size=min_size, max_size=max_size)
        backbone.truncate(feature)
        self.backbone = backbone
        self.roi_heads = build_roi_heads(
            strides={feature: backbone.strides[feature]},
            in_channels=backbone.channels[feature],
            num_classes=num_classes,
            pool_size=pool_size,
            representation_size=representation_size,
            rois_per_image=rois_per_image,
            score_thresh=score_thresh,
            nms_thresh=nms_thresh,
            detections_per_img=detections_per_img,
        )

    @torch.no_grad()
    def propose(self, images: list[Tensor]) -> list[Tensor]:
        """Selective-search proposals ``list[Tensor[R_i, 4]]`` xyxy in each original image's pixels."""
        return [self.proposals.get_or_compute(image_to_uint8(image)).to(image.device) for image in images]

    def export_cut(self) -> ExportCut:
        """Fast R-CNN is not exported: ``NotExportable`` says why (``detection/exportable.py``)."""
        raise NotExportable(
            "Fast R-CNN cannot be exported: its proposals come from selective search (OpenCV, in Python), "
            "which no graph holds; run predict.py on the checkpoint"
        )

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None):
        if self.training and targets is None:
            raise ValueError("targets are required in training mode")
        original_sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in images]
        proposals = self.propose(images)
        image_list, targets = self.transform(images, targets)
        proposals = [
            resize_boxes(boxes, original, resized)  # the transform's own ratios: new / original, per axis
            for boxes, original, resized in zip(proposals, original_sizes, image_list.image_sizes)
        ]
        features = {self.feature: self.backbone(image_list.tensors)[self.feature]}
        detections, losses = self.roi_heads(features, proposals, image_list.image_sizes, targets)
        if self.training:
            return losses
        return self.transform.postprocess(detections, image_list.image_sizes, original_sizes)
