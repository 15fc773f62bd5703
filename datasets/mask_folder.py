"""Semantic segmentation from folders of images and one-channel class-index masks.

Two layouts, picked by ``layout`` (every folder and suffix can be overridden; ``{split}`` in a
folder is replaced by the split name)::

    roboflow (Roboflow "png-mask-semantic" exports; images and masks side by side)
        <root>/<split>/<name>.jpg   <root>/<split>/<name>_mask.png   <root>/<split>/_classes.csv
        images="{split}", masks="{split}", image_suffix=".jpg", mask_suffix="_mask.png"

    mmseg (mmsegmentation's custom datasets; ADE20K, CamVid, Cityscapes-style conversions)
        <root>/img_dir/<split>/<name>.jpg   <root>/ann_dir/<split>/<name>.png
        images="img_dir/{split}", masks="ann_dir/{split}", image_suffix=".jpg", mask_suffix=".png"

    (ADE20K: ``images="images/{split}", masks="annotations/{split}", reduce_zero_label=True``;
    SegNet's CamVid: ``images="{split}", masks="{split}annot", image_suffix=".png", void_index=11,
    label_offset=1``.)

The items are the images of the image folder, sorted by name (``image_id`` is the index); each
one's mask is ``<masks>/<name><mask_suffix>``. Masks are read as indices (grayscale or palette
PNG), never as colours, and mapped to detseg's contract (``docs/ARCHITECTURE.md``: ``semantic
[H, W]``, 0 background, ``1..C`` the classes, 255 void):

- ``void_index`` (default 255): the mask value meaning "not labelled"; becomes 255;
- ``reduce_zero_label``: value 0 is void too (mmsegmentation's option for sets whose 0 means
  "other", as ADE20K's); the other values keep their numbers, so label ``v`` is ``classes[v - 1]``
  (as mmsegmentation's ``classes[v - 1]`` after its shift by one);
- ``label_offset``: added to every other value (``1`` for sets whose value 0 is a real class,
  CamVid's "Sky": no pixel is then background).

Classes (``classes[label - 1]``): given, else read from ``classes_file`` (relative to ``root``),
else from ``_classes.csv`` in the split's mask folder (Roboflow). A ``.csv`` file has rows
``pixel value, name`` (a header line is skipped): the name of mask value ``v`` is that of label
``v + label_offset``; the row of label 0 is the background, whatever its name (Roboflow writes
``background`` there, or the project's name for unlabelled pixels). A text file lists one name
per line, label 1 first.

``exclude``: image names (without suffix) left out of every split, for samples one has decided
to drop after ``scripts/check_dataset.py`` named them (listed in the config, so the choice stays
visible; evaluation otherwise never drops an image).

Bad masks (``docs/bad_input.md``): a missing or corrupt mask, a mask whose size differs from its
image, or a value that is neither a class nor void raises ``DatasetError`` naming the mask (the
training split skips the sample and lists it; evaluation stops). :meth:`MaskFolderSegmentation.check`
lists every problem of one sample, for ``datasets.check``.
"""

import csv
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from datasets.base import DetectionDataset, Target, Transforms, semantic_target
from datasets.errors import DatasetError, Problem
from datasets.palette import VOID_INDEX
from datasets.safe_io import decode_image, read_image, read_index_png, resolve_inside

Layout = Literal["roboflow", "mmseg"]
ROBOFLOW_CLASSES_CSV = "_classes.csv"
INDEX_VALUES = 256  # uint8 masks
UNMAPPED = -1  # a mask value that is neither a class nor void

LAYOUTS: dict[str, dict[str, str]] = {
    "roboflow": {"images": "{split}", "masks": "{split}", "image_suffix": ".jpg", "mask_suffix": "_mask.png"},
    "mmseg": {"images": "img_dir/{split}", "masks": "ann_dir/{split}", "image_suffix": ".jpg", "mask_suffix": ".png"},
}


