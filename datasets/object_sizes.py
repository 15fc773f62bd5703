"""How big the objects of a split are, at the file's size and at a config's input size, against its anchors.

A detector can only find what its input size, feature stride and anchors let it localise. This
module measures a split's boxes and sets them against a config's model (``scripts/check_dataset.py
--config``):

- **sizes**: box width, height and size ``sqrt(w h)`` percentiles in pixels, at the original image
  size and after the model's resize (``min_size``/``max_size`` as torchvision's
  ``GeneralizedRCNNTransform`` scales: one factor ``min(min_size / short side, max_size / long
  side)``; ``image_size``: a square, aspect not kept; neither: the files' own size).
- **warnings**: objects smaller than one cell of the finest stride the head reads, objects
  smaller than the smallest anchor, and anchors whose best possible recall is low.
- **suggestions**: an input size and anchors for the config.

Anchors are torchvision's ``AnchorGenerator`` grid: every ``size`` with every ``aspect_ratio``
``r = h / w`` gives a ``size / sqrt(r) x size * sqrt(r)`` box. Two fit measures, both on box
shapes alone (centred, as if an anchor sat on every object's centre, an upper bound):

- YOLOv5 AutoAnchor's **best possible recall** (BPR): an anchor fits a box when neither side
  differs by more than ``ANCHOR_RATIO_THRESHOLD`` (4) times; BPR is the fraction of boxes some
  anchor fits. AutoAnchor recomputes the anchors below ``GOOD_BPR`` (0.98).
- YOLOv2's **mean best IoU**: each box's best shape IoU with an anchor, averaged.

The fitted anchors keep the config's counts (sizes split evenly over its pyramid levels):
sizes log-spaced from the 5th to the 95th percentile of ``sqrt(w h)`` at the suggested input
size (torchvision's sizes double per step; log spacing keeps that form over the objects' range),
ratios at the evenly spaced quantiles of ``h / w``. For comparison, YOLO-style free anchors
(``k = sizes x ratios``) are clustered with YOLOv2's k-means under the ``1 - IoU`` distance.

What already fits is kept, as YOLOv5's AutoAnchor keeps anchors whose BPR is at least ``GOOD_BPR``:
when the 5th-percentile object spans ``MIN_OBJECT_STRIDES`` cells of the finest stride and no
warning is raised, the suggestion is the config's own input size and anchors, and the fitted ones
are printed beside it, not suggested (on BCCD, fitting the config's already fitting anchors and
size lowered test mAP@0.5 by 0.037: ``python -m benchmarks run anchor_suggestion``). Otherwise the
fitted ones are suggested.

The fitted input size makes the 5th-percentile object ``MIN_OBJECT_STRIDES`` cells of the
finest stride wide (4 x 8 = 32 px for a stride-8 tap: COCO's small/medium boundary, below which
every detector's AP drops), rounded up to a multiple of 32. YOLO's cells are a fixed fraction of
its square input (``image_size / grid_size``), so no input size changes how many cells an object
spans: for a grid head the suggestion is a ``grid_size`` whose cell is no larger than the
5th-percentile object.

Shape letters: ``B`` boxes, ``A`` anchors.
"""

import importlib
import inspect
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

PERCENTILES = (5, 25, 50, 75, 95)
ANCHOR_RATIO_THRESHOLD = 4.0  # YOLOv5 AutoAnchor: an anchor fits a box when no side differs more than 4x
GOOD_BPR = 0.98  # AutoAnchor keeps anchors whose best possible recall is at least this
MIN_OBJECT_STRIDES = 4  # the 5th-percentile object should span this many cells of the finest stride
SIZE_MULTIPLE = 32  # suggested input sizes are multiples of the coarsest usual stride
KMEANS_ITERATIONS = 100
KMEANS_RESTARTS = 5
KMEANS_SEED = 0
RATIO_DECIMALS = 2


