import albumentations as A
import numpy as np
import pytest

from datasets.palette import VOID_INDEX
from datasets.shapes import render_scene
from datasets.transforms import box_mask_pipeline, eval_transforms, train_transforms


def _scene_target(seed=0, image_size=96):
    scene = render_scene(np.random.default_rng(seed), image_size=image_size)
    k = len(scene.labels)
    target = {
        "boxes": scene.boxes,
        "labels": scene.labels.astype(np.int32),  # must come back int64
        "masks": scene.masks,
        "difficult": np.zeros(k, bool),
        "iscrowd": np.arange(k) % 2 == 1,
        "area": scene.masks.sum(axis=(1, 2)).astype(np.float32),
        "semantic": (scene.masks * scene.labels[:, None, None]).max(0).astype(np.uint8),
        "image_id": 3,
        "orig_size": (image_size, image_size),
    }
    return scene.image, target


def _mask_box(mask):
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float32)


def _read_only(image, target):
    image.setflags(write=False)
    for value in target.values():
        if isinstance(value, np.ndarray):
            value.setflags(write=False)


@pytest.mark.parametrize("seed", range(4))
def test_boxes_masks_and_labels_stay_in_sync(seed):
    image, target = _scene_target(seed)
    out_image, out = train_transforms(seed=seed)(image, target)
    k = len(out["boxes"])
    height, width = out_image.shape[:2]
    assert out["labels"].dtype == np.int64 and out["labels"].shape == (k,)
    assert out["masks"].shape == (k, height, width) and out["masks"].dtype == np.uint8
    assert out["difficult"].shape == out["iscrowd"].shape == out["area"].shape == (k,)
    for box, mask in zip(out["boxes"], out["masks"]):
        if box[0] <= 0 or box[1] <= 0 or box[2] >= width or box[3] >= height:
            continue  # a clipped box bounds the clipped box, not the visible part of the mask
        # an affine zoom and shift of a box equals the box of the transformed mask
        np.testing.assert_allclose(box, _mask_box(mask), atol=1.5)
    # every kept label is the class painted under its own mask in the semantic map
    for label, mask in zip(out["labels"], out["masks"]):
        assert (out["semantic"][mask.astype(bool)] == label).mean() > 0.9
    assert out["image_id"] == 3 and out["orig_size"] == (96, 96)


def test_flip_box_equals_box_of_flipped_mask():
    image, target = _scene_target(1)
    flip = box_mask_pipeline([A.HorizontalFlip(p=1.0)], min_visibility=0.0)
    _, out = flip(image, target)
    assert len(out["boxes"]) == len(target["boxes"])
    for box, mask in zip(out["boxes"], out["masks"]):
        np.testing.assert_allclose(box, _mask_box(mask), atol=1.0)
    np.testing.assert_array_equal(out["masks"], target["masks"][:, :, ::-1])
    np.testing.assert_array_equal(out["semantic"], target["semantic"][:, ::-1])
    np.testing.assert_allclose(out["area"], target["area"], rtol=1e-6)  # a flip keeps every area


def test_vertical_flip_is_off_by_default_and_flips_boxes_and_masks_when_on():
    image, target = _scene_target(1)

    def flipped(vertical: bool) -> np.ndarray:
        pipeline = train_transforms(
            vertical_flip=vertical, flip_probability=1.0, scale=(1.0, 1.0), translate=(0.0, 0.0), color_jitter=False, seed=0
        )
        return pipeline(image, target)[1]["masks"]

    np.testing.assert_array_equal(flipped(False), target["masks"][:, :, ::-1])
    np.testing.assert_array_equal(flipped(True), target["masks"][:, ::-1, ::-1])


def test_per_box_fields_follow_their_boxes_through_a_drop():
    image, target = _scene_target(5)
    k = len(target["boxes"])
    target["labels"] = np.arange(1, k + 1)  # row i has label i + 1, so labels name the source rows
    target["iscrowd"] = np.arange(k) % 2 == 0
    out_image, out = box_mask_pipeline([A.Affine(translate_px={"x": 40, "y": 0}, p=1.0)], min_visibility=0.5)(
        image, target
    )
    rows = out["labels"] - 1
    assert 0 < len(rows) < k  # the shift drops some boxes and keeps others
    np.testing.assert_array_equal(out["iscrowd"], target["iscrowd"][rows])
    for row, mask in zip(rows, out["masks"]):
        shifted = np.zeros_like(mask)
        shifted[:, 40:] = target["masks"][row][:, : mask.shape[1] - 40]
        np.testing.assert_array_equal(mask, shifted)


