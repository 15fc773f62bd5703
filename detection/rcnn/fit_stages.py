"""R-CNN stages 2 and 3: fit the per-class SVMs and box regressors on the fine-tuned network's features.

Three passes over the training images (no augmentation), with the network in eval mode:

1. *feature norms* (``rcnn_feature_stats.m``): fc7 and pool5 features of up to 200 random
   regions in each of up to 200 random images; their mean L2 norms scale the features to a mean
   norm of 20 for the SVMs (fc7) and the regressors (pool5);
2. *positives and regression examples*: fc7 of every ground-truth box (the SVM positives; VOC
   ``difficult`` boxes excluded) and pool5 of every region (proposals and ground-truth boxes)
   whose IoU with a ground truth is above 0.6, with its targets and that ground truth's class;
3. *hard-negative mining* (``svm.HardNegativeMiner``) over the fc7 of every region of every image,
   the ground-truth boxes included (a box of one class is a negative of the others).

Only the mined hard negatives and the regression examples are kept in memory, never every
region's features. The results are folded into linear maps on *raw* features and copied into
the model's buffers (:func:`store_in_model`).

Shape letters: ``R`` regions of an image, ``K`` its ground-truth boxes, ``C`` foreground
classes, ``D`` pool5 dimension, ``H`` fc7 width.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.ops import box_iou

from detection.rcnn.box_regression import REGRESSION_MIN_IOU, RIDGE_LAMBDA, box_targets, fit_box_regressor
from detection.rcnn.model import RCNN
from detection.rcnn.svm import NEG_IOU, TARGET_FEATURE_NORM, HardNegativeMiner, SVMSettings

STATS_IMAGES = 200  # rcnn_feature_stats.m: images sampled for the mean feature norm
STATS_BOXES = 200  # ... and regions per image


@dataclass(frozen=True)
class StageSettings:
    """Everything stages 2 and 3 use; the defaults are the authors'."""

    svm: SVMSettings = field(default_factory=SVMSettings)
    neg_iou: float = NEG_IOU
    regression_lambda: float = RIDGE_LAMBDA
    regression_min_iou: float = REGRESSION_MIN_IOU
    target_norm: float = TARGET_FEATURE_NORM
    stats_images: int = STATS_IMAGES
    stats_boxes: int = STATS_BOXES
    batch_size: int = 8
    num_workers: int = 0
    seed: int = 0


@dataclass
class StageResult:
    """Linear maps on raw features, ready for the model's buffers, plus what the fit saw."""

    svm_weight: Tensor  # [C, H]
    svm_bias: Tensor  # [C]
    bbox_weight: Tensor  # [C, 4, D]
    bbox_bias: Tensor  # [C, 4]
    summary: dict[str, float] = field(default_factory=dict)


def _collate(batch: list) -> tuple[list[Tensor], list[dict]]:
    images, targets = zip(*batch)
    return list(images), list(targets)


def _batches(dataset: Dataset, settings: StageSettings, device: torch.device) -> Iterator[tuple[list[Tensor], list[dict]]]:
    loader = DataLoader(dataset, batch_size=settings.batch_size, shuffle=False, num_workers=settings.num_workers, collate_fn=_collate)
    for images, targets in loader:
        yield [image.to(device) for image in images], targets


