"""The readers on the real samples in ../shared/data (skipped when it is absent)."""

import numpy as np
import pycocotools.mask as mask_utils
import pytest
from pycocotools.coco import COCO

from datasets.check import check_coco, check_voc
from datasets.coco import COCODetection
from datasets.safe_io import read_index_png
from datasets.voc import VOCDetection

BCCD_CLASSES = ["RBC", "WBC", "Platelets"]


def test_bccd_splits_and_its_two_zero_size_boxes(shared_data):
    root = shared_data / "voc_bccd" / "BCCD"
    sizes = {split: len(VOCDetection(root, split, classes=BCCD_CLASSES)) for split in ("train", "val", "test", "trainval")}
    assert sizes["train"] + sizes["val"] == sizes["trainval"] and sizes["test"] > 0
    report = check_voc(root, "trainval", BCCD_CLASSES)
    flagged = sorted(p.path.split("/")[-1] for p in report.errors)
    assert flagged == ["BloodImage_00338.xml", "BloodImage_00343.xml"]
    assert all("degenerate" in p.message for p in report.errors)
    _, target = VOCDetection(root, "train", classes=BCCD_CLASSES)[0]
    assert target["boxes"].shape[1] == 4 and (target["boxes"][:, 2:] > target["boxes"][:, :2]).all()


@pytest.mark.parametrize("kind,folder", [("SegmentationClass", "semantic_segmentation"), ("SegmentationObject", "instance_segmentation")])
def test_labelme_palette_masks_equal_their_npy_arrays(shared_data, kind, folder):
    root = shared_data / "voc2012_labelme_3img" / folder / "data_dataset_voc"
    pngs = sorted((root / kind).glob("*.png"))
    assert pngs
    for png in pngs:
        expected = np.load(root / f"{kind}Npy" / f"{png.stem}.npy")
        decoded = read_index_png(png).astype(np.int64)
        expected = np.where(expected < 0, 255, expected)  # labelme stores void as -1
        np.testing.assert_array_equal(decoded, expected)


@pytest.mark.parametrize(
    "ann,images",
    [
        ("icevision_samples/annotations.json", "icevision_samples/images"),
        ("coco_panopticapi_sample/sample_data/panoptic_coco_detection_format.json", "coco_panopticapi_sample/sample_data/input_images"),
    ],
)
def test_coco_samples_crowd_rle_and_noncontiguous_ids(shared_data, ann, images):
    dataset = COCODetection(shared_data / images, shared_data / ann, with_masks=True)
    reference = COCO(str(shared_data / ann))
    assert max(dataset.category_id_to_label) > len(dataset.classes)  # ids are not contiguous
    crowd_seen = False
    for i in range(len(dataset)):
        try:
            _, target = dataset[i]
        except ValueError as error:  # a listed image the sample does not ship
            pytest.fail(str(error))
        anns = [a for a in reference.imgToAnns[target["image_id"]] if a["bbox"][2] > 0 and a["bbox"][3] > 0]
        assert target["masks"].shape[0] == len(anns)
        for mask, a in zip(target["masks"], anns):
            assert int(mask.sum()) == int(mask_utils.area(reference.annToRLE(a)))
            assert dataset.label_to_category_id[int(target["labels"][anns.index(a)])] == a["category_id"]
        crowd_seen |= bool(target["iscrowd"].any())
    assert crowd_seen


def test_coco_mini_instance_masks_pass_the_checker_and_load(shared_data):
    """What ``check_dataset.py --masks`` passes, the reader loads with ``with_masks`` (MNC's data)."""
    root = shared_data / "coco_mini"
    ann, images = root / "annotations" / "instances_val2017.json", root / "val2017"
    report = check_coco(ann, images, with_masks=True)
    assert report.errors == []
    assert report.masks_per_class == report.boxes_per_class and "instance masks read: " in report.summary()
    _, target = COCODetection(images, ann, with_masks=True)[0]
    assert target["masks"].shape[0] == len(target["boxes"]) and target["masks"].flatten(1).any(1).all()
