"""OverFeat's efficiency: one dense pass vs the same network run window by window.

The network is ``OverFeatNet`` on a padding-free backbone (``detection.backbones.ValidCNN``, width
16, tap c3, the paper's last max-pool P = 3, fc6 2 x 2 pooled cells, fc6/fc7 256 wide, 4
classes), so the dense output at position ``(u, v)`` must equal the network applied to the window
crop at pixel ``(u * s, v * s)`` (``s`` the output stride, offset pooling on). Both ways run on
the same random images (128 and 512 px squares) in eval mode; the windows are cut with
``Tensor.unfold`` and fed in batches of 256 (the fair comparison: batched windows use the same
vectorised kernels); each time is the median of 3 runs after a warm-up. The two outputs must
agree (max abs difference <= 1e-4); the issue asks for a speed ratio >= 10x at 512 px.

    OMP_NUM_THREADS=1 python -m benchmarks run overfeat_speed [--quick]

Figures: per size ``"<size>": {windows, dense_s, window_by_window_s, ratio, max_abs_diff}``, the
window (``window_px``) and its stride (``stride_px``), and ``goal_met``.
"""

import statistics
import time

import torch
from torch import Tensor

from detection.backbones import ValidCNN
from detection.overfeat import OverFeatNet

GOAL_RATIO = 10.0  # the issue: dense evaluation at least 10x faster at 512 px
GOAL_SIZE = 512
SIZES = (128, GOAL_SIZE)
WIDTH, FEATURE, POOL, KERNEL, HIDDEN, NUM_CLASSES = 16, "c3", 3, 2, 256, 4
CHUNK = 256  # windows per batch, window by window
REPEATS = 3
TOLERANCE = 1e-4


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


def run(quick: bool) -> dict:
    sizes, repeats = ((SIZES[0],), 1) if quick else (SIZES, REPEATS)
    torch.manual_seed(0)
    backbone = ValidCNN(width=WIDTH)
    stride = backbone.strides[FEATURE]
    net = OverFeatNet(
        backbone=backbone, num_classes=NUM_CLASSES, feature=FEATURE, window_size=KERNEL * POOL * stride,
        pool_size=POOL, offset_pooling=True, class_agnostic=False, hidden=HIDDEN,
    ).eval()  # fmt: skip
    crop = backbone.input_size(FEATURE, KERNEL * POOL)
    figures: dict = {"window_px": crop, "stride_px": net.stride, "threads": torch.get_num_threads()}
    met = True
    for size in sizes:
        if size < crop:
            raise ValueError(f"a {size}-px image is smaller than one window ({crop} px)")
        images = torch.rand(1, 3, size, size)
        with torch.inference_mode():
            dense, dense_s = timed(lambda: net.dense(images), repeats)
            windows, windows_s = timed(lambda: window_by_window(net, images, crop, CHUNK), repeats)
        if dense.shape != windows.shape:
            raise RuntimeError(f"dense output {tuple(dense.shape)} != window-by-window {tuple(windows.shape)}")
        diff = (dense - windows).abs().max().item()
        ratio = windows_s / dense_s
        met &= diff <= TOLERANCE and (size != GOAL_SIZE or ratio >= GOAL_RATIO)
        figures[str(size)] = {
            "windows": dense.shape[-2] * dense.shape[-1],
            "dense_s": round(dense_s, 4),
            "window_by_window_s": round(windows_s, 4),
            "ratio": round(ratio, 1),
            "max_abs_diff": float(f"{diff:.2e}"),
        }
    figures["goal_met"] = met
    return figures
