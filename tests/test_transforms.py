import numpy as np
import pytest

from datasets.shapes import render_scene
from datasets.transforms import eval_transforms, train_transforms


def _scene_target(seed=0):
    scene = render_scene(np.random.default_rng(seed), image_size=96)
    k = len(scene.labels)
    target = {
        "boxes": scene.boxes, "labels": scene.labels, "masks": scene.masks,
        "difficult": np.zeros(k, bool), "iscrowd": np.zeros(k, bool),
        "semantic": (scene.masks * scene.labels[:, None, None]).max(0).astype(np.uint8), "image_id": 3,
    }
    return scene.image, target


def _mask_box(mask):
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float32)


@pytest.mark.parametrize("seed", range(4))
def test_boxes_masks_and_labels_stay_in_sync(seed):
    np.random.seed(seed)
    image, target = _scene_target(seed)
    out_image, out = train_transforms()(image, target)
    k = len(out["boxes"])
    assert out["labels"].dtype == np.int64 and out["labels"].shape == (k,)
    assert out["masks"].shape == (k, *out_image.shape[:2]) and out["difficult"].shape == (k,)
    height, width = out_image.shape[:2]
    for box, mask in zip(out["boxes"], out["masks"]):
        if box[0] <= 0 or box[1] <= 0 or box[2] >= width or box[3] >= height:
            continue  # a clipped box bounds the clipped box, not the visible part of the mask
        # an affine zoom and shift of a box equals the box of the transformed mask (within 1.5 px per side)
        np.testing.assert_allclose(box, _mask_box(mask), atol=1.5)
    # every kept label is the class painted under its mask in the semantic map
    for label, mask in zip(out["labels"], out["masks"]):
        assert (out["semantic"][mask.astype(bool)] == label).mean() > 0.9
    assert out["image_id"] == 3


def test_flip_box_equals_box_of_flipped_mask():
    import albumentations as A

    from datasets.transforms import _compose

    image, target = _scene_target(1)
    flip = _compose([A.HorizontalFlip(p=1.0)], min_visibility=0.0)
    _, out = flip(image, target)
    for box, mask in zip(out["boxes"], out["masks"]):
        np.testing.assert_allclose(box, _mask_box(mask), atol=1e-4)
    np.testing.assert_array_equal(out["masks"], target["masks"][:, :, ::-1])


def test_transform_never_modifies_its_inputs():
    image, target = _scene_target(2)
    before = (image.copy(), {k: np.copy(v) for k, v in target.items()})
    for transform in (train_transforms(), train_transforms(crop_size=64, semantic=True), eval_transforms(crop_size=64)):
        transform(image, target)
    np.testing.assert_array_equal(image, before[0])
    for key, value in before[1].items():
        np.testing.assert_array_equal(target[key], value)


def test_zero_boxes_pass_through():
    image = np.zeros((50, 70, 3), np.uint8)
    target = {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64), "masks": np.zeros((0, 50, 70), np.uint8)}
    out_image, out = train_transforms()(image, target)
    assert out["boxes"].shape == (0, 4) and out["labels"].dtype == np.int64 and out["masks"].shape == (0, *out_image.shape[:2])


def test_boxes_leaving_the_image_are_clipped_or_dropped_with_their_labels():
    import albumentations as A

    from datasets.transforms import _compose

    image = np.zeros((100, 100, 3), np.uint8)
    boxes = np.array([[0, 0, 30, 30], [60, 60, 100, 100], [40, 40, 50, 50], [30, 0, 70, 20], [45, 60, 65, 70]], np.float32)
    target = {"boxes": boxes, "labels": np.array([1, 2, 3, 4, 5]), "iscrowd": np.array([0, 1, 0, 1, 0], bool)}
    shift = _compose([A.Affine(translate_px={"x": 50, "y": 0}, p=1.0)], min_visibility=0.3)
    _, out = shift(image, target)
    # shifted right by 50: box 2 leaves, box 5 keeps 25% (< 30%) and is dropped, box 4 keeps 50% and is clipped
    assert out["labels"].tolist() == [1, 3, 4] and out["labels"].dtype == np.int64
    assert out["iscrowd"].tolist() == [False, False, True]
    np.testing.assert_allclose(out["boxes"], [[50, 0, 80, 30], [90, 40, 100, 50], [80, 0, 100, 20]], atol=1e-3)
