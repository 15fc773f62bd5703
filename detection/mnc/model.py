"""MNC, Multi-task Network Cascades (Dai, He & Sun, CVPR 2016): boxes -> masks -> categories.

The data flow (paper fig. 2), every stage reading the one shared feature map:

1. ``transform``: normalise, resize, batch (``detection/transform.py``; gt masks are resized with
   the images);
2. ``backbone``: one tapped feature map ``Tensor[N, F, Hf, Wf]``;
3. stage 1, ``rpn``: torchvision's RPN whose proposals keep their gradient (``rpn.py``);
4. stage 2, masks: differentiable RoI warping of each box to ``S x S`` (28) and max pooling to
   ``P x P`` (14) (``warp.py``), then fc 256 -> ``m x m`` sigmoids (``heads.MaskHead``);
5. stage 3, categories: the RoI features times the stage 2 mask (masked pathway) and the RoI
   features alone (box pathway), concatenated into a ``(C + 1)``-way softmax with class-wise box
   regression (``heads.CategoryHead``);
6. postprocess: per-class NMS (0.3), optional mask voting (``voting.py``), masks pasted into each
   original image and binarised at 0.4.

Training is end to end: the loss is the sum of the stages' losses (RPN objectness and box
regression, eq. 3's mask BCE with the authors' weight 2, log loss and smooth L1), and because the
warping is differentiable in the box coordinates the stage 2 and 3 losses also reach stage 1's
box regression (sec. 3.3). Inference runs 3 stages, or 5 (sec. 3.4): stages 4 and 5 reuse the
weights of stages 2 and 3 on the boxes regressed by stage 3, and the instances of stages 3 and 5
are pooled before NMS.

Shape letters: ``N`` images, ``R`` RoIs, ``F`` channels, ``P`` RoI grid, ``m`` mask size, ``C``
foreground classes, ``D`` candidate instances (RoI x class) of one image, ``K`` kept instances,
``G`` voting grid, ``H, W`` an original image size.
"""

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.roi_heads import fastrcnn_loss, paste_masks_in_image
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import batched_nms, clip_boxes_to_image, remove_small_boxes

from detection.backbones.base import Backbone
from detection.exportable import ExportCut, NotExportable
from detection.faster_rcnn import Float32AnchorGenerator, build_rpn
from detection.mnc.heads import MASK_HIDDEN, CategoryHead, MaskHead, masked_pooling
from detection.mnc.rpn import BOX_GRAD_CLIP, DifferentiableRPN
from detection.mnc.targets import RoISampler, mask_targets
from detection.mnc.voting import BINARIZE_THRESH, VOTE_IOU_THRESH, vote_in_frames
from detection.mnc.warp import WARP_SIZE, RoIWarp
from detection.roi_heads import BBOX_REG_WEIGHTS
from detection.transform import build_transform

MASK_SIZE = 21  # cfg.MASK_SIZE of the authors' code (the paper: 28)
MASK_LOSS_WEIGHT = 2.0  # loss_mask's loss_weight in the authors' prototxt
ROIS_PER_IMAGE = 64  # cfg.TRAIN.BATCH_SIZE
FG_FRACTION = 0.3  # cfg.TRAIN.FG_FRACTION
FG_IOU = 0.5  # cfg.TRAIN.FG_THRESH_LO; background below (the [0.1, 0.5) / [0, 0.1) split is not kept)
TEST_NMS = 0.3  # cfg.TEST.NMS, per class
REPRESENTATION_SIZE = 4096  # fc6 / fc7 of both stage 3 pathways
MIN_BOX_SIZE = 1e-2  # boxes narrower than this (pixels) are dropped before NMS, as torchvision does


