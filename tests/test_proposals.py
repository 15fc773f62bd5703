"""Selective-search proposals (``detection/proposals/``): box conversion, the OpenCV call, the disk cache."""

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

import detection.proposals.cache as cache_module
from datasets.base import image_to_tensor
from detection.proposals.cache import ProposalCache, mirror_boxes
from detection.proposals.selective_search import (
    image_to_uint8,
    install_command,
    load_ximgproc,
    rects_to_boxes,
    selective_search,
)


def _has_ximgproc() -> bool:
    try:
        load_ximgproc()
    except ImportError:
        return False
    return True


needs_ximgproc = pytest.mark.skipif(
    not _has_ximgproc(), reason=f"cv2.ximgproc (opencv-contrib) is not installed: {install_command()}"
)

RECTANGLE = (30, 20, 82, 61)  # x1, y1, x2, y2 of the drawn object, pixel edges


def _synthetic_image(height: int = 96, width: int = 128) -> np.ndarray:
    """A smooth two-tone background with one saturated rectangle at ``RECTANGLE``."""
    rng = np.random.default_rng(0)
    image = np.empty((height, width, 3), dtype=np.float64)
    image[:] = np.linspace(60, 140, width)[None, :, None]
    image[: height // 2] += 40
    image += rng.normal(0, 3, size=image.shape)
    x1, y1, x2, y2 = RECTANGLE
    image[y1:y2, x1:x2] = (220, 30, 40)
    return image.clip(0, 255).astype(np.uint8)


def _fake_search(image: np.ndarray, *, mode: str, max_proposals: int, min_size: int) -> torch.Tensor:
    height, width = image.shape[:2]
    return torch.tensor([[0.0, 0.0, width, height], [1.0, 2.0, 9.0, 12.0]], dtype=torch.float32)


def _raise(*args, **kwargs):
    raise AssertionError("selective search was called: the cache missed")


# --------------------------------------------------------------------------- conversion
def test_rects_to_boxes_converts_clips_dedupes_and_caps_in_order():
    rects = np.array([
        [10, 5, 20, 30],   # -> 10, 5, 30, 35
        [0, 0, 3, 40],     # 3 px wide: dropped
        [10, 5, 20, 30],   # duplicate: dropped, the first stays
        [90, 50, 40, 40],  # clipped to 100 x 60
        [1, 2, 5, 6],
        [0, 0, 100, 60],   # past the cap
    ])
    boxes = rects_to_boxes(rects, height=60, width=100, max_proposals=3, min_size=4)
    assert boxes.dtype == torch.float32
    torch.testing.assert_close(boxes, torch.tensor([[10.0, 5, 30, 35], [90, 50, 100, 60], [1, 2, 6, 8]]))
    assert rects_to_boxes(np.zeros((0, 4)), height=5, width=5, max_proposals=10, min_size=1).shape == (0, 4)


def test_image_to_uint8_inverts_the_dataset_conversion_exactly():
    pixels = np.random.default_rng(0).integers(0, 256, size=(7, 9, 3), dtype=np.uint8)
    tensor = image_to_tensor(pixels)
    before = tensor.clone()
    np.testing.assert_array_equal(image_to_uint8(tensor), pixels)
    assert torch.equal(tensor, before)  # the input is left untouched
    with pytest.raises(ValueError, match=r"Tensor\[3, H, W\]"):
        image_to_uint8(torch.rand(1, 7, 9))


def test_bad_inputs_are_refused_with_the_offending_value():
    with pytest.raises(ValueError, match="uint8"):
        selective_search(np.zeros((8, 8, 3), dtype=np.float32), mode="fast")
    with pytest.raises(ValueError, match="mode"):
        selective_search(np.zeros((8, 8, 3), dtype=np.uint8), mode="slow")


def test_missing_ximgproc_says_how_to_install(monkeypatch):
    fake_cv2 = types.ModuleType("cv2")
    fake_cv2.__version__, fake_cv2.__file__ = "5.0.0", "/somewhere/cv2/__init__.py"
    monkeypatch.setitem(sys.modules, "cv2", fake_cv2)
    with pytest.raises(ImportError, match="pip install --no-deps opencv-contrib-python-headless"):
        selective_search(np.zeros((8, 8, 3), dtype=np.uint8), mode="fast")


# --------------------------------------------------------------------------- OpenCV
@needs_ximgproc
@pytest.mark.parametrize("mode", ["fast", "quality"])
def test_selective_search_gives_xyxy_boxes_inside_the_image(mode):
    image = _synthetic_image()
    boxes = selective_search(image, mode=mode, max_proposals=50, min_size=4)
    assert boxes.dtype == torch.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
    assert 0 < len(boxes) <= 50
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= 128).all() and (boxes[:, 3] <= 96).all()
    assert ((boxes[:, 2] - boxes[:, 0]) >= 4).all() and ((boxes[:, 3] - boxes[:, 1]) >= 4).all()
    assert len(torch.unique(boxes, dim=0)) == len(boxes)


@needs_ximgproc
def test_fast_mode_finds_the_drawn_rectangle_and_repeats_exactly():
    image = _synthetic_image()
    boxes = selective_search(image, mode="fast")
    best = box_iou(torch.tensor([RECTANGLE], dtype=torch.float32), boxes).max().item()
    assert best > 0.7, f"best IoU {best:.3f} with the drawn rectangle"
    assert torch.equal(boxes, selective_search(image, mode="fast"))  # seeded ranking: same order
    assert torch.equal(selective_search(image, mode="fast", max_proposals=5), boxes[:5])


