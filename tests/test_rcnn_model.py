"""R-CNN's detector contract: the fine-tuning loss, eval outputs, empty images, the SVM / softmax scorer, box regression.

Selective search is replaced by a fixed grid of boxes (as in ``test_fast_rcnn.py``) so that the
tests check the model, not OpenCV.
"""

import math

import pytest
import torch

import detection.proposals.cache as cache_module
from proposal_stubs import grid_search as grid_stub
from detection.backbones import SmallCNN
from detection.rcnn import RCNN
from detection.rcnn.crops import scaled_context_padding

GRID_STEP = 16


@pytest.fixture
def grid_search(monkeypatch):
    monkeypatch.setattr(cache_module, "selective_search", grid_stub(GRID_STEP))


@pytest.fixture
def no_proposals(monkeypatch):
    monkeypatch.setattr(cache_module, "selective_search", lambda image, **kw: torch.zeros(0, 4))


def _model(**kwargs) -> RCNN:
    settings = {
        "num_classes": 3, "feature": "c3", "crop_size": 32, "pool_size": 2, "representation_size": 32,
        "crops_per_batch": 16,
    }
    return RCNN(backbone=SmallCNN(width=8), **{**settings, **kwargs})


BOXED = {"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0]]), "labels": torch.tensor([2])}
EMPTY = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}


def _fit_fake_stages(model: RCNN) -> None:
    """Stage buffers by hand: class 2's SVM always fires; every regressor doubles the box."""
    with torch.no_grad():
        model.svm_bias.copy_(torch.tensor([-5.0, 5.0, -5.0]))
        model.bbox_bias[:, 2:] = math.log(2.0)
        model.svm_fitted.fill_(True)
        model.regressor_fitted.fill_(True)


def test_context_padding_defaults_to_the_papers_scaled():
    assert _model().context_padding == pytest.approx(scaled_context_padding(32))
    assert _model(context_padding=3.0).context_padding == 3.0


def test_train_step_has_a_finite_loss_and_gradients_everywhere(grid_search):
    model = _model().train()
    losses = model([torch.rand(3, 64, 64), torch.rand(3, 48, 80)], [BOXED, EMPTY])
    assert set(losses) == {"loss_classifier"} and torch.isfinite(losses["loss_classifier"])
    losses["loss_classifier"].backward()
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
            assert parameter.grad.abs().sum() > 0, name


def test_ground_truth_boxes_are_foreground_regions(monkeypatch):
    # one proposal far from the object: only the appended ground-truth box can be foreground
    monkeypatch.setattr(cache_module, "selective_search", lambda image, **kw: torch.tensor([[48.0, 48.0, 64.0, 64.0]]))
    model = _model().train()
    seen = []
    forward = model.region_net.forward
    monkeypatch.setattr(model.region_net, "forward", lambda crops: seen.append(crops.shape[0]) or forward(crops))
    labels_seen = []
    cross_entropy = torch.nn.functional.cross_entropy
    monkeypatch.setattr(torch.nn.functional, "cross_entropy", lambda logits, labels: labels_seen.append(labels) or cross_entropy(logits, labels))
    model([torch.rand(3, 64, 64)], [BOXED])
    assert seen == [16] and int((labels_seen[0] == 2).sum()) == 4  # 25% of 16, all the gt box (label 2)


def test_an_image_without_objects_or_proposals(no_proposals):
    model = _model().train()
    losses = model([torch.rand(3, 64, 64)], [EMPTY])
    assert losses["loss_classifier"].item() == 0.0
    losses["loss_classifier"].backward()  # still a graph
    out = model.eval()([torch.rand(3, 64, 64)])
    assert out[0]["boxes"].shape == (0, 4) and out[0]["boxes"].dtype == torch.float32
    assert out[0]["labels"].dtype == torch.int64 and out[0]["scores"].dtype == torch.float32


