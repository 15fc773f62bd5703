"""R-CNN (Girshick et al. 2014): a CNN on every warped region proposal, per-class SVMs, box regression.

The data flow:

1. ``proposals``: selective search on each *original* image, through the same
   :class:`ProposalCache` as Fast R-CNN (``detection/proposals/``), ``Tensor[R_i, 4]`` xyxy;
2. ``normalise``: ImageNet mean and std (``detection/transform.py``'s constants). No resize:
   the regions are cut from the image at its own resolution, so boxes stay in original pixels;
3. ``crops``: every region dilated for context and warped to ``S x S`` (``crops.py``), zeros
   outside the image;
4. ``region_net``: backbone + pool5 + fc6 + fc7 + ``C + 1``-way classifier, once *per region*
   (``head.py``): R-CNN's cost, which Fast R-CNN removes by sharing one conv pass per image;
5. scoring: the per-class linear SVMs on fc7 (``scorer="svm"``, once fitted) or the fine-tuned
   softmax (``scorer="softmax"``, and always before the SVMs exist); box regression from pool5
   (``box_regression=True``, once fitted); per-class NMS (``postprocess.py``).

Training has three stages. Fine-tuning is this module's training mode: the loss dict holds
``loss_classifier``, the softmax log loss on 128-region mini-batches (``sampler.py``). The SVMs
(``svm.py``) and the regressors (``box_regression.py``) are fitted afterwards on the fine-tuned
features (``fit_stages.py``, run by the Lightning callback ``stages.RCNNStages``) and stored in
buffers that exist, with fixed shapes, from construction on: a checkpoint holds all three stages
as tensors and loads with ``weights_only=True`` into a freshly built model.

Scores: SVM margins ``z`` are reported as ``sigmoid(z)`` (monotone per class, so AP is unchanged)
so that every head's scores live in ``[0, 1]`` and a score threshold means the same everywhere.

Shape letters: ``N`` images, ``R_i`` regions of image ``i``, ``S`` crop size, ``D`` pool5
dimension, ``H`` fc7 width, ``C`` foreground classes.
"""

from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detection.backbones.base import Backbone
from detection.exportable import EXAMPLE_BATCH, ExportCut
from detection.proposals.cache import ProposalCache
from detection.proposals.selective_search import MAX_PROPOSALS, MIN_BOX_SIDE, SelectiveSearchMode, image_to_uint8
from detection.rcnn.box_regression import BOX_DIM, apply_deltas
from detection.rcnn.crops import PAPER_CROP_SIZE, scaled_context_padding, warp_batch
from detection.rcnn.head import RegionNet, RegionOutputs
from detection.rcnn.postprocess import DETECTIONS_PER_IMAGE, MAX_PER_CLASS, NMS_IOU, detect
from detection.rcnn.region_scorer import RegionScorer
from detection.rcnn.sampler import CROPS_PER_BATCH, FG_FRACTION, FG_IOU, label_regions, sample_regions
from detection.transform import IMAGENET_MEAN, IMAGENET_STD

Scorer = Literal["svm", "softmax"]
EVAL_CHUNK = 128  # regions per forward pass at test time (bounds memory, not results)
PAPER_FC_WIDTH = 4096
PAPER_DROPOUT = 0.5


