"""Faster R-CNN inference time: ours vs torchvision's ``FasterRCNN`` class, same backbone and sizes.

Both models get the same SmallCNN tap (width 16, c3), anchors, RPN and RoI-head settings and the
same weights (ours are shared with torchvision's: RPN head, RoI pooling, box head and
predictor); the benchmark checks that their detections agree on 4 images, then times batch-1
inference on 50 random 128-px images, ours and theirs interleaved over 3 rounds (the best of
each), and reports the ratio (the goal is <= 1.1) and the fraction of our time spent in the
backbone.

    OMP_NUM_THREADS=1 python -m benchmarks run faster_rcnn_speed [--quick]

Figures: ``detections_identical``, ``ours_ms_per_image``, ``torchvision_ms_per_image``,
``ratio`` (ours / torchvision), ``backbone_share``, ``images``, ``image_size``, ``threads``.
"""

import torch
from torchvision.models.detection import FasterRCNN as TorchvisionFasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import MultiScaleRoIAlign

from benchmarks.timing import best_of_rounds, seconds_per_image
from detection.backbones import SingleTap, SmallCNN
from detection.faster_rcnn import FasterRCNN
from detection.transform import IMAGENET_MEAN, IMAGENET_STD

SIZE = 128
ROUNDS = 3


def twin_models(size: int) -> tuple[FasterRCNN, TorchvisionFasterRCNN]:
    """Ours and torchvision's, in eval mode, with the same settings and shared weights."""
    settings = dict(min_size=size, max_size=size)
    ours = FasterRCNN(
        backbone=SmallCNN(width=16), num_classes=4, feature="c3", anchor_sizes=(16, 32, 64),
        rpn_pre_nms_top_n=(600, 300), rpn_post_nms_top_n=(300, 100), representation_size=256, score_thresh=0.0, **settings,
    ).eval()  # fmt: skip
    theirs = TorchvisionFasterRCNN(
        SingleTap(ours.backbone, "c3"), num_classes=None, image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD),
        rpn_anchor_generator=AnchorGenerator(((16, 32, 64),), ((0.5, 1.0, 2.0),)),
        box_roi_pool=MultiScaleRoIAlign(["c3"], 7, 2), rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=100,
        box_score_thresh=0.0, box_batch_size_per_image=64, box_head=ours.roi_heads.box_head,
        box_predictor=ours.roi_heads.box_predictor, **settings,
    ).eval()  # fmt: skip
    theirs.rpn.head = ours.rpn.head
    theirs.roi_heads.box_roi_pool = ours.roi_heads.box_roi_pool  # our RoI max pooling, replacing the RoIAlign above
    return ours, theirs


def run(quick: bool) -> dict:
    images_count, rounds = (4, 1) if quick else (50, ROUNDS)
    torch.manual_seed(0)
    ours, theirs = twin_models(SIZE)
    images = [torch.rand(3, SIZE, SIZE) for _ in range(images_count)]
    with torch.inference_mode():
        a, b = ours(images[:4]), theirs(images[:4])
    agree = all(torch.allclose(x["boxes"], y["boxes"], atol=1e-4) for x, y in zip(a, b))
    best = best_of_rounds({"ours": lambda im: ours([im]), "theirs": lambda im: theirs([im])}, images, rounds)
    batch = ours.transform(images[:1])[0].tensors
    t_backbone = seconds_per_image(lambda im: ours.backbone(batch), images)
    return {
        "detections_identical": agree,
        "ours_ms_per_image": round(1000 * best["ours"], 2),
        "torchvision_ms_per_image": round(1000 * best["theirs"], 2),
        "ratio": round(best["ours"] / best["theirs"], 3),
        "backbone_share": round(t_backbone / best["ours"], 3),
        "images": images_count,
        "image_size": SIZE,
        "threads": torch.get_num_threads(),
    }
