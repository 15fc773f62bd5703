"""OverFeat's efficiency: one dense pass vs the same network run window by window.

The network is ``OverFeatNet`` on a padding-free backbone (``detection.backbones.ValidCNN``), so
the dense output at position ``(u, v)`` must equal the network applied to the window crop at
pixel ``(u * s, v * s)`` (``s`` the output stride, offset pooling on). Both ways run on the same
images in eval mode; the windows are cut with ``Tensor.unfold`` and fed in batches of
``--chunk`` (the fair comparison: batched windows use the same vectorised kernels). The script
checks the two outputs agree (max abs difference <= ``--tolerance``) and prints the speed
ratio; the issue asks for >= 10x at 512 px.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_overfeat_speed.py
    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_overfeat_speed.py --sizes 128 512 --feature c3 --pool 3 --kernel 2
"""

import argparse
import statistics
import sys
import time

import torch
from torch import Tensor

from detection.backbones import ValidCNN
from detection.overfeat import OverFeatNet

GOAL_RATIO = 10.0  # the issue: dense evaluation at least 10x faster at 512 px
GOAL_SIZE = 512


def window_crops(images: Tensor, crop: int, stride: int) -> Tensor:
    """``images [N, 3, H, W]`` -> every ``crop x crop`` window at ``stride``: ``[N * Ho * Wo, 3, crop, crop]``."""
    n, channels = images.shape[:2]
    windows = images.unfold(2, crop, stride).unfold(3, crop, stride)  # [N, 3, Ho, Wo, crop, crop]
    rows, cols = windows.shape[2:4]
    return windows.permute(0, 2, 3, 1, 4, 5).reshape(n * rows * cols, channels, crop, crop)  # -> [N*Ho*Wo, 3, crop, crop]


def window_by_window(net: OverFeatNet, images: Tensor, crop: int, chunk: int) -> Tensor:
    """The network on each window crop, ``chunk`` windows per batch -> ``[N, K, Ho, Wo]`` like ``net.dense``."""
    n, _, height, width = images.shape
    rows, cols = (height - crop) // net.stride + 1, (width - crop) // net.stride + 1
    crops = window_crops(images, crop, net.stride)
    outputs = torch.cat([net.dense(crops[i : i + chunk]) for i in range(0, len(crops), chunk)])  # [N*Ho*Wo, K, 1, 1]
    return outputs[:, :, 0, 0].reshape(n, rows, cols, -1).permute(0, 3, 1, 2)  # [N, Ho, Wo, K] -> [N, K, Ho, Wo]


def timed(fn, repeats: int) -> tuple[Tensor, float]:
    """``fn()``'s result and its median wall time in seconds over ``repeats`` runs (after one warm-up)."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, GOAL_SIZE], help="square image sides in pixels")
    parser.add_argument("--width", type=int, default=16, help="ValidCNN width")
    parser.add_argument("--feature", default="c3", help="the backbone tap the heads read")
    parser.add_argument("--pool", type=int, default=3, help="the last max-pool P (the paper's 3)")
    parser.add_argument("--kernel", type=int, default=2, help="fc6's kernel k in pooled cells")
    parser.add_argument("--hidden", type=int, default=256, help="fc6/fc7 width")
    parser.add_argument("--num-classes", type=int, default=4)
    parser.add_argument("--chunk", type=int, default=256, help="windows per batch, window by window")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per way (median)")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="max abs difference allowed")
    args = parser.parse_args()

    torch.manual_seed(0)
    backbone = ValidCNN(width=args.width)
    stride = backbone.strides[args.feature]
    net = OverFeatNet(
        backbone=backbone, num_classes=args.num_classes, feature=args.feature, window_size=args.kernel * args.pool * stride,
        pool_size=args.pool, offset_pooling=True, class_agnostic=False, hidden=args.hidden,
    ).eval()
    crop = backbone.input_size(args.feature, args.kernel * args.pool)
    print(f"threads: {torch.get_num_threads()}; ValidCNN(width={args.width}) tap {args.feature} (stride {stride}), "
          f"P = {args.pool}, fc6 {args.kernel} x {args.kernel}: one window = {crop} x {crop} px, "
          f"a window every {net.stride} px (offset pooling)")
    print("| image | windows | dense s | window by window s | ratio | max abs diff |")
    print("|---|---|---|---|---|---|")
    failed = False
    for size in args.sizes:
        if size < crop:
            print(f"| {size} px | - | - | - | - | smaller than one window ({crop} px) |")
            continue
        images = torch.rand(1, 3, size, size)
        with torch.inference_mode():
            dense, dense_s = timed(lambda: net.dense(images), args.repeats)
            windows, windows_s = timed(lambda: window_by_window(net, images, crop, args.chunk), args.repeats)
        if dense.shape != windows.shape:
            raise RuntimeError(f"dense output {tuple(dense.shape)} != window-by-window {tuple(windows.shape)}")
        diff = (dense - windows).abs().max().item()
        ratio = windows_s / dense_s
        failed |= diff > args.tolerance or (size == GOAL_SIZE and ratio < GOAL_RATIO)
        count = dense.shape[-2] * dense.shape[-1]
        print(f"| {size} px | {count} ({dense.shape[-2]} x {dense.shape[-1]}) | {dense_s:.4f} | {windows_s:.4f} | "
              f"{ratio:.1f}x | {diff:.2e} |")
    print(f"goal: max abs diff <= {args.tolerance:g} at every size, ratio >= {GOAL_RATIO:g}x at {GOAL_SIZE} px: "
          f"{'FAILED' if failed else 'met'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
