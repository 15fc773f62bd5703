"""YOLO v1 benchmarks: learning on generated shapes through Lightning, and inference speed vs Faster R-CNN.

    # learning: train from scratch within the demo budget, then test mAP@0.5 (VOC area AP)
    python scripts/bench_yolo.py learn --config configs/yolo/shapes.yaml [-- --model.lr 0.02 ...]
    # speed: images per second, YOLO vs Faster R-CNN on the same backbone and input size
    python scripts/bench_yolo.py speed --image-size 128 --width 32 --batch-sizes 1 8

``learn`` runs ``scripts/train.py fit`` and ``test`` (the shared LightningCLI) and prints the
training wall time and the validation / test ``map_50`` it logged.

``speed`` times ``model(images)`` in eval mode (``torch.inference_mode``, the given number of
threads) for both detectors built on the *same* backbone class and tap, at the same fixed
input size, counting the model-side transform and the postprocessing. Weights are random
(nothing is downloaded), so both detectors run their full test-time path: Faster R-CNN keeps
its default 1000 proposals per image through the RoI head; YOLO decodes its S*S*B boxes and
thresholds at the configured score. The Faster R-CNN is ``detection.faster_rcnn.FasterRCNN``
when that module exists, else torchvision's ``FasterRCNN`` on the same backbone (said in the output).
"""

import argparse
import csv
import os
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch  # noqa: E402
import yaml  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from detection.backbones import SmallCNN  # noqa: E402
from detection.yolo import YOLOv1  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NUM_CLASSES = 4  # the shapes classes


# ----------------------------------------------------------------------------- learning
def _latest_run(save_dir: Path, name: str) -> Path:
    versions = sorted((save_dir / name).glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    if not versions:
        raise FileNotFoundError(f"no run under {save_dir / name}")
    return versions[-1]


def _metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def learn(args: argparse.Namespace) -> None:
    train = [sys.executable, str(REPO / "scripts" / "train.py")]
    extra = ["--trainer.max_time", args.max_time, *args.overrides]
    start = time.perf_counter()
    subprocess.run([*train, "fit", "--config", args.config, *extra], check=True, cwd=REPO)
    fit_s = time.perf_counter() - start
    logger = yaml.safe_load(Path(REPO / args.config).read_text())["trainer"]["logger"][0]["init_args"]
    run = _latest_run(REPO / logger["save_dir"], logger["name"])
    rows = _metrics(run)
    val = [(r.get("epoch"), float(r["val/map_50"])) for r in rows if r.get("val/map_50")]
    train_time = [float(r["train_time_s"]) for r in rows if r.get("train_time_s")]
    best = run / "checkpoints" / "best.ckpt"
    subprocess.run([*train, "test", "--config", args.config, *extra, "--ckpt_path", str(best)], check=True, cwd=REPO)
    test_rows = _metrics(_latest_run(REPO / logger["save_dir"], logger["name"]))
    test_map = [float(r["test/map_50"]) for r in test_rows if r.get("test/map_50")]
    print(f"\nrun: {run}")
    print(f"fit wall time (incl. validation and start-up): {fit_s:.0f} s  (budget {args.max_time})")
    if train_time:
        print(f"training time logged: {train_time[-1]:.0f} s")
    print("val map_50 by epoch: " + ", ".join(f"{e}: {m:.3f}" for e, m in val))
    print(f"test map_50 (best.ckpt): {test_map[-1]:.4f}" if test_map else "test map_50: not logged")


# ----------------------------------------------------------------------------- speed
class _TapAsFeatureDict(nn.Module):
    """Our backbone's one tap as the ``OrderedDict`` torchvision's detectors expect."""

    def __init__(self, backbone: nn.Module, feature: str) -> None:
        super().__init__()
        self.body, self.feature = backbone, feature
        self.out_channels = backbone.channels[feature]

    def forward(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        return OrderedDict([("0", self.body(x)[self.feature])])


def _faster_rcnn(backbone: nn.Module, *, feature: str, image_size: int) -> tuple[nn.Module, str]:
    try:
        from detection.faster_rcnn import FasterRCNN  # the project's own, when present
    except ImportError:
        FasterRCNN = None
    if FasterRCNN is not None:
        return FasterRCNN(backbone=backbone, num_classes=NUM_CLASSES, feature=feature, min_size=image_size,
                          max_size=image_size), "detection.faster_rcnn.FasterRCNN"
    from torchvision.models.detection import FasterRCNN as TVFasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign

    anchors = AnchorGenerator(sizes=((16, 32, 64, 128),), aspect_ratios=((0.5, 1.0, 2.0),))
    model = TVFasterRCNN(
        _TapAsFeatureDict(backbone, feature), num_classes=NUM_CLASSES + 1, min_size=image_size, max_size=image_size,
        rpn_anchor_generator=anchors, box_roi_pool=MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=2),
    )
    return model, "torchvision.models.detection.FasterRCNN (same backbone and tap; ours not available)"


def _images_per_second(model: nn.Module, images: list[Tensor], *, batch_size: int, warmup: int, repeats: int) -> float:
    batches = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
    with torch.inference_mode():
        for batch in batches[:warmup]:
            model(batch)
        best = float("inf")
        for _ in range(repeats):  # best of `repeats` passes over the images: least disturbed by other load
            start = time.perf_counter()
            for batch in batches:
                model(batch)
            best = min(best, time.perf_counter() - start)
    return len(images) / best


def speed(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    yolo = YOLOv1(
        backbone=SmallCNN(width=args.width), num_classes=NUM_CLASSES, grid_size=args.grid_size, image_size=args.image_size,
        feature=args.feature, head_convs=args.head_convs, head_channels=args.head_channels, hidden_dim=args.hidden_dim,
        score_threshold=args.score_threshold,
    ).eval()
    frcnn, which = _faster_rcnn(SmallCNN(width=args.width), feature=args.feature, image_size=args.image_size)
    frcnn.eval()
    images = [torch.rand(3, args.image_size, args.image_size) for _ in range(args.images)]
    print(f"backbone SmallCNN(width={args.width}) tap {args.feature}, input {args.image_size} px, "
          f"{args.images} images, {args.threads} threads; Faster R-CNN = {which}")
    print(f"{'batch':>5} {'YOLO img/s':>11} {'Faster R-CNN img/s':>19} {'ratio':>6}")
    for bs in args.batch_sizes:
        y = _images_per_second(yolo, images, batch_size=bs, warmup=args.warmup, repeats=args.repeats)
        f = _images_per_second(frcnn, images, batch_size=bs, warmup=args.warmup, repeats=args.repeats)
        print(f"{bs:>5} {y:>11.1f} {f:>19.1f} {y / f:>5.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("learn", help="train through scripts/train.py and report mAP@0.5")
    p.add_argument("--config", default="configs/yolo/shapes.yaml")
    p.add_argument("--max-time", default="00:00:08:00", help="trainer.max_time (DD:HH:MM:SS)")
    p.add_argument("overrides", nargs="*", help="extra train.py overrides, after --, e.g. -- --model.lr 0.02")
    p.set_defaults(func=learn)
    p = sub.add_parser("speed", help="inference images/s, YOLO vs Faster R-CNN")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--width", type=int, default=32, help="SmallCNN width (both detectors)")
    p.add_argument("--feature", default="c4", help="backbone tap (both detectors)")
    p.add_argument("--grid-size", type=int, default=8)
    p.add_argument("--head-convs", type=int, default=2)
    p.add_argument("--head-channels", type=int, default=128)
    p.add_argument("--hidden-dim", type=int, default=512)
    p.add_argument("--score-threshold", type=float, default=0.01)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(func=speed)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
