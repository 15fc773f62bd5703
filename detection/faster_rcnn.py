"""Faster R-CNN (Ren et al. 2015): an RPN proposes regions, the Fast R-CNN head classifies them.

The data flow, as in torchvision's ``GeneralizedRCNN``:

1. ``transform``: normalise, resize, batch (``detection/transform.py``);
2. ``backbone``: one tapped feature map ``Tensor[N, F, H/s, W/s]`` shared by both stages, or,
   when ``feature`` lists several taps, a feature pyramid over them (FPN, Lin et al. 2017:
   torchvision's ``FeaturePyramidNetwork``, ``F = fpn_channels`` at every level);
3. ``rpn``: a 3x3 conv sliding over the features, ``A`` anchors per position (scales x aspect
   ratios), objectness logits and box deltas, proposal NMS (torchvision's
   ``RegionProposalNetwork``, ``RPNHead``, ``AnchorGenerator``);
4. ``roi_heads``: RoI max pooling (or RoIAlign; per pyramid level, ``MultiScaleRoIAlign``) + FC +
   softmax classifier + class-specific regression (``detection/roi_heads.py``, shared with Fast R-CNN);
5. ``postprocess``: boxes back to each original image size.

Training is approximate joint training: the RPN and head losses are summed and
back-propagated together, with proposals treated as constants.
"""

from collections import OrderedDict

import torch
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import FeaturePyramidNetwork

from detection.backbones.base import Backbone
from detection.exportable import ExportCut, WholeDetector, transform_input
from detection.roi_heads import build_roi_heads
from detection.transform import build_transform

RPN_FG_IOU = 0.7  # anchors with IoU >= 0.7 are positive (paper, sec. 3.1.2)
RPN_BG_IOU = 0.3  # and < 0.3 negative
RPN_BATCH_PER_IMAGE = 256
RPN_POSITIVE_FRACTION = 0.5
RPN_NMS = 0.7


class Float32AnchorGenerator(AnchorGenerator):
    """torchvision's ``AnchorGenerator`` making fp32 anchors also when the feature maps are bf16 /
    fp16 (autocast): it takes their dtype, and bf16 rounds coordinates above 256 px to 2-4 px."""

    def forward(self, image_list: ImageList, feature_maps: list[Tensor]) -> list[Tensor]:
        return super().forward(image_list, [f.float() for f in feature_maps])


