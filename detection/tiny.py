"""A trivial detector that honours the detector contract: for tests and the example config.

Not a paper head. It resizes every image to ``image_size`` squared, runs three strided
convolutions, pools globally (average and max) and predicts one box per image (sigmoid, normalised to the image
size) and ``C`` class logits. Training matches that box to the image's first ground-truth
object; an image with no objects contributes zero loss. It learns something on single-object
data, which is all the tests and the example config need.

Shapes: ``N`` images, ``C`` foreground classes, ``S = image_size``.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BOX_COORDS = 4


class TinyDetector(nn.Module):
    """``model(images: list[Tensor[3, H, W]], targets=None)``: loss dict in train, detections in eval."""

    def __init__(self, *, num_classes: int, width: int = 8, image_size: int = 32) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 (foreground classes), got {num_classes}")
        self.num_classes = num_classes
        self.image_size = image_size
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1),  # stride 2
            nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),  # stride 4
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1),  # stride 8
            nn.ReLU(inplace=True),
        )
        pooled = 4 * width  # average and max pooling, concatenated
        self.cls_head = nn.Linear(pooled, num_classes)
        self.box_head = nn.Linear(pooled, BOX_COORDS)

    def _predict(self, images: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """-> class logits ``[N, C]``, normalised boxes ``[N, 4]``, image sizes ``[N, 4]`` (W, H, W, H)."""
        size = (self.image_size, self.image_size)
        batch = torch.cat(
            [F.interpolate(im[None], size=size, mode="bilinear", align_corners=False) for im in images]
        )  # N x [1, 3, H, W] -> [N, 3, S, S]
        features = self.features(batch)  # [N, 2 * width, S/8, S/8]
        pooled = torch.cat([features.mean(dim=(2, 3)), features.amax(dim=(2, 3))], dim=1)  # [N, 4 * width]
        sizes = [[im.shape[-1], im.shape[-2]] * 2 for im in images]  # (W, H, W, H) per image
        scale = torch.tensor(sizes, dtype=batch.dtype, device=batch.device)
        return self.cls_head(pooled), torch.sigmoid(self.box_head(pooled)), scale

    def forward(self, images: list[Tensor], targets: list[dict] | None = None) -> dict[str, Tensor] | list[dict]:
        logits, boxes_norm, scale = self._predict(images)
        if self.training:
            if targets is None:
                raise ValueError("TinyDetector needs targets in training mode")
            return self._losses(logits, boxes_norm, scale, targets)
        probs = logits.softmax(dim=1)
        scores, labels = probs.max(dim=1)
        boxes = boxes_norm * scale  # [N, 4] original pixels
        x1y1 = torch.minimum(boxes[:, :2], boxes[:, 2:])
        x2y2 = torch.maximum(boxes[:, :2], boxes[:, 2:])
        boxes = torch.cat([x1y1, x2y2], dim=1)
        return [
            {"boxes": boxes[i : i + 1], "labels": labels[i : i + 1] + 1, "scores": scores[i : i + 1]}
            for i in range(len(images))
        ]

    def _losses(self, logits: Tensor, boxes_norm: Tensor, scale: Tensor, targets: list[dict]) -> dict[str, Tensor]:
        has_object = torch.tensor([len(t["labels"]) > 0 for t in targets], device=logits.device)
        if not bool(has_object.any()):
            zero = logits.sum() * 0.0 + boxes_norm.sum() * 0.0
            return {"loss_classifier": zero, "loss_box": zero.clone()}
        keep = has_object.nonzero().squeeze(1)
        gt_labels = torch.stack([targets[i]["labels"][0] for i in keep.tolist()]) - 1  # [M] in 0..C-1
        gt_boxes = torch.stack([targets[i]["boxes"][0] for i in keep.tolist()]) / scale[keep]  # [M, 4]
        return {
            "loss_classifier": F.cross_entropy(logits[keep], gt_labels),
            "loss_box": F.smooth_l1_loss(boxes_norm[keep], gt_boxes, beta=0.1),
        }
