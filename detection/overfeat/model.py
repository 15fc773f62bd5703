"""OverFeat (Sermanet et al. 2013): dense sliding-window classification and box regression,
multi-scale, merged greedily. Honours the detector contract (``docs/ARCHITECTURE.md``).

Shape letters: ``N`` images, ``C`` foreground classes, ``B`` boxes per position (1 or ``C``),
``Ho, Wo`` output positions at one scale, ``P = Ho * Wo``, ``R`` candidate boxes of a class.

Data flow:
1. ``transform``: resize to a square scale (``train_scales`` picks one per training batch,
   uniformly; every ``test_scales`` entry at test), normalise, batch;
2. ``OverFeatNet``: the classifier and the regressor at every window position in one pass
   (FC layers as convolutions, offset pooling; ``detection.overfeat.network``);
3. training: targets per window (``detection.overfeat.targets``), cross-entropy + L2 box loss;
4. test: per scale the top-k classes by spatial max, every position's box for them; the union
   over scales, mapped back to the original image, merged per class (``detection.overfeat.merge``).

Two modes:

- ``localization`` (one object, ILSVRC cls-loc): no background; channel 0 of the classifier is
  masked to ``-inf``. Training at ``train_scales = [window_size]`` is the simple scheme: the
  whole resized image is one window whose label and box are its object; larger training scales
  add windows that cover >= 50 % of the object.
- ``detection``: class 0 is background. Windows are positives / negatives by IoU
  (``targets.window_targets``); every positive and the hardest negatives (the highest
  background loss, "interesting negatives selected on the fly" in the paper, up to
  ``NEGATIVES_PER_POSITIVE`` per positive and at least ``MIN_NEGATIVES`` per image) enter the
  cross-entropy.

Losses: ``loss_classifier`` = CE over the selected windows; ``loss_box_reg`` = the paper's L2
(squared error summed over the 4 edges, in window units) averaged over positive windows, x
``box_loss_weight``; an image without objects gives zero box loss. ``regression="frozen"`` stops
the box loss at the shared features (the paper trains the regressor on frozen feature layers;
here both losses train together, but only the classification loss shapes the features);
``"joint"`` lets it train them too.

Test (paper sec. 4.3). The views are the ``test_scales``, each also mirrored when ``test_flip``
(a mirrored view's boxes are flipped back). Class scores are softmax probabilities.
**Classification** (the paper's rule): per view the spatial max of each class, averaged over the
views (``class_scores``). **Boxes**: in each view, every position's box (regressed for the
class, or the class-agnostic one) is scored by that position's probability of the class; the
best ``pre_merge_top_n`` per class and view whose probability is at least ``score_threshold``
are kept; of their union over views, the best ``max_merge_candidates`` per class are merged with
``greedy_merge`` (a merged box scores the sum of its members). The classes whose boxes are
kept: detection mode, per view the ``top_k_classes`` with the highest spatial max (paper
4.3 (a)); localization mode, the ``top_k_classes`` of the classification rule, and a merged box
then scores ``class_scores[c] * merged / best merged of c``, so the top-1 guess is the best box of
the class the classification rule picks. ``merge_threshold`` with ``top_k_classes`` (detection)
or ``pre_merge_top_n`` (localization) are chosen on the validation split
(``benchmarks/overfeat_localization.py``'s ``tune``).

Candidate caps. The paper merges every position's box of the top-k classes of each scale; our
merge is quadratic in its input (``detection.overfeat.merge``), and an untrained or unsure model
scores every window about ``1 / (C + 1)``, so three caps bound it: ``score_threshold``
(``SCORE_THRESHOLD``, as torchvision's ``box_score_thresh``) is a floor on each window's class
**probability**, before merging (a merged box's score is a sum, so a floor on it would mean
something else); ``pre_merge_top_n`` per class and view; ``max_merge_candidates`` per class over
all views (the best by probability, kept in view order). A dropped window of probability
``p < score_threshold`` would only have added ``p`` to a merged box's score and weight ``p`` to
its position. ``configs/overfeat/shapes_detection.yaml``'s six views hold at most 412 windows
per class, under ``MAX_MERGE_CANDIDATES``.
"""

