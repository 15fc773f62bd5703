"""One decoding policy for checker and readers: a JPEG missing its last bytes loads with a warning."""

import numpy as np
import pytest
from PIL import Image, ImageFile
from voc_fixtures import write_voc

from datasets.check import check_voc
from datasets.errors import DatasetError
from datasets.safe_io import decode_image, read_image
from datasets.voc import VOCDetection


@pytest.fixture
def voc_with_textured_jpeg(tmp_path):
    """A VOC root whose one image is a noisy 40x60 JPEG (so that cutting bytes loses real data)."""
    root = write_voc(tmp_path / "voc", {"a": [("cat", (1, 1, 10, 10), 0)]})
    pixels = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    path = root / "JPEGImages" / "a.jpg"
    Image.fromarray(pixels).save(path, quality=90)
    return root, path


def test_a_jpeg_cut_short_by_a_few_bytes_loads_with_a_warning(voc_with_textured_jpeg):
    root, path = voc_with_textured_jpeg
    intact = read_image(path)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(OSError, match="truncated"):  # what PIL alone does with it
        Image.open(path).load()

    image, problems = decode_image(path)
    assert image.shape == intact.shape and [p.severity for p in problems] == ["warning"]
    assert "truncated" in problems[0].message and str(path) == problems[0].path
    assert np.abs(image[:24].astype(int) - intact[:24]).mean() < 1.0  # the decoded part is the picture
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # allowed for that one decode only

    dataset = VOCDetection(root, "train", classes=["cat"])
    with pytest.warns(UserWarning, match="truncated"):
        tensor, _ = dataset[0]
    assert tensor.shape == (3, 40, 60) and any("truncated" in p.message for p in dataset.problems)
    report = check_voc(root, "train", ["cat"])
    assert not report.errors and len(report.warnings) == 1 and "truncated" in report.warnings[0].message


def test_a_jpeg_cut_in_half_is_refused_by_reader_and_checker_alike(voc_with_textured_jpeg):
    root, path = voc_with_textured_jpeg
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DatasetError, match="blank"):
        decode_image(path)
    with pytest.raises(DatasetError, match="a.jpg"):
        VOCDetection(root, "train", classes=["cat"])[0]
    report = check_voc(root, "train", ["cat"])
    assert len(report.errors) == 1 and "blank" in report.errors[0].message
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_the_checker_decodes_pixels_not_only_headers(voc_with_textured_jpeg):
    """PIL's header ``verify()`` (the old check) passes this file; decoding, the reader and the checker refuse it."""
    root, path = voc_with_textured_jpeg
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 5])
    with Image.open(path) as image:
        image.verify()
    with pytest.raises(DatasetError):
        VOCDetection(root, "train", classes=["cat"])[0]
    assert check_voc(root, "train", ["cat"]).errors
