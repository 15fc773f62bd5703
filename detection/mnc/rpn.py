"""Stage 1: torchvision's ``RegionProposalNetwork`` whose proposals keep their gradient.

torchvision decodes proposals from *detached* box deltas (Faster R-CNN's approximate joint
training). MNC back-propagates the later stages' losses through the RoI warping into the box
coordinates (paper sec. 3.3), so here the deltas are decoded as they are. Top-k, clipping,
small-box removal and NMS only index or clamp the boxes, so the selected proposals stay
differentiable; objectness is still detached, as torchvision does. As in the authors' proposal
layer (``use_clip: 1, clip_base: 512``), the gradient that reaches the box deltas through the
proposals is clipped element-wise to ``+-1/512``: unclipped, the later stages' losses drag the
deltas of most anchors to degenerate boxes that NMS then merges (the test-time proposals
collapse). The RPN's own regression loss is not clipped. Everything else (anchor assignment,
sampling, losses) is torchvision's.

Shape letters: ``N`` images, ``A`` anchors over all positions, ``R_i`` proposals of image ``i``.
"""

import torch
from torch import Tensor
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import (
    RegionProposalNetwork,
    concat_box_prediction_layers,
)

BOX_GRAD_CLIP = 1 / 512  # the authors' proposal layer: clip_base 512


class _ClipGradient(torch.autograd.Function):
    """Identity forward; backward clamps the incoming gradient element-wise to ``[-limit, limit]``."""

    @staticmethod
    def forward(ctx, x: Tensor, limit: float) -> Tensor:
        ctx.limit = limit
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad.clamp(-ctx.limit, ctx.limit), None


def clip_gradient(x: Tensor, limit: float) -> Tensor:
    """``x`` unchanged, with its gradient clamped to ``[-limit, limit]`` on the way back."""
    return _ClipGradient.apply(x, limit)


class DifferentiableRPN(RegionProposalNetwork):
    """``(images: ImageList, features: dict[str, Tensor], targets) -> (list[Tensor[R_i, 4]], losses)``.

    The proposals carry gradients (clipped to ``box_grad_clip``) to the RPN's box-regression branch
    in training. The other arguments are ``RegionProposalNetwork``'s.
    """

    def __init__(self, *args, box_grad_clip: float = BOX_GRAD_CLIP, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.box_grad_clip = box_grad_clip

    def forward(
        self, images: ImageList, features: dict[str, Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        maps = list(features.values())
        objectness, pred_bbox_deltas = self.head(maps)
        anchors = self.anchor_generator(images, maps)
        num_images = len(anchors)
        num_anchors_per_level = [o[0].numel() for o in objectness]  # A * Hf * Wf per level
        objectness, pred_bbox_deltas = concat_box_prediction_layers(objectness, pred_bbox_deltas)
        # not detached (MNC sec. 3.3), but with the authors' gradient clipping
        proposals = self.box_coder.decode(clip_gradient(pred_bbox_deltas, self.box_grad_clip), anchors)
        proposals = proposals.view(num_images, -1, 4)  # [N * A, 1, 4] -> [N, A, 4]
        boxes, _ = self.filter_proposals(proposals, objectness, images.image_sizes, num_anchors_per_level)

        losses: dict[str, Tensor] = {}
        if self.training:
            if targets is None:
                raise ValueError("targets are required in training mode")
            labels, matched_gt_boxes = self.assign_targets_to_anchors(anchors, targets)
            regression_targets = self.box_coder.encode(matched_gt_boxes, anchors)
            loss_objectness, loss_rpn_box_reg = self.compute_loss(objectness, pred_bbox_deltas, labels, regression_targets)
            losses = {"loss_objectness": loss_objectness, "loss_rpn_box_reg": loss_rpn_box_reg}
        return boxes, losses