class BoxSizes:
    """Box sizes of a split, one row per box: ``wh [B, 2]`` (width, height) pixels at the file's size and
    ``image_hw [B, 2]`` the size (H, W) of the box's image. ``images`` counts the images read."""

    def __init__(self) -> None:
        self._wh: list[np.ndarray] = []
        self._image_hw: list[np.ndarray] = []
        self.images = 0

    def add(self, boxes: np.ndarray, image_hw: tuple[int, int]) -> None:
        """One image's boxes ``[K, 4]`` xyxy pixels and its ``(H, W)``."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        self._wh.append(boxes[:, 2:] - boxes[:, :2])
        self._image_hw.append(np.tile(np.asarray(image_hw, np.float64), (len(boxes), 1)))
        self.images += 1

    def add_all(self, other: "BoxSizes") -> None:
        """Every box of ``other`` (another root of a concatenated split)."""
        self._wh.append(other.wh)
        self._image_hw.append(other.image_hw)
        self.images += other.images

    @property
    def wh(self) -> np.ndarray:
        return np.concatenate([np.zeros((0, 2)), *self._wh])

    @property
    def image_hw(self) -> np.ndarray:
        return np.concatenate([np.zeros((0, 2)), *self._image_hw])

    def __len__(self) -> int:
        return sum(len(wh) for wh in self._wh)


@dataclass(frozen=True)
class InputResize:
    """The model transform's resize: ``min_size``/``max_size`` (aspect kept), ``fixed_size`` (a square), or none."""

    min_size: int | None = None
    max_size: int | None = None
    fixed_size: int | None = None

    def scales(self, image_hw: np.ndarray) -> np.ndarray:
        """``[B, 2]`` image sizes (H, W) -> ``[B, 2]`` (x, y) scale factors, as the transform resizes."""
        image_hw = np.asarray(image_hw, np.float64).reshape(-1, 2)
        if self.fixed_size is not None:
            return self.fixed_size / image_hw[:, ::-1]
        if self.min_size is None:
            return np.ones_like(image_hw)
        short, long = image_hw.min(axis=1), image_hw.max(axis=1)
        scale = np.minimum(self.min_size / short, (self.max_size or math.inf) / long)  # GeneralizedRCNNTransform
        return np.stack([scale, scale], axis=1)

    def describe(self) -> str:
        if self.fixed_size is not None:
            return f"image_size {self.fixed_size} (square, aspect not kept)"
        if self.min_size is not None:
            return f"min_size {self.min_size}, max_size {self.max_size}"
        return "the files' own size (the model does not resize)"


@dataclass(frozen=True)
class ModelSizing:
    """What of a config's model bounds the objects it localises: its resize, the strides of the maps
    its head reads (increasing), its anchors (``None``: a head without anchors), and YOLO's ``grid_size``
    (``None``: a head on backbone taps)."""

    resize: InputResize
    strides: tuple[int, ...]
    anchor_sizes: tuple[float, ...] | None = None
    aspect_ratios: tuple[float, ...] | None = None
    grid_size: int | None = None


def percentiles(values: np.ndarray, qs: tuple[int, ...] = PERCENTILES) -> dict[int, float]:
    """``{q: the q-th percentile}`` of ``values`` (empty: nothing)."""
    values = np.asarray(values, np.float64)
    return {q: float(np.percentile(values, q)) for q in qs} if values.size else {}


def object_size(wh: np.ndarray) -> np.ndarray:
    """``[B, 2]`` -> ``[B]`` the side ``sqrt(w h)`` of a square of the same area (an anchor's ``size``)."""
    return np.sqrt(np.prod(np.asarray(wh, np.float64).reshape(-1, 2), axis=1))


