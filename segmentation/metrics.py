"""Semantic segmentation metrics from a streaming confusion matrix (FCN paper, section 5).

With ``n_ij`` the number of pixels of class ``i`` predicted as class ``j``, ``t_i = sum_j n_ij``
the pixels of class ``i`` and ``n_cl`` the number of classes (Long et al., 2015):

- pixel accuracy        ``sum_i n_ii / sum_i t_i``
- mean accuracy         ``(1 / n_cl) sum_i n_ii / t_i``
- mean IU               ``(1 / n_cl) sum_i n_ii / (t_i + sum_j n_ji - n_ii)``
- frequency-weighted IU ``(sum_k t_k)^-1 sum_i t_i n_ii / (t_i + sum_j n_ji - n_ii)``

Everything is computed from one matrix summed over the whole dataset (not averaged per image).
Pixels whose target is ``ignore_index`` (255, VOC's void border) are not counted. As in the
FCN reference code, classes that never occur in the targets *nor* the predictions (0 / 0) are
left out of the class means; a class that is predicted but absent from the targets has IU 0.

Shape letters: ``N`` images, ``H, W`` image size, ``K = num_classes`` (background included).

DDP: one matrix is kept per image and the per-image matrices are gathered from all ranks once
and deduplicated by image id (padded samplers repeat images).
"""

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from detection.evaluation.gather import deduplicate, distributed_world, gather_objects

VOID_LABEL = 255
BACKGROUND = "background"
PROTOCOL_TEXT = (
    "Semantic segmentation, FCN protocol: one confusion matrix summed over the whole split (not "
    "averaged per image); pixel accuracy, mean class accuracy, mean IU and frequency-weighted IU as "
    "defined by Long et al. (2015); pixels labelled 255 (void) in the ground truth are ignored; "
    "classes absent from both ground truth and predictions are left out of the means."
)


class ConfusionMatrix:
    """The semantic-segmentation evaluator (``reset / update / compute``, like every evaluator).

    Args:
        classes: foreground class names; the matrix has ``K = len(classes) + 1`` rows with
            ``background`` at 0 (the ``iou/<name>`` keys use these names).
        ignore_index: target label that is not counted (VOC's void border, 255).
    """

    def __init__(self, *, classes: Sequence[str], ignore_index: int = VOID_LABEL) -> None:
        if not classes:
            raise ValueError("ConfusionMatrix needs at least one foreground class")
        self.class_names = [BACKGROUND, *classes]
        self.num_classes = len(self.class_names)
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        self._per_image: list[tuple[int, np.ndarray]] = []

    def _count(self, pred: torch.Tensor, target: torch.Tensor) -> np.ndarray:
        """``[H, W]`` labels -> ``[K, K]`` int64 counts, rows = target class, columns = prediction."""
        valid = target != self.ignore_index
        t = target[valid].long()
        p = pred[valid].long()
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.num_classes):
            raise ValueError(f"target labels must be in 0..{self.num_classes - 1} or {self.ignore_index}, got {sorted(set(t.unique().tolist()))}")
        if p.numel() and (int(p.min()) < 0 or int(p.max()) >= self.num_classes):
            raise ValueError(f"predicted labels must be in 0..{self.num_classes - 1}, got {sorted(set(p.unique().tolist()))}")
        counts = torch.bincount(t * self.num_classes + p, minlength=self.num_classes**2)
        return counts.reshape(self.num_classes, self.num_classes).cpu().numpy().astype(np.int64)

    def add(self, image_id: int, pred_labels: torch.Tensor, target: torch.Tensor) -> None:
        """One image: ``pred_labels [H, W]`` (argmax classes) and ``target [H, W]``, any device."""
        pred_labels, target = torch.as_tensor(pred_labels), torch.as_tensor(target)
        if pred_labels.shape != target.shape:
            raise ValueError(f"image {image_id}: prediction shape {tuple(pred_labels.shape)} != target shape {tuple(target.shape)}")
        self._per_image.append((int(image_id), self._count(pred_labels, target)))

    def update(self, preds: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]]) -> None:
        """Per image: ``preds[i]["semantic"] [H, W]`` and ``targets[i]["semantic"] [H, W]`` + ``image_id``."""
        if len(preds) != len(targets):
            raise ValueError(f"{len(preds)} predictions for {len(targets)} targets")
        for pred, target in zip(preds, targets):
            if "semantic" not in pred or "semantic" not in target:
                raise KeyError("ConfusionMatrix needs 'semantic' in both the prediction and the target")
            self.add(int(target["image_id"]), pred["semantic"], target["semantic"])

    def per_image(self) -> list[tuple[int, np.ndarray]]:
        """``(image_id, [K, K] counts)`` of every image, all ranks gathered once, duplicates removed."""
        return deduplicate(gather_objects(self._per_image), key=lambda item: item[0], allow_duplicates=distributed_world())

    def matrix(self) -> np.ndarray:
        """The dataset-level ``[K, K]`` matrix."""
        total = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        for _, counts in self.per_image():
            total += counts
        return total

    def compute(self) -> dict[str, float]:
        return confusion_metrics(self.matrix(), self.class_names)

    def protocol_text(self) -> str:
        return PROTOCOL_TEXT


def confusion_metrics(matrix: np.ndarray, class_names: Sequence[str]) -> dict[str, float]:
    """The FCN paper's four numbers and per-class IoU from a ``[K, K]`` confusion matrix.

    Per-class ``iou/<name>`` is -1 for a class absent from targets and predictions.
    """
    n = np.asarray(matrix, dtype=np.float64)
    diag = np.diag(n)
    t = n.sum(axis=1)  # pixels per target class
    predicted = n.sum(axis=0)
    union = t + predicted - diag
    total = t.sum()
    present = union > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(present, diag / union, np.nan)
        acc = np.where(t > 0, diag / t, np.nan)
    metrics = {
        "pixel_accuracy": float(diag.sum() / total) if total > 0 else 0.0,
        "mean_accuracy": float(np.nanmean(acc)) if np.any(t > 0) else 0.0,
        "mean_iou": float(np.nanmean(iou)) if present.any() else 0.0,
        "fw_iou": float(np.nansum(t * np.nan_to_num(iou)) / total) if total > 0 else 0.0,
    }
    metrics.update({f"iou/{name}": float(v) if not np.isnan(v) else -1.0 for name, v in zip(class_names, iou)})
    return metrics