import random
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detection.backbones.base import Backbone
from detection.exportable import EXAMPLE_BATCH, ExportCut, Outputs, transform_input
from detection.overfeat.merge import MERGE_THRESHOLD, greedy_merge
from detection.overfeat.network import OverFeatNet
from detection.overfeat.targets import IGNORE, decode_edges, window_targets
from detection.transform import build_transform

BACKGROUND = 0
NEGATIVES_PER_POSITIVE = 3  # hard negatives per positive window (detection mode)
MIN_NEGATIVES = 4  # per image, so an image without objects still teaches background
POSITIVE_IOU = 0.4  # detection mode: window IoU with the object for a positive
NEGATIVE_IOU = 0.2  # detection mode: max IoU below which a window is background
SCORE_THRESHOLD = 0.05  # min class probability of a window entering the merge (torchvision's box_score_thresh)
MAX_MERGE_CANDIDATES = 500  # most windows merged per class and image, over all views


def select_hard_negatives(losses: Tensor, negative: Tensor, num_positive: int) -> Tensor:
    """``losses [P]``, ``negative [P]`` bool -> bool ``[P]``: the highest-loss negatives."""
    count = min(int(negative.sum()), max(NEGATIVES_PER_POSITIVE * num_positive, MIN_NEGATIVES))
    keep = torch.zeros_like(negative)
    if count > 0:
        masked = torch.where(negative, losses.detach(), torch.full_like(losses, -float("inf")))
        keep[torch.topk(masked, count).indices] = True
    return keep


