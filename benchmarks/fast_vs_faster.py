"""Test-time speed: Fast R-CNN with selective search vs Faster R-CNN, same backbone and sizes.

Both models are the shapes configs' (SmallCNN width 16, tap c3, 128 px, RoI max pooling 7x7,
FC 256), untrained (timing does not depend on the weights; ``score_thresh=0`` so that both run
the full postprocess), on the first 50 test images of the generated shapes (``data/shapes``).
Batch 1, 2 torch threads, one warm-up image, five interleaved rounds and the best of each (fair
under a loaded machine). Fast R-CNN's time is reported in two parts, for the selective-search
modes ``fast`` and ``quality``:

- proposals: selective search on the uint8 image (OpenCV, one thread);
- network: the same forward with the proposals read from an in-memory bundle (the cost of a
  cache hit: a sha1 of the pixels plus the transform, backbone and RoI head).

    OMP_NUM_THREADS=1 python -m benchmarks run fast_vs_faster [--quick]

Figures: ``faster_ms`` (Faster R-CNN, RPN and <= 100 test RoIs, per image) and per mode
``{proposals_ms, network_ms, total_ms, boxes_per_image, total_vs_faster, network_vs_faster}``.
"""

import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from benchmarks.runs import shapes, tiny_shapes
from benchmarks.timing import best_of_rounds, torch_threads
from datasets.datamodule import DetectionDataModule
from detection.backbones import SmallCNN
from detection.fast_rcnn import FastRCNN
from detection.faster_rcnn import FasterRCNN
from detection.proposals.selective_search import image_to_uint8

THREADS = 2
ROUNDS = 5
IMAGES = 50
MODES = ("fast", "quality")
SHAPES_HEAD = dict(num_classes=4, feature="c3", min_size=128, max_size=128, rois_per_image=64,
                   representation_size=256, score_thresh=0.0)  # fmt: skip


def split_images(root: Path, count: int, *, split: str = "test", data_format: str = "shapes") -> list[Tensor]:
    """The first ``count`` images of a split of ``root`` (no augmentation)."""
    dataset = DetectionDataModule(format=data_format, root=str(root), test_split=split, augment=False).dataset("test")
    return [dataset[i][0] for i in range(min(count, len(dataset)))]


def run(quick: bool) -> dict:
    modes, rounds, count = (MODES[:1], 1, 2) if quick else (MODES, ROUNDS, IMAGES)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="bench_fast_vs_faster_") as tmp, torch_threads(1 if quick else THREADS):
        images = split_images(tiny_shapes(Path(tmp) / "shapes") if quick else shapes(), count)
        faster = FasterRCNN(backbone=SmallCNN(width=16), anchor_sizes=(16, 32, 64), rpn_pre_nms_top_n=(600, 300),
                            rpn_post_nms_top_n=(300, 100), **SHAPES_HEAD).eval()  # fmt: skip
        measures: dict[str, Callable[[Tensor], object]] = {"faster": lambda im: faster([im])}
        boxes_per_image = {}
        for mode in modes:
            on_the_fly = FastRCNN(backbone=SmallCNN(width=16), proposal_mode=mode, cache_dir=None, **SHAPES_HEAD).eval()
            bundle: dict[str, Tensor] = dict(on_the_fly.proposals.entry(image_to_uint8(image)) for image in images)
            path = Path(tmp) / f"{mode}.pt"
            torch.save(bundle, path)
            cached = FastRCNN(backbone=SmallCNN(width=16), proposal_mode=mode, precomputed_proposals=path, **SHAPES_HEAD)
            cached.load_state_dict(on_the_fly.state_dict())
            cached.eval().proposals.precomputed()  # loaded before timing
            boxes_per_image[mode] = sum(len(b) for b in bundle.values()) / len(bundle)
            measures[f"{mode}/proposals"] = lambda im, m=on_the_fly: m.proposals.compute(image_to_uint8(im))
            measures[f"{mode}/network"] = lambda im, m=cached: m([im])
            measures[f"{mode}/total"] = lambda im, m=on_the_fly: m([im])
        best = best_of_rounds(measures, images, rounds)
    figures: dict = {"images": len(images), "threads": 1 if quick else THREADS, "rounds": rounds,
                     "faster_ms": round(1000 * best["faster"], 1)}  # fmt: skip
    for mode in modes:
        figures[mode] = {
            "proposals_ms": round(1000 * best[f"{mode}/proposals"], 1),
            "network_ms": round(1000 * best[f"{mode}/network"], 1),
            "total_ms": round(1000 * best[f"{mode}/total"], 1),
            "boxes_per_image": round(boxes_per_image[mode], 1),
            "total_vs_faster": round(best[f"{mode}/total"] / best["faster"], 2),
            "network_vs_faster": round(best[f"{mode}/network"] / best["faster"], 2),
        }
    return figures
