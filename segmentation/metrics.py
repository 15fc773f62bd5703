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

DDP: give ``image_ids`` to ``update`` and the per-image matrices are gathered from all ranks
once and deduplicated by image id (padded samplers repeat images); without ids the per-rank
totals are summed, which cannot remove padded duplicates.
"""

from collections.abc import Sequence

import numpy as np
import torch

from detection.evaluation.gather import deduplicate, distributed_world, gather_objects

VOID_LABEL = 255


class ConfusionMatrix:
    """Args: ``num_classes`` (background included, e.g. 21 for VOC), ``ignore_index``,
    ``class_names`` (``K`` names for the ``iou/<name>`` keys; default ``"0".."K-1"``)."""

    def __init__(self, num_classes: int, ignore_index: int = VOID_LABEL, class_names: Sequence[str] | None = None) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for num_classes={num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
        self.reset()

    def reset(self) -> None:
        self._total = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self._per_image: list[tuple[int, np.ndarray]] = []

    def _count(self, pred: torch.Tensor, target: torch.Tensor) -> np.ndarray:
        """``[...]`` labels -> ``[K, K]`` int64 counts, rows = target class, columns = prediction."""
        valid = target != self.ignore_index
        t = target[valid].long()
        p = pred[valid].long()
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.num_classes):
            raise ValueError(f"target labels must be in 0..{self.num_classes - 1} or {self.ignore_index}, got {sorted(set(t.unique().tolist()))}")
        if p.numel() and (int(p.min()) < 0 or int(p.max()) >= self.num_classes):
            raise ValueError(f"predicted labels must be in 0..{self.num_classes - 1}, got {sorted(set(p.unique().tolist()))}")
        counts = torch.bincount(t * self.num_classes + p, minlength=self.num_classes**2)
        return counts.reshape(self.num_classes, self.num_classes).cpu().numpy().astype(np.int64)

    def update(self, pred_labels: torch.Tensor, target: torch.Tensor, image_ids: Sequence[int] | None = None) -> None:
        """``pred_labels [N, H, W]`` (argmax of the logits) and ``target [N, H, W]``, any device.

        ``image_ids`` (``N`` ints) keep one matrix per image so that DDP can drop duplicates.
        """
        pred_labels = torch.as_tensor(pred_labels)
        target = torch.as_tensor(target)
        if pred_labels.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(pred_labels.shape)} != target shape {tuple(target.shape)}")
        if image_ids is None:
            self._total += self._count(pred_labels, target)
            return
        if len(image_ids) != len(target):
            raise ValueError(f"{len(image_ids)} image ids for {len(target)} images")
        for image_id, p, t in zip(image_ids, pred_labels, target):
            self._per_image.append((int(image_id), self._count(p, t)))

    def matrix(self) -> np.ndarray:
        """The dataset-level ``[K, K]`` matrix (all ranks, gathered once, duplicates removed)."""
        distributed = distributed_world()
        per_rank = gather_objects([(self._total, self._per_image)])
        per_image = [item for _, rank_images in per_rank for item in rank_images]
        total = np.sum([rank_total for rank_total, _ in per_rank], axis=0)
        for _, counts in deduplicate(per_image, key=lambda item: item[0], allow_duplicates=distributed):
            total = total + counts
        return total

    def compute(self) -> dict[str, float]:
        return confusion_metrics(self.matrix(), self.class_names)


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
