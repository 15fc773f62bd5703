"""Fast R-CNN: losses and gradients, empty images, proposal scaling, the eval contract, the cache, Lightning.

Most tests replace selective search with a fixed grid of boxes (``_grid_search``) so that they
check the model, not OpenCV; the last ones run the real thing when ``cv2.ximgproc`` is there.
RoI max pooling itself is checked against a naive implementation in ``test_faster_rcnn.py``.
"""

import functools
import math

import lightning as L
import numpy as np
import pytest
import torch

import detection.proposals.cache as cache_module
from datasets.datamodule import DetectionDataModule
from detection.backbones import SmallCNN
from detection.evaluation import VOCEvaluator
from detection.fast_rcnn import FastRCNN
from detection.proposals.selective_search import install_command, load_ximgproc
from detection.system import DetectionSystem

GRID_STEP = 16  # px between the fake proposals' corners


def _ximgproc_missing() -> bool:
    try:
        load_ximgproc()
    except ImportError:
        return True
    return False


needs_ximgproc = pytest.mark.skipif(
    _ximgproc_missing(), reason=f"cv2.ximgproc (opencv-contrib) is not installed: {install_command()}"
)


def _grid_search(image: np.ndarray, *, mode: str, max_proposals: int, min_size: int) -> torch.Tensor:
    """Every box with corners on a ``GRID_STEP`` grid inside the image: ``Tensor[R, 4]`` xyxy."""
    height, width = image.shape[:2]
    xs, ys = torch.arange(0, width + 1, GRID_STEP).float(), torch.arange(0, height + 1, GRID_STEP).float()
    boxes = [
        (x1, y1, x2, y2)
        for x1 in xs for x2 in xs if x2 > x1
        for y1 in ys for y2 in ys if y2 > y1
    ]
    return torch.tensor(boxes, dtype=torch.float32)[:max_proposals]


@pytest.fixture
def grid_search(monkeypatch):
    monkeypatch.setattr(cache_module, "selective_search", _grid_search)


def _model(**kwargs) -> FastRCNN:
    settings = {"num_classes": 3, "feature": "c3", "min_size": 64, "max_size": 64, "representation_size": 32}
    return FastRCNN(backbone=SmallCNN(width=8), **{**settings, **kwargs})


BOXED = {"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0]]), "labels": torch.tensor([2])}
EMPTY = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}


def _spy_on_roi_heads(model: FastRCNN, monkeypatch) -> list:
    """Record the proposals ``roi_heads`` receives (in the resized images' pixels)."""
    seen: list = []
    forward = model.roi_heads.forward

    def spy(features, proposals, image_sizes, targets=None):
        seen.append([p.clone() for p in proposals])
        return forward(features, proposals, image_sizes, targets)

    monkeypatch.setattr(model.roi_heads, "forward", spy)
    return seen


