"""Semantic mask folders: both layouts, the value options, bad masks in the reader, the checker and
training, the data module and check_dataset.py --config, and the real Roboflow export when present."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from mask_folder_fixtures import CLASSES, SIZE, SPLITS, write_mmseg, write_roboflow
from PIL import Image

from datasets.base import BadImageLog
from datasets.check import check_datamodule, check_semantic
from datasets.datamodule import DetectionDataModule
from datasets.errors import DatasetError
from datasets.mask_folder import MaskFolderOptions, MaskFolderSegmentation, read_class_file
from datasets.palette import VOID_INDEX

REPO = Path(__file__).resolve().parents[1]
TQB = "roboflow_tqb_semantic"
TQB_CLASSES = ["Road", "bin", "ceiling", "chair", "door", "fire extinguisher", "glasses", "picture", "table", "vending machine", "wall"]


@pytest.fixture
def roboflow(tmp_path) -> Path:
    return write_roboflow(tmp_path / "roboflow")


def _raw(path: Path) -> np.ndarray:
    return np.array(Image.open(path))


def _rewrite(path: Path, mask: np.ndarray) -> None:
    Image.fromarray(mask.astype(np.uint8), mode="L").save(path)


def test_roboflow_layout_reads_images_masks_and_the_classes_csv(roboflow):
    dataset = MaskFolderSegmentation(roboflow, "train")
    assert len(dataset) == SPLITS["train"] and dataset.classes == CLASSES
    image, target = dataset[1]
    assert image.shape == (3, *SIZE) and target["semantic"].dtype == torch.int64 and target["image_id"] == 1
    raw = _raw(dataset.mask_path(1))
    np.testing.assert_array_equal(target["semantic"].numpy(), raw)  # 0 background, 1..3 as written
    assert set(np.unique(raw)) == {0, 1, 2, 3}
    assert dataset.image_path(1).name.endswith(".jpg") and dataset.mask_path(1).name.endswith("_mask.png")


def test_mmseg_layout_with_a_text_class_file_and_its_void_index(tmp_path):
    root = write_mmseg(tmp_path / "mmseg", void=250)
    options = {"layout": "mmseg", "classes_file": "classes.txt", "void_index": 250}
    dataset = MaskFolderSegmentation(root, "valid", options=options)
    assert len(dataset) == SPLITS["valid"] and dataset.classes == CLASSES
    _, target = dataset[0]
    raw = _raw(dataset.mask_path(0))
    semantic = target["semantic"].numpy()
    assert (semantic[:2] == VOID_INDEX).all() and (semantic[-2:] == VOID_INDEX).all()  # 250 -> void
    np.testing.assert_array_equal(semantic[2:-2], raw[2:-2])
    # without the right void index, 250 is a value outside the classes
    with pytest.raises(DatasetError, match=r"values \[250\] are neither classes"):
        MaskFolderSegmentation(root, "valid", options={"layout": "mmseg", "classes_file": "classes.txt"}).load(0)


def test_reduce_zero_label_makes_zero_void_and_keeps_the_other_labels(tmp_path):
    root = write_mmseg(tmp_path / "ade", reduce_zero_label=True)
    dataset = MaskFolderSegmentation(root, "train", options={"layout": "mmseg", "classes_file": "classes.txt", "reduce_zero_label": True})
    _, target = dataset[0]
    raw, semantic = _raw(dataset.mask_path(0)), target["semantic"].numpy()
    assert (semantic[raw == 0] == VOID_INDEX).all() and 0 not in semantic
    labelled = (raw > 0) & (raw != VOID_INDEX)
    np.testing.assert_array_equal(semantic[labelled], raw[labelled])


def test_label_offset_shifts_values_so_that_zero_is_the_first_class(tmp_path):
    root = write_mmseg(tmp_path / "camvid")
    mask_path = root / "ann_dir" / "train" / "00000.png"
    raw = _raw(mask_path)
    _rewrite(mask_path, np.where(raw == VOID_INDEX, VOID_INDEX, np.clip(raw, 0, 2)))  # values 0..2: three classes, 0 a class
    options = {"layout": "mmseg", "classes_file": "classes.txt", "label_offset": 1}
    dataset = MaskFolderSegmentation(root, "train", options=options)
    _, target = dataset[0]
    written = _raw(mask_path)
    semantic = target["semantic"].numpy()
    valid = written != VOID_INDEX
    np.testing.assert_array_equal(semantic[valid], written[valid] + 1)
    assert (semantic[~valid] == VOID_INDEX).all()
    with pytest.raises(DatasetError, match=r"values \[3\]"):  # 3 + 1 = label 4 > 3 classes
        dataset.load(1)


def test_class_csv_rows_follow_the_label_offset_and_skip_void(tmp_path):
    path = tmp_path / "classes.csv"
    path.write_text("Pixel Value, Class\n0, sky\n1, road\n11, void\n")
    assert read_class_file(path, label_offset=1, void_index=11) == ["sky", "road"]
    path.write_text("value,name\n0,tqb\n2,door\n")
    with pytest.raises(DatasetError, match="without gaps"):
        read_class_file(path)


def test_size_mismatched_mask_and_out_of_range_values_are_errors_naming_the_mask(roboflow):
    dataset = MaskFolderSegmentation(roboflow, "train")
    big, odd = dataset.mask_path(0), dataset.mask_path(2)
    _rewrite(big, np.zeros((SIZE[0] * 3, SIZE[1] * 2)))
    raw = _raw(odd)
    raw[0, :3] = (7, 9, VOID_INDEX)
    _rewrite(odd, raw)
    with pytest.raises(DatasetError, match=r"mask is \(H, W\) = \(120, 112\) but its image is \(40, 56\)") as error:
        dataset.load(0)
    assert error.value.path == str(big)
    with pytest.raises(DatasetError, match=r"values \[7, 9\] are neither classes \(labels 1..3"):
        dataset.load(2)
    report = check_semantic(dataset, "train")
    assert sorted(p.path for p in report.errors) == sorted([str(big), str(odd)])
    assert report.images == SPLITS["train"] and report.images_per_class["wall"] == SPLITS["train"] - 1
    summary = report.summary()
    assert "2 errors" in summary and "images showing each class" in summary


def test_missing_mask_and_orphan_mask_are_reported(roboflow):
    dataset = MaskFolderSegmentation(roboflow, "test")
    shutil.move(dataset.mask_path(0), roboflow / "test" / "stray_mask.png")
    report = check_semantic(dataset, "test")
    assert [p.message for p in report.errors] == ["mask file is missing"]
    assert [p.path.split("/")[-1] for p in report.warnings] == ["stray_mask.png"]


def test_training_skips_a_bad_mask_and_lists_it_then_stops_past_the_fraction(roboflow, tmp_path):
    dataset = MaskFolderSegmentation(roboflow, "train")
    _rewrite(dataset.mask_path(3), np.zeros((8, 8)))
    dataset.bad_images = BadImageLog(tmp_path / "bad_images.txt", max_fraction=0.2)  # 1 of 6 allowed
    with pytest.warns(UserWarning, match="skipped unreadable sample"):
        assert dataset[3] is None
    assert list(dataset.bad_images.listed()) == [str(dataset.mask_path(3))]
    _rewrite(dataset.mask_path(4), np.zeros((8, 8)))
    with pytest.warns(UserWarning), pytest.raises(DatasetError, match="2 of 6 images are unreadable"):
        dataset[4]


def test_exclude_leaves_named_images_out(roboflow):
    full = MaskFolderSegmentation(roboflow, "train")
    dropped = full.ids[1]
    dataset = MaskFolderSegmentation(roboflow, "train", options={"exclude": [dropped]})
    assert dropped not in dataset.ids and len(dataset) == len(full) - 1 and dataset.excluded == [dropped]
    assert dataset.orphan_masks() == []  # its mask is excluded, not orphaned
    report = check_semantic(dataset, "train")
    assert [p.message for p in report.warnings] == ["left out (mask folder option exclude)"] and not report.errors


def test_unknown_options_and_layouts_are_refused():
    with pytest.raises(ValueError, match=r"unknown mask folder option\(s\) \['void'\]"):
        MaskFolderOptions.from_dict({"void": 0})
    with pytest.raises(ValueError, match="layout must be one of"):
        MaskFolderOptions(layout="cityscapes")
    with pytest.raises(ValueError, match="set task: semantic"):
        DetectionDataModule(format="mask_folder", root="x")


def test_datamodule_trains_on_a_mask_folder_with_one_format_change(roboflow):
    datamodule = DetectionDataModule(
        format="mask_folder", task="semantic", root=str(roboflow), val_split="valid", batch_size=2, num_workers=0, crop_size=32,
    )
    assert datamodule.classes == CLASSES and datamodule.num_classes == 3
    datamodule.setup("fit")
    images, targets = next(iter(datamodule.train_dataloader()))
    assert images[0].shape == (3, 32, 32) and targets[0]["semantic"].shape == (32, 32)
    assert len(datamodule.dataset("val")) == SPLITS["valid"]


def _config_on(config: Path, root: Path, tmp_path: Path, **init_args) -> Path:
    data = yaml.safe_load(config.read_text())
    data["data"]["init_args"].update(root=str(root), **init_args)
    path = tmp_path / config.name
    path.write_text(yaml.safe_dump(data))
    return path


def test_example_config_trains_fast_dev_run_on_generated_folders(roboflow, tmp_path):
    from script_loader import load_script

    config = _config_on(REPO / "configs" / "fcn" / "mask_folder_example.yaml", roboflow, tmp_path)
    load_script("train").main([
        "fit", "--config", str(config), "--trainer.fast_dev_run", "1", "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path),
        "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "2", "--data.init_args.crop_size", "32",
        "--model.model.init_args.num_classes", str(len(CLASSES)),
    ])  # fmt: skip


def test_check_dataset_config_checks_the_splits_a_mask_folder_config_reads(roboflow, tmp_path, capsys):
    from script_loader import load_script

    def check_dataset(*args: str) -> tuple[int, str]:
        status = load_script("check_dataset").main(list(args))
        return status, capsys.readouterr().out

    dataset = MaskFolderSegmentation(roboflow, "valid")
    _rewrite(dataset.mask_path(1), np.zeros((4, 4)))
    config = _config_on(REPO / "configs" / "fcn" / "mask_folder_example.yaml", roboflow, tmp_path)
    status, out = check_dataset("--config", str(config))
    assert status == 1
    assert [line for line in out.splitlines() if line.startswith("dataset:")] == [
        f"dataset: mask_folder {roboflow} [{split}]" for split in ("train", "valid", "test")
    ]
    assert f"{dataset.mask_path(1)}: mask is (H, W) = (4, 4)" in out and "problems: 1 errors" in out
    status, out = check_dataset("--config", str(config), "--split", "train")
    assert status == 0 and out.count("dataset:") == 1
    status, out = check_dataset("--mask-folder", str(roboflow), "--split", "valid", "--mask-option", "void_index=0")
    assert status == 1 and "values [1, 2, 3] are neither classes" not in out and "(4, 4)" in out


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("configs/fcn/shapes.yaml", "images showing each class"),  # semantic VOC layout (SegmentationClass)
        ("configs/faster_rcnn/shapes.yaml", "boxes per class"),  # VOC detection layout
        ("configs/mnc/shapes.yaml", "instance masks read"),  # with_masks
    ],
)
def test_check_datamodule_reads_every_format_as_the_config_trains(shapes_root, config, expected):
    data = yaml.safe_load((REPO / config).read_text())["data"]["init_args"]
    data.update(root=str(shapes_root.root))
    report = check_datamodule(DetectionDataModule(**data), "val")
    assert report.images > 0 and expected in report.summary() and not report.errors


def test_check_datamodule_reads_coco_with_its_file_checks(tmp_path):
    import json

    (tmp_path / "annotations").mkdir()
    (tmp_path / "val").mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "val" / "a.jpg")
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "height": 20, "width": 30}],
        "categories": [{"id": 3, "name": "cat"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [2, 2, 5, 5], "area": 25, "iscrowd": 0},
                        {"id": 2, "image_id": 7, "category_id": 3, "bbox": [2, 2, 5, 5], "area": 25, "iscrowd": 0}],
    }  # fmt: skip
    (tmp_path / "annotations" / "instances_val.json").write_text(json.dumps(data))
    report = check_datamodule(DetectionDataModule(format="coco", root=str(tmp_path)), "val")
    assert report.images == 1 and report.boxes_per_class["cat"] == 1
    assert len(report.errors) == 1 and "image id" in report.errors[0].message.lower()


# --- the real Roboflow export (../shared/data), read sparingly to stay fast --------------------------


def test_roboflow_tqb_classes_and_a_few_samples(shared_data):
    root = shared_data / TQB
    dataset = MaskFolderSegmentation(root, "test")
    assert dataset.classes == TQB_CLASSES and len(dataset) == 25
    for index in (0, 12):
        image, target = dataset[index]
        assert image.shape == (3, 640, 640) and target["semantic"].shape == (640, 640)
        assert int(target["semantic"].max()) <= len(TQB_CLASSES)


def test_roboflow_tqb_size_mismatched_masks_are_named(shared_data):
    """The export bug: frame_0108's training masks are 1920x1080 (and empty) beside 640x640 images."""
    root = shared_data / TQB
    dataset = MaskFolderSegmentation(root, "train")
    bad = [i for i, name in enumerate(dataset.ids) if name.startswith("frame_0108_")]
    assert len(bad) == 3
    with pytest.raises(DatasetError, match=r"mask is \(H, W\) = \(1080, 1920\) but its image is \(640, 640\)"):
        dataset.load(bad[0])
    problems, labels = dataset.check(bad[0])
    assert len(problems) == 1 and labels.tolist() == []  # nothing labelled in it


