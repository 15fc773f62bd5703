"""torchvision's ``MaskRCNN`` on a detseg backbone tap: the anchor MNC is benchmarked against.

The backbone's tap ``feature`` is the one feature level (no FPN), read by the RPN, the box head
(``RoIAlign`` 7 x 7, two FC layers) and the mask head (``RoIAlign`` 14 x 14, ``mask_layers``
3 x 3 convs, a deconvolution, ``28 x 28`` per-class masks), as in MNC's single-map setup. The
wrapper only adapts the contract: ``num_classes`` counts foreground classes, the model's own
transform uses detseg's sizes and ImageNet statistics, and eval masks are ``[K, H, W]``.

Shape letters: ``N`` images, ``K`` detections, ``H, W`` an original image size.
"""

from torch import Tensor, nn
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.models.detection.mask_rcnn import (
    MaskRCNN,
    MaskRCNNHeads,
    MaskRCNNPredictor,
)

from detection.backbones import Backbone, SingleTap
from detection.exportable import ExportCut, NotExportable
from detection.faster_rcnn import (
    RPN_BATCH_PER_IMAGE,
    RPN_BG_IOU,
    RPN_FG_IOU,
    RPN_NMS,
    RPN_POSITIVE_FRACTION,
    Float32AnchorGenerator,
    Float32RPNHead,
)
from detection.roi_heads import Float32MultiScaleRoIAlign, Float32Predictor
from detection.transform import IMAGENET_MEAN, IMAGENET_STD

BOX_POOL_SIZE = 7
MASK_POOL_SIZE = 14
ROI_ALIGN_SAMPLING = 2  # torchvision's default


class Float32MaskPredictor(MaskRCNNPredictor):
    """torchvision's ``MaskRCNNPredictor`` (same parameters) with fp32 mask logits under autocast,
    for the mask loss and the pasted masks."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x).float()


class MaskRCNNBaseline(nn.Module):
    """``model(images, targets)``: torchvision's Mask R-CNN losses in training; ``{boxes, labels, scores, masks [K, H, W]}`` in eval."""

    def __init__(
        self,
        *,
        backbone: Backbone,
        num_classes: int,
        feature: str = "c4",
        min_size: int = 600,
        max_size: int = 1000,
        anchor_sizes: tuple[int, ...] = (128, 256, 512),
        aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0),
        rpn_pre_nms_top_n: tuple[int, int] = (2000, 1000),
        rpn_post_nms_top_n: tuple[int, int] = (2000, 300),
        rois_per_image: int = 128,
        representation_size: int = 1024,
        mask_layers: tuple[int, ...] = (256, 256, 256, 256),
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        tap = SingleTap(backbone, feature)
        channels = tap.out_channels
        anchors = Float32AnchorGenerator(sizes=(tuple(anchor_sizes),), aspect_ratios=(tuple(aspect_ratios),))
        self.detector = MaskRCNN(
            tap,
            num_classes=None,
            min_size=min_size,
            max_size=max_size,
            image_mean=list(IMAGENET_MEAN),
            image_std=list(IMAGENET_STD),
            rpn_anchor_generator=anchors,
            rpn_head=Float32RPNHead(channels, anchors.num_anchors_per_location()[0]),  # fp32 outputs under autocast
            rpn_pre_nms_top_n_train=rpn_pre_nms_top_n[0],
            rpn_pre_nms_top_n_test=rpn_pre_nms_top_n[1],
            rpn_post_nms_top_n_train=rpn_post_nms_top_n[0],
            rpn_post_nms_top_n_test=rpn_post_nms_top_n[1],
            rpn_nms_thresh=RPN_NMS,
            rpn_fg_iou_thresh=RPN_FG_IOU,
            rpn_bg_iou_thresh=RPN_BG_IOU,
            rpn_batch_size_per_image=RPN_BATCH_PER_IMAGE,
            rpn_positive_fraction=RPN_POSITIVE_FRACTION,
            box_roi_pool=Float32MultiScaleRoIAlign([feature], BOX_POOL_SIZE, ROI_ALIGN_SAMPLING),
            box_head=TwoMLPHead(channels * BOX_POOL_SIZE**2, representation_size),
            box_predictor=Float32Predictor(representation_size, num_classes + 1),
            box_score_thresh=score_thresh,
            box_nms_thresh=nms_thresh,
            box_detections_per_img=detections_per_img,
            box_batch_size_per_image=rois_per_image,
            mask_roi_pool=Float32MultiScaleRoIAlign([feature], MASK_POOL_SIZE, ROI_ALIGN_SAMPLING),
            mask_head=MaskRCNNHeads(channels, tuple(mask_layers), 1),
            mask_predictor=Float32MaskPredictor(mask_layers[-1], mask_layers[-1], num_classes + 1),
        )

    def export_cut(self) -> ExportCut:
        """The Mask R-CNN baseline is not exported: ``NotExportable`` says why (``detection/exportable.py``)."""
        raise NotExportable(
            "MaskRCNNBaseline cannot be exported: it is MNC's comparison baseline, with no export cut written "
            "(torchvision's mask pasting into each image would have to trace with the boxes); run predict.py on the checkpoint"
        )

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None):
        out = self.detector(images, targets)
        if self.training:
            return out
        return [{**pred, "masks": pred["masks"][:, 0]} for pred in out]  # [K, 1, H, W] -> [K, H, W] probabilities