def test_train_step_has_finite_losses_and_gradients_everywhere(grid_search):
    model = _model().train()
    losses = model([torch.rand(3, 64, 64), torch.rand(3, 64, 64)], [BOXED, EMPTY])
    assert set(losses) == {"loss_classifier", "loss_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    assert any(parameter.grad.abs().sum() > 0 for parameter in model.backbone.parameters())


def test_an_image_without_boxes_gives_zero_box_loss(grid_search):
    losses = _model().train()([torch.rand(3, 64, 64)], [EMPTY])
    assert losses["loss_box_reg"].item() == 0.0
    assert losses["loss_classifier"].item() > 0.0  # background RoIs are still classified


def test_ground_truth_boxes_join_the_proposals_in_training(monkeypatch):
    # Proposals far from the object: only the appended ground-truth box can be foreground.
    monkeypatch.setattr(cache_module, "selective_search", lambda image, **kw: torch.tensor([[48.0, 48.0, 64.0, 64.0]]))
    model = _model().train()
    seen = _spy_on_roi_heads(model, monkeypatch)
    losses = model([torch.rand(3, 64, 64)], [BOXED])
    assert len(seen[0][0]) == 1  # the model passes the proposals alone: RoIHeads adds the ground truth
    assert losses["loss_box_reg"].item() > 0.0  # a foreground RoI exists: the appended gt box


def test_proposals_are_scaled_like_the_image(grid_search, monkeypatch):
    model = _model(max_size=200).eval()
    seen = _spy_on_roi_heads(model, monkeypatch)
    images = [torch.rand(3, 80, 120), torch.rand(3, 64, 64)]
    with torch.no_grad():
        model(images)
    scaled, original = seen[0], model.propose(images)
    ratio_h, ratio_w = 64 / 80, 96 / 120  # min_size 64 on the short side: 80 x 120 -> 64 x 96
    torch.testing.assert_close(scaled[0], original[0] * torch.tensor([ratio_w, ratio_h, ratio_w, ratio_h]))
    torch.testing.assert_close(scaled[1], original[1])


def test_eval_contract_in_original_coordinates(grid_search):
    model = _model(score_thresh=0.0).eval()
    images = [torch.rand(3, 80, 120), torch.rand(3, 64, 64)]
    before = [image.clone() for image in images]
    with torch.no_grad():
        out = model(images)
    assert all(torch.equal(a, b) for a, b in zip(images, before))  # inputs untouched
    assert len(out) == 2
    for result, (h, w) in zip(out, [(80, 120), (64, 64)]):
        assert set(result) == {"boxes", "labels", "scores"}
        assert result["boxes"].dtype == torch.float32 and result["labels"].dtype == torch.int64
        assert result["scores"].dtype == torch.float32 and len(result["boxes"]) > 0
        assert ((result["labels"] >= 1) & (result["labels"] <= 3)).all()
        assert (result["boxes"][:, 2] <= w + 1e-3).all() and (result["boxes"][:, 3] <= h + 1e-3).all()
    assert out[0]["boxes"][:, 2].max() > 96  # beyond the resized width: mapped back to 120 px


def test_proposals_carry_no_gradient_and_come_from_the_cache(grid_search, tmp_path, monkeypatch):
    model = _model(cache_dir=tmp_path).eval()
    image = torch.rand(3, 64, 64, requires_grad=True)
    proposals = model.propose([image])
    assert not proposals[0].requires_grad and proposals[0].grad_fn is None
    with torch.no_grad():
        first = model([image.detach()])
    assert len(list(tmp_path.rglob("*.pt"))) == 1
    monkeypatch.setattr(cache_module, "selective_search", lambda *a, **k: pytest.fail("cache miss"))
    with torch.no_grad():
        second = model([image.detach()])
    assert all(torch.equal(first[0][k], second[0][k]) for k in first[0])


def test_missing_targets_in_training_are_refused():
    with pytest.raises(ValueError, match="targets are required"):
        _model().train()([torch.rand(3, 64, 64)])


def test_one_train_step_through_lightning(grid_search, shapes_root, tmp_path):
    model = _model(num_classes=4, cache_dir=tmp_path / "proposals")
    system = DetectionSystem(model=model, evaluator=functools.partial(VOCEvaluator), lr=0.01)
    data = DetectionDataModule(format="shapes", root=str(shapes_root.root), augment=False, batch_size=2, num_workers=0)
    trainer = L.Trainer(
        accelerator="cpu", fast_dev_run=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path,
    )
    before = [p.detach().clone() for p in system.model.parameters()]
    trainer.fit(system, data)
    metrics = trainer.callback_metrics
    for key in ("train/loss", "train/loss_classifier", "train/loss_box_reg", "val/map_50"):
        assert key in metrics and math.isfinite(float(metrics[key])), f"{key}: {sorted(metrics)}"
    assert any(not torch.equal(b, a) for b, a in zip(before, system.model.parameters()))
    assert len(list((tmp_path / "proposals").rglob("*.pt"))) == 4  # 2 train + 2 val images


@needs_ximgproc
def test_real_selective_search_train_and_eval_step(shapes_root):
    data = DetectionDataModule(format="shapes", root=str(shapes_root.root), augment=False, num_workers=0)
    images, targets = zip(*(data.dataset("train")[i] for i in range(2)))
    model = _model(num_classes=4)
    losses = model.train()(list(images), list(targets))
    assert all(torch.isfinite(v) for v in losses.values())
    with torch.no_grad():
        out = model.eval()(list(images))
    assert [set(o) for o in out] == [{"boxes", "labels", "scores"}] * 2
