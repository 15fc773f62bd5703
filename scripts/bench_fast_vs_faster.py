"""Test-time speed: Fast R-CNN with selective search vs Faster R-CNN, same backbone and sizes.

Both models are the shapes configs' (SmallCNN width 16, tap c3, 128 px, RoI max pooling 7x7,
FC 256), untrained (timing does not depend on the weights; ``score_thresh=0`` so that both run
the full postprocess). Batch 1, ``torch.set_num_threads(2)``, one warm-up pass, five
interleaved rounds and the best of each (fair under a loaded machine). Fast R-CNN's time is
reported in two parts:

- proposals: selective search on the uint8 image (OpenCV, one thread), per mode;
- network: the same forward with the proposals read from an in-memory bundle (the cost of a
  cache hit: a sha1 of the pixels plus the transform, backbone and RoI head).

    python scripts/bench_fast_vs_faster.py [--images 50] [--root data/shapes] [--split test]
"""

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from datasets.datamodule import DetectionDataModule  # noqa: E402
from detection.backbones import SmallCNN  # noqa: E402
from detection.fast_rcnn import FastRCNN  # noqa: E402
from detection.faster_rcnn import FasterRCNN  # noqa: E402
from detection.proposals.selective_search import image_to_uint8  # noqa: E402

THREADS = 2
ROUNDS = 5
SHAPES_HEAD = dict(num_classes=4, feature="c3", min_size=128, max_size=128, rois_per_image=64,
                   representation_size=256, score_thresh=0.0)


def seconds_per_image(fn: Callable[[Tensor], object], images: list[Tensor]) -> float:
    with torch.inference_mode():
        fn(images[0])  # warm-up
        start = time.perf_counter()
        for image in images:
            fn(image)
    return (time.perf_counter() - start) / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--root", default="data/shapes")
    parser.add_argument("--split", default="test")
    parser.add_argument("--modes", nargs="+", default=["fast", "quality"], choices=["fast", "quality"])
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    dataset = DetectionDataModule(format="shapes", root=args.root, test_split=args.split, augment=False).dataset("test")
    images = [dataset[i][0] for i in range(min(args.images, len(dataset)))]

    faster = FasterRCNN(backbone=SmallCNN(width=16), anchor_sizes=(16, 32, 64), rpn_pre_nms_top_n=(600, 300),
                        rpn_post_nms_top_n=(300, 100), **SHAPES_HEAD).eval()
    with tempfile.TemporaryDirectory() as tmp:
        measures: dict[str, Callable[[Tensor], object]] = {"faster": lambda im: faster([im])}
        boxes_per_image = {}
        for mode in args.modes:
            on_the_fly = FastRCNN(backbone=SmallCNN(width=16), proposal_mode=mode, cache_dir=None, **SHAPES_HEAD).eval()
            bundle: dict[str, Tensor] = {}
            for image in images:
                key, boxes = on_the_fly.proposals.entry(image_to_uint8(image))
                bundle[key] = boxes
            path = Path(tmp) / f"{mode}.pt"
            torch.save(bundle, path)
            cached = FastRCNN(backbone=SmallCNN(width=16), proposal_mode=mode, precomputed_proposals=path, **SHAPES_HEAD)
            cached.load_state_dict(on_the_fly.state_dict())
            cached.eval().proposals.precomputed()  # loaded before timing
            boxes_per_image[mode] = sum(len(b) for b in bundle.values()) / len(bundle)
            measures[f"{mode}/proposals"] = lambda im, m=on_the_fly: m.proposals.compute(image_to_uint8(im))
            measures[f"{mode}/network"] = lambda im, m=cached: m([im])
            measures[f"{mode}/total"] = lambda im, m=on_the_fly: m([im])
        # Every measure once per round, rounds interleaved; the best round of each (load varies).
        rounds = [{name: seconds_per_image(fn, images) for name, fn in measures.items()} for _ in range(ROUNDS)]
    best = {name: min(r[name] for r in rounds) for name in measures}

    print(f"{len(images)} shapes {args.split} images at 128 px, batch 1, {torch.get_num_threads()} torch threads, "
          f"best of {ROUNDS} rounds (ms/image)")
    print(f"{'model':38s} {'proposals':>10s} {'network':>9s} {'total':>8s}  {'boxes/img':>9s}")
    t_faster = best["faster"]
    for mode in args.modes:
        print(f"{'Fast R-CNN + selective search ' + mode:38s} {1000 * best[mode + '/proposals']:10.1f} "
              f"{1000 * best[mode + '/network']:9.1f} {1000 * best[mode + '/total']:8.1f}  {boxes_per_image[mode]:9.0f}")
    print(f"{'Faster R-CNN (RPN, <= 100 test RoIs)':38s} {'(in net)':>10s} {1000 * t_faster:9.1f} {1000 * t_faster:8.1f}")
    for mode in args.modes:
        print(f"Fast ({mode}) / Faster: end to end {best[mode + '/total'] / t_faster:.1f}x, "
              f"network alone {best[mode + '/network'] / t_faster:.2f}x")

if __name__ == "__main__":
    main()
