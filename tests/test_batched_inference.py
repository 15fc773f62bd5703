"""Exact batched inference, per head: eight same-size images in one pass give the one-image predictions.

Every shapes config's model (untrained, seeded) predicts the same images one per pass and eight
per pass (``predict_images``, which batches same-size images): the same detections, labels and
semantic maps; scores, boxes and masks within floating-point summation noise.
"""

from pathlib import Path

import pytest
import torch
import yaml

from datasets.datamodule import DetectionDataModule
from detection.checkpoint import build_model
from detection.predictor import predict_images, size_groups

REPO = Path(__file__).resolve().parents[1]
CONFIGS = [
    "localization/shapes.yaml", "overfeat/shapes.yaml", "overfeat/shapes_detection.yaml", "rcnn/shapes.yaml",
    "fast_rcnn/shapes.yaml", "faster_rcnn/shapes.yaml", "yolo/shapes.yaml", "fast_yolo/shapes.yaml", "fcn/shapes.yaml",
    "mnc/shapes.yaml", "mnc/shapes_maskrcnn.yaml",
]  # fmt: skip
BATCH = 8
ATOL = 1e-4


def _model(config: str) -> torch.nn.Module:
    model_config = yaml.safe_load((REPO / "configs" / config).read_text())["model"]["model"]
    init_args = model_config["init_args"]
    init_args["num_classes"] = 4
    if "cache_dir" in init_args:
        init_args["cache_dir"] = None  # selective search on the fly, nothing written
    if config == "mnc/shapes.yaml":
        # Untrained, each RoI's stage-3 box and its own stage-5 regression (a fraction of a pixel
        # apart) score within 1e-8 of each other, so NMS keeps either on float noise. The 5-stage
        # pass runs the same batched stages 2-3 again on the regressed boxes.
        init_args["inference_stages"] = 3
    torch.manual_seed(0)
    return build_model(model_config).eval()


@pytest.fixture(scope="module")
def images(shapes_root) -> list[torch.Tensor]:
    test = DetectionDataModule(format="shapes", root=str(shapes_root.root), augment=False).dataset("test")
    return [test[i % len(test)][0] for i in range(BATCH)]


def test_size_groups_keep_first_appearance_order():
    shapes = [(3, 4, 5), (3, 6, 5), (3, 4, 5), (3, 6, 5), (3, 2, 2)]
    assert size_groups([torch.zeros(s) for s in shapes]) == [[0, 2], [1, 3], [4]]


@pytest.mark.parametrize("config", CONFIGS)
def test_batch_of_eight_equals_one_image_per_pass(config, images):
    model = _model(config)
    one = [predict_images(model, [image])[0] for image in images]
    eight = predict_images(model, images)
    assert len(eight) == BATCH
    for alone, batched in zip(one, eight):
        assert alone.keys() == batched.keys()
        for key in alone:
            a, b = alone[key], batched[key]
            assert a.shape == b.shape, f"{config}: {key} {tuple(a.shape)} vs {tuple(b.shape)}"
            if a.dtype in (torch.int64, torch.bool, torch.uint8):
                assert torch.equal(a, b), f"{config}: {key} differ"
            else:
                assert torch.allclose(a, b, atol=ATOL, rtol=0), f"{config}: {key} max |diff| {(a - b).abs().max():.2e}"
