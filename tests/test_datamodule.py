import torch

from datasets.datamodule import DetectionDataModule


def test_shapes_detection_batches(shapes_root):
    data = DetectionDataModule(format="shapes", root=str(shapes_root.root), batch_size=4, num_workers=0)
    data.setup("fit")
    assert data.num_classes == 4 and data.classes[0] == "circle"
    images, targets = next(iter(data.train_dataloader()))
    assert len(images) == len(targets) == 4
    assert all(image.shape[0] == 3 and image.dtype == torch.float32 for image in images)
    assert all(t["labels"].dtype == torch.int64 and t["boxes"].shape[1] == 4 for t in targets)
    val_images, _ = next(iter(data.val_dataloader()))
    assert all(image.shape == (3, 96, 96) for image in val_images)  # no augmentation at evaluation


def test_shapes_semantic_batches_with_workers(shapes_root):
    data = DetectionDataModule(format="shapes", root=str(shapes_root.root), task="semantic", batch_size=3, num_workers=2)
    data.setup("fit")
    images, masks = next(iter(data.train_dataloader()))
    assert images.shape == (3, 3, 96, 96) and masks.shape == (3, 96, 96) and masks.dtype == torch.int64
    assert set(masks.unique().tolist()) <= {0, 1, 2, 3, 4, 255}


def test_voc_list_of_roots_is_concatenated_for_training(shapes_root):
    root = str(shapes_root.voc_root)
    data = DetectionDataModule(format="voc", root=[root, root], classes=list(shapes_root.classes), num_workers=0)
    data.setup("fit")
    assert len(data.dataset("train")) == 24 and len(data.dataset("val")) == 6


def test_coco_layout(shapes_root, tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_val.json").write_bytes(shapes_root.coco_ann("val").read_bytes())
    (tmp_path / "val").symlink_to(shapes_root.image_root)
    data = DetectionDataModule(format="coco", root=str(tmp_path), with_masks=True, num_workers=0, batch_size=2)
    data.setup("validate")
    images, targets = next(iter(data.val_dataloader()))
    assert data.classes == list(shapes_root.classes)
    assert targets[0]["masks"].shape[1:] == images[0].shape[1:]
