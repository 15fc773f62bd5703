import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from datasets.base import DetectionDataset
from datasets.collate import collate_detection
from datasets.datamodule import DetectionDataModule, seed_worker
from datasets.errors import DatasetError
from datasets.palette import VOID_INDEX
from datasets.transforms import flip_transforms, train_transforms


def test_shapes_detection_batches(shapes_root):
    data = DetectionDataModule(format="shapes", root=str(shapes_root.root), batch_size=4, num_workers=0)
    data.setup("fit")
    assert data.num_classes == 4 and data.classes[0] == "circle"
    images, targets = next(iter(data.train_dataloader()))
    assert len(images) == len(targets) == 4
    assert all(image.shape[0] == 3 and image.dtype == torch.float32 for image in images)
    assert all(0.0 <= image.min() and image.max() <= 1.0 for image in images)
    for target in targets:
        assert target["labels"].dtype == torch.int64 and target["boxes"].dtype == torch.float32
        assert target["boxes"].shape == (len(target["labels"]), 4)
        assert target["difficult"].dtype == target["iscrowd"].dtype == torch.bool
        assert isinstance(target["image_id"], int)
    val_images, val_targets = next(iter(data.val_dataloader()))
    assert all(image.shape == (3, 96, 96) for image in val_images)  # no augmentation at evaluation
    assert [t["image_id"] for t in val_targets] == [0, 1, 2, 3]  # in split order, not shuffled


def test_shapes_detection_with_masks(shapes_root):
    data = DetectionDataModule(format="shapes", root=str(shapes_root.root), with_masks=True, batch_size=2, num_workers=0)
    data.setup("fit")
    images, targets = next(iter(data.train_dataloader()))
    for image, target in zip(images, targets):
        assert target["masks"].shape == (len(target["boxes"]), *image.shape[1:]) and target["masks"].dtype == torch.uint8
        assert target["semantic"].shape == image.shape[1:]


def test_shapes_semantic_batches_with_workers(shapes_root):
    data = DetectionDataModule(
        format="shapes", root=str(shapes_root.root), task="semantic", batch_size=3, num_workers=2, crop_size=64
    )
    data.setup("fit")
    images, targets = next(iter(data.train_dataloader()))
    masks = torch.stack([t["semantic"] for t in targets])
    assert [tuple(i.shape) for i in images] == [(3, 64, 64)] * 3 and masks.shape == (3, 64, 64) and masks.dtype == torch.int64
    assert set(masks.unique().tolist()) <= {0, 1, 2, 3, 4, VOID_INDEX}
    assert all(0 <= t["image_id"] < 12 for t in targets)
    val_images, val_targets = next(iter(data.val_dataloader()))
    assert [tuple(i.shape) for i in val_images] == [(3, 96, 96)] * 3 and [t["image_id"] for t in val_targets] == [0, 1, 2]


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
    wrong = DetectionDataModule(format="coco", root=str(tmp_path), classes=["a", "b", "c", "d"], num_workers=0)
    with pytest.raises(DatasetError, match="no category named or numbered"):
        wrong.setup("validate")


def test_missing_shapes_root_is_generated(tmp_path):
    root = tmp_path / "new_shapes"
    data = DetectionDataModule(
        format="shapes", root=str(root), shapes_sizes={"train": 3, "val": 2, "test": 1}, shapes_image_size=64, num_workers=0
    )
    data.setup("fit")
    assert (root / "classes.txt").is_file() and len(data.dataset("train")) == 3
    images, _ = next(iter(data.val_dataloader()))
    assert images[0].shape == (3, 64, 64)


def _first_batch_boxes(shapes_root, torch_seed):
    torch.manual_seed(torch_seed)
    data = DetectionDataModule(format="shapes", root=str(shapes_root.root), batch_size=4, num_workers=0)
    data.setup("fit")
    _, targets = next(iter(data.train_dataloader()))
    return [t["boxes"] for t in targets]


def test_training_batches_repeat_under_the_same_torch_seed(shapes_root):
    first, again, other = (_first_batch_boxes(shapes_root, seed) for seed in (1, 1, 2))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(first, other))


class _SameImage(DetectionDataset):
    """Eight copies of one image with one box: any difference between items is augmentation."""

    classes = ["thing"]

    def __len__(self) -> int:
        return 8

    def load(self, index: int):
        image = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
        return image, {"boxes": np.array([[10, 10, 40, 30]], np.float32), "labels": np.array([1]), "image_id": index}


def test_workers_draw_different_augmentations():
    dataset = _SameImage(train_transforms(seed=0))
    loader = DataLoader(dataset, batch_size=1, num_workers=2, worker_init_fn=seed_worker, collate_fn=collate_detection)
    boxes = [targets[0]["boxes"] for _, targets in loader]
    # items 0 and 1 come from workers 0 and 1; a forked pipeline without reseeding repeats the same draws
    for first_worker, second_worker in zip(boxes[0::2], boxes[1::2]):
        assert not torch.equal(first_worker, second_worker)


def test_collate_detection_keeps_variable_sizes():
    batch = [
        (torch.rand(3, 20, 30), {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}),
        (torch.rand(3, 40, 10), {"boxes": torch.tensor([[1.0, 2.0, 5.0, 9.0]]), "labels": torch.tensor([2])}),
    ]
    images, targets = collate_detection(batch)
    assert [tuple(i.shape) for i in images] == [(3, 20, 30), (3, 40, 10)]
    assert images[1] is batch[1][0] and targets[1]["labels"].tolist() == [2] and len(targets[0]["boxes"]) == 0


def test_flip_augmentation_is_pixel_exact():
    """``augment="flip"``: every training item is the image or its exact mirror, boxes mirrored with it."""
    original = _SameImage(None)[0]
    flipped_image, flipped_boxes = original[0].flip(-1), torch.tensor([[80.0 - 40, 10, 80.0 - 10, 30]])
    seen = set()
    dataset = _SameImage(flip_transforms(seed=0))
    for image, target in (dataset[i] for i in range(len(dataset))):
        if torch.equal(image, original[0]):
            assert torch.equal(target["boxes"], original[1]["boxes"])
            seen.add("same")
        else:
            assert torch.equal(image, flipped_image) and torch.equal(target["boxes"], flipped_boxes)
            seen.add("mirror")
    assert seen == {"same", "mirror"}


def test_datamodule_flip_mode(shapes_root):
    flipping, plain = (
        DetectionDataModule(format="shapes", root=str(shapes_root.root), augment=mode, num_workers=0).dataset("train")
        for mode in ("flip", False)
    )
    mirrored = 0
    for index in range(8):
        (image, target), (same, same_target) = flipping[index], plain[index]
        mirrored += not torch.equal(image, same)
        assert torch.equal(image, same) or torch.equal(image, same.flip(-1))
        assert len(target["boxes"]) == len(same_target["boxes"])  # a flip never drops a box
    assert 0 < mirrored < 8
    with pytest.raises(ValueError, match="crop_size"):
        DetectionDataModule(format="shapes", root=str(shapes_root.root), augment="flip", crop_size=64)
