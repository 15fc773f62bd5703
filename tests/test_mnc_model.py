"""MNC end to end: the detector contract with masks, gradients into stage 1's boxes, 3- and 5-stage
inference with and without voting, a Lightning train + eval step, torchvision's Mask R-CNN wrapper."""

import functools
import math

import lightning as L
import pytest
import torch

from datasets.datamodule import DetectionDataModule
from detection.backbones import SmallCNN
from detection.evaluation import RegionAPEvaluator
from detection.mnc import MNC, MaskRCNNBaseline
from detection.system import DetectionSystem

STAGE_LOSSES = ("loss_mask", "loss_classifier", "loss_box_reg")


def _mnc(**kwargs) -> MNC:
    defaults = dict(  # noqa: C408 (keyword arguments read as the constructor call)
        backbone=SmallCNN(width=8), num_classes=3, feature="c3", min_size=64, max_size=64, anchor_sizes=(16, 32),
        rpn_pre_nms_top_n=(100, 50), rpn_post_nms_top_n=(30, 20), rois_per_image=16, representation_size=16,
        mask_hidden=16, mask_size=7, warp_size=8,
    )  # fmt: skip
    return MNC(**{**defaults, **kwargs})


def _sample(height: int = 64, width: int = 80) -> tuple[torch.Tensor, dict]:
    masks = torch.zeros(2, height, width, dtype=torch.uint8)
    masks[0, 10:30, 8:40] = 1
    masks[1, 35:60, 45:75] = 1
    target = {
        "boxes": torch.tensor([[8.0, 10.0, 40.0, 30.0], [45.0, 35.0, 75.0, 60.0]]),
        "labels": torch.tensor([1, 3]),
        "masks": masks,
    }
    return torch.rand(3, height, width), target


def test_train_losses_are_finite_and_every_parameter_gets_a_gradient():
    model = _mnc().train()
    image, target = _sample()
    losses = model([image, image.flip(-1)], [target, {**target, "masks": target["masks"].flip(-1)}])
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", *STAGE_LOSSES}
    assert all(math.isfinite(float(v.detach())) for v in losses.values())
    sum(losses.values()).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


def test_stage_2_and_3_losses_reach_stage_1_box_regression_through_the_warping():
    grads = {}
    for box_gradients in (True, False):
        torch.manual_seed(0)
        model = _mnc(box_gradients=box_gradients).train()
        image, target = _sample()
        losses = model([image], [target])
        sum(losses[k] for k in STAGE_LOSSES).backward()
        grad = model.rpn.head.bbox_pred.weight.grad
        grads[box_gradients] = 0.0 if grad is None else float(grad.abs().sum())
    assert grads[True] > 0 and grads[False] == 0


def test_an_image_without_objects_gives_zero_mask_and_box_loss():
    model = _mnc().train()
    image, _ = _sample()
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 64, 80, dtype=torch.uint8)}
    losses = model([image], [empty])
    assert float(losses["loss_mask"]) == 0 and float(losses["loss_box_reg"]) == 0
    assert math.isfinite(float(losses["loss_classifier"]))


def test_training_without_masks_is_refused():
    image, target = _sample()
    del target["masks"]
    with pytest.raises(ValueError, match="masks"):
        _mnc().train()([image], [target])


@pytest.mark.parametrize("stages,voting", [(3, False), (3, True), (5, False), (5, True)])
def test_eval_contract_with_masks_in_original_coordinates(stages, voting):
    model = _mnc(inference_stages=stages, mask_voting=voting, score_thresh=0.0).eval()
    images = [torch.rand(3, 50, 70), torch.rand(3, 90, 60)]
    with torch.no_grad():
        preds = model(images)
    for image, pred in zip(images, preds):
        k = len(pred["boxes"])
        assert k > 0
        assert pred["boxes"].shape == (k, 4) and pred["boxes"].dtype == torch.float32
        assert pred["labels"].dtype == torch.int64 and pred["labels"].min() >= 1 and pred["labels"].max() <= 3
        assert pred["scores"].shape == (k,)
        assert pred["masks"].shape == (k, *image.shape[-2:]) and pred["masks"].dtype == torch.uint8
        assert set(pred["masks"].unique().tolist()) <= {0, 1}
        assert (pred["boxes"][:, 2] <= image.shape[-1] + 1e-3).all() and (pred["boxes"][:, 3] <= image.shape[-2] + 1e-3).all()