class Float32RPNHead(RPNHead):
    """torchvision's ``RPNHead`` (same parameters) with fp32 objectness logits and box deltas under
    autocast: torchvision's box coder decodes in the deltas' dtype, where bf16 (8 significant bits)
    loses whole pixels above 128 px; so the RPN's loss, proposals and NMS stay fp32."""

    def forward(self, x: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        logits, deltas = super().forward(x)
        return [t.float() for t in logits], [t.float() for t in deltas]


def build_rpn(
    anchors: AnchorGenerator,
    channels: int,
    *,
    pre_nms_top_n: tuple[int, int],
    post_nms_top_n: tuple[int, int],
    rpn_class: type[RegionProposalNetwork] = RegionProposalNetwork,
    **kwargs,
) -> RegionProposalNetwork:
    """The paper's RPN (constants above) on ``channels``-channel maps; ``(training, testing)`` top-n;
    ``rpn_class``/``kwargs``: a subclass and its extra arguments (MNC's differentiable RPN)."""
    return rpn_class(
        anchors,
        Float32RPNHead(channels, anchors.num_anchors_per_location()[0]),
        fg_iou_thresh=RPN_FG_IOU,
        bg_iou_thresh=RPN_BG_IOU,
        batch_size_per_image=RPN_BATCH_PER_IMAGE,
        positive_fraction=RPN_POSITIVE_FRACTION,
        pre_nms_top_n={"training": pre_nms_top_n[0], "testing": pre_nms_top_n[1]},
        post_nms_top_n={"training": post_nms_top_n[0], "testing": post_nms_top_n[1]},
        nms_thresh=RPN_NMS,
        **kwargs,
    )


class FasterRCNN(nn.Module):
    """``model(images, targets)``: ``loss_objectness``, ``loss_rpn_box_reg``, ``loss_classifier``,
    ``loss_box_reg`` in training; ``{boxes, labels, scores}`` per image in eval."""

    def __init__(
        self,
        *,
        backbone: Backbone,
        num_classes: int,
        feature: str | list[str] = "c4",
        fpn_channels: int = 128,
        min_size: int = 600,
        max_size: int = 1000,
        anchor_sizes: tuple[int, ...] = (64, 128, 256, 512),
        aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0),
        rpn_pre_nms_top_n: tuple[int, int] = (2000, 1000),
        rpn_post_nms_top_n: tuple[int, int] = (2000, 300),
        rois_per_image: int = 128,
        pool_size: int = 7,
        roi_pool: str = "max",
        representation_size: int = 1024,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
    ) -> None:
        """
        ``feature``: one tap (the paper), or several in increasing stride for a feature pyramid of
        ``fpn_channels`` channels; ``anchor_sizes`` are then split in equal consecutive groups, the
        smallest on the finest level (4 sizes on 2 levels: 2 each).
        ``rpn_pre_nms_top_n`` / ``rpn_post_nms_top_n`` are ``(training, testing)``; ``roi_pool``:
        ``"max"`` (RoI max pooling, the paper) or ``"align"`` (RoIAlign), see ``detection/roi_heads.py``.
        """
        super().__init__()
        self.taps = [feature] if isinstance(feature, str) else list(feature)
        unknown = [tap for tap in self.taps if tap not in backbone.strides]
        if unknown or not self.taps:
            raise ValueError(f"feature {feature!r} is not a tap of the backbone: {list(backbone.strides)}")
        strides = {tap: backbone.strides[tap] for tap in self.taps}
        if list(strides.values()) != sorted(set(strides.values())):
            raise ValueError(f"pyramid taps must have increasing strides, got {strides}")
        levels = len(self.taps)
        if len(anchor_sizes) % levels:
            raise ValueError(f"{len(anchor_sizes)} anchor sizes do not split evenly over {levels} pyramid levels {self.taps}")
        self.num_classes = num_classes
        self.transform = build_transform(min_size=min_size, max_size=max_size)
        backbone.truncate(self.taps[-1])
        self.backbone = backbone
        self.fpn = FeaturePyramidNetwork([backbone.channels[tap] for tap in self.taps], fpn_channels) if levels > 1 else None
        channels = fpn_channels if levels > 1 else backbone.channels[self.taps[0]]
        per_level = len(anchor_sizes) // levels
        anchors = Float32AnchorGenerator(
            sizes=tuple(tuple(anchor_sizes[i : i + per_level]) for i in range(0, len(anchor_sizes), per_level)),
            aspect_ratios=(tuple(aspect_ratios),) * levels,
        )
        self.rpn = build_rpn(anchors, channels, pre_nms_top_n=rpn_pre_nms_top_n, post_nms_top_n=rpn_post_nms_top_n)
        self.roi_heads = build_roi_heads(
            strides=strides,
            in_channels=channels,
            num_classes=num_classes,
            pool_size=pool_size,
            roi_pool=roi_pool,
            representation_size=representation_size,
            rois_per_image=rois_per_image,
            score_thresh=score_thresh,
            nms_thresh=nms_thresh,
            detections_per_img=detections_per_img,
        )

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None):
        if self.training and targets is None:
            raise ValueError("targets are required in training mode")
        original_sizes = [tuple(image.shape[-2:]) for image in images]
        image_list, targets = self.transform(images, targets)
        tapped = self.backbone(image_list.tensors)
        features = OrderedDict((tap, tapped[tap]) for tap in self.taps)  # finest first
        if self.fpn is not None:
            features = self.fpn(features)  # same names, fpn_channels each
        proposals, rpn_losses = self.rpn(image_list, features, targets)
        detections, head_losses = self.roi_heads(features, proposals, image_list.image_sizes, targets)
        if self.training:
            return {**rpn_losses, **head_losses}
        return self.transform.postprocess(detections, image_list.image_sizes, original_sizes)

    def export_cut(self) -> ExportCut:
        """The whole model, torchvision's way: one ``image [3, H, W]`` in ``[0, 1]`` of any size ->
        ``boxes [K, 4]``, ``labels [K]``, ``scores [K]`` in original pixels; nothing stays in Python."""
        return ExportCut(
            kind="whole", module=WholeDetector(self), example=torch.rand(3, 96, 128), input_name="image",
            output_names=["boxes", "labels", "scores"], dynamic={1: "height", 2: "width"},
            input={"shape": [3, "H", "W"], "values": "one RGB [0, 1] image at its own size (resized and normalised inside the graph)",
                   "transform": transform_input(self.transform)},
            python_side="nothing (one image per run)",
            torch_export_refusal="torch.export cannot capture torchvision's data-dependent NMS (batched_nms guards on the "
            "number of boxes); export it with --format onnx",
        )  # fmt: skip
