"""COCO category subsets (``COCODetection(categories=...)``, the data module's ``classes``, the checker).

A generated fixture runs everywhere; the coco_mini tests use ../shared/data and skip without it.
"""

import json

import pytest
from voc_fixtures import write_coco

from datasets.check import check_coco
from datasets.coco import COCODetection
from datasets.datamodule import DetectionDataModule
from datasets.errors import DatasetError

SQUARE = [[2.0, 2.0, 12.0, 2.0, 12.0, 12.0, 2.0, 12.0]]
SIZES = {"a.jpg": (30, 40), "b.jpg": (30, 40), "c.jpg": (30, 40)}


def _ann(ann_id: int, image_id: int, category_id: int, crowd: int = 0) -> dict:
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": [2, 2, 10, 10],
            "area": 100, "iscrowd": crowd, "segmentation": SQUARE}


def _data() -> dict:
    """Three images: 1 has a cat and a zebra, 2 only a dog, 3 nothing. Category ids are sparse."""
    return {
        "images": [{"id": i, "file_name": name, "height": 30, "width": 40} for i, name in enumerate(SIZES, start=1)],
        "categories": [{"id": 90, "name": "zebra"}, {"id": 5, "name": "cat"}, {"id": 18, "name": "dog"}],
        "annotations": [_ann(1, 1, 90), _ann(2, 1, 5), _ann(3, 2, 18)],
    }


@pytest.fixture
def ann(tmp_path):
    return write_coco(tmp_path, _data(), SIZES)


@pytest.mark.parametrize("categories", [["zebra", "cat"], [90, 5], ["90", "cat", "cat"]])
def test_subset_by_name_or_id_keeps_contiguous_labels_and_the_original_ids(ann, categories):
    dataset = COCODetection(ann.parent / "images", ann, categories=categories)
    assert dataset.classes == ["cat", "zebra"]  # category-id order, whatever order they were asked in
    assert dataset.label_to_category_id == {1: 5, 2: 90} and dataset.category_id_to_label == {5: 1, 90: 2}
    assert len(dataset) == 3  # images without the kept categories stay, as negatives
    by_id = {target["image_id"]: target for target in (dataset[i][1] for i in range(len(dataset)))}
    assert by_id[1]["labels"].tolist() == [2, 1]  # zebra, cat: the file's order
    assert len(by_id[2]["labels"]) == 0 and len(by_id[3]["labels"]) == 0  # the dog is not kept


def test_filter_empty_drops_the_images_without_a_kept_category(ann):
    dataset = COCODetection(ann.parent / "images", ann, categories=["dog"], filter_empty=True)
    assert dataset.image_ids == [2] and dataset.classes == ["dog"] and dataset.label_to_category_id == {1: 18}
    _, target = dataset[0]
    assert target["labels"].tolist() == [1]


def test_masks_and_semantic_follow_the_subset(ann):
    dataset = COCODetection(ann.parent / "images", ann, categories=["zebra"], with_masks=True, with_semantic=True)
    _, target = dataset[0]
    assert target["masks"].shape == (1, 30, 40) and target["labels"].tolist() == [1]
    assert set(target["semantic"].unique().tolist()) == {0, 1}


def test_unknown_category_names_the_file_and_lists_the_categories(ann):
    with pytest.raises(DatasetError) as raised:
        COCODetection(ann.parent / "images", ann, categories=["cat", "horse", 7])
    assert raised.value.path == str(ann)
    message = str(raised.value)
    assert "['horse', 7]" in message and "cat (5), dog (18), zebra (90)" in message


def test_a_subset_without_objects_stops_naming_the_file(tmp_path):
    data = _data()
    data["categories"].append({"id": 44, "name": "bottle"})  # defined, never annotated
    ann = write_coco(tmp_path, data, SIZES)
    with pytest.raises(DatasetError, match=r"ann\.json: no annotation of the categories kept \(\['bottle'\]\)"):
        COCODetection(tmp_path / "images", ann, categories=["bottle"])
    data["annotations"].append(_ann(4, 3, 44, crowd=1))  # a crowd region only: no image to train on
    ann = write_coco(tmp_path, data, SIZES)
    assert len(COCODetection(tmp_path / "images", ann, categories=["bottle"])) == 3
    with pytest.raises(DatasetError, match=r"ann\.json: no image has a non-crowd object of \['bottle'\]"):
        COCODetection(tmp_path / "images", ann, categories=["bottle"], filter_empty=True)