def test_roboflow_tqb_valid_split_checker_names_its_one_bad_mask(shared_data):
    report = check_semantic(MaskFolderSegmentation(shared_data / TQB, "valid"), "valid")  # 25 images, ~0.3 s
    assert report.images == 25
    assert [Path(p.path).name for p in report.errors] == ["frame_0113_jpg.rf.75675d7fb11dc1d746a9f89e9738282c_mask.png"]
    assert not report.warnings


def test_predict_and_evaluate_scripts_read_a_mask_folder(roboflow, tmp_path, capsys):
    """A tiny FCN checkpoint trained on the folder: predict.py writes its masks, evaluate.py scores them
    (--masks-dir) and the checkpoint (--checkpoint) on the same split, with the same numbers."""
    import lightning as L
    from script_loader import load_script

    from detection.backbones import SmallCNN
    from detection.system import DetectionSystem
    from segmentation.fcn import FCN
    from segmentation.metrics import ConfusionMatrix

    torch.manual_seed(0)
    model = FCN(backbone=SmallCNN(width=4), num_classes=len(CLASSES), variant="32s", head_channels=8, dropout=0.0)
    system = DetectionSystem(model=model, evaluator=ConfusionMatrix, monitor="mean_iou", lr=0.01, classes=CLASSES)
    datamodule = DetectionDataModule(format="mask_folder", task="semantic", root=str(roboflow), val_split="valid",
                                     batch_size=2, num_workers=0)  # fmt: skip
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, max_steps=2, limit_val_batches=1, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(system, datamodule)
    checkpoint = tmp_path / "fcn.ckpt"
    trainer.save_checkpoint(checkpoint)
    backbone = {"class_path": "detection.backbones.SmallCNN", "init_args": {"width": 4}}
    init = {"num_classes": len(CLASSES), "variant": "32s", "head_channels": 8, "dropout": 0.0, "backbone": backbone}
    config = {"model": {"model": {"class_path": "segmentation.fcn.FCN", "init_args": init}, "classes": CLASSES}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))

    dataset_args = ["--mask-folder", str(roboflow), "--split", "valid", "--num-workers", "0", "--no-progress"]
    predictions = tmp_path / "predictions"
    assert load_script("predict").main(["--checkpoint", str(checkpoint), *dataset_args, "--out", str(predictions)]) == 0
    masks = sorted((predictions / "masks").rglob("*.png"))
    assert len(masks) == SPLITS["valid"]
    evaluate = load_script("evaluate")
    by_checkpoint, by_masks = tmp_path / "by_checkpoint", tmp_path / "by_masks"
    assert evaluate.main(["--checkpoint", str(checkpoint), *dataset_args, "--out", str(by_checkpoint)]) == 0
    assert evaluate.main(["--masks-dir", str(predictions / "masks"), *dataset_args, "--classes", *CLASSES, "--out", str(by_masks)]) == 0
    scored = [yaml.safe_load((out / "metrics.json").read_text()) for out in (by_checkpoint, by_masks)]
    assert scored[0]["mean_iou"] == pytest.approx(scored[1]["mean_iou"], abs=1e-9) and "iou/door" in scored[0]
    capsys.readouterr()