def test_transform_never_modifies_or_aliases_its_inputs():
    image, target = _scene_target(2)
    before = (image.copy(), {k: np.copy(v) for k, v in target.items()})
    _read_only(image, target)  # any in-place write raises
    transforms = (
        train_transforms(seed=0),
        train_transforms(crop_size=64, seed=1),
        eval_transforms(image_size=96),  # same size: resize and pad could be no-ops
        box_mask_pipeline([A.HorizontalFlip(p=0.0)]),  # a true no-op
    )
    for transform in transforms:
        out_image, out = transform(image, target)
        assert not np.may_share_memory(out_image, image)
        for key in ("boxes", "labels", "masks", "semantic", "iscrowd", "area"):
            assert not np.may_share_memory(out[key], target[key]), key
    np.testing.assert_array_equal(image, before[0])
    for key, value in before[1].items():
        np.testing.assert_array_equal(target[key], value)


def test_zero_boxes_pass_through():
    image = np.full((50, 70, 3), 90, np.uint8)
    target = {
        "boxes": np.zeros((0, 4), np.float32),
        "labels": np.zeros(0, np.int64),
        "masks": np.zeros((0, 50, 70), np.uint8),
        "semantic": np.zeros((50, 70), np.uint8),
    }
    for transform in (train_transforms(seed=0), train_transforms(crop_size=64, seed=0), eval_transforms(image_size=40)):
        out_image, out = transform(image, target)
        assert out["boxes"].shape == (0, 4) and out["labels"].dtype == np.int64
        assert out["masks"].shape == (0, *out_image.shape[:2]) and out["semantic"].shape == out_image.shape[:2]


def test_boxes_leaving_the_image_are_clipped_or_dropped_with_their_labels():
    image = np.zeros((100, 100, 3), np.uint8)
    boxes = np.array([[0, 0, 30, 30], [60, 60, 100, 100], [40, 40, 50, 50], [30, 0, 70, 20], [45, 60, 65, 70]], np.float32)
    target = {"boxes": boxes, "labels": np.array([1, 2, 3, 4, 5]), "iscrowd": np.array([0, 1, 0, 1, 0], bool)}
    shift = box_mask_pipeline([A.Affine(translate_px={"x": 50, "y": 0}, p=1.0)], min_visibility=0.3)
    _, out = shift(image, target)
    # shifted right by 50: box 2 leaves, box 5 keeps 25% (< 30%) and is dropped, box 4 keeps 50% and is clipped
    assert out["labels"].tolist() == [1, 3, 4] and out["labels"].dtype == np.int64
    assert out["iscrowd"].tolist() == [False, False, True]
    np.testing.assert_allclose(out["boxes"], [[50, 0, 80, 30], [90, 40, 100, 50], [80, 0, 100, 20]], atol=1e-3)


def test_revealed_pixels_are_void_in_the_semantic_mask_and_zero_in_instance_masks():
    image, target = _scene_target(3)
    zoom_out = box_mask_pipeline([A.Affine(scale=0.5, p=1.0)], min_visibility=0.0)
    out_image, out = zoom_out(image, target)
    border = np.zeros(out_image.shape[:2], bool)
    border[:20], border[-20:], border[:, :20], border[:, -20:] = True, True, True, True  # outside the centred half
    assert (out["semantic"][border] == VOID_INDEX).all()
    assert (out["masks"][:, border] == 0).all() and (out_image[border] == 0).all()
    inside = out["semantic"][30:66, 30:66]
    assert (inside != VOID_INDEX).mean() > 0.9  # the original content is not void
    assert set(np.unique(out["masks"]).tolist()) <= {0, 1}
    # a zoom by 0.5 quarters every area
    np.testing.assert_allclose(out["area"], target["area"] * 0.25, rtol=0.02)


def test_eval_transform_is_identity_or_a_deterministic_letterbox():
    assert eval_transforms() is None
    image, target = _scene_target(4, image_size=96)
    image = np.ascontiguousarray(image[:, :80])  # 96 x 80: a non-square image
    keep = target["boxes"][:, 2] <= 80
    target = {
        "boxes": target["boxes"][keep], "labels": target["labels"][keep],
        "masks": np.ascontiguousarray(target["masks"][keep][:, :, :80]),
        "semantic": np.ascontiguousarray(target["semantic"][:, :80]),
    }
    letterbox = eval_transforms(image_size=48)
    first, second = letterbox(image, target), letterbox(image, target)
    out_image, out = first
    assert out_image.shape == (48, 48, 3)
    np.testing.assert_array_equal(out_image, second[0])  # deterministic
    np.testing.assert_allclose(out["boxes"], target["boxes"] * 0.5, atol=1e-4)  # longest side 96 -> 48
    assert (out["semantic"][:, 40:] == VOID_INDEX).all()  # right padding is void


def test_seeded_pipelines_repeat_and_different_seeds_differ():
    image, target = _scene_target(6)
    outputs = [train_transforms(seed=seed)(image, target)[1]["boxes"] for seed in (7, 7, 8)]
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert outputs[0].shape != outputs[2].shape or not np.allclose(outputs[0], outputs[2])


def test_inconsistent_targets_are_refused():
    image, target = _scene_target(0)
    with pytest.raises(ValueError, match="masks must be"):
        train_transforms()(image, {**target, "masks": target["masks"][:-1]})
    with pytest.raises(ValueError, match="labels"):
        train_transforms()(image, {**target, "labels": target["labels"][:-1]})
