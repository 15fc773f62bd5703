"""Mixed precision, per head: every shapes config fits one step and validates one batch under
Lightning's ``bf16-mixed`` on the CPU (``16-mixed`` on a GPU) with finite losses, and the trained
model predicts under autocast with the contract's dtypes (``configs/README.md``, "Mixed precision").

CUDA's ``16-mixed`` is float16 autocast plus a ``GradScaler``. ``Trainer(accelerator="cpu",
precision="16-mixed")`` silently becomes ``bf16-mixed`` (Lightning 2.x), but Lightning's
``MixedPrecision("16-mixed", device="cpu")`` plugin, given explicitly, runs that very path on the
CPU: ``torch.autocast("cpu", dtype=torch.float16)`` and ``torch.amp.GradScaler("cpu")`` (loss
scaling, unscaling, the inf/NaN check, the skipped step and the scale's back-off). What it cannot
check is CUDA's own: its autocast op lists and fp16 kernels (cuDNN, tensor cores, torchvision's
CUDA RoI ops), which is what ``test_16_mixed_fit_and_predict_on_cuda`` is for.
"""

import math

import pytest
import torch
from config_runs import REPO, fit_fast_dev_run
from lightning.pytorch.plugins import MixedPrecision

SHAPES_CONFIGS = [
    REPO / "configs" / path
    for path in (
        "localization/shapes.yaml",
        "faster_rcnn/shapes.yaml",
        "fast_rcnn/shapes.yaml",
        "rcnn/shapes.yaml",
        "yolo/shapes.yaml",
        "yolo/shapes_fc.yaml",
        "fast_yolo/shapes.yaml",
        "fcn/shapes.yaml",
        "overfeat/shapes.yaml",
        "overfeat/shapes_detection.yaml",
        "mnc/shapes.yaml",
        "mnc/shapes_maskrcnn.yaml",
    )
]
CONFIG_IDS = [f"{p.parent.name}/{p.stem}" for p in SHAPES_CONFIGS]


# CUDA's 16-mixed on the CPU: Lightning's own plugin, named explicitly (see the module docstring).
FP16_GRAD_SCALER_ON_CPU = (
    '{"class_path": "lightning.pytorch.plugins.MixedPrecision", "init_args": {"precision": "16-mixed", "device": "cpu"}}'
)
MAX_SCALER_BACK_OFFS = 8  # 65536 / 2**8 = 256: a head still overflowing there has a real fp16 problem


def _fit_and_predict(config, precision_args, accelerator, autocast_dtype, shapes_root, shapes_single_root, tmp_path):
    cli = fit_fast_dev_run(
        config, shapes_root, shapes_single_root, tmp_path, *precision_args, "--trainer.accelerator", accelerator,
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
    assert all(torch.isfinite(v) for v in loss_dict.values()), {k: float(v) for k, v in loss_dict.items()}

    model.eval()
    image, _ = cli.datamodule.val_dataloader().dataset[0]
    with torch.no_grad(), torch.autocast(device.type, dtype=autocast_dtype):
        (pred,) = model([image.to(device)])
    if getattr(model, "task", "detection") == "semantic":
        assert pred["semantic"].shape == image.shape[-2:] and pred["semantic"].dtype == torch.int64
        return cli
    assert pred["boxes"].dtype == torch.float32 and pred["scores"].dtype == torch.float32, {k: v.dtype for k, v in pred.items()}
    assert pred["labels"].dtype == torch.int64
    assert torch.isfinite(pred["boxes"]).all() and torch.isfinite(pred["scores"]).all()
    if "masks" in pred:
        assert pred["masks"].shape[-2:] == image.shape[-2:]
    return cli


@pytest.mark.parametrize("config", SHAPES_CONFIGS, ids=CONFIG_IDS)
def test_bf16_mixed_fit_and_predict_on_cpu(config, shapes_root, shapes_single_root, tmp_path):
    _fit_and_predict(config, ["--trainer.precision", "bf16-mixed"], "cpu", torch.bfloat16, shapes_root, shapes_single_root, tmp_path)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="16-mixed needs a CUDA device (torch.cuda.is_available() is False)")
@pytest.mark.parametrize("config", SHAPES_CONFIGS, ids=CONFIG_IDS)
def test_16_mixed_fit_and_predict_on_cuda(config, shapes_root, shapes_single_root, tmp_path):
    _fit_and_predict(config, ["--trainer.precision", "16-mixed"], "gpu", torch.float16, shapes_root, shapes_single_root, tmp_path)


@pytest.mark.parametrize("config", SHAPES_CONFIGS, ids=CONFIG_IDS)
def test_16_mixed_grad_scaler_path_on_cpu(config, shapes_root, shapes_single_root, tmp_path):
    """Lightning's 16-mixed (float16 autocast + GradScaler) fits one step, validates and predicts;
    then, on one batch, the GradScaler takes a step with finite gradients after at most
    ``MAX_SCALER_BACK_OFFS`` halvings of its scale (a step whose float16 gradients overflow is
    skipped and the scale halved, as on a GPU)."""
    cli = _fit_and_predict(
        config, ["--trainer.plugins", FP16_GRAD_SCALER_ON_CPU], "cpu", torch.float16, shapes_root, shapes_single_root, tmp_path
    )
    plugin = cli.trainer.precision_plugin
    assert isinstance(plugin, MixedPrecision) and plugin.precision == "16-mixed" and isinstance(plugin.scaler, torch.amp.GradScaler)

    model = cli.model.model.train()
    images, targets = next(iter(cli.datamodule.train_dataloader()))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu")
    for back_offs in range(MAX_SCALER_BACK_OFFS + 1):
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.float16):
            loss = sum(model(images, targets).values())
        assert loss.dtype == torch.float32 and torch.isfinite(loss), float(loss)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        scale = scaler.get_scale()
        scaler.step(optimizer)
        scaler.update()
        if scaler.get_scale() >= scale:  # the step was taken: no inf / NaN among the unscaled gradients
            assert all(torch.isfinite(g).all() for g in grads)
            assert all(torch.isfinite(p).all() for p in model.parameters())
            break
    else:
        pytest.fail(f"float16 gradients still overflow at scale {scaler.get_scale()} after {MAX_SCALER_BACK_OFFS} back-offs")
