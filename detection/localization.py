"""Classification + localization: a class head and a box "regression head" on shared features.

The lectures' first detector: the image holds a fixed number ``K`` of objects; one head
classifies each of the ``K`` slots, another regresses each slot's box. There is no
background class, since every slot holds an object.

Shape letters: ``N`` images, ``K`` object slots, ``C`` foreground classes, ``S`` the fixed
input size. Boxes are regressed as ``(cx, cy, w, h) / S`` in ``[0, 1]`` (sigmoid), per class
when ``class_agnostic=False`` (the box of the predicted or true class is used).

Training targets: the ``K`` largest ground-truth objects of an image fill the slots,
largest first; slots left empty (fewer than ``K`` objects) are masked out of both losses,
so an image without objects contributes zero loss.

Loss (as in the lectures): ``L = CE(class) + box_loss_weight * L_box``, where ``L_box`` is
smooth-L1 or L2 between predicted and true normalised boxes, averaged over filled slots.
"""

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_convert

from detection.backbones.base import Backbone
from detection.exportable import ExportCut, fixed_square_cut
from detection.transform import build_transform

BOX_DIM = 4
POOLED_GRID = 4  # features are pooled to 4x4 before the FC layers: keeps coarse position
SMOOTH_L1_BETA = 1.0 / 9.0  # torchvision's box-regression beta


