"""Generated "shapes" scenes: the embedded default data of the demo and the tests.

A scene is a cluttered background with a variable number of filled shapes of several
classes, at a range of scales and small rotations. Later shapes may partly occlude
earlier ones; a placement that would hide too much of an earlier shape is resampled, so
every painted shape is labelled and every label is clearly visible.

Ground truth is derived from the *visible* pixels (as VOC and COCO annotate):
``boxes`` are the tight box of each visible mask, in detseg's xyxy pixel convention.

Shapes of the arrays (``K`` objects, ``H = W = image_size``):
    image  [H, W, 3] uint8 RGB
    boxes  [K, 4] float32 xyxy pixels
    labels [K] int64 in 1..C (``SHAPE_CLASSES[label - 1]``)
    masks  [K, H, W] uint8 visible instance masks
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPE_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "cross")

MULTI_SIZE_RANGE = (14, 60)  # object side in pixels, multi-object mode
SINGLE_SIZE_RANGE = (36, 100)  # single-object mode (the localization head)
MAX_ROTATION_DEG = 20.0
MAX_HIDDEN_FRACTION = 0.4  # an earlier shape keeps at least 60% of its pixels
MIN_COLOR_DISTANCE = 80.0  # shape colour vs local background, L2 in RGB
PLACEMENT_TRIES = 30


@dataclass(frozen=True)
class Scene:
    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    masks: np.ndarray


def _rotate(points: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotate ``[P, 2]`` points about the origin."""
    theta = np.deg2rad(angle_deg)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    return points @ rotation.T


def _outline(class_name: str, size: float, angle_deg: float) -> np.ndarray:
    """Polygon ``[P, 2]`` of a shape of side ``size`` centred on the origin."""
    half = size / 2.0
    if class_name == "square":
        points = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
    elif class_name == "triangle":
        points = np.array([[0.0, -half], [half, half * 0.8], [-half, half * 0.8]])
    elif class_name == "cross":
        arm = size / 6.0
        points = np.array(
            [
                [-arm, -half], [arm, -half], [arm, -arm], [half, -arm], [half, arm], [arm, arm],
                [arm, half], [-arm, half], [-arm, arm], [-half, arm], [-half, -arm], [-arm, -arm],
            ]
        )
    else:
        raise ValueError(f"no polygon for shape class {class_name!r}")
    return _rotate(points, angle_deg)


def _shape_mask(class_name: str, center: np.ndarray, size: float, angle_deg: float, image_size: int) -> np.ndarray:
    """Full (unoccluded) ``[H, W]`` bool mask of one shape."""
    canvas = Image.new("L", (image_size, image_size), 0)
    draw = ImageDraw.Draw(canvas)
    if class_name == "circle":
        r = size / 2.0
        draw.ellipse([center[0] - r, center[1] - r, center[0] + r, center[1] + r], fill=1)
    else:
        polygon = _outline(class_name, size, angle_deg) + center
        draw.polygon([tuple(p) for p in polygon], fill=1)
    return np.asarray(canvas, dtype=bool)


def _background(rng: np.random.Generator, image_size: int) -> np.ndarray:
    """A colour gradient with noise, thin lines and dots as clutter. ``[H, W, 3]`` float."""
    ramp = np.linspace(0.0, 1.0, image_size)
    start, end = rng.uniform(0, 255, size=3), rng.uniform(0, 255, size=3)
    direction = rng.integers(2)
    t = ramp[None, :, None] if direction == 0 else ramp[:, None, None]
    image = start + (end - start) * t * np.ones((image_size, image_size, 1))
    canvas = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(2, 7)):
        xy = rng.uniform(0, image_size, size=4)
        draw.line(list(xy), fill=tuple(int(c) for c in rng.integers(0, 256, 3)), width=int(rng.integers(1, 3)))
    for _ in range(rng.integers(3, 12)):
        x, y = rng.uniform(0, image_size, size=2)
        r = rng.uniform(1, 3)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    return np.asarray(canvas, dtype=np.float32)


def _contrasting_color(rng: np.random.Generator, background: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A colour far enough from the mean background under ``mask``."""
    local = background[mask].mean(axis=0)
    for _ in range(PLACEMENT_TRIES):
        color = rng.uniform(0, 255, size=3)
        if np.linalg.norm(color - local) >= MIN_COLOR_DISTANCE:
            return color
    return 255.0 - local


def _visible_box(mask: np.ndarray) -> np.ndarray:
    """Tight xyxy box of a non-empty ``[H, W]`` mask, in continuous pixel coordinates."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float32)


def render_scene(
    rng: np.random.Generator,
    *,
    image_size: int = 128,
    max_objects: int = 5,
    single_object: bool = False,
) -> Scene:
    """Draw one scene. Deterministic given the state of ``rng``."""
    if image_size < 32:
        raise ValueError(f"image_size must be >= 32, got {image_size}")
    background = _background(rng, image_size)
    image = background.copy()
    low, high = SINGLE_SIZE_RANGE if single_object else MULTI_SIZE_RANGE
    high = min(high, int(image_size * 0.8))
    low = min(low, high)
    wanted = 1 if single_object else int(rng.integers(1, max_objects + 1))

    visible: list[np.ndarray] = []
    labels: list[int] = []
    for _ in range(wanted):
        for _ in range(PLACEMENT_TRIES):
            label = int(rng.integers(len(SHAPE_CLASSES))) + 1
            size = rng.uniform(low, high)
            margin = size / 2.0
            center = rng.uniform(margin, image_size - margin, size=2)
            angle = rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)
            mask = _shape_mask(SHAPE_CLASSES[label - 1], center, size, angle, image_size)
            if mask.sum() < 16:
                continue
            hides_too_much = any(
                (m & mask).sum() > MAX_HIDDEN_FRACTION * m.sum() or (m & ~mask).sum() < 16 for m in visible
            )
            if not hides_too_much:
                break
        else:
            continue  # no acceptable placement: draw fewer objects
        color = _contrasting_color(rng, image, mask)
        texture = rng.normal(0.0, 6.0, size=(image_size, image_size, 1))
        image[mask] = (color + texture)[mask]
        visible = [m & ~mask for m in visible] + [mask]
        labels.append(label)

    image = image + rng.normal(0.0, 4.0, size=image.shape)
    masks = np.stack(visible).astype(np.uint8) if visible else np.zeros((0, image_size, image_size), np.uint8)
    boxes = np.stack([_visible_box(m) for m in visible]) if visible else np.zeros((0, 4), np.float32)
    return Scene(
        image=np.clip(image, 0, 255).astype(np.uint8),
        boxes=boxes.astype(np.float32),
        labels=np.asarray(labels, dtype=np.int64),
        masks=masks,
    )
