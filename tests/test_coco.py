import numpy as np
import pycocotools.mask as mask_utils
import torch
from voc_fixtures import write_coco

from datasets.coco import COCODetection

POLYGON = [[2.0, 2.0, 20.0, 2.0, 20.0, 12.0, 2.0, 12.0]]


def _data() -> dict:
    mask = np.zeros((30, 40), np.uint8)
    mask[5:15, 10:30] = 1
    compressed = mask_utils.encode(np.asfortranarray(mask))
    compressed["counts"] = compressed["counts"].decode()
    uncompressed = {"size": [30, 40], "counts": [100, 50, 30 * 40 - 150]}  # column-major runs
    return {
        "images": [
            {"id": 7, "file_name": "a.jpg", "height": 30, "width": 40},
            {"id": 3, "file_name": "b.jpg", "height": 30, "width": 40},
        ],
        "categories": [{"id": 90, "name": "zebra"}, {"id": 5, "name": "cat"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 90, "bbox": [2, 2, 18, 10], "area": 180, "iscrowd": 0, "segmentation": POLYGON},
            {"id": 2, "image_id": 7, "category_id": 5, "bbox": [10, 5, 20, 10], "area": 200, "iscrowd": 0, "segmentation": compressed},
            {"id": 3, "image_id": 7, "category_id": 5, "bbox": [0, 0, 40, 30], "area": 30, "iscrowd": 1, "segmentation": uncompressed},
        ],
    }


def test_category_mapping_crowd_and_empty_images(tmp_path):
    ann = write_coco(tmp_path, _data(), {"a.jpg": (30, 40), "b.jpg": (30, 40)})
    dataset = COCODetection(tmp_path / "images", ann)
    assert dataset.classes == ["cat", "zebra"]  # sorted by category id: 5 -> 1, 90 -> 2
    assert dataset.category_id_to_label == {5: 1, 90: 2} and dataset.label_to_category_id == {1: 5, 2: 90}
    assert [dataset[i][1]["image_id"] for i in range(len(dataset))] == [3, 7]  # empty image kept
    _, target = dataset[1]
    assert target["labels"].tolist() == [2, 1, 1]
    assert target["iscrowd"].tolist() == [False, False, True]
    torch.testing.assert_close(target["boxes"][0], torch.tensor([2.0, 2.0, 20.0, 12.0]))
    assert len(COCODetection(tmp_path / "images", ann, filter_empty=True)) == 1


def test_masks_decode_polygon_and_both_rles_like_pycocotools(tmp_path):
    data = _data()
    ann = write_coco(tmp_path, data, {"a.jpg": (30, 40), "b.jpg": (30, 40)})
    dataset = COCODetection(tmp_path / "images", ann, with_masks=True, with_semantic=True)
    _, target = dataset[1]
    assert target["masks"].shape == (3, 30, 40) and target["masks"].dtype == torch.uint8
    for mask, raw in zip(target["masks"], data["annotations"]):
        segm = raw["segmentation"]
        if isinstance(segm, dict) and isinstance(segm["counts"], str):
            segm = {"size": segm["size"], "counts": segm["counts"].encode()}
        rle = segm if isinstance(segm, dict) and isinstance(segm["counts"], bytes) else mask_utils.frPyObjects(segm, 30, 40)
        expected = mask_utils.decode(mask_utils.merge(rle) if isinstance(rle, list) else rle)
        assert np.array_equal(mask.numpy(), expected)
    assert target["masks"][1][5:15, 10:30].all() and target["masks"][1].sum() == 200
    assert target["masks"][2].sum() == 50
    # crowd regions are void in the semantic map
    assert (target["semantic"][target["masks"][2].bool()] == 255).all()