def slot_targets(targets: list[dict[str, Tensor]], num_objects: int, image_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Fill the ``K`` slots with the largest objects.

    Returns ``labels [N, K]`` (0-based class index), ``boxes [N, K, 4]`` normalised cxcywh and
    ``filled [N, K]`` bool.
    """
    n = len(targets)
    device = targets[0]["boxes"].device if targets else torch.device("cpu")
    labels = torch.zeros(n, num_objects, dtype=torch.int64, device=device)
    boxes = torch.zeros(n, num_objects, BOX_DIM, device=device)
    filled = torch.zeros(n, num_objects, dtype=torch.bool, device=device)
    for i, target in enumerate(targets):
        gt_boxes = target["boxes"]
        areas = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])
        order = torch.argsort(areas, descending=True, stable=True)[:num_objects]
        k = len(order)
        labels[i, :k] = target["labels"][order] - 1
        boxes[i, :k] = box_convert(gt_boxes[order], "xyxy", "cxcywh") / image_size
        filled[i, :k] = True
    return labels, boxes, filled


def localization_losses(
    class_logits: Tensor,
    pred_boxes: Tensor,
    gt_labels: Tensor,
    gt_boxes: Tensor,
    filled: Tensor,
    *,
    box_loss: Literal["smooth_l1", "l2"],
) -> dict[str, Tensor]:
    """``class_logits [N, K, C]``, ``pred_boxes [N, K, 4]`` (already the box of the true class)."""
    count = filled.sum().clamp(min=1)
    ce = F.cross_entropy(class_logits.flatten(0, 1), gt_labels.flatten(), reduction="none")
    if box_loss == "smooth_l1":
        box = F.smooth_l1_loss(pred_boxes, gt_boxes, beta=SMOOTH_L1_BETA, reduction="none").sum(-1)
    else:
        box = F.mse_loss(pred_boxes, gt_boxes, reduction="none").sum(-1)
    weights = filled.flatten().float()
    return {
        "loss_classifier": (ce * weights).sum() / count,
        "loss_box_reg": (box.flatten() * weights).sum() / count,
    }


class ClassLocalizationNet(nn.Module):
    """``model(images, targets)``: loss dict in training, ``K`` detections per image in eval."""

    def __init__(
        self,
        *,
        backbone: Backbone,
        num_classes: int,
        num_objects: int = 1,
        class_agnostic: bool = False,
        image_size: int = 128,
        box_loss: Literal["smooth_l1", "l2"] = "smooth_l1",
        box_loss_weight: float = 1.0,
        hidden: int = 512,
        feature: str | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1 or num_objects < 1:
            raise ValueError(f"num_classes and num_objects must be >= 1, got {num_classes}, {num_objects}")
        self.num_classes = num_classes
        self.num_objects = num_objects
        self.class_agnostic = class_agnostic
        self.image_size = image_size
        self.box_loss = box_loss
        self.box_loss_weight = box_loss_weight
        self.transform = build_transform(fixed_size=image_size)
        self.feature = feature or list(backbone.strides)[-1]
        backbone.truncate(self.feature)
        self.backbone = backbone
        channels = backbone.channels[self.feature]
        box_outputs = 1 if class_agnostic else num_classes
        # What an object is does not depend on where it is: the class head sees globally pooled
        # features. Where it is does: the box head sees a coarse POOLED_GRID x POOLED_GRID map.
        self.cls_head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(channels, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_objects * num_classes),
        )
        self.box_head = nn.Sequential(
            nn.AdaptiveAvgPool2d(POOLED_GRID),
            nn.Flatten(),
            nn.Linear(channels * POOLED_GRID**2, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_objects * box_outputs * BOX_DIM),
        )

    def _heads(self, batch: Tensor) -> tuple[Tensor, Tensor]:
        """``Tensor[N, 3, S, S] -> (class_logits [N, K, C], boxes [N, K, B, 4])``, ``B`` = 1 or C."""
        features = self.backbone(batch)[self.feature]
        n = batch.shape[0]
        class_logits = self.cls_head(features).view(n, self.num_objects, self.num_classes)
        boxes = torch.sigmoid(self.box_head(features)).view(n, self.num_objects, -1, BOX_DIM)
        return class_logits, boxes

    export_attribute = "_heads"  # the method an exported graph replaces (detection/exportable.py)

    def export_cut(self) -> ExportCut:
        """The network: images ``[N, 3, S, S]`` normalised -> ``class_logits [N, K, C]``, ``boxes
        [N, K, B, 4]`` (dynamic batch); the transform, softmax and box picking stay in Python."""
        return fixed_square_cut(
            self, self.image_size, ["class_logits", "boxes"],
            python_side="transform (resize, normalise), softmax, the box of the best class, boxes back to the original size",
        )  # fmt: skip

    @staticmethod
    def _pick(boxes: Tensor, class_index: Tensor) -> Tensor:
        """``boxes [N, K, B, 4]``, ``class_index [N, K]`` -> ``[N, K, 4]`` (B = 1: the only box)."""
        if boxes.shape[2] == 1:
            return boxes[:, :, 0]
        index = class_index[:, :, None, None].expand(-1, -1, 1, BOX_DIM)
        return boxes.gather(2, index).squeeze(2)

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None):
        original_sizes = [tuple(image.shape[-2:]) for image in images]
        image_list, targets = self.transform(images, targets)
        class_logits, boxes = self._heads(image_list.tensors)
        class_logits, boxes = class_logits.float(), boxes.float()  # fp32 losses and decoding under autocast
        if self.training:
            if targets is None:
                raise ValueError("targets are required in training mode")
            gt_labels, gt_boxes, filled = slot_targets(targets, self.num_objects, self.image_size)
            pred = self._pick(boxes, gt_labels)
            losses = localization_losses(class_logits, pred, gt_labels, gt_boxes, filled, box_loss=self.box_loss)
            losses["loss_box_reg"] = losses["loss_box_reg"] * self.box_loss_weight
            return losses
        probs = class_logits.softmax(-1)
        scores, class_index = probs.max(-1)  # [N, K]
        pred = box_convert(self._pick(boxes, class_index) * self.image_size, "cxcywh", "xyxy")
        results = [
            {"boxes": pred[i], "labels": class_index[i] + 1, "scores": scores[i]} for i in range(len(images))
        ]
        return self.transform.postprocess(results, image_list.image_sizes, original_sizes)
