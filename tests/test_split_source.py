"""datasets.split_source: a split named by values, and what reports say was scored."""

from pathlib import Path

import pytest

from datasets.split_source import SplitSource, open_split


def test_exactly_one_source():
    with pytest.raises(ValueError, match="exactly one of voc, coco_ann, shapes or mask_folder"):
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
    assert split.images_root == shapes_root.root.resolve() / "VOC" / "JPEGImages"
    assert len(split.reader) == len((shapes_root.root / "VOC" / "ImageSets" / "Main" / "test.txt").read_text().split())


def test_a_dataset_behind_a_symlink_predicts(shapes_root, tmp_path):
    """``data/coco -> /datasets/coco``: the readers resolve image paths, so the split's root must be resolved too."""
    from detection.inference import relative_path

    link = tmp_path / "linked"
    link.symlink_to(shapes_root.root, target_is_directory=True)
    for source in (SplitSource(shapes=link, split="test"),
                   SplitSource(coco_ann=link / "annotations" / "instances_test.json", images=link / "VOC" / "JPEGImages")):
        split = open_split(source, task="detection", classes=shapes_root.classes)
        names = [relative_path(split.reader.image_path(i), split.images_root) for i in range(len(split.reader))]
        assert all("/" not in name and name.endswith(".jpg") for name in names)
