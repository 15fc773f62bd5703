"""The one inference path: a model and images -> predictions per image.

Every consumer goes through here: ``DetectionSystem`` validation and test, and batch inference
(``detection.inference.batch_predict``, which ``scripts/predict.py`` runs over folders and
dataset splits, and ``scripts/evaluate.py --checkpoint`` and the demo over dataset splits).

**Only images of one size share a forward pass.** A detector's transform pads the images of a
batch to the largest one, and a convolution near the padding sees it; a batch of mixed sizes
would make each image's predictions depend on its neighbours, i.e. on the eval batch size and,
under DDP, on how the sampler split the data (torchvision's references and detectron2 evaluate
one image per device step for this reason). Images of the same ``(H, W)`` go through every
head's transform to the same size (the transform is a function of the image size alone), so
they batch with no padding beyond what one image alone gets (``size_divisible``): their
predictions equal the one-image ones up to floating-point summation order (within 1e-4; labels
and detections the same, ``tests/test_batched_inference.py``). ``predict_images`` therefore
groups the images by size and runs each group in one pass; a batch of all-different sizes falls
back to one image per pass. Validation, test and ``evaluate.py`` give the same numbers for any
batch size and any number of processes (the evaluators gather per-image records from every rank
and drop padded duplicates by ``image_id``).

Shape letters: ``N`` images, ``K`` detections, ``H, W`` an image's original size.
"""

import torch
from torch import Tensor, nn

Prediction = dict[str, Tensor]
DETECTION_KEYS = ("boxes", "labels", "scores", "masks")  # per-detection tensors, filtered together by score


def model_task(model: nn.Module) -> str:
    """``"semantic"`` for a head that predicts class maps (its ``task`` attribute), else ``"detection"``."""
    return getattr(model, "task", "detection")


def _detached(pred: Prediction, device: torch.device | str | None) -> Prediction:
    return {k: (v.detach() if device is None else v.detach().to(device)) if isinstance(v, Tensor) else v for k, v in pred.items()}


def size_groups(images: list[Tensor]) -> list[list[int]]:
    """Indices of ``images`` grouped by ``(H, W)``, groups in order of first appearance."""
    groups: dict[tuple[int, int], list[int]] = {}
    for index, image in enumerate(images):
        groups.setdefault(tuple(image.shape[-2:]), []).append(index)
    return list(groups.values())


def predict_images(model: nn.Module, images: list[Tensor], *, out_device: torch.device | str | None = None) -> list[Prediction]:
    """``N`` images ``Tensor[3, H_i, W_i]`` (on the model's device) -> ``N`` prediction dicts, in order.

    The model must be in eval mode; each group of same-size images is one forward pass (see the
    module docstring), under ``torch.inference_mode``. ``out_device`` moves the outputs (e.g.
    ``"cpu"``); ``None`` keeps them where the model put them.
    """
    if model.training:
        raise RuntimeError("predict_images needs the model in eval mode (call model.eval())")
    preds: list[Prediction | None] = [None] * len(images)
    with torch.inference_mode():
        for group in size_groups(images):
            for index, pred in zip(group, model([images[i] for i in group]), strict=True):
                preds[index] = _detached(pred, out_device)
    return preds


def keep_scores(pred: Prediction, score_threshold: float) -> Prediction:
    """``pred`` with the detections scoring below ``score_threshold`` dropped (a semantic map is kept whole)."""
    if "scores" not in pred or score_threshold <= 0:
        return pred
    keep = pred["scores"] >= score_threshold  # [K]
    return {k: (v[keep] if k in DETECTION_KEYS else v) for k, v in pred.items()}
