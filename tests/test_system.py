"""DetectionSystem: one train + eval step through Lightning, logging, non-finite guard, schedule."""

import functools
import math
import time
from datetime import timedelta

import lightning as L
import pytest
import torch
from system_toys import TOY_CLASSES, ToyDataModule, ToyEvaluator
from torch import Tensor, nn

from detection.optim import NonFiniteLossError, WarmupSchedule, layer_grad_norms, parameter_groups
from detection.system import DetectionSystem
from detection.tiny import TinyDetector


def _trainer(**kwargs) -> L.Trainer:
    defaults = dict(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    return L.Trainer(**{**defaults, **kwargs})


def _system(model: nn.Module | None = None, **kwargs) -> DetectionSystem:
    return DetectionSystem(
        model=model if model is not None else TinyDetector(num_classes=2),
        evaluator=functools.partial(ToyEvaluator),
        monitor="cls_loc_accuracy",
        **kwargs,
    )


def test_fast_dev_run_train_and_eval_step() -> None:
    system = _system(lr=0.01)
    trainer = _trainer(fast_dev_run=1)
    before = [p.detach().clone() for p in system.model.parameters()]
    trainer.fit(system, ToyDataModule())
    metrics = trainer.callback_metrics
    for key in ("train/loss", "train/loss_classifier", "train/loss_box", "val/cls_loc_accuracy", "val/mean_iou"):
        assert key in metrics, f"{key} not logged: {sorted(metrics)}"
        assert math.isfinite(float(metrics[key]))
    assert float(metrics["train/loss"]) == pytest.approx(
        float(metrics["train/loss_classifier"]) + float(metrics["train/loss_box"]), rel=1e-5
    )
    after = list(system.model.parameters())
    assert any(not torch.equal(b, a) for b, a in zip(before, after)), "one train step changed no weight"
    assert system.classes == ["red", "green"]


class _BatchSizeLoss(nn.Module):
    """Loss = number of images in the batch, so an epoch mean weighted by batch size is checkable."""

    num_classes = 2

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))

    def forward(self, images: list[Tensor], targets: list[dict] | None = None):
        if self.training:
            return {"loss_count": self.weight * 0.0 + float(len(images))}
        return [
            {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0)}
            for _ in images
        ]


def test_epoch_mean_is_weighted_by_the_true_batch_size() -> None:
    # 5 images in batches of 2, 2, 1: weighted mean (2*2 + 2*2 + 1*1) / 5 = 1.8; a wrong
    # (constant) batch size guess would give the plain mean 5/3.
    system = _system(model=_BatchSizeLoss(), lr=0.0, scheduler="none")
    trainer = _trainer(max_epochs=1, limit_val_batches=0)
    trainer.fit(system, ToyDataModule(train_count=5, batch_size=2, shuffle=False))
    assert float(trainer.callback_metrics["train/loss_count_epoch"]) == pytest.approx(1.8)


class _NaNAtStep(nn.Module):
    num_classes = 2

    def __init__(self, bad_step: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(()))
        self.bad_step = bad_step
        self.calls = 0

    def forward(self, images: list[Tensor], targets: list[dict] | None = None):
        self.calls += 1
        box = self.weight * (float("nan") if self.calls > self.bad_step else 1.0)
        return {"loss_cls": self.weight * 0.5, "loss_box": box}


def test_non_finite_loss_stops_with_the_step_and_terms() -> None:
    system = _system(model=_NaNAtStep(bad_step=2), lr=0.0, scheduler="none")
    trainer = _trainer(max_epochs=1, limit_val_batches=0)
    with pytest.raises(NonFiniteLossError, match=r"global step 2 .*loss_cls=0\.5, loss_box=nan"):
        trainer.fit(system, ToyDataModule(train_count=8, batch_size=2, shuffle=False))
    assert trainer.global_step == 2


def test_num_classes_mismatch_is_reported() -> None:
    system = _system(model=TinyDetector(num_classes=3))
    with pytest.raises(ValueError, match="num_classes=3 but the data has 2"):
        _trainer(fast_dev_run=1).fit(system, ToyDataModule())


def test_missing_monitor_key_is_reported() -> None:
    system = DetectionSystem(
        model=TinyDetector(num_classes=2), evaluator=functools.partial(ToyEvaluator), monitor="map_50"
    )
    with pytest.raises(KeyError, match="map_50"):
        _trainer(fast_dev_run=1).fit(system, ToyDataModule())


