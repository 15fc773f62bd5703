import hashlib

import numpy as np
import pytest
from PIL import Image

from datasets.boxes import voc_to_xyxy, xyxy_to_voc
from datasets.shapes import SHAPE_CLASSES, render_scene
from datasets.shapes_writer import write_shapes


def _digest(root) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_generator_is_deterministic(tmp_path):
    a = write_shapes(tmp_path / "a", sizes={"train": 3, "val": 2}, image_size=64, seed=7)
    b = write_shapes(tmp_path / "b", sizes={"train": 3, "val": 2}, image_size=64, seed=7)
    c = write_shapes(tmp_path / "c", sizes={"train": 3, "val": 2}, image_size=64, seed=8)
    assert _digest(a.root) == _digest(b.root)
    assert _digest(a.root) != _digest(c.root)


@pytest.mark.parametrize("single_object", [False, True])
def test_scene_ground_truth_is_consistent(single_object):
    rng = np.random.default_rng(3)
    counts = set()
    for _ in range(20):
        scene = render_scene(rng, image_size=96, single_object=single_object)
        k = len(scene.labels)
        counts.add(k)
        assert scene.image.shape == (96, 96, 3) and scene.image.dtype == np.uint8
        assert scene.boxes.shape == (k, 4) and scene.masks.shape == (k, 96, 96)
        assert scene.labels.dtype == np.int64 and set(scene.labels) <= set(range(1, len(SHAPE_CLASSES) + 1))
        for box, mask in zip(scene.boxes, scene.masks):
            ys, xs = np.nonzero(mask)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        # visible masks never overlap
        assert scene.masks.sum(axis=0).max(initial=0) <= 1
    if single_object:
        assert counts == {1}
    else:
        assert len(counts) > 1


def test_semantic_and_instance_pngs_match_boxes(shapes_root):
    name = (shapes_root.voc_root / "ImageSets/Main/train.txt").read_text().split()[0]
    classes = np.array(Image.open(shapes_root.voc_root / "SegmentationClass" / f"{name}.png"))
    objects = np.array(Image.open(shapes_root.voc_root / "SegmentationObject" / f"{name}.png"))
    assert classes.shape == objects.shape
    assert set(np.unique(classes)) <= {0, 1, 2, 3, 4, 255}
    # every labelled pixel of the class map belongs to an instance, and vice versa
    assert np.array_equal((classes > 0) & (classes < 255), (objects > 0) & (objects < 255))


def test_voc_box_convention_round_trip():
    boxes = np.array([[0.0, 0.0, 10.0, 10.0], [12.5, 3.25, 40.0, 99.0]], dtype=np.float32)
    voc = xyxy_to_voc(boxes)
    assert voc[0].tolist() == [1.0, 1.0, 10.0, 10.0]  # pixels 1..10 inclusive, 1-based
    np.testing.assert_array_equal(voc_to_xyxy(voc), boxes)