def _coco_root(tmp_path, data: dict):
    """``tmp_path`` in the data module's COCO layout, the same file for train and val."""
    write_coco(tmp_path / "files", data, SIZES)
    (tmp_path / "annotations").mkdir()
    for split in ("train", "val"):
        (tmp_path / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
        (tmp_path / split).mkdir(exist_ok=True)
        for name in SIZES:
            (tmp_path / split / name).write_bytes((tmp_path / "files" / "images" / name).read_bytes())
    return tmp_path


def test_data_module_classes_keep_a_subset_for_every_split(tmp_path):
    root = _coco_root(tmp_path, _data())
    module = DetectionDataModule(format="coco", root=str(root), classes=["cat", "dog"], num_workers=0, augment=False)
    assert module.classes == ["cat", "dog"] and module.num_classes == 2
    module.setup("fit")
    assert module.datasets["train"].image_ids == [1, 2]  # training drops the image with neither (filter_empty)
    assert module.datasets["val"].image_ids == [1, 2, 3]  # evaluation keeps it
    assert module.datasets["val"].label_to_category_id == {1: 5, 2: 18}
    by_id = DetectionDataModule(format="coco", root=str(root), classes=[18], num_workers=0)
    assert by_id.classes == ["dog"]
    with pytest.raises(DatasetError, match=r"category-id order.*\['cat', 'dog'\]"):
        DetectionDataModule(format="coco", root=str(root), classes=["dog", "cat"], num_workers=0).setup("fit")
    with pytest.raises(ValueError, match="category ids work for COCO only"):
        DetectionDataModule(format="voc", root=str(root), classes=[1])


def test_checker_reads_the_subset_and_counts_masks_per_class(ann):
    report = check_coco(ann, ann.parent / "images", categories=["dog"], with_masks=True)
    assert report.errors == [] and report.classes == ["dog"]
    assert dict(report.boxes_per_class) == {"dog": 1} and dict(report.masks_per_class) == {"dog": 1}
    assert sorted(report.empty_images) == ["a.jpg", "c.jpg"]
    summary = report.summary()
    assert "instance masks read: 1, per class:" in summary and "(categories ['dog'])" in summary
    assert "instance masks: not read" in check_coco(ann, ann.parent / "images").summary()
    unknown = check_coco(ann, ann.parent / "images", categories=["horse"])
    assert len(unknown.errors) == 1 and "cat (5), dog (18), zebra (90)" in unknown.errors[0].message


# ----------------------------------------------------------------------------- coco_mini (real files)
def _coco_mini(shared_data, split: str) -> tuple:
    root = shared_data / "coco_mini"
    return root / f"{split}2017", root / "annotations" / f"instances_{split}2017.json"


@pytest.mark.parametrize("split,with_people", [("train", 36), ("val", 39)])
def test_coco_mini_person_subset(shared_data, split, with_people):
    images, ann = _coco_mini(shared_data, split)
    data = json.loads(ann.read_text())
    expected = sorted({a["image_id"] for a in data["annotations"] if a["category_id"] == 1 and not a["iscrowd"]})
    assert len(expected) == with_people
    people = COCODetection(images, ann, categories=["person"], filter_empty=True)
    assert people.image_ids == expected
    assert people.classes == ["person"] and people.label_to_category_id == {1: 1}
    persons = 0
    for index in range(len(people)):
        target, _, _ = people.load_annotation(index)
        assert target["labels"].tolist() == [1] * len(target["labels"]) and len(target["labels"]) > 0
        persons += len(target["labels"])
    assert persons == sum(a["category_id"] == 1 for a in data["annotations"])  # no person box is degenerate here
    negatives = COCODetection(images, ann, categories=[1])  # filter_empty=False keeps every image
    assert len(negatives) == len(data["images"]) and negatives.classes == ["person"]


def test_coco_mini_unknown_category_lists_the_names(shared_data):
    images, ann = _coco_mini(shared_data, "val")
    with pytest.raises(DatasetError) as raised:
        COCODetection(images, ann, categories=["persn"])
    assert raised.value.path == str(ann)
    assert "['persn']" in str(raised.value) and "person (1)" in str(raised.value) and "toothbrush (90)" in str(raised.value)


def test_coco_mini_data_module_person(shared_data):
    module = DetectionDataModule(format="coco", root=str(shared_data / "coco_mini"), train_split="train2017",
                                 val_split="val2017", classes=["person"], num_workers=0)
    assert module.classes == ["person"] and module.num_classes == 1
    assert len(module.dataset("train")) == 36 and len(module.dataset("val")) == 79  # val keeps the negatives
    assert "classes" not in module.hparams  # a logger merges these with the model's: a second `classes` would clash


def test_evaluate_scores_only_the_subset(ann, tmp_path):
    """evaluate.py --coco-ann --classes: the subset's ground truth and results, COCOeval on its category ids."""
    from script_loader import load_script

    results = [{"image_id": 1, "category_id": 5, "bbox": [2, 2, 10, 10], "score": 0.9},  # the cat, found
               {"image_id": 1, "category_id": 90, "bbox": [20, 15, 10, 10], "score": 0.8}]  # a zebra, wrong place
    (tmp_path / "results.json").write_text(json.dumps(results))
    common = ["--predictions", str(tmp_path / "results.json"), "--coco-ann", str(ann), "--images", str(ann.parent / "images"),
              "--protocol", "coco", "--no-progress", "--gallery", "0"]  # fmt: skip
    evaluate = load_script("evaluate")
    assert evaluate.main([*common, "--classes", "cat", "--out", str(tmp_path / "cat")]) == 0
    cat = json.loads((tmp_path / "cat" / "metrics.json").read_text())
    assert cat["map"] == pytest.approx(1.0)  # the dog and the zebra are neither ground truth nor results
    assert "1 results of other categories left out" in (tmp_path / "cat" / "report.md").read_text()
    assert evaluate.main([*common, "--out", str(tmp_path / "all")]) == 0
    assert json.loads((tmp_path / "all" / "metrics.json").read_text())["map"] < 0.5  # dog missed, zebra misplaced