@dataclass(frozen=True)
class MaskFolderOptions:
    """How a mask folder is laid out and what its values mean (module docstring). ``None`` folders
    and suffixes take ``layout``'s."""

    layout: Layout = "roboflow"
    images: str | None = None
    masks: str | None = None
    image_suffix: str | None = None
    mask_suffix: str | None = None
    classes_file: str | None = None
    void_index: int = VOID_INDEX
    reduce_zero_label: bool = False
    label_offset: int = 0
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"mask folder layout must be one of {list(LAYOUTS)}, got {self.layout!r}")
        object.__setattr__(self, "exclude", tuple(self.exclude))  # a config gives a list
        if not 0 <= self.void_index < INDEX_VALUES:
            raise ValueError(f"void_index must be a mask value 0..255, got {self.void_index}")

    @classmethod
    def from_dict(cls, options: dict[str, Any] | None) -> "MaskFolderOptions":
        """From a config's ``mask_folder:`` mapping; unknown keys raise ``ValueError`` listing the known ones."""
        options = dict(options or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown mask folder option(s) {unknown}; known: {sorted(known)}")
        return cls(**options)

    @classmethod
    def from_pairs(cls, pairs: Sequence[str]) -> "MaskFolderOptions":
        """From command-line ``KEY=VALUE`` strings (values read as YAML: ``true``, ``255``, ``[a, b]``)."""
        options = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep:
                raise ValueError(f"a mask folder option is KEY=VALUE, got {pair!r}")
            options[key.strip()] = yaml.safe_load(value)
        return cls.from_dict(options)

    def resolved(self, key: str) -> str:
        """``images``, ``masks``, ``image_suffix`` or ``mask_suffix``: as given, else the layout's."""
        value = getattr(self, key)
        return LAYOUTS[self.layout][key] if value is None else value

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_class_file(path: Path, label_offset: int = 0, void_index: int = VOID_INDEX) -> list[str]:
    """Foreground class names in label order from a ``.csv`` (``value, name`` rows) or a text file (module docstring)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DatasetError(path, "class file is missing") from None
    if path.suffix.lower() != ".csv":
        names = [line.strip() for line in text.splitlines() if line.strip()]
        if not names:
            raise DatasetError(path, "class file lists no class")
        return names
    by_label: dict[int, str] = {}
    for row_number, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not "".join(row).strip():
            continue
        try:
            value = int(row[0])
        except ValueError:
            if row_number == 1:  # header ("Pixel Value, Class")
                continue
            raise DatasetError(path, f"row {row_number}: pixel value {row[0]!r} is not an integer") from None
        if len(row) < 2:
            raise DatasetError(path, f"row {row_number}: expected 'pixel value, class name', got {row}")
        if value != void_index:
            by_label[value + label_offset] = ",".join(row[1:]).strip()
    foreground = sorted(label for label in by_label if label > 0)
    if foreground != list(range(1, len(foreground) + 1)) or not foreground:
        raise DatasetError(path, f"class labels must run 1..C without gaps (after label_offset={label_offset}), got {foreground}")
    return [by_label[label] for label in foreground]


def label_table(num_classes: int, options: MaskFolderOptions) -> np.ndarray:
    """``np.ndarray[256]`` int16: the detseg label of every mask value, 255 void, ``UNMAPPED`` out of range."""
    labels = np.arange(INDEX_VALUES, dtype=np.int16) + options.label_offset
    table = np.where((labels >= 0) & (labels <= num_classes), labels, UNMAPPED).astype(np.int16)
    table[options.void_index] = VOID_INDEX
    if options.reduce_zero_label:
        table[0] = VOID_INDEX
    return table


class MaskFolderSegmentation(DetectionDataset):
    """``dataset[i] -> (Tensor[3, H, W], {"semantic": Tensor[H, W] int64, ...})``: one image and its
    class-index mask (module docstring for the layouts and options); no boxes."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        options: MaskFolderOptions | dict[str, Any] | None = None,
        classes: Sequence[str] | None = None,
        transforms: Transforms | None = None,
    ) -> None:
        super().__init__(transforms)
        self.root = Path(root)
        self.split = split
        self.options = options if isinstance(options, MaskFolderOptions) else MaskFolderOptions.from_dict(options)
        self.image_dir = self.root / self.options.resolved("images").format(split=split)
        self.mask_dir = self.root / self.options.resolved("masks").format(split=split)
        self.image_suffix = self.options.resolved("image_suffix")
        self.mask_suffix = self.options.resolved("mask_suffix")
        if not self.image_dir.is_dir():
            raise DatasetError(self.image_dir, f"image folder of split {split!r} is missing ({self.options.layout} layout)")
        self.ids = sorted(
            p.name[: -len(self.image_suffix)] for p in self.image_dir.iterdir()
            if p.name.endswith(self.image_suffix) and not p.name.endswith(self.mask_suffix)
        )  # fmt: skip
        self.excluded = [name for name in self.ids if name in set(self.options.exclude)]
        self.ids = [name for name in self.ids if name not in set(self.options.exclude)]
        if not self.ids:
            raise DatasetError(self.image_dir, f"no '*{self.image_suffix}' image in the image folder of split {split!r}")
        self.classes = list(classes) if classes else self._class_names()
        self.table = label_table(len(self.classes), self.options)

    def _class_names(self) -> list[str]:
        if self.options.classes_file is not None:
            path = resolve_inside(self.root, self.options.classes_file)
        else:
            path = self.mask_dir / ROBOFLOW_CLASSES_CSV
            if not path.is_file():
                raise DatasetError(
                    path, "no class list: give classes, or mask folder option classes_file (a .csv of 'value, name' rows "
                    "or a text file of names, label 1 first)",
                )  # fmt: skip
        return read_class_file(path, self.options.label_offset, self.options.void_index)

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, index: int) -> Path:
        return resolve_inside(self.image_dir, self.ids[index] + self.image_suffix)

    def mask_path(self, index: int) -> Path:
        return resolve_inside(self.mask_dir, self.ids[index] + self.mask_suffix)

    def orphan_masks(self) -> list[Path]:
        """Masks in the mask folder without an image (the checker warns about them)."""
        if not self.mask_dir.is_dir():
            return []
        names = {*self.ids, *self.excluded}
        return sorted(
            p for p in self.mask_dir.iterdir()
            if p.name.endswith(self.mask_suffix) and p.name[: -len(self.mask_suffix)] not in names
        )  # fmt: skip

    def mask_problems(self, mask_path: Path, mask: np.ndarray, image_size: tuple[int, int]) -> list[Problem]:
        """Every reason ``mask`` (raw values) is unusable with an image of ``image_size``: its size, and its values."""
        problems = []
        if mask.shape != tuple(image_size):
            problems.append(Problem(str(mask_path), f"mask is (H, W) = {mask.shape} but its image is {tuple(image_size)}"))
        values = np.unique(mask)
        bad = values[self.table[values] == UNMAPPED]
        if len(bad):
            problems.append(Problem(
                str(mask_path), f"values {bad.tolist()} are neither classes (labels 1..{len(self.classes)} after "
                f"label_offset={self.options.label_offset}) nor void ({self.options.void_index})",
            ))  # fmt: skip
        return problems

    def semantic(self, mask: np.ndarray) -> np.ndarray:
        """Raw mask values ``[H, W]`` uint8 -> detseg labels ``[H, W]`` uint8 (0 background, 1..C, 255 void)."""
        return self.table[mask].astype(np.uint8)

    def load(self, index: int) -> tuple[np.ndarray, Target]:
        image = read_image(self.image_path(index))
        mask_path = self.mask_path(index)
        mask = read_index_png(mask_path)
        problems = self.mask_problems(mask_path, mask, image.shape[:2])
        if problems:
            raise DatasetError(mask_path, "; ".join(p.message for p in problems))
        return image, semantic_target(self.semantic(mask), index, image.shape[:2])

    def check(self, index: int) -> tuple[list[Problem], np.ndarray | None]:
        """Every problem of sample ``index`` (image and mask both read, as ``load`` reads them), and the
        foreground labels present in its mask (``None`` when the mask could not be read)."""
        problems: list[Problem] = []
        try:
            image, decode_problems = decode_image(self.image_path(index))
            problems += decode_problems
            size = image.shape[:2]
        except DatasetError as error:
            problems.append(Problem(error.path, error.problem))
            size = None
        mask_path = self.mask_path(index)
        try:
            mask = read_index_png(mask_path)
        except DatasetError as error:
            return [*problems, Problem(error.path, error.problem)], None
        problems += self.mask_problems(mask_path, mask, mask.shape if size is None else size)
        labels = np.unique(self.table[np.unique(mask)])
        return problems, labels[(labels > 0) & (labels != VOID_INDEX)]
