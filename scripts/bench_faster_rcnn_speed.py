"""Faster R-CNN inference time: ours vs torchvision's ``FasterRCNN`` class, same backbone and sizes.

Both models get the same SmallCNN tap, anchors, RPN and RoI-head settings and the same
weights (ours are copied into torchvision's); the script checks that their detections agree,
then times batch-1 inference and reports the ratio and the fraction of time spent in the
backbone.

    python scripts/bench_faster_rcnn_speed.py [--images 50] [--size 128]
"""

import argparse
import time

import torch
from torch import Tensor
from torchvision.models.detection import FasterRCNN as TorchvisionFasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator

from detection.backbones import SingleTap, SmallCNN
from detection.faster_rcnn import FasterRCNN
from detection.transform import IMAGENET_MEAN, IMAGENET_STD


def _timed(fn, images: list[Tensor]) -> float:
    with torch.inference_mode():
        fn(images[:2])
        start = time.perf_counter()
        for image in images:
            fn([image])
    return (time.perf_counter() - start) / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    torch.manual_seed(0)
    settings = dict(min_size=args.size, max_size=args.size)
    ours = FasterRCNN(
        backbone=SmallCNN(width=16), num_classes=4, feature="c3", anchor_sizes=(16, 32, 64),
        rpn_pre_nms_top_n=(600, 300), rpn_post_nms_top_n=(300, 100), representation_size=256, score_thresh=0.0, **settings,
    ).eval()
    from torchvision.ops import MultiScaleRoIAlign  # replaced below by our RoI max pooling, as in ours

    theirs = TorchvisionFasterRCNN(
        SingleTap(ours.backbone, "c3"), num_classes=None, image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD),
        rpn_anchor_generator=AnchorGenerator(((16, 32, 64),), ((0.5, 1.0, 2.0),)),
        box_roi_pool=MultiScaleRoIAlign(["c3"], 7, 2), rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=100,
        box_score_thresh=0.0, box_batch_size_per_image=64, box_head=ours.roi_heads.box_head,
        box_predictor=ours.roi_heads.box_predictor, **settings,
    ).eval()
    theirs.rpn.head = ours.rpn.head
    theirs.roi_heads.box_roi_pool = ours.roi_heads.box_roi_pool

    images = [torch.rand(3, args.size, args.size) for _ in range(args.images)]
    with torch.inference_mode():
        a, b = ours(images[:4]), theirs(images[:4])
    agree = all(torch.allclose(x["boxes"], y["boxes"], atol=1e-4) for x, y in zip(a, b))
    rounds = [(_timed(ours, images), _timed(theirs, images)) for _ in range(3)]  # interleaved: fair under load
    t_ours, t_theirs = min(r[0] for r in rounds), min(r[1] for r in rounds)
    batch = ours.transform(images[:1])[0].tensors
    t_backbone = _timed(lambda ims: ours.backbone(batch), images)
    print(f"{args.images} images at {args.size} px, batch 1, {torch.get_num_threads()} threads; detections identical: {agree}")
    print(f"ours:        {1000 * t_ours:.1f} ms/image")
    print(f"torchvision: {1000 * t_theirs:.1f} ms/image")
    print(f"ratio ours / torchvision: {t_ours / t_theirs:.3f}  (goal <= 1.1)")
    print(f"backbone share of our inference time: {t_backbone / t_ours:.1%}")


if __name__ == "__main__":
    main()
