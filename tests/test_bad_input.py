"""Every bad-input case of docs/bad_input.md: a DatasetError naming the file, or skip-and-report."""

import json

import numpy as np
import pytest
from PIL import Image
from voc_fixtures import write_coco, write_voc

from datasets.check import check_coco, check_voc
from datasets.coco import COCODetection
from datasets.errors import DatasetError
from datasets.folder import ImageFolder
from datasets.safe_io import read_image
from datasets.voc import VOCDetection
from script_loader import load_script

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<annotation><filename>a.jpg</filename><size><width>60</width><height>40</height></size>
<object><name>&lol3;</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>"""


@pytest.fixture
def voc(tmp_path):
    return write_voc(tmp_path / "voc", {"a": [("cat", (1, 1, 10, 10), 0)]})


def _raises_naming(path, call, match):
    with pytest.raises(DatasetError, match=match) as info:
        call()
    assert str(path) in str(info.value) or path.name in str(info.value)


@pytest.mark.parametrize("content", [b"", b"\xff\xd8\xff\xe0 not really a jpeg", "truncated"])
def test_corrupt_truncated_and_empty_images(voc, content):
    path = voc / "JPEGImages" / "a.jpg"
    if content == "truncated":
        content = path.read_bytes()[: len(path.read_bytes()) // 2]
    path.write_bytes(content)
    _raises_naming(path, lambda: VOCDetection(voc, "train", classes=["cat"])[0], "empty|corrupt|truncated")
    assert check_voc(voc, "train", ["cat"]).errors


def test_annotation_referring_to_missing_image(voc):
    (voc / "JPEGImages" / "a.jpg").unlink()
    _raises_naming(voc / "JPEGImages" / "a.jpg", lambda: VOCDetection(voc, "train", classes=["cat"])[0], "missing")
    assert "missing" in check_voc(voc, "train", ["cat"]).errors[0].message


def test_malformed_xml_and_json(voc, tmp_path):
    xml = voc / "Annotations" / "a.xml"
    xml.write_text("<annotation><size>")
    _raises_naming(xml, lambda: VOCDetection(voc, "train", classes=["cat"])[0], "malformed XML")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"images": [')
    _raises_naming(bad_json, lambda: COCODetection(tmp_path, bad_json), "malformed JSON")
    bad_json.write_text('{"images": []}')
    _raises_naming(bad_json, lambda: COCODetection(tmp_path, bad_json), "not a COCO")


def test_unknown_class_name(voc):
    _raises_naming(voc / "Annotations" / "a.xml", lambda: VOCDetection(voc, "train", classes=["dog"])[0], "unknown class")


def test_degenerate_and_outside_boxes_are_dropped_and_reported(tmp_path):
    objects = [("cat", (1, 1, 10, 10), 0), ("cat", (8, 5, 8, 20), 0), ("cat", (70, 50, 90, 60), 0), ("cat", (50, 30, 75, 45), 0)]
    root = write_voc(tmp_path, {"a": objects}, size=(40, 60))
    dataset = VOCDetection(root, "train", classes=["cat"])
    with pytest.warns(UserWarning):
        _, target = dataset[0]
    assert target["boxes"].tolist() == [[0, 0, 10, 10], [49, 29, 60, 40]]  # degenerate + outside dropped, partial clipped
    messages = [p.message for p in dataset.problems]
    assert any("degenerate" in m for m in messages) and any("outside" in m and "dropped" in m for m in messages)
    assert any("clipped" in m for m in messages)
    report = check_voc(root, "train", ["cat"])
    assert len(report.errors) == 2 and len(report.warnings) == 1


def test_xml_entity_bomb_is_refused(voc):
    xml = voc / "Annotations" / "a.xml"
    xml.write_text(BILLION_LAUGHS)
    _raises_naming(xml, lambda: VOCDetection(voc, "train", classes=["cat"])[0], "DTD or entities")


def test_coco_file_name_outside_the_image_root(tmp_path):
    data = {"images": [{"id": 1, "file_name": "../../etc/passwd", "height": 4, "width": 4}], "annotations": [], "categories": []}
    ann = write_coco(tmp_path, data, {})
    dataset = COCODetection(tmp_path / "images", ann)
    with pytest.raises(DatasetError, match="leaves the dataset root"):
        dataset[0]
    assert "leaves the dataset root" in check_coco(ann, tmp_path / "images").errors[0].message


def test_decompression_bomb_is_never_decoded(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 px > limit (warning zone) and > 2x (error zone)
    _raises_naming(path, lambda: read_image(path), "decompression bomb")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # between limit and 2x limit: PIL only warns
    _raises_naming(path, lambda: read_image(path), "decompression bomb")
    record = ImageFolder(tmp_path)[0]
    assert record.image is None and "decompression bomb" in record.error


def test_coco_annotation_for_unknown_image_or_category(tmp_path):
    data = {"images": [{"id": 1, "file_name": "a.jpg", "height": 4, "width": 4}], "categories": [{"id": 1, "name": "x"}],
            "annotations": [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1]}]}
    ann = write_coco(tmp_path, data, {"a.jpg": (4, 4)})
    _raises_naming(ann, lambda: COCODetection(tmp_path / "images", ann), "unknown image id")
    data["annotations"][0].update(image_id=1, category_id=9)
    ann.write_text(json.dumps(data))
    _raises_naming(ann, lambda: COCODetection(tmp_path / "images", ann), "unknown category id")


def _voc_with_one_unreadable_image(tmp_path, count: int = 6):
    images = {f"im{i}": [("cat" if i % 2 else "dog", (5, 5, 30, 25), 0)] for i in range(count)}
    root = write_voc(tmp_path / "voc", images)
    (root / "ImageSets/Main/val.txt").write_text("im0\nim1\n")
    (root / "JPEGImages" / "im3.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def _fit(root, tmp_path, *extra: str):
    config = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "max_epochs": 1, "logger": False, "enable_progress_bar": False,
                    "enable_model_summary": False, "default_root_dir": str(tmp_path / "run")},
        "model": {
            "model": {"class_path": "detection.tiny.TinyDetector", "init_args": {"image_size": 32}},
            "evaluator": {"class_path": "detection.evaluation.VOCEvaluator", "init_args": {}},
            "monitor": "map_50", "lr": 0.01, "warmup_steps": 1,
        },
        "data": {"class_path": "datasets.datamodule.DetectionDataModule",
                 "init_args": {"format": "voc", "root": str(root), "batch_size": 2, "num_workers": 0, "augment": False}},
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return load_script("train").main(["fit", "--config", str(path), *extra])


def test_a_training_epoch_skips_an_unreadable_image_and_lists_it(tmp_path):
    root = _voc_with_one_unreadable_image(tmp_path)
    with pytest.warns(UserWarning, match="skipped unreadable sample .*im3.jpg"):
        cli = _fit(root, tmp_path, "--data.init_args.max_bad_fraction", "0.2")
    assert cli.trainer.current_epoch == 1 and cli.trainer.global_step == 3  # 6 images - 1 skipped, batches of 2
    listed = (tmp_path / "run" / "bad_images.txt").read_text().splitlines()
    assert len(listed) == 1 and listed[0].startswith(str(root / "JPEGImages" / "im3.jpg") + "\t")


def test_more_unreadable_images_than_max_bad_fraction_stop_the_run(tmp_path):
    root = _voc_with_one_unreadable_image(tmp_path)
    with pytest.raises(DatasetError, match="1 of 6 images are unreadable, more than max_bad_fraction=0.1"):
        _fit(root, tmp_path, "--data.init_args.max_bad_fraction", "0.1")


def test_evaluation_never_skips_an_image(tmp_path):
    """Dropping an evaluation image would drop its ground truth and inflate the scores: it raises."""
    root = _voc_with_one_unreadable_image(tmp_path)
    (root / "ImageSets/Main/val.txt").write_text("im0\nim3\n")
    with pytest.raises(DatasetError, match="im3.jpg"):
        _fit(root, tmp_path, "--data.init_args.max_bad_fraction", "0.5")


def test_the_coco_checker_lists_every_problem_and_still_checks_the_rest(tmp_path):
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "height": 4, "width": 4}, {"id": 2, "file_name": "b.jpg", "height": 4, "width": 4},
                   {"id": 3, "file_name": "missing.jpg", "height": 4, "width": 4}, {"id": 4}],
        "categories": [{"id": 1, "name": "x"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 9, "bbox": [0, 0, 1, 1]},  # unknown category
            {"id": 11, "image_id": 7, "category_id": 1, "bbox": [0, 0, 1, 1]},  # unknown image
            {"id": 12, "image_id": 2, "category_id": 1, "bbox": [0, 0]},  # no 4-number bbox
            {"id": 13, "image_id": 2, "category_id": 1, "bbox": [3, 3, 0, 2]},  # degenerate: per-image check
        ],
    }
    ann = write_coco(tmp_path, data, {"a.jpg": (4, 4), "b.jpg": (4, 4)})
    report = check_coco(ann, tmp_path / "images")
    messages = [p.message for p in report.errors]
    assert any("unknown category id 9" in m for m in messages) and any("unknown image id 7" in m for m in messages)
    assert any("annotation 12 has no 4-number bbox" in m for m in messages) and any("image 4 lacks" in m for m in messages)
    assert any("degenerate" in m for m in messages) and any("missing" in m and "missing.jpg" in p.path for p, m in zip(report.errors, messages))
    assert len(report.errors) == 6
    with pytest.raises(DatasetError, match=r"and 3 more: run scripts/check_dataset.py"):
        COCODetection(tmp_path / "images", ann)
