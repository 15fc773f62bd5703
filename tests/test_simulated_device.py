"""Every head on a simulated second device (``simulated_device.py``): what CUDA would catch, on the CPU.

Each head's shapes config is built as ``scripts/train.py`` builds it, on the tiny generated shapes
(``conftest.py``), moved onto the simulated device, and run through a training step (loss,
backward, gradients on the device), validation (``DetectionSystem.validation_step``: the one
inference path and the evaluator's ``update``) and ``predict_images``. A tensor made on the wrong
device raises ``MixedDeviceError`` where it meets a device tensor. The simulated device computes
with the CPU kernels, so the losses, predictions and metrics must also equal the CPU run's, up to
float rounding (``TOLERANCE``: MKL and oneDNN may round the last bits differently with the
buffers' alignment): the wrapping changes no value. Then the whole ``DetectionSystem`` through a Lightning
``fit`` whose strategy's device is the simulated one, and the options the dataset configs use
that no shapes config does. Beside the heads: the backbones, selective search and the proposal
cache (a miss then a hit), R-CNN's SVM and box-regressor fitting, MNC's mask pasting and
``detection.inference.instance_map``, and one regression test per device bug found (named
after it). The first tests check the simulated device itself, so that none of this passes
vacuously.
"""

import copy
import math
from pathlib import Path

import lightning as L
import pytest
import torch
import torchvision
import yaml
from config_runs import REPO
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.strategies import SingleDeviceStrategy
from simulated_device import SIMULATED, MixedDeviceError, is_simulated, simulated_device, to_cpu, to_simulated
from torch import Tensor, nn

from detection.cli import DetectionCLI
from detection.mnc import MNC
from detection.predictor import predict_images
from detection.proposals.cache import ProposalCache
from detection.proposals.selective_search import image_to_uint8
from detection.rcnn import RCNN, RCNNStages
from detection.system import DetectionSystem

TOLERANCE = 1e-4  # relative and absolute: float rounding between two runs of the same kernels
SHAPES_CONFIGS = [
    REPO / "configs" / path
    for path in (
        "localization/shapes.yaml",
        "overfeat/shapes.yaml",
        "overfeat/shapes_detection.yaml",
        "rcnn/shapes.yaml",
        "fast_rcnn/shapes.yaml",
        "faster_rcnn/shapes.yaml",
        "yolo/shapes.yaml",
        "yolo/shapes_fc.yaml",
        "fast_yolo/shapes.yaml",
        "fcn/shapes.yaml",
        "mnc/shapes.yaml",
        "mnc/shapes_maskrcnn.yaml",
    )
]
CONFIG_IDS = [f"{p.parent.name}/{p.stem}" for p in SHAPES_CONFIGS]


# ----------------------------------------------------------------------------- the device itself
def test_an_op_mixing_the_device_with_cpu_tensors_raises_and_names_them():
    with simulated_device():
        x = torch.arange(3.0).to(SIMULATED)
        with pytest.raises(MixedDeviceError, match=r"aten\.add\.Tensor.*simulated float32\[3\], cpu float32\[3\]"):
            x + torch.ones(3)
        with pytest.raises(MixedDeviceError, match=r"aten\.cat"):
            torch.cat([x, torch.ones(3)])
        with pytest.raises(MixedDeviceError, match=r"aten\.mm"):
            x[None] @ torch.ones(3, 1)


def test_indexing_across_the_device_raises_both_ways():
    with simulated_device():
        x = torch.arange(6.0).view(3, 2).to(SIMULATED)
        with pytest.raises(MixedDeviceError, match=r"aten\.index\.Tensor.*cpu int64\[2\]"):
            x[torch.tensor([0, 2])]
        with pytest.raises(MixedDeviceError, match=r"aten\.index\.Tensor"):
            x[torch.tensor([True, False, True])]
        with pytest.raises(MixedDeviceError, match=r"aten\.index\.Tensor"):
            torch.arange(3.0)[torch.tensor([0, 2]).to(SIMULATED)]
        with pytest.raises(MixedDeviceError, match=r"aten\.index_put_"):
            x[torch.tensor([0, 2])] = 1.0