def _gt(target: dict, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """``(boxes [K, 4], labels [K], usable [K] bool)`` of one target; ``usable`` drops VOC difficult boxes."""
    boxes = target["boxes"].to(device=device, dtype=torch.float32).reshape(-1, 4)
    labels = target["labels"].to(device=device, dtype=torch.int64).reshape(-1)
    difficult = target.get("difficult")
    usable = ~difficult.to(device=device, dtype=torch.bool).reshape(-1) if difficult is not None else torch.ones_like(labels, dtype=torch.bool)
    return boxes, labels, usable


def class_overlaps(regions: Tensor, gt_boxes: Tensor, gt_labels: Tensor, num_classes: int) -> Tensor:
    """``[R, C]``: each region's best IoU with a ground truth of each class (0 when the class is absent)."""
    overlaps = regions.new_zeros(regions.shape[0], num_classes)
    if gt_boxes.numel():
        iou = box_iou(regions, gt_boxes)  # [R, K]
        for c in range(1, num_classes + 1):
            of_class = gt_labels == c
            if of_class.any():
                overlaps[:, c - 1] = iou[:, of_class].max(dim=1).values
    return overlaps


def feature_norms(model: RCNN, dataset: Dataset, settings: StageSettings) -> tuple[float, float]:
    """Pass 1: mean L2 norms of fc7 and pool5 over a seeded sample of regions."""
    generator = torch.Generator().manual_seed(settings.seed)
    count = min(settings.stats_images, len(dataset))
    chosen = torch.randperm(len(dataset), generator=generator)[:count].sort().values.tolist()
    device = model.svm_bias.device
    fc7_norms, pool5_norms = [], []
    for images, _ in _batches(Subset(dataset, chosen), settings, device):
        proposals = model.propose(images)
        sampled = [p[torch.randperm(len(p), generator=generator)[: settings.stats_boxes].to(p.device)] for p in proposals]
        outputs = model.region_outputs(images, sampled)
        fc7_norms.append(outputs.fc7.norm(dim=1).cpu())
        pool5_norms.append(outputs.pool5.norm(dim=1).cpu())
    fc7_mean, pool5_mean = torch.cat(fc7_norms).mean(), torch.cat(pool5_norms).mean()
    if not (fc7_mean > 0 and pool5_mean > 0):
        raise RuntimeError(f"mean feature norms must be > 0, got fc7 {float(fc7_mean)} pool5 {float(pool5_mean)}")
    return float(fc7_mean), float(pool5_mean)


def positives_and_regression_examples(
    model: RCNN, dataset: Dataset, settings: StageSettings
) -> tuple[list[Tensor], Tensor, Tensor, Tensor]:
    """Pass 2: ``(positives [[P_c, H]] per class, pool5 [n, D], targets [n, 4], classes [n] in 1..C)``."""
    device = model.svm_bias.device
    positives: list[list[Tensor]] = [[] for _ in range(model.num_classes)]
    pool5, targets, classes = [], [], []
    for images, batch_targets in _batches(dataset, settings, device):
        proposals = model.propose(images)
        regions, meta = [], []
        for image_proposals, target in zip(proposals, batch_targets):
            gt_boxes, gt_labels, usable = _gt(target, device)
            all_regions = torch.cat([gt_boxes, image_proposals])
            examples = torch.zeros(len(all_regions), dtype=torch.bool, device=device)
            matched_boxes = all_regions.new_zeros(len(all_regions), 4)
            matched_labels = torch.zeros(len(all_regions), dtype=torch.int64, device=device)
            if gt_boxes.numel():
                best_iou, best = box_iou(all_regions, gt_boxes).max(dim=1)  # [R]
                examples = best_iou > settings.regression_min_iou
                matched_boxes, matched_labels = gt_boxes[best], gt_labels[best]
            # regions kept: the usable ground-truth boxes (positives) and the regression examples
            is_positive = torch.zeros(len(all_regions), dtype=torch.bool, device=device)
            is_positive[: len(gt_boxes)] = usable
            keep = is_positive | examples
            regions.append(all_regions[keep])
            meta.append((is_positive[keep], examples[keep], matched_boxes[keep], matched_labels[keep], gt_labels, usable))
        outputs = model.region_outputs(images, regions)
        start = 0
        for image_regions, (positive, example, matched_boxes, matched_labels, gt_labels, usable) in zip(regions, meta):
            fc7 = outputs.fc7[start : start + len(image_regions)]
            image_pool5 = outputs.pool5[start : start + len(image_regions)]
            start += len(image_regions)
            positive_labels = gt_labels[usable]  # the positives come first, in ground-truth order
            for c in range(1, model.num_classes + 1):
                positives[c - 1].append(fc7[positive][positive_labels == c].cpu())
            pool5.append(image_pool5[example].cpu())
            targets.append(box_targets(matched_boxes[example], image_regions[example]).cpu())
            classes.append(matched_labels[example].cpu())
    dim_h, dim_d = model.svm_weight.shape[1], model.bbox_weight.shape[2]
    stacked = [torch.cat(p) if p else torch.zeros(0, dim_h) for p in positives]
    return (
        stacked,
        torch.cat(pool5) if pool5 else torch.zeros(0, dim_d),
        torch.cat(targets) if targets else torch.zeros(0, 4),
        torch.cat(classes) if classes else torch.zeros(0, dtype=torch.int64),
    )


def mine_svms(model: RCNN, dataset: Dataset, positives: list[Tensor], fc7_scale: float, settings: StageSettings) -> tuple[Tensor, Tensor, dict[str, float]]:
    """Pass 3: hard-negative mining over every region -> SVMs on *scaled* fc7 ``(weight [C, H], bias [C])``."""
    device = model.svm_bias.device
    miner = HardNegativeMiner(positives=[p * fc7_scale for p in positives], settings=settings.svm)
    total = len(dataset)
    seen = 0
    for images, batch_targets in _batches(dataset, settings, device):
        proposals = model.propose(images)
        regions, negatives = [], []
        for image_proposals, target in zip(proposals, batch_targets):
            gt_boxes, gt_labels, _ = _gt(target, device)
            image_regions = torch.cat([gt_boxes, image_proposals])
            regions.append(image_regions)
            negatives.append(class_overlaps(image_regions, gt_boxes, gt_labels, model.num_classes) < settings.neg_iou)
        outputs = model.region_outputs(images, regions)
        start = 0
        for image_regions, negative in zip(regions, negatives):
            fc7 = outputs.fc7[start : start + len(image_regions)] * fc7_scale
            start += len(image_regions)
            seen += 1
            miner.add_image(fc7, negative, last=seen == total)
    weight, bias = miner.finish()
    summary = {f"svm/negatives_{c + 1}": float(cache.negatives.shape[0]) for c, cache in enumerate(miner.caches)}
    summary.update({f"svm/objective_{c + 1}": cache.history[-1] for c, cache in enumerate(miner.caches) if cache.history})
    return weight, bias, summary


def fit_svms_and_regressors(model: RCNN, dataset: Dataset, settings: StageSettings = StageSettings()) -> StageResult:
    """Stages 2 and 3 on ``dataset`` (``(image [3, H, W], target)`` samples, no augmentation)."""
    if len(dataset) == 0:
        raise ValueError("no training images to fit the SVMs and box regressors on")
    was_training = model.training
    model.eval()
    try:
        fc7_norm, pool5_norm = feature_norms(model, dataset, settings)
        fc7_scale, pool5_scale = settings.target_norm / fc7_norm, settings.target_norm / pool5_norm
        positives, pool5, targets, classes = positives_and_regression_examples(model, dataset, settings)
        weight, bias, summary = mine_svms(model, dataset, positives, fc7_scale, settings)
    finally:
        model.train(was_training)
    bbox_weight = torch.zeros_like(model.bbox_weight, device="cpu")
    bbox_bias = torch.zeros_like(model.bbox_bias, device="cpu")
    for c in range(1, model.num_classes + 1):
        of_class = classes == c
        summary[f"bbox/examples_{c}"] = float(of_class.sum())
        if of_class.any():  # a class without examples keeps the identity (zero deltas)
            bbox_weight[c - 1], bbox_bias[c - 1] = fit_box_regressor(
                pool5[of_class], targets[of_class], feature_scale=pool5_scale, lam=settings.regression_lambda
            )
    summary.update({"fc7_mean_norm": fc7_norm, "pool5_mean_norm": pool5_norm})
    summary.update({f"svm/positives_{c + 1}": float(p.shape[0]) for c, p in enumerate(positives)})
    return StageResult(
        svm_weight=weight * fc7_scale,  # the SVMs saw scaled fc7: fold the scale into the weights
        svm_bias=bias,
        bbox_weight=bbox_weight,
        bbox_bias=bbox_bias,
        summary=summary,
    )


@torch.no_grad()
def store_in_model(model: RCNN, result: StageResult) -> None:
    """Copy a :class:`StageResult` into the model's stage buffers and mark both stages fitted."""
    model.svm_weight.copy_(result.svm_weight)
    model.svm_bias.copy_(result.svm_bias)
    model.bbox_weight.copy_(result.bbox_weight)
    model.bbox_bias.copy_(result.bbox_bias)
    model.svm_fitted.fill_(True)
    model.regressor_fitted.fill_(True)
