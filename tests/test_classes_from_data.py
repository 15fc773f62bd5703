"""Own data: class names and ``num_classes`` come from the data; ``weights null`` on the command line."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from voc_fixtures import write_voc

from datasets.datamodule import DetectionDataModule
from datasets.errors import DatasetError
from datasets.voc import VOC_CLASSES
from detection.backbones.efficientnet import packaged_weights_path
from script_loader import load_script



@pytest.fixture
def own_voc(tmp_path):
    """A VOC-layout dataset that is not a VOC year directory: classes zebra, ant, cow (in file order)."""
    root = write_voc(tmp_path / "my_cells", {
        "a": [("zebra", (5, 5, 30, 25), 0)], "b": [("ant", (2, 2, 20, 20), 0), ("zebra", (1, 1, 9, 9), 0)],
        "c": [("cow", (10, 5, 40, 30), 0)], "d": [("ant", (3, 3, 33, 23), 0)],
    })
    (root / "ImageSets/Main/val.txt").write_text("a\nc\n")
    return root


def test_voc_classes_are_the_sorted_names_of_the_training_annotations(own_voc):
    data = DetectionDataModule(format="voc", root=str(own_voc), num_workers=0)
    assert data.classes == ["ant", "cow", "zebra"] and data.num_classes == 3
    data.setup("fit")
    _, target = data.dataset("train")[1]
    assert target["labels"].tolist() == [1, 3]  # ant, zebra
    given = DetectionDataModule(format="voc", root=str(own_voc), classes=["zebra", "ant", "cow"], num_workers=0)
    assert given.classes == ["zebra", "ant", "cow"]  # a given list keeps its order


def test_a_voc_year_directory_keeps_the_devkit_classes(tmp_path):
    root = write_voc(tmp_path / "VOCdevkit" / "VOC2012", {"a": [("dog", (5, 5, 30, 25), 0)]})
    assert DetectionDataModule(format="voc", root=str(root), num_workers=0).classes == list(VOC_CLASSES)


def test_a_validation_name_the_training_split_lacks_is_an_error(own_voc):
    (own_voc / "ImageSets/Main/val.txt").write_text("a\nx\n")
    write_voc(own_voc.parent / "extra", {"x": [("yak", (5, 5, 30, 25), 0)]})
    for sub in ("Annotations/x.xml", "JPEGImages/x.jpg"):
        (own_voc / sub).write_bytes((own_voc.parent / "extra" / sub).read_bytes())
    data = DetectionDataModule(format="voc", root=str(own_voc), num_workers=0)
    data.setup("fit")
    with pytest.raises(DatasetError, match=r"unknown class name\(s\) \['yak'\]"):
        data.dataset("val")[1]


def test_coco_classes_are_the_categories_in_id_order(tmp_path):
    root = tmp_path / "coco"
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(root / split / "a.jpg")
    (root / "annotations").mkdir()
    categories = [{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"}, {"id": 18, "name": "dog"}]
    ann = {"images": [{"id": 5, "file_name": "a.jpg", "height": 20, "width": 30}], "categories": categories,
           "annotations": [{"id": 1, "image_id": 5, "category_id": 18, "bbox": [1, 1, 10, 10], "area": 100, "iscrowd": 0}]}
    for split in ("train", "val"):
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(ann))
    data = DetectionDataModule(format="coco", root=str(root), num_workers=0)
    assert data.classes == ["person", "dog", "toothbrush"] and data.num_classes == 3
    _, target = data.dataset("train")[0]
    assert target["labels"].tolist() == [2]


def _config(tmp_path: Path, root: Path, model: dict) -> Path:
    config = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "logger": False, "enable_progress_bar": False, "enable_model_summary": False,
                    "default_root_dir": str(tmp_path / "run")},
        "model": {"model": model, "evaluator": {"class_path": "detection.evaluation.VOCEvaluator", "init_args": {}},
                  "monitor": "map_50", "lr": 0.01, "warmup_steps": 1},
        "data": {"class_path": "datasets.datamodule.DetectionDataModule",
                 "init_args": {"format": "voc", "root": str(root), "batch_size": 2, "num_workers": 0, "augment": False}},
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def test_num_classes_left_out_of_the_config_comes_from_the_data(own_voc, tmp_path):
    config = _config(tmp_path, own_voc, {"class_path": "detection.tiny.TinyDetector", "init_args": {"image_size": 32}})
    cli = load_script("train").main(["fit", "--config", str(config), "--trainer.fast_dev_run", "1"])
    assert cli.model.model.num_classes == 3 and cli.model.classes == ["ant", "cow", "zebra"]
    with pytest.raises(ValueError, match=r"num_classes=4 but the data has 3 foreground classes \['ant', 'cow', 'zebra'\].*set it to 3"):
        load_script("train").main(["fit", "--config", str(config), "--model.model.init_args.num_classes", "4", "--trainer.fast_dev_run", "1"])


def test_weights_null_on_the_command_line_trains_from_random_weights(own_voc, tmp_path):
    model = {
        "class_path": "detection.localization.ClassLocalizationNet",
        "init_args": {"image_size": 64, "backbone": {"class_path": "detection.backbones.EfficientNetLite0", "init_args": {"weights": "IMAGENET"}}},
    }
    config = _config(tmp_path, own_voc, model)
    stem = torch.load(packaged_weights_path(), map_location="cpu", weights_only=True)["_conv_stem.weight"]
    train = load_script("train")
    scale = stem.abs().mean()

    def distance(cli) -> float:  # from the packaged weights, after one training step
        assert cli.trainer.global_step == 1
        return float((cli.model.model.backbone.stages["c1"][1].weight.detach() - stem).abs().mean() / scale)

    assert distance(train.main(["fit", "--config", str(config), "--trainer.fast_dev_run", "1"])) < 0.05
    null = ["--model.model.init_args.backbone.init_args.weights", "null"]
    assert distance(train.main(["fit", "--config", str(config), "--trainer.fast_dev_run", "1", *null])) > 0.5
