"""Report galleries: drawn crops of the worst detections and missed objects, and the worst
segmented images side by side with their ground truth.

Images come from a ``load_image(image_id) -> np.ndarray[H, W, 3]`` uint8 callable, so the
galleries work from any reader. Each gallery is one PNG grid (matplotlib).
"""

from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from datasets.palette import voc_palette  # noqa: E402
from detection.evaluation.error_analysis import Detection, MissedObject  # noqa: E402

LoadImage = Callable[[int], np.ndarray]
Box = tuple[float, float, float, float]
CONTEXT = 0.5  # crop margin, as a fraction of the box size on each side
COLUMNS = 4
PREDICTION_COLOUR = "red"
GROUND_TRUTH_COLOUR = "lime"


def _crop_window(boxes: Sequence[Box], height: int, width: int) -> tuple[int, int, int, int]:
    """The union of ``boxes`` grown by ``CONTEXT`` on each side, clipped to the image (x1, y1, x2, y2)."""
    x1, y1 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x2, y2 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    mx, my = CONTEXT * (x2 - x1) + 2, CONTEXT * (y2 - y1) + 2
    return max(int(x1 - mx), 0), max(int(y1 - my), 0), min(int(np.ceil(x2 + mx)), width), min(int(np.ceil(y2 + my)), height)


def _draw_box(ax: plt.Axes, box: Box, origin: tuple[int, int], colour: str) -> None:
    ax.add_patch(Rectangle((box[0] - origin[0], box[1] - origin[1]), box[2] - box[0], box[3] - box[1], fill=False, edgecolor=colour, linewidth=1.5))


def _grid(count: int, rows_of: int = COLUMNS, cell: float = 2.6) -> tuple[plt.Figure, np.ndarray]:
    rows = max(1, -(-count // rows_of))
    fig, axes = plt.subplots(rows, rows_of, figsize=(cell * rows_of, cell * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes


def crop_gallery(
    path: Path,
    items: Sequence[Detection | MissedObject],
    load_image: LoadImage,
    classes: Sequence[str],
    title: str,
) -> Path:
    """One drawn crop per item: the prediction in red, the ground-truth object in green."""
    fig, axes = _grid(len(items))
    for ax, item in zip(axes.flat, items):
        image = load_image(item.image_id)
        if isinstance(item, Detection):
            boxes, prediction, truth = [item.box, *([item.gt_box] if item.gt_box else [])], item.box, item.gt_box
            caption = f"{classes[item.label - 1]} {item.score:.2f}: {item.category}"
            if item.gt_label is not None and item.gt_label != item.label:
                caption += f" ({classes[item.gt_label - 1]})"
        else:
            boxes, prediction, truth = [item.box], None, item.box
            caption = f"missed {classes[item.label - 1]}"
        x1, y1, x2, y2 = _crop_window(boxes, *image.shape[:2])
        ax.imshow(image[y1:y2, x1:x2])
        if truth is not None:
            _draw_box(ax, truth, (x1, y1), GROUND_TRUTH_COLOUR)
        if prediction is not None:
            _draw_box(ax, prediction, (x1, y1), PREDICTION_COLOUR)
        ax.set_title(f"#{item.image_id} {caption}", fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def segmentation_gallery(
    path: Path,
    worst: Sequence[tuple[int, float]],
    load_image: LoadImage,
    load_truth: Callable[[int], np.ndarray],
    load_prediction: Callable[[int], np.ndarray],
) -> Path:
    """One row per ``(image_id, mean IU)``: the image, its ground truth and the prediction (VOC colours)."""
    palette = np.asarray(voc_palette(), dtype=np.uint8).reshape(-1, 3)
    fig, axes = _grid(3 * len(worst), rows_of=3)
    for row, (image_id, iou) in zip(axes, worst):
        panels = [load_image(image_id), palette[load_truth(image_id)], palette[load_prediction(image_id)]]
        for ax, panel, name in zip(row, panels, ("image", "ground truth", "prediction")):
            ax.imshow(panel)
            ax.set_title(f"#{image_id} {name}" + (f" (mean IU {iou:.3f})" if name == "prediction" else ""), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
