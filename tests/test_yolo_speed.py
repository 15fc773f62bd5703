"""benchmarks/yolo_speed.py: the Faster R-CNN it times is built from its own config with YOLO's
backbone, tap and input size, so that the two differ only in their heads."""

import torch

from benchmarks.yolo_speed import YOLO_CONFIG, faster_config_like, model_config
from detection.checkpoint import build_model


def test_faster_rcnn_takes_yolos_backbone_tap_and_input_size() -> None:
    yolo_config = model_config(YOLO_CONFIG)
    shared = yolo_config["init_args"]
    assert (shared["feature"], shared["image_size"]) == ("c4", 128)  # configs/yolo/shapes.yaml's
    torch.manual_seed(0)
    yolo = build_model(yolo_config).eval()
    faster = build_model(faster_config_like(shared)).eval()
    assert faster.taps == ["c4"]
    assert type(faster.backbone) is type(yolo.backbone)
    assert faster.backbone.channels["c4"] == yolo.backbone.channels["c4"]
    image = torch.rand(3, 96, 160)
    with torch.inference_mode():
        resized = faster.transform([image])[0].tensors
        (detections,) = faster([image])
        (yolo_detections,) = yolo([image])
    assert max(resized.shape[-2:]) == 128  # the shared input size
    for result in (detections, yolo_detections):  # both back in the image's pixels
        assert result["boxes"].shape[-1] == 4
        if len(result["boxes"]):
            assert result["boxes"][:, 2].max() <= 160 and result["boxes"][:, 3].max() <= 96