def test_hyperparameters_are_plain_and_the_checkpoint_loads_weights_only(tmp_path) -> None:
    system = _system(lr=0.02, optimizer="adamw")
    assert "model" not in system.hparams and "evaluator" not in system.hparams
    trainer = _trainer(max_epochs=1, enable_checkpointing=True, default_root_dir=tmp_path)
    trainer.fit(system, ToyDataModule())
    path = tmp_path / "plain.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True, map_location="cpu")
    assert ckpt["hyper_parameters"]["lr"] == 0.02
    assert ckpt["detseg_classes"] == ["red", "green"]
    assert isinstance(trainer.optimizers[0], torch.optim.AdamW)


def test_warmup_then_cosine_and_step_schedules() -> None:
    cosine = WarmupSchedule(kind="cosine", warmup_steps=10, total_steps=100, milestones=[], gamma=0.1)
    assert cosine(0) == pytest.approx(1e-3)
    assert cosine(5) == pytest.approx((1e-3 * 0.5 + 0.5) * 0.5 * (1 + math.cos(math.pi * 0.05)))
    assert cosine(50) == pytest.approx(0.5)
    assert cosine(100) == pytest.approx(0.0, abs=1e-12)
    step = WarmupSchedule(kind="step", warmup_steps=0, total_steps=0, milestones=[4, 8], gamma=0.1)
    assert [step(s) for s in (0, 3, 4, 7, 8, 20)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    assert WarmupSchedule(kind="none", warmup_steps=0, total_steps=0, milestones=[], gamma=0.1)(7) == 1.0
    paper = WarmupSchedule(kind="none", warmup_steps=10, total_steps=0, milestones=[], gamma=0.1, start_factor=0.1)
    assert [paper(s) for s in (0, 5, 10)] == pytest.approx([0.1, 0.55, 1.0])  # YOLO: 1e-3 -> 1e-2 at lr 1e-2


def test_step_schedule_milestones_are_in_epochs() -> None:
    system = _system(lr=1.0, scheduler="step", lr_milestones=[1], lr_gamma=0.5)
    trainer = _trainer(max_epochs=2, limit_val_batches=0)
    lrs: list[float] = []

    class _Record(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer.callbacks.append(_Record())
    trainer.fit(system, ToyDataModule(train_count=8, batch_size=2))
    assert lrs == pytest.approx([1.0] * 4 + [0.5] * 4)


def test_real_voc_evaluator_through_the_system() -> None:
    evaluation = pytest.importorskip("detection.evaluation")
    system = DetectionSystem(
        model=TinyDetector(num_classes=2), evaluator=functools.partial(evaluation.VOCEvaluator), monitor="map_50"
    )
    trainer = _trainer(max_epochs=1)
    trainer.fit(system, ToyDataModule(train_count=4, val_count=4))
    metrics = trainer.callback_metrics
    assert {"val/map_50", "val/ap_50/red", "val/ap_50/green"} <= set(metrics)
    assert 0.0 <= float(metrics["val/map_50"]) <= 1.0
    # The logged value is the evaluator's: recompute it from the same model on the same data.
    evaluator = evaluation.VOCEvaluator(classes=["red", "green"])
    system.model.eval()
    with torch.no_grad():
        for images, targets in ToyDataModule(train_count=4, val_count=4).val_dataloader_after_setup():
            evaluator.update(system.model(images), targets)
    assert float(metrics["val/map_50"]) == pytest.approx(evaluator.compute()["map_50"])


def test_tiny_detector_contract_and_empty_images() -> None:
    model = TinyDetector(num_classes=3)
    images = [torch.rand(3, 20, 30), torch.rand(3, 40, 24)]
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    losses = model(images, [empty, empty])
    assert set(losses) == {"loss_classifier", "loss_box"} and all(float(v) == 0.0 for v in losses.values())
    one = {"boxes": torch.tensor([[2.0, 3.0, 12.0, 15.0]]), "labels": torch.tensor([3])}
    losses = model(images, [one, empty])
    sum(losses.values()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    preds = model(images)
    for pred, image in zip(preds, images):
        assert pred["boxes"].dtype == torch.float32 and pred["labels"].dtype == torch.int64
        assert pred["boxes"].shape == (1, 4) and 1 <= int(pred["labels"][0]) <= 3
        x1, y1, x2, y2 = pred["boxes"][0].tolist()
        assert 0 <= x1 <= x2 <= image.shape[-1] and 0 <= y1 <= y2 <= image.shape[-2]


def test_an_evaluator_instance_instead_of_a_factory_is_reported() -> None:
    with pytest.raises(TypeError, match="factory"):
        DetectionSystem(model=TinyDetector(num_classes=2), evaluator=ToyEvaluator(classes=TOY_CLASSES))


def test_init_from_copies_a_classification_backbone_into_a_detector(tmp_path) -> None:
    """The paper's recipe for YOLO / R-CNN: the backbone comes from a net trained on classification."""
    from detection.backbones import SmallCNN
    from detection.checkpoint import CheckpointError
    from detection.localization import ClassLocalizationNet
    from detection.yolo import YOLOv1

    torch.manual_seed(0)
    classifier = ClassLocalizationNet(backbone=SmallCNN(width=4), num_classes=2, image_size=64)
    path = tmp_path / "classifier.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in classifier.state_dict().items()}}, path)
    detector = YOLOv1(backbone=SmallCNN(width=4), num_classes=2, grid_size=4, image_size=64, feature="c4",
                      head_convs=1, head_channels=8, hidden_dim=16)
    head_before = {k: v.clone() for k, v in detector.head.state_dict().items()}
    system = _system(detector, init_from=str(path))
    source = classifier.backbone.state_dict()
    for name, value in system.model.backbone.state_dict().items():  # YOLO keeps the stages up to its tap
        torch.testing.assert_close(value, source[name])
    for name, value in system.model.head.state_dict().items():
        torch.testing.assert_close(value, head_before[name])
    torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="no state_dict"):
        _system(init_from=str(path))


class _SlowLoss(nn.Module):
    """A constant loss that takes ``seconds`` per step, so that ``max_time`` ends a run early."""

    num_classes = 2

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(()))
        self.seconds = seconds

    def forward(self, images: list[Tensor], targets: list[dict] | None = None):
        time.sleep(self.seconds)
        return {"loss_constant": self.weight * 0.0}


def test_max_time_warns_that_the_schedule_follows_max_epochs() -> None:
    system = _system(model=_SlowLoss(seconds=0.3), lr=1.0, scheduler="cosine")
    trainer = _trainer(max_epochs=50, max_time=timedelta(seconds=1), limit_val_batches=0)
    with pytest.warns(UserWarning) as warned:
        trainer.fit(system, ToyDataModule(train_count=8, batch_size=2))
    messages = [str(w.message) for w in warned]
    start = [m for m in messages if m.startswith("scheduler='cosine' spans max_epochs=50 (200 optimizer steps)")]
    assert len(start) == 1 and "trainer.max_time" in start[0] and "detectron2" in start[0], messages
    end = [m for m in messages if m.startswith("trainer.max_time stopped the run after ")]
    assert len(end) == 1 and "of the schedule's 200" in end[0] and "not decayed" in end[0], messages
    assert trainer.global_step < 200


def test_no_schedule_warning_without_max_time(recwarn) -> None:
    _trainer(max_epochs=1, limit_val_batches=0).fit(_system(lr=0.01), ToyDataModule())
    assert not [w for w in recwarn if "max_time" in str(w.message)]


def test_backbone_lr_mult_puts_the_backbone_in_its_own_group() -> None:
    model = nn.Sequential()
    model.backbone, model.head = nn.Linear(2, 2), nn.Linear(2, 1)
    model.backbone.bias.requires_grad_(False)  # frozen parameters are left out
    assert parameter_groups(model, 0.1, 1.0) == [{"params": list(model.parameters())[:1] + list(model.head.parameters()), "lr": 0.1}]
    heads, backbone = parameter_groups(model, 0.1, 0.25)
    assert heads == {"params": list(model.head.parameters()), "lr": 0.1}
    assert backbone == {"params": [model.backbone.weight], "lr": 0.025}
    with pytest.raises(ValueError, match="Linear has no .backbone"):
        parameter_groups(nn.Linear(2, 2), 0.1, 0.5)


def test_layer_grad_norms_cover_every_layer_with_a_gradient() -> None:
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    model[2].requires_grad_(False)
    model(torch.ones(4, 2)).sum().backward()
    norms = layer_grad_norms(model)
    assert list(norms) == ["0"]
    expected = torch.cat([model[0].weight.grad.flatten(), model[0].bias.grad]).norm()
    torch.testing.assert_close(norms["0"], expected)
