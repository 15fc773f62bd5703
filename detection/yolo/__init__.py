"""YOLO v1 (Redmon et al. 2016): grid targets, the sum-squared loss, the network, postprocessing."""

from detection.yolo.loss import LAMBDA_COORD, LAMBDA_NOOBJ, yolo_loss
from detection.yolo.model import YOLOHead, YOLOv1
from detection.yolo.postprocess import select_detections
from detection.yolo.targets import GridLayout, decode_grid, encode_batch, encode_targets

__all__ = [
    "LAMBDA_COORD",
    "LAMBDA_NOOBJ",
    "GridLayout",
    "YOLOHead",
    "YOLOv1",
    "decode_grid",
    "encode_batch",
    "encode_targets",
    "select_detections",
    "yolo_loss",
]
