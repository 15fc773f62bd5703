"""Mixed precision, per head: every shapes config fits one step and validates one batch under
Lightning's ``bf16-mixed`` on the CPU (``16-mixed`` on a GPU) with finite losses, and the trained
model predicts under autocast with the contract's dtypes (``configs/README.md``, "Mixed precision")."""

import math

import pytest
import torch
from config_runs import REPO, fit_fast_dev_run

SHAPES_CONFIGS = [
    REPO / "configs" / path
    for path in (
        "localization/shapes.yaml",
        "faster_rcnn/shapes.yaml",
        "fast_rcnn/shapes.yaml",
        "rcnn/shapes.yaml",
        "yolo/shapes.yaml",
        "fast_yolo/shapes.yaml",
        "fcn/shapes.yaml",
        "overfeat/shapes.yaml",
        "overfeat/shapes_detection.yaml",
        "mnc/shapes.yaml",
        "mnc/shapes_maskrcnn.yaml",
    )
]
CONFIG_IDS = [f"{p.parent.name}/{p.stem}" for p in SHAPES_CONFIGS]


def _fit_and_predict(config, precision, accelerator, autocast_dtype, shapes_root, shapes_single_root, tmp_path):
    cli = fit_fast_dev_run(
        config, shapes_root, shapes_single_root, tmp_path,
        "--trainer.precision", precision, "--trainer.accelerator", accelerator,
    )
    metrics = cli.trainer.callback_metrics
    losses = {k: float(v) for k, v in metrics.items() if k.startswith("train/loss")}
    assert "train/loss" in losses and all(math.isfinite(v) for v in losses.values()), losses
    assert any(k.startswith("val/") for k in metrics), sorted(metrics)

    model = cli.model.model.train()
    device = next(model.parameters()).device
    images, targets = next(iter(cli.datamodule.train_dataloader()))
    images = [image.to(device) for image in images]
    targets = [{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in t.items()} for t in targets]
    with torch.autocast(device.type, dtype=autocast_dtype):
        loss_dict = model(images, targets)
    assert all(v.dtype == torch.float32 for v in loss_dict.values()), {k: v.dtype for k, v in loss_dict.items()}

    model.eval()
    image, _ = cli.datamodule.val_dataloader().dataset[0]
    with torch.no_grad(), torch.autocast(device.type, dtype=autocast_dtype):
        (pred,) = model([image.to(device)])
    if getattr(model, "task", "detection") == "semantic":
        assert pred["semantic"].shape == image.shape[-2:] and pred["semantic"].dtype == torch.int64
        return
    assert pred["boxes"].dtype == torch.float32 and pred["scores"].dtype == torch.float32, {k: v.dtype for k, v in pred.items()}
    assert pred["labels"].dtype == torch.int64
    assert torch.isfinite(pred["boxes"]).all() and torch.isfinite(pred["scores"]).all()
    if "masks" in pred:
        assert pred["masks"].shape[-2:] == image.shape[-2:]


@pytest.mark.parametrize("config", SHAPES_CONFIGS, ids=CONFIG_IDS)
def test_bf16_mixed_fit_and_predict_on_cpu(config, shapes_root, shapes_single_root, tmp_path):
    _fit_and_predict(config, "bf16-mixed", "cpu", torch.bfloat16, shapes_root, shapes_single_root, tmp_path)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="16-mixed needs a CUDA device (torch.cuda.is_available() is False)")
@pytest.mark.parametrize("config", SHAPES_CONFIGS, ids=CONFIG_IDS)
def test_16_mixed_fit_and_predict_on_cuda(config, shapes_root, shapes_single_root, tmp_path):
    _fit_and_predict(config, "16-mixed", "gpu", torch.float16, shapes_root, shapes_single_root, tmp_path)
