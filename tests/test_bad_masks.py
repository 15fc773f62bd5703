"""Bad instance masks (docs/bad_input.md): the readers' ``with_masks`` and the checker's ``--masks`` agree."""

import shutil

import numpy as np
import pytest
from voc_fixtures import write_coco

from datasets.check import check_coco, check_voc
from datasets.coco import COCODetection
from datasets.errors import DatasetError
from datasets.palette import save_palette_png
from datasets.safe_io import read_index_png
from datasets.shapes import SHAPE_CLASSES
from datasets.voc import VOCDetection


@pytest.fixture
def voc(shapes_root, tmp_path):
    """A private copy of the shapes VOC root (the tests damage its masks) and its first val image's id."""
    root = shutil.copytree(shapes_root.voc_root, tmp_path / "VOC")
    return root, (root / "ImageSets" / "Main" / "val.txt").read_text().split()[0]


def _reader(root):
    return VOCDetection(root, "val", classes=SHAPE_CLASSES, with_masks=True)


def _errors(root):
    report = check_voc(root, "val", list(SHAPE_CLASSES), with_masks=True)
    return [str(p) for p in report.errors], [str(p) for p in report.warnings]


def test_intact_masks_pass_the_checker_and_load(voc):
    root, _ = voc
    assert _errors(root) == ([], [])
    assert "masks" in _reader(root)[0][1]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda objects: None, "mask file is missing"),
        (lambda objects: objects[:-4], "mask is \\(H, W\\)"),
        (lambda objects: np.where(objects == 1, 9, objects).astype(np.uint8), "instance ids \\[9\\]"),
    ],
)
def test_missing_resized_or_extra_instance_masks_are_errors_naming_the_png(voc, damage, message):
    root, name = voc
    path = root / "SegmentationObject" / f"{name}.png"
    damaged = damage(read_index_png(path))
    path.unlink()
    if damaged is not None:
        save_palette_png(path, np.ascontiguousarray(damaged))
    errors, _ = _errors(root)
    assert len(errors) == 1 and str(path) in errors[0]
    with pytest.raises(DatasetError, match=message) as info:
        _reader(root)[0]
    assert str(path) in str(info.value)
    assert check_voc(root, "val", list(SHAPE_CLASSES)).errors == []  # boxes alone are still fine


def test_an_object_without_pixels_is_a_warning(voc):
    root, name = voc
    path = root / "SegmentationObject" / f"{name}.png"
    objects = read_index_png(path)
    save_palette_png(path, np.where(objects == 1, 0, objects).astype(np.uint8))
    errors, warnings = _errors(root)
    assert errors == [] and len(warnings) == 1 and "object 1" in warnings[0] and "no pixels" in warnings[0]
    with pytest.warns(UserWarning, match="no pixels"):
        _, target = _reader(root)[0]
    assert target["masks"][0].sum() == 0 and target["masks"].shape[0] == len(target["boxes"])


@pytest.mark.parametrize(
    "segmentation, message",
    [
        (None, "no segmentation"),
        ({"size": [20, 40], "counts": [800]}, "RLE size \\[20, 40\\]"),
        ([[1.0, 2.0, "x"]], "malformed segmentation"),
    ],
)
def test_coco_bad_segmentations_are_errors_naming_the_file_and_annotation(tmp_path, segmentation, message):
    ann = {"id": 4, "image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 10], "area": 100, "iscrowd": 0}
    if segmentation is not None:
        ann["segmentation"] = segmentation
    data = {"images": [{"id": 1, "file_name": "a.jpg", "height": 30, "width": 40}], "categories": [{"id": 1, "name": "cat"}],
            "annotations": [ann]}  # fmt: skip
    path = write_coco(tmp_path, data, {"a.jpg": (30, 40)})
    with pytest.raises(DatasetError, match=message) as info:
        COCODetection(tmp_path / "images", path, with_masks=True)[0]
    assert str(path) in str(info.value) and "annotation id 4" in str(info.value)
    errors = check_coco(path, tmp_path / "images", with_masks=True).errors
    assert len(errors) == 1 and message.replace("\\", "") in str(errors[0])
    assert check_coco(path, tmp_path / "images").errors == []
