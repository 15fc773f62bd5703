"""The Fast R-CNN head shared by Fast R-CNN and Faster R-CNN.

Each region is max-pooled to a fixed ``P x P`` grid with ``torchvision.ops.roi_pool`` (the
paper's RoI pooling; ``roi_pool="align"`` uses ``torchvision.ops.roi_align`` instead, Mask
R-CNN's bilinear RoIAlign that torchvision's own Faster R-CNN uses: no rounding of the region to
the feature grid, which matters for objects a few feature cells wide), flattened through two FC
layers, and fed to a softmax classifier over ``C + 1`` classes and a class-specific box
regressor. Sampling (``batch_size_per_image`` RoIs, ``positive_fraction`` foreground at IoU >=
0.5), the box coder, the multi-task loss (log loss + smooth L1, Fast R-CNN eq. 1) and the
per-class NMS postprocess are torchvision's ``RoIHeads``: the same algorithm, reused.

Shape letters: ``R`` regions over the batch, ``F`` feature channels, ``P`` pooled size.

Mixed precision (autocast): the FC layers run in bf16 / fp16, but RoI pooling reads fp32
features (as torchvision's CUDA autocast does for ``roi_pool`` / ``roi_align``; ``roi_pool``'s CPU
kernel has no bf16) and the predictor's outputs are fp32, so the loss and the box decoding are
fp32 (torchvision's box coder decodes in the dtype of the deltas).
"""

from torch import Tensor, nn
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import MultiScaleRoIAlign, roi_align, roi_pool

FG_IOU = 0.5  # Fast R-CNN: foreground RoIs have IoU >= 0.5 with a ground-truth box
BG_IOU = 0.5  # background below it (the paper's [0.1, 0.5) lower bound is not applied, as in torchvision)
ROIS_PER_IMAGE = 64  # the paper's mini-batch: 2 images x 64 RoIs
FG_FRACTION = 0.25
BBOX_REG_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # torchvision's box-coder weights
ALIGN_SAMPLING_RATIO = 2  # bilinear samples per bin side, as torchvision's MultiScaleRoIAlign


class RoIMaxPool(nn.Module):
    """``(features: dict[name, Tensor[N, F, H, W]], proposals: list[Tensor[R_i, 4]], image_sizes) -> Tensor[R, F, P, P]``."""

    def __init__(self, *, feature: str, output_size: int, stride: int) -> None:
        super().__init__()
        self.feature = feature
        self.output_size = output_size
        self.spatial_scale = 1.0 / stride

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor], image_sizes: list[tuple[int, int]]) -> Tensor:
        return roi_pool(features[self.feature].float(), proposals, self.output_size, self.spatial_scale)  # fp32 under autocast


class RoIAlignPool(RoIMaxPool):
    """:class:`RoIMaxPool`'s interface with RoIAlign (Mask R-CNN; ``aligned=True``, half-pixel corrected)."""

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor], image_sizes: list[tuple[int, int]]) -> Tensor:
        return roi_align(
            features[self.feature].float(), proposals, self.output_size, self.spatial_scale, sampling_ratio=ALIGN_SAMPLING_RATIO, aligned=True
        )


class Float32MultiScaleRoIAlign(MultiScaleRoIAlign):
    """torchvision's ``MultiScaleRoIAlign`` on fp32 features: under CPU autocast ``roi_align`` would
    run in bf16 (its CUDA autocast already casts to fp32)."""

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        return super().forward({name: feature.float() for name, feature in x.items()}, boxes, image_shapes)


class Float32Predictor(FastRCNNPredictor):
    """torchvision's ``FastRCNNPredictor`` (same parameters) with fp32 ``(class_logits [R, C+1],
    box_deltas [R, 4(C+1)])`` under autocast, for the loss and the box decoding."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        class_logits, box_deltas = super().forward(x)
        return class_logits.float(), box_deltas.float()


def build_roi_pool(*, strides: dict[str, int], output_size: int, roi_pool: str) -> nn.Module:
    """The RoI pooling over ``strides`` (feature name -> stride).

    One feature map: ``roi_pool="max"`` (:class:`RoIMaxPool`) or ``"align"`` (:class:`RoIAlignPool`).
    Several (a feature pyramid): torchvision's ``MultiScaleRoIAlign``, which pools each region
    from the level its size maps to (FPN, Lin et al. 2017, eq. 1); it needs ``roi_pool="align"``.
    """
    if roi_pool not in ("max", "align"):
        raise ValueError(f"roi_pool must be 'max' or 'align', got {roi_pool!r}")
    if len(strides) > 1:
        if roi_pool != "align":
            raise ValueError(f"a feature pyramid ({list(strides)}) pools with RoIAlign: set roi_pool: align")
        return Float32MultiScaleRoIAlign(featmap_names=list(strides), output_size=output_size, sampling_ratio=ALIGN_SAMPLING_RATIO)
    ((feature, stride),) = strides.items()
    pool = RoIAlignPool if roi_pool == "align" else RoIMaxPool
    return pool(feature=feature, output_size=output_size, stride=stride)


def build_roi_heads(
    *,
    strides: dict[str, int],
    in_channels: int,
    num_classes: int,
    pool_size: int = 7,
    roi_pool: str = "max",
    representation_size: int = 1024,
    rois_per_image: int = ROIS_PER_IMAGE,
    positive_fraction: float = FG_FRACTION,
    score_thresh: float = 0.05,
    nms_thresh: float = 0.5,
    detections_per_img: int = 100,
) -> RoIHeads:
    """``num_classes`` counts foreground classes; the predictor adds the background class.

    ``strides``: the feature maps the regions are pooled from, and ``roi_pool`` how (:func:`build_roi_pool`).
    """
    return RoIHeads(
        box_roi_pool=build_roi_pool(strides=strides, output_size=pool_size, roi_pool=roi_pool),
        box_head=TwoMLPHead(in_channels * pool_size**2, representation_size),
        box_predictor=Float32Predictor(representation_size, num_classes + 1),
        fg_iou_thresh=FG_IOU,
        bg_iou_thresh=BG_IOU,
        batch_size_per_image=rois_per_image,
        positive_fraction=positive_fraction,
        bbox_reg_weights=BBOX_REG_WEIGHTS,
        score_thresh=score_thresh,
        nms_thresh=nms_thresh,
        detections_per_img=detections_per_img,
    )