def test_five_stage_inference_pools_stage_3_and_stage_5_candidates():
    model = _mnc(score_thresh=0.0, detections_per_img=1000, nms_thresh=1.0, mask_voting=False).eval()
    image = torch.rand(3, 64, 64)
    counts = {}
    for stages in (3, 5):
        model.inference_stages = stages
        with torch.no_grad():
            counts[stages] = len(model([image])[0]["boxes"])
    assert counts[5] == 2 * counts[3]  # the same proposals re-run once more (no NMS, no threshold)


def test_stage5_min_score_reruns_only_the_stage_3_boxes_scoring_above_it():
    torch.manual_seed(0)
    model = _mnc(score_thresh=0.0, detections_per_img=1000, nms_thresh=1.0, mask_voting=False).eval()
    images = [torch.rand(3, 64, 64), torch.rand(3, 64, 64)]
    features = model.backbone(model.transform(images)[0].tensors)[model.feature]
    proposals = [torch.tensor([[4.0, 4.0, 30.0, 30.0], [10.0, 8.0, 50.0, 40.0], [0.0, 0.0, 60.0, 60.0]])] * 2
    with torch.no_grad():
        _, class_logits, _ = model.mask_and_categorise(features, proposals)
        foreground = class_logits.softmax(-1)[:, 1:].amax(1)  # [6]
        threshold = float(foreground.median())  # keeps some RoIs, drops others
        model.stage5_min_score = threshold
        candidates = model._candidates(features, proposals, [(64, 64)] * 2)
    kept = (foreground > threshold).view(2, 3).sum(1)
    assert 0 < int(kept.sum()) < 6
    assert [len(boxes) for boxes, _, _ in candidates] == [3 + int(k) for k in kept]
    assert all(len(b) == len(m) == len(p) for b, m, p in candidates)


def test_lightning_train_and_eval_step_on_shapes_with_masks(shapes_root):
    data = DetectionDataModule(format="shapes", root=str(shapes_root.root), with_masks=True, batch_size=2, num_workers=0)
    model = _mnc(num_classes=4, min_size=96, max_size=96)
    system = DetectionSystem(model=model, evaluator=functools.partial(RegionAPEvaluator), monitor="map_r_50", lr=0.01)
    trainer = L.Trainer(
        accelerator="cpu", fast_dev_run=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    before = [p.detach().clone() for p in model.parameters()]
    trainer.fit(system, data)
    metrics = trainer.callback_metrics
    for key in ("train/loss", *(f"train/{k}" for k in STAGE_LOSSES), "val/map_r_50", "val/map_r_70"):
        assert key in metrics and math.isfinite(float(metrics[key])), key
    assert any(not torch.equal(b, a) for b, a in zip(before, model.parameters()))


def test_mask_rcnn_baseline_honours_the_contract():
    model = MaskRCNNBaseline(
        backbone=SmallCNN(width=8), num_classes=3, feature="c3", min_size=64, max_size=64, anchor_sizes=(16, 32),
        rpn_pre_nms_top_n=(100, 50), rpn_post_nms_top_n=(30, 20), rois_per_image=16, representation_size=16, mask_layers=(8,),
        score_thresh=0.0,
    )  # fmt: skip
    image, target = _sample()
    losses = model.train()([image], [target])
    assert {"loss_mask", "loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"} == set(losses)
    with torch.no_grad():
        (pred,) = model.eval()([image])
    assert pred["masks"].shape == (len(pred["boxes"]), 64, 80) and model.num_classes == 3


@pytest.mark.parametrize("stages", [3, 5])
def test_an_image_without_proposals_gives_no_detections(stages, monkeypatch):
    model = _mnc(inference_stages=stages).eval()
    monkeypatch.setattr(model.rpn, "forward", lambda images, features, targets=None: ([torch.zeros(0, 4)], {}))
    with torch.no_grad():
        (pred,) = model([torch.rand(3, 50, 70)])
    assert pred["boxes"].shape == (0, 4) and pred["masks"].shape == (0, 50, 70)
