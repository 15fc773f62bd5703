"""Which dataset split a command reads, as values: a VOC layout, a COCO file, the generated shapes or a
semantic mask folder (``datasets/mask_folder.py``).

``SplitSource`` names the files (``scripts/evaluate.py`` and ``scripts/predict.py`` build it from
their arguments); ``open_split`` turns it into the reader the training data module would build
for that split, so image ids and labels are the ones training and ``scripts/train.py test`` use.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from datasets.base import DetectionDataset
from datasets.coco import COCODetection
from datasets.mask_folder import MaskFolderOptions, MaskFolderSegmentation
from datasets.shapes import SHAPE_CLASSES
from datasets.voc import VOC_CLASSES, VOCDetection, VOCSegmentation

Task = Literal["detection", "semantic"]


@dataclass(frozen=True)
class SplitSource:
    """Exactly one of ``voc`` (a VOC year directory), ``coco_ann`` (with ``images``, its image folder),
    ``shapes`` (a generated shapes root, read through its VOC layout) or ``mask_folder`` (a semantic
    mask folder root, laid out and valued as ``mask_options`` say). ``split`` and ``image_set``
    pick a VOC/shapes split (``split``: a mask folder's too); ``classes`` names a VOC layout's or a
    mask folder's classes, or the COCO categories kept (names or ids; ``COCODetection(categories=...)``)."""

    voc: Path | None = None
    coco_ann: Path | None = None
    images: Path | None = None
    shapes: Path | None = None
    split: str = "val"
    image_set: str = "Main"
    classes: tuple[str, ...] | None = None
    mask_folder: Path | None = None
    mask_options: MaskFolderOptions = MaskFolderOptions()

    def __post_init__(self) -> None:
        given = [name for name in ("voc", "coco_ann", "shapes", "mask_folder") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of voc, coco_ann, shapes or mask_folder, got {given or 'none'}")

    def describe(self) -> str:
        """What was scored, for reports: ``` `file` ``` for COCO, ``` `root` split `name` ``` for VOC layouts."""
        if self.coco_ann is not None:
            return f"`{self.coco_ann}`" + (f" (images `{self.images}`)" if self.images is not None else "")
        return f"`{self.voc or self.shapes or self.mask_folder}` split `{self.split}`"


@dataclass
class Split:
    """A dataset split: its ``reader``, the folder its image paths start from (resolved, as the
    readers resolve every image path: a dataset reached through a symlink stays inside it), and
    a description."""

    reader: DetectionDataset
    images_root: Path
    source: Path
    label_to_category_id: dict[int, int] | None


def _voc_root_and_classes(source: SplitSource, default: list[str] | None) -> tuple[Path, list[str]]:
    """The VOC-layout root and class names: ``source.classes``, else ``default``, else VOC's (shapes: theirs)."""
    if source.shapes is not None:
        return source.shapes / "VOC", list(SHAPE_CLASSES)
    return source.voc, list(source.classes or default or VOC_CLASSES)


def open_split(source: SplitSource, *, task: Task, with_masks: bool = False, classes: list[str] | None = None) -> Split:
    """The reader of the chosen split, without augmentation. ``classes``: the model's, naming a VOC
    layout's classes or the COCO categories it was trained on (``source.classes`` comes first)."""
    if source.coco_ann is not None:
        if source.images is None:
            raise ValueError("--coco-ann needs --images (the folder of the annotation file's images)")
        categories = list(source.classes) if source.classes else classes
        reader = COCODetection(source.images, source.coco_ann, categories=categories, with_masks=with_masks,
                               with_semantic=task == "semantic")  # fmt: skip
        return Split(reader=reader, images_root=source.images.resolve(), source=source.coco_ann,
                     label_to_category_id=reader.label_to_category_id)  # fmt: skip
    if source.mask_folder is not None:
        if task != "semantic":
            raise ValueError(f"{source.mask_folder} is a semantic mask folder: it has no boxes for a {task} model")
        names = list(source.classes) if source.classes else classes  # else the folder's class file
        reader = MaskFolderSegmentation(source.mask_folder, source.split, options=source.mask_options, classes=names)
        return Split(reader=reader, images_root=reader.image_dir.resolve(), source=source.mask_folder, label_to_category_id=None)
    root, names = _voc_root_and_classes(source, classes)
    if task == "semantic":
        reader = VOCSegmentation(root, source.split, classes=names)
    else:
        reader = VOCDetection(root, source.split, classes=names, with_masks=with_masks, image_set=source.image_set)
    return Split(reader=reader, images_root=root.resolve() / "JPEGImages", source=source.shapes or source.voc, label_to_category_id=None)
