"""Builders for tiny hand-made VOC and COCO datasets (bad-input cases need exact control)."""

import json
from pathlib import Path

import numpy as np
from PIL import Image

OBJECT_XML = (
    "<object><name>{name}</name><difficult>{difficult}</difficult>"
    "<bndbox><xmin>{0}</xmin><ymin>{1}</ymin><xmax>{2}</xmax><ymax>{3}</ymax></bndbox></object>"
)


def write_voc(root: Path, images: dict[str, list[tuple]], *, size: tuple[int, int] = (40, 60)) -> Path:
    """``images``: id -> list of ``(name, (xmin, ymin, xmax, ymax), difficult)`` in VOC coordinates."""
    height, width = size
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for image_id, objects in images.items():
        Image.fromarray(np.full((height, width, 3), 100, np.uint8)).save(root / "JPEGImages" / f"{image_id}.jpg")
        body = "".join(OBJECT_XML.format(*box, name=name, difficult=int(diff)) for name, box, diff in objects)
        xml = (
            f"<annotation><filename>{image_id}.jpg</filename><size><width>{width}</width>"
            f"<height>{height}</height><depth>3</depth></size>{body}</annotation>"
        )
        (root / "Annotations" / f"{image_id}.xml").write_text(xml)
    (root / "ImageSets/Main/train.txt").write_text("".join(f"{i}\n" for i in images))
    return root


def write_coco(root: Path, data: dict, images: dict[str, tuple[int, int]]) -> Path:
    """Write ``data`` as ``root/ann.json`` and blank images ``{file_name: (H, W)}`` under ``root/images``."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    for name, (height, width) in images.items():
        Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(root / "images" / name)
    (root / "ann.json").write_text(json.dumps(data))
    return root / "ann.json"