class RCNN(nn.Module):
    """``model(images, targets)``: ``loss_classifier`` in training; ``{boxes, labels, scores}`` per image in eval.

    Args (keyword-only):
        backbone, feature: the backbone and the tap pool5 is pooled from.
        num_classes: foreground classes ``C``.
        crop_size: ``S``, the warped region size (227 in the paper).
        context_padding: px of context in the crop (default: 16 at 227, scaled with ``S``).
        pool_size, representation_size, dropout: pool5's grid, fc6/fc7's width, their dropout.
        proposal_mode, max_proposals, proposal_min_size, cache_dir, precomputed_proposals:
            selective search and its cache, as for Fast R-CNN.
        crops_per_batch, fg_fraction, fg_iou: the fine-tuning mini-batch (128, 0.25, 0.5).
        scorer: ``"svm"`` (the SVMs once fitted, the softmax before) or ``"softmax"``.
        box_regression: refine boxes with the fitted regressors.
        score_thresh, nms_thresh, max_per_class, detections_per_img: ``postprocess.detect``.
        eval_chunk: regions per forward pass at test time.
    """

    def __init__(
        self,
        *,
        backbone: Backbone,
        num_classes: int,
        feature: str = "pool5",
        crop_size: int = PAPER_CROP_SIZE,
        context_padding: float | None = None,
        pool_size: int = 7,
        representation_size: int = PAPER_FC_WIDTH,
        dropout: float = PAPER_DROPOUT,
        proposal_mode: SelectiveSearchMode = "fast",
        max_proposals: int = MAX_PROPOSALS,
        proposal_min_size: int = MIN_BOX_SIDE,
        cache_dir: str | Path | None = None,
        precomputed_proposals: str | Path | None = None,
        crops_per_batch: int = CROPS_PER_BATCH,
        fg_fraction: float = FG_FRACTION,
        fg_iou: float = FG_IOU,
        scorer: Scorer = "svm",
        box_regression: bool = True,
        score_thresh: float = 0.0,
        nms_thresh: float = NMS_IOU,
        max_per_class: int = MAX_PER_CLASS,
        detections_per_img: int = DETECTIONS_PER_IMAGE,
        eval_chunk: int = EVAL_CHUNK,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if scorer not in ("svm", "softmax"):
            raise ValueError(f"scorer must be 'svm' or 'softmax', got {scorer!r}")
        self.num_classes = num_classes
        self.crop_size = crop_size
        self.context_padding = scaled_context_padding(crop_size) if context_padding is None else context_padding
        self.crops_per_batch = crops_per_batch
        self.fg_fraction = fg_fraction
        self.fg_iou = fg_iou
        self.scorer = scorer
        self.box_regression = box_regression
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.max_per_class = max_per_class
        self.detections_per_img = detections_per_img
        self.eval_chunk = eval_chunk
        self.proposals = ProposalCache(
            cache_dir, mode=proposal_mode, max_proposals=max_proposals, min_size=proposal_min_size,
            precomputed=precomputed_proposals,
        )
        self.region_net = RegionNet(
            backbone=backbone, feature=feature, pool_size=pool_size, representation_size=representation_size,
            num_classes=num_classes, dropout=dropout,
        )
        self.register_buffer("image_mean", torch.tensor(IMAGENET_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(IMAGENET_STD).view(3, 1, 1), persistent=False)
        # Stages 2 and 3, filled by fit_stages.fit_svms_and_regressors; fixed shapes so checkpoints load.
        pool5_dim = self.region_net.pool5_dim
        self.register_buffer("svm_weight", torch.zeros(num_classes, representation_size))  # [C, H], on raw fc7
        self.register_buffer("svm_bias", torch.zeros(num_classes))  # [C]
        self.register_buffer("bbox_weight", torch.zeros(num_classes, BOX_DIM, pool5_dim))  # [C, 4, D], on raw pool5
        self.register_buffer("bbox_bias", torch.zeros(num_classes, BOX_DIM))  # [C, 4]
        self.register_buffer("svm_fitted", torch.zeros((), dtype=torch.bool))
        self.register_buffer("regressor_fitted", torch.zeros((), dtype=torch.bool))

    # ----------------------------------------------------------------------------- parts
    @torch.no_grad()
    def propose(self, images: list[Tensor]) -> list[Tensor]:
        """Selective-search proposals ``list[Tensor[R_i, 4]]`` xyxy in each image's pixels."""
        return [self.proposals.get_or_compute(image_to_uint8(image)).to(image.device) for image in images]

    def normalise(self, images: list[Tensor]) -> list[Tensor]:
        """``[3, H_i, W_i]`` in ``[0, 1]`` -> mean-subtracted, std-divided (zero = the mean colour)."""
        for image in images:
            if image.ndim != 3 or image.shape[0] != 3:
                raise ValueError(f"expected images Tensor[3, H, W], got shape {tuple(image.shape)}")
        return [(image - self.image_mean) / self.image_std for image in images]

    def crops(self, normalised: list[Tensor], boxes: list[Tensor]) -> Tensor:
        """``[sum R_i, 3, S, S]``: every box of every image, dilated and warped."""
        return warp_batch(normalised, boxes, crop_size=self.crop_size, padding=self.context_padding)

    @torch.no_grad()
    def region_outputs(self, images: list[Tensor], boxes: list[Tensor]) -> RegionOutputs:
        """The network on ``boxes [R_i, 4]`` of raw ``images``, ``eval_chunk`` regions at a time (no grad).

        Returns the concatenation over images, in image order. Used at test time and by the
        SVM / regressor stages; the caller sets train/eval mode.
        """
        normalised = self.normalise(images)
        pieces: list[RegionOutputs] = []
        offsets = [0]
        for image_boxes in boxes:
            offsets.append(offsets[-1] + len(image_boxes))
        for start in range(0, offsets[-1], self.eval_chunk):  # a chunk may span several images
            end = min(start + self.eval_chunk, offsets[-1])
            present = [i for i in range(len(boxes)) if offsets[i] < end and offsets[i + 1] > start]
            chunk = [boxes[i][max(start, offsets[i]) - offsets[i] : min(end, offsets[i + 1]) - offsets[i]] for i in present]
            pieces.append(self.region_net(self.crops([normalised[i] for i in present], chunk)))
        if not pieces:
            return self.region_net(torch.zeros(0, 3, self.crop_size, self.crop_size, device=self.svm_bias.device))
        return RegionOutputs(*(torch.cat(parts) for parts in zip(*pieces)))

    def class_scores(self, outputs: RegionOutputs) -> Tensor:
        """``[R, C]`` in ``[0, 1]``: sigmoid of the SVM margins, or the softmax's foreground columns."""
        if self.scorer == "svm" and bool(self.svm_fitted):
            return torch.sigmoid(outputs.fc7 @ self.svm_weight.T + self.svm_bias)  # [R, H] @ [H, C] -> [R, C]
        return outputs.class_logits.softmax(dim=1)[:, 1:]  # [R, C + 1] -> [R, C]

    def class_boxes(self, outputs: RegionOutputs, proposals: Tensor) -> Tensor:
        """``[R, C, 4]``: each proposal refined by every class's regressor, or repeated."""
        count = proposals.shape[0]
        if not (self.box_regression and bool(self.regressor_fitted)):
            return proposals[:, None, :].expand(count, self.num_classes, BOX_DIM)
        weight = self.bbox_weight.flatten(0, 1)  # [C, 4, D] -> [C*4, D]
        deltas = outputs.pool5 @ weight.T + self.bbox_bias.flatten()  # [R, C*4]
        return apply_deltas(deltas, proposals).view(count, self.num_classes, BOX_DIM)  # [R, C*4] -> [R, C, 4]

    def export_cut(self) -> ExportCut:
        """The region network with its SVMs and box regressors (``RegionScorer``): ``crops [R, 3, S, S]``
        normalised -> ``scores [R, C]``, ``box_deltas [R, 4C]``; selective search, warping, applying the
        deltas and NMS stay in Python, so ``predict.py`` cannot run the file."""
        size = self.crop_size
        return ExportCut(
            kind="region_network", module=RegionScorer(self), example=torch.rand(EXAMPLE_BATCH, 3, size, size),
            input_name="crops", output_names=["scores", "box_deltas"], dynamic={0: "regions"},
            input={"shape": ["R", 3, size, size], "values": "regions dilated for context and warped to the crop size, "
                   "cut from the image normalised with mean / std", "mean": [float(v) for v in self.image_mean.flatten()],
                   "std": [float(v) for v in self.image_std.flatten()], "context_padding": self.context_padding},
            python_side="selective search proposals, context dilation and warping of each region, applying the box deltas "
            "(detection.rcnn.box_regression.apply_deltas), per-class NMS: predict.py cannot run this file",
            runnable=False,
        )  # fmt: skip

    # ----------------------------------------------------------------------------- forward
    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None):
        if self.training:
            if targets is None:
                raise ValueError("targets are required in training mode")
            return self._fine_tuning_loss(images, targets)
        return self._detect(images)

    def _fine_tuning_loss(self, images: list[Tensor], targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """Stage 1: softmax log loss on one mini-batch of regions sampled over the batch's images."""
        if len(images) != len(targets):
            raise ValueError(f"got {len(images)} images but {len(targets)} targets")
        proposals = self.propose(images)
        boxes, labels = [], []
        for image_proposals, target in zip(proposals, targets):
            gt_boxes = target["boxes"].to(image_proposals)
            regions = torch.cat([image_proposals, gt_boxes])  # the ground truth joins the proposals
            region_labels, _, _ = label_regions(regions, gt_boxes, target["labels"].to(regions.device), fg_iou=self.fg_iou)
            boxes.append(regions)
            labels.append(region_labels)
        owners = torch.cat([torch.full((len(b),), i, dtype=torch.int64, device=b.device) for i, b in enumerate(boxes)])
        flat_boxes, flat_labels = torch.cat(boxes), torch.cat(labels)
        chosen = sample_regions(flat_labels, batch_size=self.crops_per_batch, fg_fraction=self.fg_fraction)
        if chosen.numel() == 0:  # no region at all in the batch: a zero loss that still reaches every parameter
            return {"loss_classifier": sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0}
        chosen = chosen[torch.argsort(owners[chosen], stable=True)]  # grouped by image, as the crops come out
        normalised = self.normalise(images)
        chosen_owner = owners[chosen]
        crops = self.crops(
            normalised, [flat_boxes[chosen[chosen_owner == i]] for i in range(len(images))]
        )  # [B, 3, S, S]
        logits = self.region_net(crops).class_logits  # [B, C + 1]
        return {"loss_classifier": F.cross_entropy(logits, flat_labels[chosen].to(logits.device))}

    def _detect(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        """Score every proposal of every image, regress, NMS; boxes in original pixels."""
        proposals = self.propose(images)
        outputs = self.region_outputs(images, proposals)
        results = []
        start = 0
        for image, image_proposals in zip(images, proposals):
            end = start + len(image_proposals)
            mine = RegionOutputs(*(t[start:end] for t in outputs))
            start = end
            results.append(
                detect(
                    self.class_scores(mine),
                    self.class_boxes(mine, image_proposals),
                    image_size=(int(image.shape[-2]), int(image.shape[-1])),
                    score_thresh=self.score_thresh,
                    nms_thresh=self.nms_thresh,
                    max_per_class=self.max_per_class,
                    detections_per_img=self.detections_per_img,
                )
            )
        return results
