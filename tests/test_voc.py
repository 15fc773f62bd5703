import numpy as np
import pytest
import torch
from voc_fixtures import write_voc

from datasets.coco import COCODetection
from datasets.shapes import SHAPE_CLASSES
from datasets.voc import VOC_CLASSES, VOCDetection, VOCSegmentation


def test_voc_reader_matches_coco_reader_on_generated_shapes(shapes_root):
    voc = VOCDetection(shapes_root.voc_root, "train", classes=SHAPE_CLASSES)
    coco = COCODetection(shapes_root.image_root, shapes_root.coco_ann("train"))
    assert len(voc) == len(coco) == 12
    for i in range(len(voc)):
        image_v, target_v = voc[i]
        image_c, target_c = coco[i]
        assert image_v.shape == (3, 96, 96) and image_v.dtype == torch.float32
        torch.testing.assert_close(image_v, image_c)
        torch.testing.assert_close(target_v["boxes"], target_c["boxes"])
        assert torch.equal(target_v["labels"], target_c["labels"])
        assert target_v["labels"].dtype == torch.int64
        assert target_v["difficult"].dtype == torch.bool and not target_v["difficult"].any()


def test_voc_float_coordinates_difficult_and_class_list(tmp_path):
    root = write_voc(tmp_path, {"a": [("cat", (1.5, 2, 10.25, 20), 0), ("dog", (5, 5, 30, 30), 1)]})
    dataset = VOCDetection(root, "train", classes=["cat", "dog"])
    _, target = dataset[0]
    torch.testing.assert_close(target["boxes"], torch.tensor([[0.5, 1.0, 10.25, 20.0], [4.0, 4.0, 30.0, 30.0]]))
    assert target["labels"].tolist() == [1, 2]
    assert target["difficult"].tolist() == [False, True]
    assert VOCDetection(root, "train").classes == ["cat", "dog"]  # derived: sorted names in the split's XML
    year_dir = write_voc(tmp_path / "VOCdevkit" / "VOC2007", {"a": [("dog", (5, 5, 30, 30), 0)]})
    assert VOCDetection(year_dir, "train").classes == list(VOC_CLASSES)  # a VOC year directory: the devkit's 20


def test_voc_instance_masks_agree_with_boxes(shapes_root):
    dataset = VOCDetection(shapes_root.voc_root, "val", classes=SHAPE_CLASSES, with_masks=True)
    _, target = dataset[0]
    assert target["masks"].shape == (len(target["boxes"]), 96, 96)
    for box, mask in zip(target["boxes"], target["masks"]):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        # SegmentationObject marks a 1-px void border, so the mask sits just inside its box
        assert xs.min() >= box[0] and xs.max() + 1 <= box[2] and ys.min() >= box[1] and ys.max() + 1 <= box[3]
        assert xs.min() <= box[0] + 2 and ys.min() <= box[1] + 2


def test_voc_segmentation_reads_palette_indices(shapes_root):
    dataset = VOCSegmentation(shapes_root.voc_root, "train", classes=SHAPE_CLASSES)
    _, target = dataset[0]
    values = set(np.unique(target["semantic"].numpy()).tolist())
    assert target["semantic"].shape == (96, 96) and values <= {0, 1, 2, 3, 4, 255} and 255 in values


def test_missing_split_file_is_named(tmp_path):
    write_voc(tmp_path, {"a": []})
    with pytest.raises(ValueError, match="val.txt"):
        VOCDetection(tmp_path, "val")


def test_instance_heads_read_the_segmentation_image_set(shapes_root, tmp_path):
    """VOC lists the images with SegmentationObject masks in ImageSets/Segmentation, not Main."""
    root = shapes_root.voc_root
    segmentation_ids = (root / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    dataset = VOCDetection(root, "val", classes=SHAPE_CLASSES, with_masks=True, image_set="Segmentation")
    assert dataset.ids == segmentation_ids and "masks" in dataset[0][1]
    write_voc(tmp_path, {"a": []})
    with pytest.raises(ValueError, match="Segmentation.*val.txt"):
        VOCDetection(tmp_path, "val", image_set="Segmentation")