def test_cpu_scalars_mix_as_on_cuda_and_values_are_the_cpu_values():
    torch.manual_seed(0)
    cpu = torch.randn(4, 3)
    with simulated_device():
        x = cpu.to(SIMULATED)
        y = (x * torch.tensor(2.0) + 1).relu()  # a 0-dim CPU tensor is allowed, as CUDA allows it
        assert is_simulated(y) and y.device == SIMULATED
        assert torch.equal(y.cpu(), (cpu * 2 + 1).relu())
        assert y.sum().item() == pytest.approx(float((cpu * 2 + 1).relu().sum()))
        assert x.tolist() == cpu.tolist() and int(x.argmax()) == int(cpu.argmax())
        picked = x[x[:, 0] > 0]  # a device mask on a device tensor
        assert is_simulated(picked) and torch.equal(picked.cpu(), cpu[cpu[:, 0] > 0])
        with pytest.raises(TypeError, match="numpy"):
            x.numpy()  # CUDA refuses it too


def test_moves_both_ways_and_factories_given_the_device_are_tagged():
    with simulated_device():
        x = torch.ones(2, 2).to(SIMULATED)
        for back in (x.cpu(), x.to("cpu"), x.to(torch.zeros(1)), x.to("cpu", torch.float64), torch.zeros_like(x, device="cpu")):
            assert type(back) is Tensor and back.device.type == "cpu"
        made = [
            torch.arange(3, device=x.device), torch.zeros(2, device=x.device), torch.full((2,), 7, device=x.device),
            torch.tensor([1.0, 2.0], device=x.device), torch.as_tensor([3, 4], device=x.device), x.new_zeros(3),
            x.new_tensor([5.0]), torch.full_like(x, 2.0), torch.randperm(4, device=x.device), torch.ones(1).to(x),
            x.to(torch.float16),
        ]
        with torch.device(SIMULATED):  # the default device: factories and torch.tensor follow it
            made += [torch.zeros(2), torch.tensor([6.0]), nn.BatchNorm1d(2).num_batches_tracked]
        assert all(is_simulated(t) for t in made), [type(t).__name__ for t in made]
        assert made[3].tolist() == [1.0, 2.0] and made[4].tolist() == [3, 4] and made[6].tolist() == [5.0] and made[-2].tolist() == [6.0]
        assert type(torch.arange(3)) is Tensor  # no device=: a plain CPU tensor, which the checks then catch
        with torch.inference_mode():  # predict_images' mode: views and moves still work
            assert is_simulated(x[0].detach().to(torch.float64)) and is_simulated(torch.tensor(1).to(x))