def test_eval_contract_in_original_coordinates(grid_search):
    model = _model().eval()
    images = [torch.rand(3, 80, 120), torch.rand(3, 64, 64)]
    before = [image.clone() for image in images]
    with torch.no_grad():
        out = model(images)
    assert all(torch.equal(a, b) for a, b in zip(images, before))
    assert len(out) == 2
    for result, (h, w) in zip(out, [(80, 120), (64, 64)]):
        assert set(result) == {"boxes", "labels", "scores"}
        assert result["boxes"].dtype == torch.float32 and result["labels"].dtype == torch.int64
        assert result["scores"].dtype == torch.float32 and 0 < len(result["boxes"]) <= 100
        assert ((result["labels"] >= 1) & (result["labels"] <= 3)).all()
        assert ((result["scores"] >= 0) & (result["scores"] <= 1)).all()
        assert (result["boxes"][:, 2] <= w).all() and (result["boxes"][:, 3] <= h).all()
        assert torch.all(result["scores"][:-1] >= result["scores"][1:])
    assert out[0]["boxes"][:, 2].max() > 64  # the 120-px image was not resized


def test_missing_targets_in_training_are_refused():
    with pytest.raises(ValueError, match="targets are required"):
        _model().train()([torch.rand(3, 64, 64)])


def test_results_do_not_depend_on_the_eval_chunk(grid_search):
    images = [torch.rand(3, 64, 64), torch.rand(3, 48, 80)]
    model = _model(eval_chunk=1000).eval()
    with torch.no_grad():
        whole = model(images)
        model.eval_chunk = 7
        chunked = model(images)
    for a, b in zip(whole, chunked):
        for key in a:
            torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-5)


def test_softmax_scores_until_the_svms_are_fitted_then_the_svms(grid_search):
    model = _model().eval()
    image = [torch.rand(3, 64, 64)]
    with torch.no_grad():
        before = model(image)[0]
        _fit_fake_stages(model)
        svm = model(image)[0]
        model.scorer = "softmax"
        model.box_regression = False
        softmax = model(image)[0]
    assert torch.equal(before["scores"], softmax["scores"]) and torch.equal(before["boxes"], softmax["boxes"])
    assert svm["labels"][0] == 2 and svm["scores"][0] == pytest.approx(torch.sigmoid(torch.tensor(5.0)).item())


def test_box_regression_moves_the_boxes_and_can_be_switched_off(grid_search):
    model = _model(scorer="softmax").eval()
    _fit_fake_stages(model)  # every regressor: t_w = t_h = log 2, the box doubles about its centre
    image = [torch.rand(3, 64, 64)]
    proposals = model.propose(image)[0]
    outputs = model.region_outputs(image, [proposals])
    centres, sizes = (proposals[:, :2] + proposals[:, 2:]) / 2, proposals[:, 2:] - proposals[:, :2]
    doubled = torch.cat([centres - sizes, centres + sizes], dim=1)  # [R, 4]
    torch.testing.assert_close(model.class_boxes(outputs, proposals), doubled[:, None].expand(-1, 3, -1))
    with torch.no_grad():
        regressed = model(image)[0]
        model.box_regression = False
        plain = model(image)[0]
    torch.testing.assert_close(model.class_boxes(outputs, proposals), proposals[:, None].expand(-1, 3, -1))
    assert all(any(torch.equal(box, p) for p in proposals) for box in plain["boxes"])
    clipped = doubled.clamp(min=0, max=64)
    assert all(any(torch.allclose(box, d) for d in clipped) for box in regressed["boxes"])


def test_stage_buffers_round_trip_through_a_state_dict(grid_search):
    model = _model().eval()
    _fit_fake_stages(model)
    state = model.state_dict()
    assert {"svm_weight", "svm_bias", "bbox_weight", "bbox_bias", "svm_fitted", "regressor_fitted"} <= set(state)
    fresh = _model().eval()
    fresh.load_state_dict(state)  # strict: same keys and shapes from construction on
    image = [torch.rand(3, 64, 64)]
    with torch.no_grad():
        a, b = model(image)[0], fresh(image)[0]
    assert all(torch.equal(a[k], b[k]) for k in a)