class OverFeat(nn.Module):
    """``model(images, targets)``: a loss dict in training, detections per image in eval.

    Args (besides ``OverFeatNet``'s ``backbone, num_classes, feature, window_size, pool_size,
    offset_pooling, class_agnostic, hidden``):
        mode: ``localization`` or ``detection`` (module docstring).
        regression: ``frozen`` or ``joint`` (module docstring).
        train_scales, test_scales: square input sizes in pixels, each >= ``window_size``
            (default ``[window_size]``).
        top_k_classes: classes kept per scale at test.
        pre_merge_top_n: boxes kept per class and view (scale, flip) before merging.
        score_threshold: windows with a lower class probability are dropped before merging.
        max_merge_candidates: the most boxes of one class merged per image, over all views
            (the best by class probability).
        merge_threshold: ``greedy_merge``'s threshold.
        detections_per_img: the most detections returned per image.
        positive_iou, negative_iou: detection mode's window assignment.
        box_loss_weight: the weight of ``loss_box_reg``.
        test_flip: also evaluate each test scale on the mirror image (boxes flipped back).
    """

    def __init__(
        self,
        *,
        backbone: Backbone,
        num_classes: int,
        mode: Literal["localization", "detection"] = "localization",
        feature: str = "c4",
        window_size: int = 128,
        pool_size: int = 2,
        offset_pooling: bool = True,
        class_agnostic: bool = True,
        hidden: int = 256,
        regression: Literal["frozen", "joint"] = "joint",
        train_scales: list[int] | None = None,
        test_scales: list[int] | None = None,
        top_k_classes: int = 1,
        pre_merge_top_n: int = 50,
        score_threshold: float = SCORE_THRESHOLD,
        max_merge_candidates: int = MAX_MERGE_CANDIDATES,
        merge_threshold: float = MERGE_THRESHOLD,
        detections_per_img: int = 100,
        positive_iou: float = POSITIVE_IOU,
        negative_iou: float = NEGATIVE_IOU,
        box_loss_weight: float = 1.0,
        test_flip: bool = False,
    ) -> None:
        super().__init__()
        if mode not in ("localization", "detection"):
            raise ValueError(f"mode must be 'localization' or 'detection', got {mode!r}")
        if regression not in ("frozen", "joint"):
            raise ValueError(f"regression must be 'frozen' or 'joint', got {regression!r}")
        self.train_scales = list(train_scales or [window_size])
        self.test_scales = list(test_scales or [window_size])
        small = [s for s in self.train_scales + self.test_scales if s < window_size]
        if small:
            raise ValueError(f"scales {small} are smaller than window_size {window_size}")
        if not 1 <= top_k_classes <= num_classes:
            raise ValueError(f"top_k_classes must be in 1..{num_classes}, got {top_k_classes}")
        if pre_merge_top_n < 1 or max_merge_candidates < 1:
            raise ValueError(
                f"pre_merge_top_n and max_merge_candidates must be >= 1, got {pre_merge_top_n} and {max_merge_candidates}"
            )
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold is a probability floor in [0, 1], got {score_threshold}")
        self.net = OverFeatNet(
            backbone=backbone,
            num_classes=num_classes,
            feature=feature,
            window_size=window_size,
            pool_size=pool_size,
            offset_pooling=offset_pooling,
            class_agnostic=class_agnostic,
            hidden=hidden,
            detach_regressor=regression == "frozen",
        )
        self.num_classes = num_classes
        self.mode = mode
        self.window_size = window_size
        self.top_k_classes = top_k_classes
        self.pre_merge_top_n = pre_merge_top_n
        self.score_threshold = score_threshold
        self.max_merge_candidates = max_merge_candidates
        self.merge_threshold = merge_threshold
        self.detections_per_img = detections_per_img
        self.positive_iou = positive_iou if mode == "detection" else 0.0
        self.negative_iou = negative_iou if mode == "detection" else None
        self.box_loss_weight = box_loss_weight
        self.test_flip = test_flip
        scales = sorted(set(self.train_scales + self.test_scales))
        # Every image of a scale is resized to the same square: no padding (size_divisible=1),
        # so no window looks at padding.
        self.transforms = nn.ModuleDict({str(s): build_transform(fixed_size=s, size_divisible=1) for s in scales})

    export_attribute = "net.dense"  # the method an exported graph replaces (detection/exportable.py)

    def export_cut(self) -> ExportCut:
        """The dense network: images ``[N, 3, H, W]`` normalised, any size >= the window -> ``outputs
        [N, K, Ho, Wo]``; every test view (scales, flips), box decoding and the greedy merge stay in Python."""
        window = self.window_size
        any_scale = next(iter(self.transforms.values()))
        return ExportCut(
            kind="network", attribute=self.export_attribute, module=Outputs(self.net, self.net.dense),
            example=torch.rand(EXAMPLE_BATCH, 3, 2 * window, 2 * window), input_name="images", output_names=["outputs"],
            dynamic={0: "batch", 2: "height", 3: "width"},
            input={"shape": ["N", 3, "s", "s"], "values": "RGB [0, 1] image resized to each test scale s, then normalised",
                   "test_scales": self.test_scales, "test_flip": self.test_flip,
                   "transform": {k: v for k, v in transform_input(any_scale).items() if k != "resize"}},
            python_side="every test view (scale, flip): transform (resize, normalise), class probabilities, box decoding, "
            "top-k classes, greedy merge over the views, boxes back to the original size",
        )  # fmt: skip

    # ----------------------------------------------------------------------------- shared
    def _class_logits(self, class_logits: Tensor) -> Tensor:
        """Localization mode has no background: mask class 0 out (``[..., C+1, ...]`` dim 1)."""
        if self.mode == "detection":
            return class_logits
        mask = torch.zeros(class_logits.shape[1], dtype=torch.bool, device=class_logits.device)
        mask[BACKGROUND] = True
        return class_logits.masked_fill(mask.view(1, -1, *([1] * (class_logits.ndim - 2))), -float("inf"))

    def _net(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """``OverFeatNet`` with fp32 outputs also under autocast (mixed precision): the losses,
        softmax, box decoding and merge read them in fp32."""
        class_logits, box_edges = self.net(images)
        return class_logits.float(), box_edges.float()

    def _origins(self, height: int, width: int, device: torch.device) -> Tensor:
        return self.net.window_origins(height, width, device).reshape(-1, 2)  # [Ho, Wo, 2] -> [P, 2]

    # ----------------------------------------------------------------------------- train
    def _losses(self, images: Tensor, targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        class_logits, box_edges = self._net(images)  # [N, C+1, Ho, Wo], [N, B, 4, Ho, Wo]
        n, _, height, width = class_logits.shape
        origins = self._origins(height, width, images.device)  # [P, 2]
        logits = self._class_logits(class_logits).flatten(2).transpose(1, 2)  # [N, C+1, P] -> [N, P, C+1]
        edges = box_edges.flatten(3).permute(0, 3, 1, 2)  # [N, B, 4, P] -> [N, P, B, 4]
        ce_terms, box_terms, ce_count, box_count = [], [], 0, 0
        for i, target in enumerate(targets):
            labels, gt_edges, positive = window_targets(
                target["boxes"], target["labels"], origins, self.window_size,
                positive_iou=self.positive_iou, negative_iou=self.negative_iou,
            )
            ce = F.cross_entropy(logits[i], labels.clamp(min=0), reduction="none")  # [P]
            selected = positive.clone()
            if self.negative_iou is not None:
                selected |= select_hard_negatives(ce, labels == BACKGROUND, int(positive.sum()))
            selected &= labels != IGNORE
            ce_terms.append(ce[selected].sum())
            ce_count += int(selected.sum())
            box_index = (labels - 1).clamp(min=0) if edges.shape[2] > 1 else torch.zeros_like(labels)
            pred = edges[i, torch.arange(len(labels), device=labels.device), box_index]  # [P, 4]
            squared = (pred - gt_edges).pow(2).sum(-1)  # paper: L2 loss on the 4 edges
            box_terms.append(squared[positive].sum())
            box_count += int(positive.sum())
        zero = class_logits.sum() * 0.0 + box_edges.sum() * 0.0  # keeps every output in the graph
        return {
            "loss_classifier": zero + torch.stack(ce_terms).sum() / max(ce_count, 1),
            "loss_box_reg": zero + self.box_loss_weight * torch.stack(box_terms).sum() / max(box_count, 1),
        }

    # ----------------------------------------------------------------------------- test
    def view_outputs(self, image: Tensor) -> list[tuple[Tensor, Tensor]]:
        """The network on every test view of ``image [3, H, W]``: each scale, and its mirror image
        when ``test_flip``. One ``(probs [C+1, P], boxes [B, P, 4])`` per view: class
        probabilities at each position and each position's boxes in original image pixels
        (clipped; a mirrored view's boxes are flipped back)."""
        flips = (False, True) if self.test_flip else (False,)
        return [self._view(image, scale, flip) for scale in self.test_scales for flip in flips]

    def _view(self, image: Tensor, scale: int, flip: bool) -> tuple[Tensor, Tensor]:
        transform = self.transforms[str(scale)]
        image_list, _ = transform([image.flip(-1) if flip else image])
        class_logits, box_edges = self._net(image_list.tensors)  # [1, C+1, Ho, Wo], [1, B, 4, Ho, Wo]
        _, _, height, width = class_logits.shape
        probs = self._class_logits(class_logits).softmax(dim=1)[0].flatten(1)  # [C+1, P]
        edges = box_edges[0].flatten(2).permute(0, 2, 1)  # [B, 4, P] -> [B, P, 4]
        boxes_per_position, positions = edges.shape[:2]
        origins = self._origins(height, width, image.device).repeat(boxes_per_position, 1)  # [B * P, 2]
        decoded = decode_edges(edges.reshape(-1, 4), origins, self.window_size)  # [B * P, 4]
        corners = decoded.view(-1, 2, 2)  # [B*P, 4] -> [B*P, (x1 y1 | x2 y2), 2]: order crossed edges
        resized = {"boxes": torch.cat([corners.min(dim=1).values, corners.max(dim=1).values], dim=1)}
        (original,) = transform.postprocess([resized], image_list.image_sizes, [tuple(image.shape[-2:])])
        height_px, width_px = image.shape[-2:]
        boxes = original["boxes"].clone()
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width_px)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height_px)
        if flip:  # back to the unflipped image: x -> W - x, and the two x edges swap
            boxes = torch.stack([width_px - boxes[:, 2], boxes[:, 1], width_px - boxes[:, 0], boxes[:, 3]], dim=1)
        return probs, boxes.view(boxes_per_position, positions, 4)  # [B * P, 4] -> [B, P, 4]

    @staticmethod
    def class_scores(views: list[tuple[Tensor, Tensor]]) -> Tensor:
        """The paper's classification: per view the spatial max of each class, averaged over the
        views (scales and flips): ``-> Tensor[C]`` for labels ``1..C``."""
        return torch.stack([probs[1:].max(dim=1).values for probs, _ in views]).mean(dim=0)  # [V, C] -> [C]

    def merge_views(self, views: list[tuple[Tensor, Tensor]]) -> dict[str, Tensor]:
        """``view_outputs`` -> one image's detections (module docstring, "Test")."""
        device = views[0][0].device
        class_scores = self.class_scores(views)  # [C]
        boxes, labels, scores = [], [], []
        for probs, view_boxes in views:
            if self.mode == "localization":  # the classes of the classification rule
                top_classes = torch.topk(class_scores, self.top_k_classes).indices + 1  # labels 1..C
            else:  # paper sec. 4.3 (a): the top-k classes of this view by spatial max
                top_classes = torch.topk(probs[1:].max(dim=1).values, self.top_k_classes).indices + 1
            for label in top_classes.tolist():
                class_probs = probs[label]  # [P]
                keep = torch.topk(class_probs, min(self.pre_merge_top_n, len(class_probs))).indices
                keep = keep[class_probs[keep] >= self.score_threshold]
                boxes.append(view_boxes[label - 1 if len(view_boxes) > 1 else 0][keep])
                labels.append(torch.full((len(keep),), label, dtype=torch.int64, device=device))
                scores.append(class_probs[keep])
        boxes_all, labels_all, scores_all = torch.cat(boxes), torch.cat(labels), torch.cat(scores)
        out_boxes, out_labels, out_scores = [], [], []
        for label in labels_all.unique().tolist():
            member = (labels_all == label).nonzero()[:, 0]  # [R]
            if len(member) > self.max_merge_candidates:  # the best by probability, kept in view order
                best = torch.topk(scores_all[member], self.max_merge_candidates).indices
                member = member[best.sort().values]
            merged_boxes, merged_scores = greedy_merge(boxes_all[member], scores_all[member], threshold=self.merge_threshold)
            if self.mode == "localization" and len(merged_scores):
                # Rank classes by the classification rule, and a class's boxes by their merged score.
                merged_scores = class_scores[label - 1] * merged_scores / merged_scores.max().clamp(min=1e-12)
            out_boxes.append(merged_boxes)
            out_scores.append(merged_scores)
            out_labels.append(torch.full((len(merged_scores),), label, dtype=torch.int64, device=device))
        result_boxes = torch.cat(out_boxes) if out_boxes else boxes_all.new_zeros(0, 4)
        result_scores = torch.cat(out_scores) if out_scores else scores_all.new_zeros(0)
        result_labels = torch.cat(out_labels) if out_labels else torch.zeros(0, dtype=torch.int64, device=device)
        order = torch.argsort(result_scores, descending=True)[: self.detections_per_img]
        return {
            "boxes": result_boxes[order].float(),
            "labels": result_labels[order],
            "scores": result_scores[order].float(),
        }

    def _detect(self, image: Tensor) -> dict[str, Tensor]:
        return self.merge_views(self.view_outputs(image))

    # ----------------------------------------------------------------------------- contract
    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None):
        if self.training:
            if targets is None:
                raise ValueError("targets are required in training mode")
            scale = random.choice(self.train_scales) if len(self.train_scales) > 1 else self.train_scales[0]
            image_list, targets = self.transforms[str(scale)](images, targets)
            return self._losses(image_list.tensors, targets)
        return [self._detect(image) for image in images]
