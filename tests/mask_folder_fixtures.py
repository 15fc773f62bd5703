"""Tiny generated semantic mask folders in Roboflow's and mmsegmentation's layouts (seeded)."""

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["wall", "door", "chair"]
SPLITS = {"train": 6, "valid": 3, "test": 2}
SIZE = (40, 56)  # (H, W)


def sample(rng: np.random.Generator, height: int = SIZE[0], width: int = SIZE[1]) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image ``[H, W, 3]`` uint8 and its class map ``[H, W]`` uint8 (0 background, 1..3): one
    coloured rectangle per class, painted over a grey background."""
    image = np.full((height, width, 3), 128, np.uint8)
    labels = np.zeros((height, width), np.uint8)
    for label in range(1, len(CLASSES) + 1):
        y, x = rng.integers(0, height - 10), rng.integers(0, width - 10)
        h, w = rng.integers(6, 11), rng.integers(6, 11)
        image[y : y + h, x : x + w] = (60 * label, 255 - 60 * label, 40 * label)
        labels[y : y + h, x : x + w] = label
    return image, labels


def write_roboflow(root: Path, seed: int = 0) -> Path:
    """``<root>/<split>/<name>.jpg`` + ``<name>_mask.png`` (grayscale, 0 background) + ``_classes.csv``."""
    rng = np.random.default_rng(seed)
    for split, count in SPLITS.items():
        folder = root / split
        folder.mkdir(parents=True)
        rows = ["Pixel Value, Class", "0, background", *(f"{i}, {name}" for i, name in enumerate(CLASSES, start=1))]
        (folder / "_classes.csv").write_text("\n".join(rows))
        for i in range(count):
            image, labels = sample(rng)
            name = f"frame_{i:04d}_jpg.rf.{seed}{i}"
            Image.fromarray(image).save(folder / f"{name}.jpg", quality=95)
            Image.fromarray(labels, mode="L").save(folder / f"{name}_mask.png")
    return root


def write_mmseg(root: Path, seed: int = 0, *, reduce_zero_label: bool = False, void: int = 255) -> Path:
    """``<root>/img_dir/<split>/<name>.jpg`` + ``<root>/ann_dir/<split>/<name>.png`` and ``classes.txt``.

    ``reduce_zero_label``: masks store 0 for "unlabelled" (the generated background) and the class
    labels unchanged; otherwise they store 0 background. A ``void`` border of 2 pixels either way.
    """
    rng = np.random.default_rng(seed)
    (root / "classes.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    for split, count in SPLITS.items():
        (root / "img_dir" / split).mkdir(parents=True)
        (root / "ann_dir" / split).mkdir(parents=True)
        for i in range(count):
            image, labels = sample(rng)
            labels[:2], labels[-2:] = void, void
            Image.fromarray(image).save(root / "img_dir" / split / f"{i:05d}.jpg", quality=95)
            Image.fromarray(labels, mode="L").save(root / "ann_dir" / split / f"{i:05d}.png")
    return root