def test_modules_and_torchvision_ops_run_on_the_device_with_gradients_there():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    image = torch.rand(1, 3, 16, 16)
    boxes = torch.tensor([[0.0, 0.0, 8.0, 8.0], [1.0, 1.0, 9.0, 8.0], [4.0, 4.0, 15.0, 15.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    expected = torchvision.ops.roi_align(net(image), [boxes], 2, spatial_scale=1.0, sampling_ratio=2)
    with simulated_device():
        to_simulated(net)
        assert all(is_simulated(t) for t in [*net.parameters(), *net.buffers()])
        image_s, boxes_s, scores_s = to_simulated((image, boxes, scores))
        pooled = torchvision.ops.roi_align(net(image_s), [boxes_s], 2, spatial_scale=1.0, sampling_ratio=2)
        assert is_simulated(pooled) and torch.allclose(pooled.cpu(), expected)
        pooled.sum().backward()
        assert all(is_simulated(p.grad) for p in net.parameters())
        assert is_simulated(torchvision.ops.roi_pool(image_s, [boxes_s], 2))
        assert torchvision.ops.nms(boxes_s, scores_s, 0.5).tolist() == torchvision.ops.nms(boxes, scores, 0.5).tolist()
        labels = torch.tensor([0, 1, 1], device=SIMULATED)
        assert is_simulated(torchvision.ops.batched_nms(boxes_s, scores_s, labels, 0.5))
        assert is_simulated(torchvision.ops.box_iou(boxes_s, boxes_s))
        with pytest.raises(MixedDeviceError, match=r"torchvision\.nms"):
            torchvision.ops.nms(boxes_s, scores, 0.5)


def test_the_pre_fix_rcnn_owners_pattern_is_caught():
    """Not vacuous: the code of the R-CNN bug fixed below, run here, raises."""
    with simulated_device():
        boxes = [torch.zeros(3, 4, device=SIMULATED), torch.zeros(2, 4, device=SIMULATED)]
        chosen = torch.tensor([0, 4], device=SIMULATED)
        owners = torch.cat([torch.full((len(b),), i, dtype=torch.int64) for i, b in enumerate(boxes)])
        with pytest.raises(MixedDeviceError, match=r"aten\.index\.Tensor.*cpu int64\[5\]"):
            owners[chosen]


# ----------------------------------------------------------------------------- every head
def build(config: Path, shapes_root, shapes_single_root, tmp_path: Path, **overrides: str) -> tuple[DetectionSystem, L.LightningDataModule]:
    """The system and data module of ``scripts/train.py fit --config config`` (batches of 2 images);
    ``overrides`` are the model's init args (``--model.model.init_args.<name> <value>``)."""
    data = yaml.safe_load(config.read_text())["data"]["init_args"]
    root = shapes_single_root if data.get("shapes_single_object") else shapes_root
    args = [
        "--config", str(config), "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path),
        "--data.init_args.root", str(root.root), "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "2",
        *(arg for name, value in overrides.items() for arg in (f"--model.model.init_args.{name}", value)),
    ]
    if "cache_dir:" in config.read_text():
        args += ["--model.model.init_args.cache_dir", str(tmp_path / "proposals")]
    cli = DetectionCLI(DetectionSystem, L.LightningDataModule, subclass_mode_data=True, run=False, args=args)
    cli.datamodule.setup("fit")
    cli.model.classes = list(cli.datamodule.classes)
    cli.model.setup("validate")  # the evaluator, for the data's classes
    return cli.model, cli.datamodule


def _validate(system: DetectionSystem, batch) -> dict[str, float]:
    system.on_validation_epoch_start()
    system.validation_step(batch, 0)
    return system.evaluator.compute()


def _close(device_value: Tensor, cpu_value: Tensor) -> bool:
    """The same values up to float rounding: the same kernels run on both, but MKL / oneDNN results
    can differ in the last bits with the buffers' memory alignment (seen in the full suite)."""
    if not cpu_value.is_floating_point():
        return torch.equal(device_value, cpu_value)
    return device_value.shape == cpu_value.shape and torch.allclose(device_value, cpu_value, rtol=TOLERANCE, atol=TOLERANCE)


DETECTION_KEYS = ("boxes", "labels", "scores", "masks")
MASK_TOLERANCE = 1e-3  # mean absolute difference of one detection's mask


def _matching(simulated: dict[str, Tensor], cpu: dict[str, Tensor]) -> list[int]:
    """For each CPU detection, the index of the simulated detection equal to it up to rounding.

    Detections come sorted by score, and an untrained head scores many nearly alike: rounding in
    the last bits may swap two of them, so each is matched rather than compared by position."""
    free = list(range(len(simulated["scores"])))
    matched = []
    for i in range(len(cpu["scores"])):
        j = next((j for j in free if all(_close(simulated[k][j], cpu[k][i]) for k in ("boxes", "labels", "scores"))), None)
        assert j is not None, f"CPU detection {i} (score {float(cpu['scores'][i]):.6f}) has no match on the device"
        if "masks" in cpu:  # pasted masks: a pixel next to the threshold may flip; the mask as a whole may not move
            assert float((simulated["masks"][j].float() - cpu["masks"][i].float()).abs().mean()) < MASK_TOLERANCE, i
        free.remove(j)
        matched.append(j)
    return matched


def _same_predictions(simulated: list[dict], cpu: list[dict], *, values: bool = True) -> None:
    """The predictions on the device, with the CPU's dtypes, and (``values``) the CPU's shapes and values."""
    assert len(simulated) == len(cpu)
    for sim_pred, cpu_pred in zip(simulated, cpu):
        assert sim_pred.keys() == cpu_pred.keys()
        for key, value in sim_pred.items():
            assert is_simulated(value), f"{key} is on {value.device}, not the model's device"
            assert value.dtype == cpu_pred[key].dtype and value.shape[1:] == cpu_pred[key].shape[1:], key
        if not values:
            continue
        assert all(value.shape == cpu_pred[key].shape for key, value in sim_pred.items())
        on_cpu = {key: value.cpu() for key, value in sim_pred.items()}
        if "scores" in cpu_pred:
            _matching(on_cpu, cpu_pred)
        for key in sim_pred.keys() - set(DETECTION_KEYS):
            assert _close(on_cpu[key], cpu_pred[key]), key


@pytest.mark.parametrize("config", SHAPES_CONFIGS, ids=CONFIG_IDS)
def test_train_validate_predict_on_the_simulated_device(config, shapes_root, shapes_single_root, tmp_path):
    _train_validate_predict(*build(config, shapes_root, shapes_single_root, tmp_path))


# Options that the VOC / COCO / BCCD configs use and no shapes config does, on a shapes config.
VARIANTS = {
    "faster_rcnn/fpn_roi_align": (
        "faster_rcnn/shapes.yaml",
        {"feature": "[c3, c4]", "fpn_channels": "32", "roi_pool": "align", "anchor_sizes": "[16, 32, 64, 128]"},
    ),
    "overfeat/frozen_class_specific": (
        "overfeat/shapes_detection.yaml",
        {
            "regression": "frozen", "class_agnostic": "false", "train_scales": "[128, 192]", "test_scales": "[128, 192]",
            "pre_merge_top_n": "20",
        },
    ),
    "mnc/3_stages_no_voting": ("mnc/shapes.yaml", {"inference_stages": "3", "mask_voting": "false"}),
    "mnc/stage5_min_score": ("mnc/shapes.yaml", {"stage5_min_score": "0.2", "mask_voting": "false"}),
    "localization/l2_class_agnostic_2_objects": (
        "localization/shapes.yaml", {"box_loss": "l2", "class_agnostic": "true", "num_objects": "2"},
    ),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_config_variants_on_the_simulated_device(variant, shapes_root, shapes_single_root, tmp_path):
    config, overrides = VARIANTS[variant]
    _train_validate_predict(*build(REPO / "configs" / config, shapes_root, shapes_single_root, tmp_path, **overrides))


def _train_validate_predict(system: DetectionSystem, data: L.LightningDataModule) -> None:
    """One training step (and two on images without objects), validation and prediction on the
    simulated device, with the CPU's losses and predictions, and the metrics of its predictions."""
    model = system.model
    images, targets = next(iter(data.train_dataloader()))
    val_images, val_targets = next(iter(data.val_dataloader()))

    # The CPU run first, training a copy (a train-mode forward moves BatchNorm's running stats).
    cpu_preds = predict_images(model.eval(), val_images)
    cpu_metrics = _validate(system, (val_images, val_targets))
    torch.manual_seed(1)
    cpu_losses = {k: v.detach() for k, v in copy.deepcopy(model).train()(images, targets).items()}

    with simulated_device():
        to_simulated(system)
        assert all(is_simulated(t) for t in [*system.parameters(), *system.buffers()])
        images_s, targets_s, val_images_s, val_targets_s = to_simulated((images, targets, val_images, val_targets))

        model.eval()
        device_preds = predict_images(model, val_images_s)
        # MNC's mask voting and stage-5 gate are discontinuous: a last-bit difference (see _close)
        # can move a detection of an untrained model, so only devices and dtypes are compared.
        _same_predictions(device_preds, cpu_preds, values=not isinstance(model, MNC))
        # Validation on the device (targets there, as Lightning puts them) scores exactly its own
        # predictions: the CPU's metrics would move with the order of nearly tied scores.
        system.on_validation_epoch_start()
        system.evaluator.update(to_cpu(device_preds), val_targets)
        expected = system.evaluator.compute()
        assert _validate(system, (val_images_s, val_targets_s)) == expected and expected.keys() == cpu_metrics.keys()

        model.train()
        torch.manual_seed(1)
        losses = model(images_s, targets_s)
        assert losses.keys() == cpu_losses.keys()
        for name, value in losses.items():
            assert is_simulated(value) and value.dtype == torch.float32, name
            assert _close(value.detach().cpu(), cpu_losses[name]), (name, float(value), float(cpu_losses[name]))
        sum(losses.values()).backward()
        grads = {name: p.grad for name, p in model.named_parameters() if p.requires_grad}
        assert any(g is not None for g in grads.values())
        elsewhere = [name for name, g in grads.items() if g is not None and not is_simulated(g)]
        assert not elsewhere, elsewhere

        # Images without objects take other paths (empty matches, no positives): one, then both.
        for empty in ([targets_s[0], _without_objects(targets_s[1])], [_without_objects(t) for t in targets_s]):
            model.zero_grad()
            losses = model(images_s, empty)
            assert all(is_simulated(v) and torch.isfinite(v.detach().cpu()) for v in losses.values()), losses
            sum(losses.values()).backward()
            assert all(is_simulated(p.grad) for p in model.parameters() if p.grad is not None)


def _without_objects(target: dict) -> dict:
    """``target`` with no object: its per-object fields cut to zero rows (a semantic map stays)."""
    return {k: v[:0] if k in ("boxes", "labels", "difficult", "iscrowd", "masks") else v for k, v in target.items()}


class SimulatedAccelerator(CPUAccelerator):
    """Lightning's CPU accelerator, minus its check that the strategy's device is the CPU."""

    def setup_device(self, device: torch.device) -> None:
        pass


class OnTheDevice(L.Callback):
    """Asserts that the batches, parameters, gradients and optimizer state are on the simulated device."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        assert all(is_simulated(image) for image in batch[0])
        self.seen.append("train batch")

    def on_before_optimizer_step(self, trainer, module, optimizer) -> None:
        assert all(is_simulated(p) for p in module.parameters())
        assert all(is_simulated(p.grad) for p in module.parameters() if p.grad is not None)
        self.seen.append("optimizer step")

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        state = [v for s in trainer.optimizers[0].state.values() for v in s.values() if isinstance(v, Tensor)]
        assert all(is_simulated(v) for v in state if v.dim() > 0)  # AdamW's step counts are CPU scalars, as on CUDA
        self.seen.append("optimizer state")

    def on_validation_batch_start(self, trainer, module, batch, batch_idx, dataloader_idx=0) -> None:
        assert all(is_simulated(image) for image in batch[0])
        self.seen.append("validation batch")


@pytest.mark.parametrize("config", SHAPES_CONFIGS, ids=CONFIG_IDS)
def test_lightning_fit_on_the_simulated_device(config, shapes_root, shapes_single_root, tmp_path):
    """The whole ``DetectionSystem`` (training_step, logging, the optimizer and its schedule,
    validation and its metrics) under a Lightning strategy whose device is the simulated one:
    one step and one validation batch (``fast_dev_run``), the logged losses equal to the CPU's."""
    system, _ = build(config, shapes_root, shapes_single_root, tmp_path)
    metrics, summaries = {}, {}
    for device in ("cpu", "simulated"):
        _, data = build(config, shapes_root, shapes_single_root, tmp_path)  # a fresh one: its sampler's state moves on
        on_device = OnTheDevice()
        # R-CNN's stages 2 and 3 (SVMs, box regressors) run in on_train_end, on the strategy's device.
        stages = [RCNNStages(batch_size=2, stats_images=2, stats_boxes=16)] if isinstance(system.model, RCNN) else []
        trainer_args = {"fast_dev_run": 1, "logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
                        "enable_model_summary": False, "default_root_dir": tmp_path / device, "callbacks": stages}
        L.seed_everything(0, verbose=False)  # the same shuffle and augmentation (albumentations draws from numpy / random)
        if device == "cpu":
            trainer = L.Trainer(accelerator="cpu", **trainer_args)
            trainer.fit(copy.deepcopy(system), data)
        else:
            trainer_args["callbacks"] = [*stages, on_device]
            trainer = L.Trainer(strategy=SingleDeviceStrategy(device=SIMULATED, accelerator=SimulatedAccelerator()), **trainer_args)
            with simulated_device():
                trainer.fit(system, data)
            assert on_device.seen == ["train batch", "optimizer step", "optimizer state", "validation batch"]
        metrics[device] = {k: float(v) for k, v in trainer.callback_metrics.items()}
        summaries[device] = stages[0].summary if stages else {}
    assert any(k.startswith("val/") for k in metrics["cpu"]) and metrics["simulated"].keys() == metrics["cpu"].keys()
    losses = [k for k in metrics["cpu"] if "loss" in k]
    assert losses and {k: metrics["simulated"][k] for k in losses} == pytest.approx({k: metrics["cpu"][k] for k in losses}, rel=1e-3)
    assert all(math.isfinite(v) for v in metrics["simulated"].values())  # scores of nearly tied detections may swap: see _matching
    assert summaries["simulated"].keys() == summaries["cpu"].keys()
    assert summaries["simulated"] == pytest.approx(summaries["cpu"], rel=1e-3)
    if stages:
        assert summaries["cpu"] and bool(system.model.svm_fitted) and bool(system.model.regressor_fitted)


@pytest.mark.parametrize("config", SHAPES_CONFIGS, ids=CONFIG_IDS)
def test_models_built_directly_on_the_device(config, shapes_root, shapes_single_root, tmp_path):
    """Built under ``with torch.device(...)`` (as Lightning's ``trainer.init_module()`` builds a model
    on the GPU), every parameter and buffer is made on the device (constants computed in a
    constructor, such as OverFeat's ``WINDOW_EDGES`` initial bias, included) and the model trains
    and predicts there."""
    with simulated_device(), torch.device(SIMULATED):
        system, data = build(config, shapes_root, shapes_single_root, tmp_path)
    assert all(is_simulated(t) for t in [*system.parameters(), *system.buffers()])
    images, targets = next(iter(data.train_dataloader()))
    with simulated_device():
        losses = system.model.train()(*to_simulated((images, targets)))
        sum(losses.values()).backward()
        (pred,) = predict_images(system.model.eval(), to_simulated(images[:1]))
    assert all(is_simulated(v) for v in [*losses.values(), *pred.values()])


# ----------------------------------------------------------------------------- proposals, R-CNN stages, masks
def test_selective_search_and_the_proposal_cache_on_the_device(shapes_root, tmp_path):
    system, data = build(REPO / "configs" / "fast_rcnn" / "shapes.yaml", shapes_root, None, tmp_path)
    model = system.model.eval()
    images, _ = next(iter(data.val_dataloader()))
    with simulated_device():
        to_simulated(model)
        images_s = to_simulated(images)
        computed = model.propose(images_s)  # a miss: selective search, then written to the cache
        assert len(list((tmp_path / "proposals").rglob("*.pt"))) == len(images)
        cached = model.propose(images_s)  # a hit: read back from disk
        flipped = model.propose([image.flip(-1) for image in images_s])  # the mirror's entry is shared
    for first, again in zip(computed, cached):
        assert is_simulated(first) and is_simulated(again) and torch.equal(first.cpu(), again.cpu())
    for image, boxes in zip(images, flipped):
        assert is_simulated(boxes) and len(boxes) > 0 and float(boxes[:, 2].max()) <= image.shape[-1]

    # A precomputed bundle (scripts/make_proposals.py --bundle), read from the CPU file onto the device.
    bundle = tmp_path / "bundle.pt"
    torch.save(dict(model.proposals.entry(image_to_uint8(image)) for image in images), bundle)
    model.proposals = ProposalCache(None, precomputed=bundle)
    with simulated_device():
        bundled = model.propose(to_simulated(images))
    for first, again in zip(computed, bundled):
        assert is_simulated(again) and torch.equal(first.cpu(), again.cpu())


def test_rcnn_svm_and_regressor_fitting_on_the_device(shapes_root, tmp_path):
    from detection.rcnn.fit_stages import StageSettings, fit_svms_and_regressors, store_in_model

    system, data = build(REPO / "configs" / "rcnn" / "shapes.yaml", shapes_root, None, tmp_path)
    model = system.model
    samples = [data.val_dataloader().dataset[i] for i in range(2)]
    settings = StageSettings(stats_images=2, stats_boxes=16, batch_size=2)
    cpu_result = fit_svms_and_regressors(model, samples, settings)
    with simulated_device():
        to_simulated(model)
        result = fit_svms_and_regressors(model, to_simulated(samples), settings)
        store_in_model(model, result)
        assert all(is_simulated(b) for b in model.buffers()) and bool(model.svm_fitted)
        preds = predict_images(model.eval(), to_simulated([image for image, _ in samples]))
    for name in ("svm_weight", "svm_bias", "bbox_weight", "bbox_bias"):
        assert torch.allclose(getattr(result, name).cpu(), getattr(cpu_result, name), atol=1e-5), name
    assert all(is_simulated(v) for pred in preds for v in pred.values())


def test_mnc_pasted_masks_and_the_instance_map_on_the_device(shapes_root, tmp_path):
    from detection.inference import instance_map

    system, data = build(REPO / "configs" / "mnc" / "shapes.yaml", shapes_root, None, tmp_path, mask_voting="false")  # voting: above
    model = system.model.eval()
    images, _ = next(iter(data.val_dataloader()))
    cpu_preds = predict_images(model, images)
    cpu_maps = [instance_map(p["masks"], p["scores"]) for p in cpu_preds]
    with simulated_device():
        to_simulated(model)
        preds = predict_images(model, to_simulated(images))
        maps = [instance_map(p["masks"], p["scores"]) for p in preds]
    for image, pred, cpu_map, device_map in zip(images, preds, cpu_maps, maps):
        assert is_simulated(pred["masks"]) and pred["masks"].shape[-2:] == image.shape[-2:]
        assert is_simulated(device_map) and torch.equal(device_map.cpu(), cpu_map)
    assert any(int(m.max()) > 0 for m in cpu_maps)  # some instance was painted: the comparison is not empty


# ----------------------------------------------------------------------------- regression tests, one per bug
def test_rcnn_sampled_region_indices_on_the_labels_device():
    """``detection/rcnn/sampler.py``: ``sample_regions`` returned CPU indices for device labels,
    which ``RCNN._fine_tuning_loss`` then used to index device tensors."""
    from detection.rcnn.sampler import sample_regions

    labels = torch.tensor([0, 1, 0, 2, 0, 0])
    expected = sample_regions(labels, batch_size=4, generator=torch.Generator().manual_seed(0))
    with simulated_device():
        chosen = sample_regions(labels.to(SIMULATED), batch_size=4, generator=torch.Generator().manual_seed(0))
    assert is_simulated(chosen) and torch.equal(chosen.cpu(), expected)  # the same draw on every device


def test_rcnn_fine_tuning_owners_on_the_device(shapes_root, tmp_path):
    """``detection/rcnn/model.py``: the region ``owners`` were built with ``torch.full`` on the CPU
    and indexed by the device's ``chosen`` regions."""
    system, data = build(REPO / "configs" / "rcnn" / "shapes.yaml", shapes_root, None, tmp_path)
    images, targets = next(iter(data.train_dataloader()))
    with simulated_device():
        model = to_simulated(system.model).train()
        losses = model(*to_simulated((images, targets)))
    assert is_simulated(losses["loss_classifier"]) and torch.isfinite(losses["loss_classifier"].cpu())


def test_mnc_stage5_regressed_boxes_index_on_the_device(shapes_root, tmp_path):
    """``detection/mnc/model.py``: ``per_class[torch.arange(len(best)), best]`` indexed the device's
    deltas with a CPU ``arange`` (stage 5's regressed boxes, ``MNC._regressed_boxes``)."""
    system, _ = build(REPO / "configs" / "mnc" / "shapes.yaml", shapes_root, None, tmp_path)
    model = system.model.eval()
    classes = model.num_classes + 1
    boxes = [torch.tensor([[10.0, 10.0, 50.0, 60.0], [0.0, 5.0, 30.0, 30.0]]), torch.tensor([[20.0, 20.0, 90.0, 80.0]])]
    class_logits, box_deltas = torch.randn(3, classes), 0.1 * torch.randn(3, 4 * classes)
    sizes = [(96, 96), (96, 96)]
    expected = model._regressed_boxes(boxes, class_logits, box_deltas, sizes)
    with simulated_device():
        regressed = to_simulated(model)._regressed_boxes(*to_simulated((boxes, class_logits, box_deltas)), sizes)
    for device_boxes, cpu_boxes in zip(regressed, expected, strict=True):
        assert is_simulated(device_boxes) and _close(device_boxes.cpu(), cpu_boxes)


def test_instance_map_is_painted_on_the_masks_device():
    """``detection/inference.py``'s ``instance_map`` built its map on the CPU and copied each
    instance's mask there (one device-to-host copy per instance)."""
    from detection.inference import instance_map

    masks = torch.zeros(3, 4, 5)
    masks[0, :2, :2], masks[1, 1:3, 1:3], masks[2, 3:, 4:] = 1, 1, 1
    scores = torch.tensor([0.3, 0.9, 0.5])
    expected = instance_map(masks, scores)
    with simulated_device():
        painted = instance_map(*to_simulated((masks, scores)))
    assert is_simulated(painted) and painted.dtype == torch.uint8 and torch.equal(painted.cpu(), expected)
    assert to_cpu(painted)[1, 1] == 1 and to_cpu(painted)[0, 0] == 3  # the higher score on top


# ----------------------------------------------------------------------------- the backbones the configs do not use
@pytest.mark.parametrize(
    "name", ["ValidCNN", "ResNet18_frozen_bn", "MobileNetV3_small", "EfficientNetLite0", "VGG16_frozen"]
)
def test_backbones_on_the_device(name):
    from detection.backbones import VGG16, EfficientNetLite0, MobileNetV3, ResNet, ValidCNN

    build = {
        "ValidCNN": lambda: ValidCNN(width=8),
        "ResNet18_frozen_bn": lambda: ResNet(depth=18, frozen_bn=True),
        "MobileNetV3_small": lambda: MobileNetV3(size="small"),
        "EfficientNetLite0": lambda: EfficientNetLite0(),
        "VGG16_frozen": lambda: VGG16(frozen_stages=4),  # the paper heads' backbone; frozen: a cheaper backward
    }[name]
    backbone = build().eval()
    size = backbone.input_size("c5", 2) if name == "ValidCNN" else 64  # unpadded convolutions trim the image
    image = torch.rand(1, 3, size, size)
    with torch.no_grad():
        expected = backbone(image)
    with simulated_device():
        to_simulated(backbone)
        with torch.no_grad():
            taps = backbone(to_simulated(image))
        assert taps.keys() == expected.keys()
        for tap, value in taps.items():
            assert is_simulated(value) and _close(value.cpu(), expected[tap]), tap
        sum(value.float().mean() for value in backbone.train()(to_simulated(image)).values()).backward()
    grads = [p.grad for p in backbone.parameters() if p.requires_grad]
    assert grads and all(g is not None and is_simulated(g) for g in grads)