# --------------------------------------------------------------------------- cache
def test_cache_round_trip_loads_from_disk_without_computing(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_module, "selective_search", _fake_search)
    image = _synthetic_image()
    cache = ProposalCache(tmp_path / "proposals", mode="fast")
    first = cache.get_or_compute(image)
    path = cache.path(cache.key(image))
    assert path.is_file() and path.parent.parent == tmp_path / "proposals"
    assert not list(path.parent.glob("*.tmp"))  # the atomic write left no temporary file
    monkeypatch.setattr(cache_module, "selective_search", _raise)
    second = ProposalCache(tmp_path / "proposals", mode="fast").get_or_compute(image)
    assert torch.equal(first, second) and second.dtype == torch.float32


def test_cache_keys_depend_on_pixels_shape_and_settings(tmp_path):
    image = _synthetic_image()
    fast = ProposalCache(tmp_path, mode="fast")
    assert fast.key(image) == ProposalCache(tmp_path, mode="fast").key(image.copy())
    assert fast.key(image) != ProposalCache(tmp_path, mode="quality").key(image)
    assert fast.key(image) != ProposalCache(tmp_path, mode="fast", max_proposals=10).key(image)
    assert fast.key(image) != fast.key(image.reshape(128, 96, 3))
    changed = image.copy()
    changed[0, 0, 0] ^= 1
    assert fast.key(image) != fast.key(changed)


@pytest.mark.parametrize("content", [b"not a torch file", "wrong-shape"])
def test_corrupt_cache_entry_is_recomputed_and_overwritten(tmp_path, monkeypatch, content):
    monkeypatch.setattr(cache_module, "selective_search", _fake_search)
    image = _synthetic_image()
    cache = ProposalCache(tmp_path, mode="fast")
    path = cache.path(cache.key(image))
    path.parent.mkdir(parents=True)
    if content == "wrong-shape":
        torch.save(torch.zeros(3), path)
    else:
        path.write_bytes(content)
    with pytest.warns(UserWarning, match="recomputing"):
        boxes = cache.get_or_compute(image)
    torch.testing.assert_close(boxes, _fake_search(image, mode="fast", max_proposals=1, min_size=1))
    torch.testing.assert_close(torch.load(path, weights_only=True), boxes)  # overwritten with the good entry


def test_no_root_computes_every_time_and_writes_nothing(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(cache_module, "selective_search", lambda image, **kw: calls.append(1) or _fake_search(image, **kw))
    cache = ProposalCache(None, mode="fast")
    image = _synthetic_image()
    cache.get_or_compute(image)
    cache.get_or_compute(image)
    assert len(calls) == 2
    assert not list(Path(tmp_path).iterdir())


def test_precomputed_bundle_is_used_before_computing(tmp_path, monkeypatch):
    image = _synthetic_image()
    cache = ProposalCache(None, mode="fast")
    boxes = torch.tensor([[1.0, 2.0, 30.0, 40.0]])
    key, mirrored = cache.canonical(image)
    if mirrored:  # bundles hold the canonical orientation
        boxes = mirror_boxes(boxes, width=image.shape[1])
    torch.save({key: boxes}, tmp_path / "bundle.pt")
    monkeypatch.setattr(cache_module, "selective_search", _raise)
    bundled = ProposalCache(None, mode="fast", precomputed=tmp_path / "bundle.pt")
    got = bundled.get_or_compute(image)
    if mirrored:
        boxes = mirror_boxes(boxes, width=image.shape[1])
    assert torch.equal(got, boxes)
    got[0, 0] = 99.0  # callers get a copy
    assert torch.equal(bundled.get_or_compute(image), boxes)
    torch.save({"key": torch.zeros(2)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="bad.pt"):
        ProposalCache(None, precomputed=tmp_path / "bad.pt").get_or_compute(image)


def _red_box_search(image: np.ndarray, **settings) -> torch.Tensor:
    """A stand-in for selective search that sees orientation: the box around the red pixels."""
    ys, xs = np.nonzero((image[..., 0] > 200) & (image[..., 1] < 60))
    return torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32)


def test_an_image_and_its_mirror_share_one_entry_and_get_mirrored_boxes(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(cache_module, "selective_search", lambda image, **kw: calls.append(1) or _red_box_search(image))
    image = _synthetic_image()
    flipped = np.ascontiguousarray(image[:, ::-1])
    cache = ProposalCache(tmp_path, mode="fast")
    assert cache.key(image) == cache.key(flipped)
    assert cache.canonical(image)[1] != cache.canonical(flipped)[1]  # exactly one of them is the mirror
    x1, y1, x2, y2 = RECTANGLE
    width = image.shape[1]
    assert cache.get_or_compute(image).tolist() == [[x1, y1, x2, y2]]
    assert cache.get_or_compute(flipped).tolist() == [[width - x2, y1, width - x1, y2]]
    assert len(calls) == 1  # the second orientation was a cache hit
    assert len(list(tmp_path.rglob("*.pt"))) == 1
    key, stored = cache.entry(flipped)  # the entry holds the canonical orientation
    image_is_canonical = not cache.canonical(image)[1]
    expected = [[x1, y1, x2, y2]] if image_is_canonical else [[width - x2, y1, width - x1, y2]]
    assert key == cache.key(image) and stored.tolist() == expected


def test_mirror_boxes_is_its_own_inverse():
    boxes = torch.tensor([[0.0, 1.0, 10.0, 20.0], [30.5, 2.0, 64.0, 3.0]])
    mirrored = mirror_boxes(boxes, width=64)
    torch.testing.assert_close(mirrored, torch.tensor([[54.0, 1.0, 64.0, 20.0], [0.0, 2.0, 33.5, 3.0]]))
    torch.testing.assert_close(mirror_boxes(mirrored, width=64), boxes)
