"""The one inference path: a model and images -> predictions per image.

Every consumer goes through here: ``DetectionSystem`` validation and test, and batch inference
(``detection.inference.batch_predict``, which ``scripts/predict.py`` runs over folders and
dataset splits, and ``scripts/evaluate.py --checkpoint`` and the demo over dataset splits).

**Each image is its own forward pass.** A detector's transform pads the images of a batch to
the largest one, and a convolution near the padding sees it; batched predictions therefore
depend on which images share a batch, i.e. on the eval batch size and, under DDP, on how the
sampler split the data. torchvision's references and detectron2 evaluate one image per device
step for exactly this reason. Here the loader may still batch (its workers decode in parallel),
but the model sees one image at a time, so validation, test and ``evaluate.py`` give the same
numbers for any batch size and any number of processes (the evaluators gather per-image records
from every rank and drop padded duplicates by ``image_id``).

Shape letters: ``N`` images, ``K`` detections, ``H, W`` an image's original size.
"""

import torch
from torch import Tensor, nn

Prediction = dict[str, Tensor]


def _detached(pred: Prediction, device: torch.device | str | None) -> Prediction:
    return {k: (v.detach() if device is None else v.detach().to(device)) if isinstance(v, Tensor) else v for k, v in pred.items()}


def predict_images(model: nn.Module, images: list[Tensor], *, out_device: torch.device | str | None = None) -> list[Prediction]:
    """``N`` images ``Tensor[3, H_i, W_i]`` (on the model's device) -> ``N`` prediction dicts.

    The model must be in eval mode; it is run once per image (see the module docstring), under
    ``torch.inference_mode``. ``out_device`` moves the outputs (e.g. ``"cpu"``); ``None`` keeps
    them where the model put them.
    """
    if model.training:
        raise RuntimeError("predict_images needs the model in eval mode (call model.eval())")
    preds: list[Prediction] = []
    with torch.inference_mode():
        for image in images:
            (pred,) = model([image])
            preds.append(_detached(pred, out_device))
    return preds
