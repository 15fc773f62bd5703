"""datasets.split_source: a split named by values, and what reports say was scored."""

from pathlib import Path

import pytest

from datasets.split_source import SplitSource, open_split


def test_exactly_one_source():
    with pytest.raises(ValueError, match="exactly one of voc, coco_ann or shapes"):
        SplitSource()
    with pytest.raises(ValueError, match="exactly one"):
        SplitSource(voc=Path("a"), shapes=Path("b"))
    with pytest.raises(ValueError, match="--coco-ann needs --images"):
        open_split(SplitSource(coco_ann=Path("instances_test.json")), task="detection")


def test_describe_names_the_file_scored():
    coco = SplitSource(coco_ann=Path("ann/instances_test.json"), images=Path("test"))
    assert coco.describe() == "`ann/instances_test.json` (images `test`)"
    assert "split" not in coco.describe()  # a COCO file has no VOC split: never "split `val`"
    assert SplitSource(coco_ann=Path("a.json")).describe() == "`a.json`"  # --predictions needs no images
    assert SplitSource(voc=Path("VOC2007"), split="test").describe() == "`VOC2007` split `test`"


def test_open_split_reads_the_named_split(shapes_root):
    split = open_split(SplitSource(shapes=shapes_root.root, split="test"), task="detection")
    assert split.reader.classes == shapes_root.classes
    assert split.images_root == shapes_root.root / "VOC" / "JPEGImages"
    assert len(split.reader) == len((shapes_root.root / "VOC" / "ImageSets" / "Main" / "test.txt").read_text().split())