class MNC(nn.Module):
    """``model(images, targets)``: ``loss_objectness``, ``loss_rpn_box_reg``, ``loss_mask``,
    ``loss_classifier``, ``loss_box_reg`` in training; ``{boxes, labels, scores, masks}`` per image
    in eval (``masks [K, H, W]`` uint8 0/1 in original image pixels).

    ``inference_stages`` is 3 or 5; ``stage5_min_score`` > 0 runs stages 4 and 5 only on the
    boxes whose best stage 3 foreground probability exceeds it (0: on all, the paper; the
    background RoIs are most of stage 5's cost); ``mask_voting`` switches mask voting; ``box_gradients=False``
    detaches the proposals (Faster R-CNN's approximate joint training, for comparison);
    ``box_grad_clip`` bounds the gradient reaching stage 1's box deltas (the authors' 1/512).
    ``rpn_pre_nms_top_n`` / ``rpn_post_nms_top_n`` are ``(training, testing)``.
    """

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
        rpn_pre_nms_top_n: tuple[int, int] = (12000, 6000),
        rpn_post_nms_top_n: tuple[int, int] = (300, 300),
        rois_per_image: int = ROIS_PER_IMAGE,
        positive_fraction: float = FG_FRACTION,
        warp_size: int = WARP_SIZE,
        mask_size: int = MASK_SIZE,
        mask_hidden: int = MASK_HIDDEN,
        representation_size: int = REPRESENTATION_SIZE,
        mask_loss_weight: float = MASK_LOSS_WEIGHT,
        box_gradients: bool = True,
        box_grad_clip: float = BOX_GRAD_CLIP,
        inference_stages: Literal[3, 5] = 5,
        stage5_min_score: float = 0.0,
        mask_voting: bool = True,
        score_thresh: float = 0.05,
        nms_thresh: float = TEST_NMS,
        vote_iou_thresh: float = VOTE_IOU_THRESH,
        binarize_thresh: float = BINARIZE_THRESH,
        vote_grid: int | None = None,
        detections_per_img: int = 100,
    ) -> None:
        """``vote_grid``: the side of the common grid masks are compared on when voting (default ``2 m``)."""
        super().__init__()
        if feature not in backbone.strides:
            raise ValueError(f"feature {feature!r} is not a tap of the backbone: {list(backbone.strides)}")
        if inference_stages not in (3, 5):
            raise ValueError(f"inference_stages must be 3 or 5, got {inference_stages}")
        self.num_classes = num_classes
        self.feature = feature
        self.transform = build_transform(min_size=min_size, max_size=max_size)
        backbone.truncate(feature)
        self.backbone = backbone
        channels, stride = backbone.channels[feature], backbone.strides[feature]
        anchors = Float32AnchorGenerator(sizes=(tuple(anchor_sizes),), aspect_ratios=(tuple(aspect_ratios),))
        self.rpn = build_rpn(
            anchors, channels, pre_nms_top_n=rpn_pre_nms_top_n, post_nms_top_n=rpn_post_nms_top_n,
            rpn_class=DifferentiableRPN, box_grad_clip=box_grad_clip,
        )  # fmt: skip
        self.box_coder = BoxCoder(BBOX_REG_WEIGHTS)
        self.sampler = RoISampler(
            box_coder=self.box_coder, fg_iou_thresh=FG_IOU, bg_iou_thresh=FG_IOU,
            rois_per_image=rois_per_image, positive_fraction=positive_fraction,
        )  # fmt: skip
        self.warp = RoIWarp(stride=stride, warp_size=warp_size)
        roi_size = self.warp.output_size
        self.mask_head = MaskHead(in_channels=channels, roi_size=roi_size, mask_size=mask_size, hidden=mask_hidden)
        self.category_head = CategoryHead(
            in_channels=channels, roi_size=roi_size, num_classes=num_classes, representation_size=representation_size
        )
        self.mask_size = mask_size
        self.mask_loss_weight = mask_loss_weight
        self.box_gradients = box_gradients
        self.inference_stages = inference_stages
        self.stage5_min_score = stage5_min_score
        self.mask_voting = mask_voting
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.vote_iou_thresh = vote_iou_thresh
        self.binarize_thresh = binarize_thresh
        self.vote_grid = vote_grid or 2 * mask_size
        self.detections_per_img = detections_per_img

    # ------------------------------------------------------------------------------ stages 2 and 3
    def mask_and_categorise(self, features: Tensor, boxes: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Stages 2 and 3 on ``boxes`` (N tensors ``[R_i, 4]``) -> ``(mask_logits [R, m, m], class_logits [R, C + 1], box_deltas [R, 4 (C + 1)])``."""
        roi_features = self.warp(features, boxes)  # [R, F, P, P]
        # The heads' outputs leave autocast (mixed precision) as fp32: losses, box decoding and masks in fp32.
        mask_logits = self.mask_head(roi_features).float()
        masked = masked_pooling(roi_features, mask_logits.sigmoid())
        class_logits, box_deltas = self.category_head(roi_features, masked)
        return mask_logits, class_logits.float(), box_deltas.float()

    # ------------------------------------------------------------------------------ training
    def _check_targets(self, targets: list[dict[str, Tensor]] | None) -> None:
        if targets is None:
            raise ValueError("targets are required in training mode")
        for i, target in enumerate(targets):
            if "masks" not in target:
                raise ValueError(f"target {i} has no 'masks' (keys {sorted(target)}); MNC trains on instance masks (with_masks=True)")
            if target["masks"].shape[0] != target["boxes"].shape[0]:
                raise ValueError(f"target {i}: {target['masks'].shape[0]} masks for {target['boxes'].shape[0]} boxes")

    def _mask_loss(self, mask_logits: Tensor, sampled, targets: list[dict[str, Tensor]]) -> Tensor:
        """Binary cross-entropy over the pixels of foreground RoIs (paper eq. 3, weight 2)."""
        gt = [
            mask_targets(t["masks"], boxes[labels > 0], matched[labels > 0], self.mask_size)
            for t, boxes, labels, matched in zip(targets, sampled.boxes, sampled.labels, sampled.matched_idxs)
        ]
        foreground = torch.cat(sampled.labels) > 0
        if not foreground.any():
            return mask_logits.sum() * 0
        return self.mask_loss_weight * F.binary_cross_entropy_with_logits(mask_logits[foreground], torch.cat(gt))

    def _losses(self, features: Tensor, proposals: list[Tensor], targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        if not self.box_gradients:
            proposals = [p.detach() for p in proposals]
        sampled = self.sampler(proposals, targets)
        mask_logits, class_logits, box_deltas = self.mask_and_categorise(features, sampled.boxes)
        loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_deltas, sampled.labels, sampled.regression_targets)
        return {"loss_mask": self._mask_loss(mask_logits, sampled, targets), "loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}

    # ------------------------------------------------------------------------------ inference
    def _regressed_boxes(self, boxes: list[Tensor], class_logits: Tensor, box_deltas: Tensor, image_sizes: list[tuple[int, int]]) -> list[Tensor]:
        """Stage 3's boxes for stages 4 and 5: each RoI regressed with its best foreground class's deltas."""
        best = class_logits[:, 1:].argmax(1) + 1  # [R]
        per_class = box_deltas.view(len(best), box_deltas.shape[1] // 4, 4)  # [R, 4 (C + 1)] -> [R, C + 1, 4]
        deltas = per_class[torch.arange(len(best), device=best.device), best]  # [R, 4]
        decoded = self.box_coder.decode_single(deltas, torch.cat(boxes))
        per_image = decoded.split([len(b) for b in boxes])
        return [clip_boxes_to_image(b, size) for b, size in zip(per_image, image_sizes)]

    def _candidates(self, features: Tensor, proposals: list[Tensor], image_sizes: list[tuple[int, int]]) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Per image ``(boxes [R', 4], mask_probs [R', m, m], class_probs [R', C + 1])`` of stage 3 (and stage 5)."""
        mask_logits, class_logits, box_deltas = self.mask_and_categorise(features, proposals)
        stages = [(proposals, mask_logits, class_logits)]
        if self.inference_stages == 5:
            boxes = self._regressed_boxes(proposals, class_logits, box_deltas, image_sizes)
            if self.stage5_min_score > 0:
                foreground = F.softmax(class_logits, dim=-1)[:, 1:].amax(dim=1) > self.stage5_min_score  # [R]
                boxes = [b[keep] for b, keep in zip(boxes, foreground.split([len(p) for p in proposals]))]
            mask_logits_5, class_logits_5, _ = self.mask_and_categorise(features, boxes)
            stages.append((boxes, mask_logits_5, class_logits_5))
        per_stage = []
        for boxes, masks, logits in stages:
            counts = [len(b) for b in boxes]
            per_stage.append((boxes, masks.sigmoid().split(counts), F.softmax(logits, dim=-1).split(counts)))
        return [
            (
                torch.cat([boxes[i] for boxes, _, _ in per_stage]),
                torch.cat([masks[i] for _, masks, _ in per_stage]),
                torch.cat([probs[i] for _, _, probs in per_stage]),
            )
            for i in range(len(proposals))
        ]

    def _select(self, boxes: Tensor, masks: Tensor, probs: Tensor) -> dict[str, Tensor]:
        """One image's candidates -> kept instances: ``boxes``, ``labels``, ``scores``, ``masks [K, G, G]`` on ``frames [K, 4]``."""
        num_rois, num_classes = probs.shape
        scores = probs[:, 1:].reshape(-1)  # [R', C] -> [D]
        labels = torch.arange(1, num_classes, device=probs.device).repeat(num_rois)
        rois = torch.arange(num_rois, device=probs.device).repeat_interleave(num_classes - 1)
        keep = torch.where(scores > self.score_thresh)[0]
        scores, labels, rois = scores[keep], labels[keep], rois[keep]
        keep = remove_small_boxes(boxes[rois], MIN_BOX_SIZE)
        scores, labels, rois = scores[keep], labels[keep], rois[keep]
        kept = batched_nms(boxes[rois], scores, labels, self.nms_thresh)[: self.detections_per_img]
        if self.mask_voting:
            voted, frames = vote_in_frames(
                masks[rois], boxes[rois], scores, labels, kept,
                frame_size=self.vote_grid, iou_thresh=self.vote_iou_thresh, binarize_thresh=self.binarize_thresh,
            )  # fmt: skip
        else:
            voted, frames = masks[rois[kept]], boxes[rois[kept]]
        return {"boxes": boxes[rois[kept]], "labels": labels[kept], "scores": scores[kept], "masks": voted, "frames": frames}

    def _postprocess(self, detections: list[dict[str, Tensor]], image_sizes: list[tuple[int, int]], original_sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """Boxes and masks back to each original image; masks pasted into their frames and binarised."""
        results = []
        for det, size, original in zip(detections, image_sizes, original_sizes):
            frames = resize_boxes(det["frames"], size, original)
            pasted = paste_masks_in_image(det["masks"][:, None], frames, original)[:, 0]  # [K, 1, G, G] -> [K, H, W]
            results.append({
                "boxes": resize_boxes(det["boxes"], size, original),
                "labels": det["labels"],
                "scores": det["scores"],
                "masks": (pasted >= self.binarize_thresh).to(torch.uint8),
            })  # fmt: skip
        return results

    def export_cut(self) -> ExportCut:
        """MNC is not exported: ``NotExportable`` says why (``detection/exportable.py``)."""
        raise NotExportable(
            "MNC cannot be exported: mask voting (detection/mnc/voting.py) is a Python loop over the kept instances, "
            "a data-dependent loop that no traced graph holds, and the 5-stage cascade warps the boxes stage 3 regressed "
            "again; the RPN, RoI warping, the cascade, NMS, mask voting and pasting the masks into each image all stay "
            "in Python: run predict.py on the checkpoint"
        )

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None):
        if self.training:
            self._check_targets(targets)
        original_sizes = [tuple(image.shape[-2:]) for image in images]
        image_list, targets = self.transform(images, targets)
        features = self.backbone(image_list.tensors)[self.feature]  # [N, F, Hf, Wf]
        proposals, rpn_losses = self.rpn(image_list, {self.feature: features}, targets)
        if self.training:
            return {**rpn_losses, **self._losses(features, proposals, targets)}
        candidates = self._candidates(features, proposals, image_list.image_sizes)
        detections = [self._select(*c) for c in candidates]
        return self._postprocess(detections, image_list.image_sizes, original_sizes)