def anchor_shapes(sizes: tuple[float, ...], aspect_ratios: tuple[float, ...]) -> np.ndarray:
    """torchvision's ``AnchorGenerator`` shapes: ``[A, 2]`` (w, h) = ``(size / sqrt(r), size * sqrt(r))``, ``r = h / w``."""
    size = np.repeat(np.asarray(sizes, np.float64), len(aspect_ratios))
    root = np.sqrt(np.tile(np.asarray(aspect_ratios, np.float64), len(sizes)))
    return np.stack([size / root, size * root], axis=1)


def shape_iou(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """``[B, 2]`` and ``[A, 2]`` (w, h) -> ``[B, A]`` IoU of the two boxes centred on one point."""
    inter = np.minimum(wh[:, None, 0], anchors[None, :, 0]) * np.minimum(wh[:, None, 1], anchors[None, :, 1])
    union = np.prod(wh, axis=1)[:, None] + np.prod(anchors, axis=1)[None, :] - inter
    return inter / np.maximum(union, 1e-12)


def best_possible_recall(wh: np.ndarray, anchors: np.ndarray, threshold: float = ANCHOR_RATIO_THRESHOLD) -> float:
    """YOLOv5 AutoAnchor's BPR: the fraction of boxes with an anchor whose width and height ratios
    both lie within ``[1 / threshold, threshold]``."""
    if not len(wh):
        return 1.0
    ratio = wh[:, None, :] / anchors[None, :, :]  # [B, A, 2]
    worst_side = np.minimum(ratio, 1.0 / ratio).min(axis=2)  # [B, A], 1 for a perfect fit
    return float((worst_side.max(axis=1) >= 1.0 / threshold).mean())


def mean_best_iou(wh: np.ndarray, anchors: np.ndarray) -> float:
    """YOLOv2's fit of anchors: each box's best shape IoU, averaged."""
    return float(shape_iou(wh, anchors).max(axis=1).mean()) if len(wh) else 1.0


def kmeans_anchors(
    wh: np.ndarray, k: int, *, iterations: int = KMEANS_ITERATIONS, restarts: int = KMEANS_RESTARTS, seed: int = KMEANS_SEED
) -> np.ndarray:
    """YOLOv2's dimension clusters: k-means of box shapes under ``1 - IoU``; ``[k, 2]`` (w, h) by area.

    ``restarts`` seeded k-means++ starts, the best mean best IoU kept; each centre is its members'
    median (robust to a few huge boxes). Fewer distinct shapes than ``k`` give fewer centres."""
    wh = np.asarray(wh, np.float64).reshape(-1, 2)
    distinct = np.unique(wh, axis=0)
    k = min(k, len(distinct))
    if k == 0:
        return np.zeros((0, 2))
    rng = np.random.default_rng(seed)
    best, best_fit = distinct[:k], -1.0
    for _ in range(restarts):
        centres = _kmeans(wh, _kmeans_plus_plus(distinct, k, rng), iterations)
        fit = mean_best_iou(wh, centres)
        if fit > best_fit:
            best, best_fit = centres, fit
    return best[np.argsort(np.prod(best, axis=1))]


def _kmeans_plus_plus(shapes: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` starting centres: each next one drawn with probability ~ its squared distance to the nearest."""
    centres = [shapes[rng.integers(len(shapes))]]
    for _ in range(1, k):
        distance = 1.0 - shape_iou(shapes, np.asarray(centres)).max(axis=1)
        centres.append(shapes[rng.choice(len(shapes), p=distance**2 / (distance**2).sum())])
    return np.asarray(centres)


def _kmeans(wh: np.ndarray, centres: np.ndarray, iterations: int) -> np.ndarray:
    for _ in range(iterations):
        nearest = shape_iou(wh, centres).argmax(axis=1)
        updated = np.asarray([np.median(wh[nearest == j], axis=0) if (nearest == j).any() else centres[j] for j in range(len(centres))])
        if np.allclose(updated, centres):
            break
        centres = updated
    return centres


def suggest_anchors(wh: np.ndarray, num_sizes: int, num_ratios: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """torchvision-form anchors for boxes ``wh``: ``num_sizes`` sizes log-spaced over the 5th..95th
    percentile of ``sqrt(w h)``, ``num_ratios`` ratios ``h / w`` at evenly spaced quantiles."""
    sizes = object_size(wh)
    low, high = np.percentile(sizes, 5), np.percentile(sizes, 95)
    anchor_sizes = tuple(round(float(s)) for s in np.geomspace(low, high, num_sizes))
    quantiles = (np.arange(num_ratios) + 0.5) / num_ratios * 100
    ratios = np.exp(np.percentile(np.log(wh[:, 1] / wh[:, 0]), quantiles))
    return anchor_sizes, tuple(float(round(r, RATIO_DECIMALS)) for r in ratios)


def suggest_input_size(sizes: BoxSizes, finest_stride: int, resize: InputResize) -> InputResize:
    """An input size making the 5th-percentile object ``MIN_OBJECT_STRIDES`` strides wide (multiples of 32).

    Keeps the config's form: ``min_size``/``max_size`` scaled together (their ratio kept, the
    median image's when the config does not resize), or one ``image_size``."""
    p5 = float(np.percentile(object_size(sizes.wh * resize.scales(sizes.image_hw)), 5))
    factor = MIN_OBJECT_STRIDES * finest_stride / p5

    def rounded(value: float) -> int:
        return max(SIZE_MULTIPLE, math.ceil(value / SIZE_MULTIPLE) * SIZE_MULTIPLE)

    if resize.fixed_size is not None:
        return InputResize(fixed_size=rounded(resize.fixed_size * factor))
    if resize.min_size is not None:
        min_size = rounded(resize.min_size * factor)
        return InputResize(min_size=min_size, max_size=rounded(min_size * resize.max_size / resize.min_size))
    short, long = np.median(sizes.image_hw.min(axis=1)), np.median(sizes.image_hw.max(axis=1))
    min_size = rounded(short * factor)
    return InputResize(min_size=min_size, max_size=rounded(min_size * long / short))


# ---------------------------------------------------------------------------------- config
def _class(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _arguments(node: dict[str, Any]) -> dict[str, Any]:
    """A ``class_path``/``init_args`` node's arguments with the class's defaults filled in."""
    defaults = {
        name: p.default for name, p in inspect.signature(_class(node["class_path"])).parameters.items()
        if p.default is not inspect.Parameter.empty
    }  # fmt: skip
    return {**defaults, **(node.get("init_args") or {})}


def backbone_strides(node: dict[str, Any]) -> dict[str, int]:
    """The tap strides of a config's backbone node, built without weights (nothing is read or downloaded)."""
    args = dict(node.get("init_args") or {})
    if "weights" in args:
        args["weights"] = None
    return dict(_class(node["class_path"])(**args).strides)


def model_sizing(config: dict[str, Any]) -> ModelSizing | None:
    """The ``ModelSizing`` of a training config (``model.init_args.model``), or ``None`` when its model
    has no box geometry to check (e.g. a semantic head, or a multi-scale one)."""
    system = config.get("model") or {}  # the DetectionSystem's arguments, given flat or as init_args
    node = (system.get("init_args") or system).get("model")
    if not isinstance(node, dict) or "class_path" not in node:
        return None
    args = _arguments(node)
    if getattr(_class(node["class_path"]), "task", "detection") != "detection":
        return None
    if "image_size" in args:  # a fixed square (YOLO, localization)
        resize = InputResize(fixed_size=int(args["image_size"]))
    elif "min_size" in args and "max_size" in args:
        resize = InputResize(min_size=int(args["min_size"]), max_size=int(args["max_size"]))
    else:
        return None
    if "grid_size" in args:  # YOLO: one cell of an S x S grid
        strides = (max(1, int(args["image_size"]) // int(args["grid_size"])),)
    elif args.get("feature") is not None and isinstance(args.get("backbone"), dict):  # the taps the head reads
        taps, tap_strides = args["feature"], backbone_strides(args["backbone"])
        strides = tuple(sorted(tap_strides[t] for t in ([taps] if isinstance(taps, str) else taps)))
    else:  # a head regressing from the whole image (localization): no grid to fall between
        strides = ()
    anchors = args.get("anchor_sizes")
    return ModelSizing(
        resize=resize,
        strides=strides,
        anchor_sizes=tuple(float(s) for s in anchors) if anchors else None,
        aspect_ratios=tuple(float(r) for r in args.get("aspect_ratios") or (1.0,)) if anchors else None,
        grid_size=int(args["grid_size"]) if "grid_size" in args else None,
    )


# ---------------------------------------------------------------------------------- report
RPN_POSITIVE_IOU = 0.7  # Faster R-CNN: an anchor overlapping a box less than this is no positive (but the box's best)
DEFAULT_KMEANS_ANCHORS = 9  # YOLOv2/v3's count, for a split checked without a config


def _row(name: str, values: np.ndarray) -> str:
    return f"    {name:<9}" + "".join(f"{v:>8.1f}" for v in percentiles(values).values())


def _size_rows(wh: np.ndarray) -> list[str]:
    return [_row("width", wh[:, 0]), _row("height", wh[:, 1]), _row("sqrt(wh)", object_size(wh))]


def _anchor_fit(wh: np.ndarray, anchors: np.ndarray) -> str:
    return f"best possible recall {best_possible_recall(wh, anchors):.3f} (YOLOv5, sides within {ANCHOR_RATIO_THRESHOLD:g}x), " \
        f"mean best IoU {mean_best_iou(wh, anchors):.3f} (YOLOv2)"


def _kmeans_line(wh: np.ndarray, k: int) -> list[str]:
    clusters = kmeans_anchors(wh, k)
    shapes = " ".join(f"{w:.0f}x{h:.0f}" for w, h in clusters)
    return [f"  k-means anchors (YOLOv2 clusters, k={len(clusters)}, w x h): {shapes}", f"    {_anchor_fit(wh, clusters)}"]


def size_lines(sizes: BoxSizes, sizing: ModelSizing | None = None) -> tuple[list[str], list[str]]:
    """The checker's object-size section and its warnings: ``(lines, warnings)``.

    Without ``sizing`` (no config): sizes at the original size and k-means anchors for it."""
    header = "    " + " " * 9 + "".join(f"{f'p{q}':>8}" for q in PERCENTILES)
    lines = [f"object sizes: {len(sizes)} boxes in {sizes.images} images, pixels", header, "  at the original size:"]
    if not len(sizes):
        return [f"object sizes: no boxes in {sizes.images} images"], []
    lines += _size_rows(sizes.wh)
    if sizing is None:
        return lines + _kmeans_line(sizes.wh, DEFAULT_KMEANS_ANCHORS) + ["  (--config CONFIG: sizes at its input size, its anchors and a suggestion)"], []
    wh = sizes.wh * sizing.resize.scales(sizes.image_hw)
    lines += [f"  at the input size ({sizing.resize.describe()}):", *_size_rows(wh)]
    warnings = []
    p5 = percentiles(object_size(wh))[5]
    if sizing.strides and p5 < sizing.strides[0]:
        warnings.append(
            f"5% of objects are under {p5:.1f} px at the input size, less than one cell of the finest map the "
            f"head reads (stride {sizing.strides[0]}): """ + (
                "a finer grid (grid_size)" if sizing.grid_size else "enlarge the input size or read a finer tap"
            )
        )
    num_sizes, num_ratios = (len(sizing.anchor_sizes), len(sizing.aspect_ratios)) if sizing.anchor_sizes else (0, 0)
    if sizing.anchor_sizes:
        anchors = anchor_shapes(sizing.anchor_sizes, sizing.aspect_ratios)
        lines += [
            (
                f"anchors: sizes {[int(s) for s in sizing.anchor_sizes]}, aspect_ratios (h/w) {list(sizing.aspect_ratios)}, "
                f"on strides {list(sizing.strides)}"
            ),
            f"  {_anchor_fit(wh, anchors)}",
        ]
        smallest = min(sizing.anchor_sizes)
        if p5 < smallest * math.sqrt(RPN_POSITIVE_IOU):
            warnings.append(
                f"5% of objects are under {p5:.1f} px at the input size: the smallest anchor ({smallest:.0f} px) overlaps "
                f"them by IoU < {RPN_POSITIVE_IOU} (the RPN's positive threshold): add a smaller anchor or enlarge the input"
            )
        bpr = best_possible_recall(wh, anchors)
        if bpr < GOOD_BPR:
            warnings.append(
                f"the anchors fit {bpr:.1%} of the boxes within {ANCHOR_RATIO_THRESHOLD:g}x per side (YOLOv5 AutoAnchor "
                f"recomputes anchors below {GOOD_BPR:.0%}): use the suggested anchors"
            )
    if not sizing.strides:
        return lines, warnings
    if sizing.grid_size is not None:  # cells scale with the input: only a finer grid makes them smaller
        grid = max(sizing.grid_size, math.ceil(sizing.grid_size * sizing.strides[0] / p5))
        return lines + [f"suggested grid_size: {grid} (cells no larger than the 5th-percentile object, {p5:.1f} px at the input size)"], warnings
    fitted = suggest_input_size(sizes, sizing.strides[0], sizing.resize)
    reach = MIN_OBJECT_STRIDES * sizing.strides[0]
    keep_size = p5 >= reach  # AutoAnchor's rule: keep what already reaches the objects
    if keep_size:
        lines.append(f"suggested input size: {sizing.resize.describe()}, the config's (its 5th-percentile object, {p5:.1f} px, spans {MIN_OBJECT_STRIDES} cells of stride {sizing.strides[0]})")
    else:
        lines.append(f"suggested input size: {fitted.describe()} (the 5th-percentile object {MIN_OBJECT_STRIDES} cells of stride {sizing.strides[0]}: {reach} px)")
    if not num_sizes:
        return lines, warnings
    if not keep_size or warnings:  # anchors fitted at the suggested input size
        return lines + _fitted_anchor_lines("suggested anchors at that size: ", sizes, sizing.resize if keep_size else fitted, num_sizes, num_ratios), warnings
    config_anchors = f"anchor_sizes: {[int(s) for s in sizing.anchor_sizes]}, aspect_ratios: {list(sizing.aspect_ratios)}"
    return lines + [
        f"suggested anchors: {config_anchors}, the config's (they fit {bpr:.1%} of the boxes, AutoAnchor keeps anchors from {GOOD_BPR:.0%})",
        *_fitted_anchor_lines(f"fitted to the boxes, not suggested (on BCCD they lowered mAP, docs/own_dataset.md): {fitted.describe()}, ", sizes, fitted, num_sizes, num_ratios),
    ], warnings


def _fitted_anchor_lines(prefix: str, sizes: BoxSizes, resize: InputResize, num_sizes: int, num_ratios: int) -> list[str]:
    """Anchors fitted to the boxes at ``resize``'s size (``prefix`` + their values), their fit and YOLOv2's k-means."""
    wh = sizes.wh * resize.scales(sizes.image_hw)
    anchor_sizes, ratios = suggest_anchors(wh, num_sizes, num_ratios)
    return [
        f"{prefix}anchor_sizes: {list(anchor_sizes)}, aspect_ratios: {list(ratios)}",
        f"  {_anchor_fit(wh, anchor_shapes(anchor_sizes, ratios))}",
        *_kmeans_line(wh, num_sizes * num_ratios),
    ]
