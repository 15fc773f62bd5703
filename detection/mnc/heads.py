"""MNC's stage 2 (mask estimation) and stage 3 (categorisation) heads, and the masked pooling between them.

Stage 2 (paper sec. 3.2): the warped RoI features ``[R, F, P, P]`` -> fc ``MASK_HIDDEN`` (256)
-> ReLU -> fc ``m * m`` per-pixel logits (sigmoid: the foreground probability inside the box).

Masked pooling (sec. 3.3): the stage 2 mask is resized to the RoI grid ``P x P`` and multiplies
the RoI features: ``F_mask = F_roi * M`` (the gradient reaches the mask as well).

Stage 3 (sec. 3.3, the authors' prototxt): two pathways, each ``2 x 2`` max pooling ->
fc -> ReLU -> fc -> ReLU; the masked one and the box (unmasked) one are concatenated into a
``(C + 1)``-way classifier and class-wise box deltas (``4 (C + 1)``).

Shape letters: ``R`` RoIs, ``F`` feature channels, ``P`` RoI grid size, ``m`` mask size,
``D`` fc width, ``C`` foreground classes.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MASK_HIDDEN = 256  # fc6_maskest (the authors' prototxt)
FC_POOL_KERNEL = 2  # each stage 3 pathway max-pools the RoI grid by 2 before its fc layers


class MaskHead(nn.Module):
    """``[R, F, P, P]`` RoI features -> ``[R, m, m]`` mask logits."""

    def __init__(self, *, in_channels: int, roi_size: int, mask_size: int, hidden: int = MASK_HIDDEN) -> None:
        super().__init__()
        self.mask_size = mask_size
        self.fc = nn.Linear(in_channels * roi_size**2, hidden)
        self.mask_pred = nn.Linear(hidden, mask_size**2)

    def forward(self, roi_features: Tensor) -> Tensor:
        hidden = F.relu(self.fc(roi_features.flatten(1)))  # [R, F, P, P] -> [R, F * P * P] -> [R, D]
        return self.mask_pred(hidden).view(-1, self.mask_size, self.mask_size)  # [R, m * m] -> [R, m, m]


def masked_pooling(roi_features: Tensor, mask_probs: Tensor) -> Tensor:
    """``roi_features [R, F, P, P]`` x ``mask_probs [R, m, m]`` resized (bilinear) to ``P x P`` -> ``[R, F, P, P]``."""
    size = roi_features.shape[-2:]
    if len(mask_probs) == 0:
        return roi_features
    resized = F.interpolate(mask_probs[:, None], size=size, mode="bilinear", align_corners=False)  # [R, 1, P, P]
    return roi_features * resized


def _pathway(in_features: int, width: int) -> nn.Sequential:
    return nn.Sequential(
        nn.MaxPool2d(FC_POOL_KERNEL), nn.Flatten(1), nn.Linear(in_features, width), nn.ReLU(inplace=True), nn.Linear(width, width), nn.ReLU(inplace=True)
    )


class CategoryHead(nn.Module):
    """``(box_features [R, F, P, P], mask_features [R, F, P, P]) -> (class_logits [R, C + 1], box_deltas [R, 4 (C + 1)])``."""

    def __init__(self, *, in_channels: int, roi_size: int, num_classes: int, representation_size: int) -> None:
        super().__init__()
        pooled = roi_size // FC_POOL_KERNEL
        self.box_pathway = _pathway(in_channels * pooled**2, representation_size)
        self.mask_pathway = _pathway(in_channels * pooled**2, representation_size)
        self.cls_score = nn.Linear(2 * representation_size, num_classes + 1)
        self.bbox_pred = nn.Linear(2 * representation_size, 4 * (num_classes + 1))
        nn.init.normal_(self.cls_score.weight, std=0.01)  # the authors' fillers
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, box_features: Tensor, mask_features: Tensor) -> tuple[Tensor, Tensor]:
        joined = torch.cat([self.mask_pathway(mask_features), self.box_pathway(box_features)], dim=1)  # [R, 2D]
        return self.cls_score(joined), self.bbox_pred(joined)
