"""Write generated shapes to disk in both the VOC and the COCO layout.

The same images serve both layouts, so the real readers read them::

    root/
      VOC/                                  a VOC year directory
        Annotations/<id>.xml
        JPEGImages/<id>.jpg
        ImageSets/Main/{train,val,test}.txt
        ImageSets/Segmentation/{train,val,test}.txt
        SegmentationClass/<id>.png          palette PNG: 0 bg, 1..C class, 255 void border
        SegmentationObject/<id>.png         palette PNG: 1..K instance, 255 void border
      annotations/instances_<split>.json    COCO; file_name relative to VOC/JPEGImages
      classes.txt

Image ids are global across splits (``000000``, ``000001``, ...); the COCO ``id`` is the
same number. Splits draw from one seeded generator in a fixed order, so a given
``(seed, sizes, image_size, single_object)`` always gives byte-identical annotations.
"""

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image

from datasets.boxes import xyxy_to_voc, xyxy_to_xywh
from datasets.palette import VOID_INDEX, save_palette_png
from datasets.shapes import SHAPE_CLASSES, Scene, render_scene

DEFAULT_SIZES = {"train": 600, "val": 100, "test": 100}
JPEG_QUALITY = 95


@dataclass(frozen=True)
class ShapesLayout:
    root: Path

    @property
    def voc_root(self) -> Path:
        return self.root / "VOC"

    @property
    def image_root(self) -> Path:
        return self.voc_root / "JPEGImages"

    def coco_ann(self, split: str) -> Path:
        return self.root / "annotations" / f"instances_{split}.json"

    @property
    def classes(self) -> list[str]:
        return list(SHAPE_CLASSES)


def _voc_xml(name: str, scene: Scene) -> ET.ElementTree:
    height, width = scene.image.shape[:2]
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC"
    ET.SubElement(root, "filename").text = f"{name}.jpg"
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "1"
    for box, label in zip(xyxy_to_voc(scene.boxes), scene.labels):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = SHAPE_CLASSES[label - 1]
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = "0"
        bndbox = ET.SubElement(obj, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
            ET.SubElement(bndbox, tag).text = str(int(round(float(value))))
    return ET.ElementTree(root)


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels within one step (4-neighbourhood) of the edge of ``[H, W]`` bool ``mask``, both sides."""
    padded = np.pad(mask, 1, mode="edge")
    neighbours = [padded[1:-1, :-2], padded[1:-1, 2:], padded[:-2, 1:-1], padded[2:, 1:-1]]
    differs = np.zeros_like(mask)
    for n in neighbours:
        differs |= n != mask
    return differs


def _index_masks(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """VOC-style class and object index maps, each ``[H, W]`` uint8 with a 1-px void border."""
    height, width = scene.image.shape[:2]
    classes = np.zeros((height, width), np.uint8)
    objects = np.zeros((height, width), np.uint8)
    border = np.zeros((height, width), bool)
    for instance, (mask, label) in enumerate(zip(scene.masks.astype(bool), scene.labels), start=1):
        classes[mask] = label
        objects[mask] = instance
        border |= _boundary(mask)
    classes[border] = VOID_INDEX
    objects[border] = VOID_INDEX
    return classes, objects


def _coco_annotations(image_id: int, scene: Scene, first_ann_id: int) -> list[dict]:
    annotations = []
    for offset, (mask, box, label) in enumerate(zip(scene.masks, scene.boxes, scene.labels)):
        rle = mask_utils.encode(np.asfortranarray(mask))
        annotations.append(
            {
                "id": first_ann_id + offset,
                "image_id": image_id,
                "category_id": int(label),
                "bbox": [float(v) for v in xyxy_to_xywh(box[None])[0]],
                "area": float(mask_utils.area(rle)),
                "iscrowd": 0,
                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
            }
        )
    return annotations


def write_shapes(
    root: str | Path,
    *,
    sizes: dict[str, int] | None = None,
    image_size: int = 128,
    seed: int = 0,
    single_object: bool = False,
) -> ShapesLayout:
    """Generate the dataset under ``root`` (created if needed) and return its layout."""
    sizes = dict(DEFAULT_SIZES if sizes is None else sizes)
    layout = ShapesLayout(Path(root))
    voc = layout.voc_root
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main", "ImageSets/Segmentation",
                "SegmentationClass", "SegmentationObject"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    layout.coco_ann("x").parent.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(seed)
    categories = [{"id": i, "name": name, "supercategory": "shape"} for i, name in enumerate(SHAPE_CLASSES, 1)]
    next_image_id, next_ann_id = 0, 1
    for split, count in sizes.items():
        names, images, annotations = [], [], []
        for _ in range(count):
            scene = render_scene(rng, image_size=image_size, single_object=single_object)
            image_id, name = next_image_id, f"{next_image_id:06d}"
            next_image_id += 1
            Image.fromarray(scene.image).save(layout.image_root / f"{name}.jpg", quality=JPEG_QUALITY)
            _voc_xml(name, scene).write(voc / "Annotations" / f"{name}.xml")
            class_map, object_map = _index_masks(scene)
            save_palette_png(voc / "SegmentationClass" / f"{name}.png", class_map)
            save_palette_png(voc / "SegmentationObject" / f"{name}.png", object_map)
            names.append(name)
            images.append({"id": image_id, "file_name": f"{name}.jpg", "width": image_size, "height": image_size})
            new_annotations = _coco_annotations(image_id, scene, first_ann_id=next_ann_id)
            next_ann_id += len(new_annotations)
            annotations += new_annotations
        listing = "".join(f"{n}\n" for n in names)
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text(listing)
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text(listing)
        coco = {"images": images, "annotations": annotations, "categories": categories}
        layout.coco_ann(split).write_text(json.dumps(coco))
    (layout.root / "classes.txt").write_text("".join(f"{c}\n" for c in SHAPE_CLASSES))
    return layout
