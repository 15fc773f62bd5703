"""Shared pytest fixtures: tiny generated datasets on disk, seeded and CPU-only."""

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from datasets.shapes_writer import ShapesLayout, write_shapes  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TINY_SIZES = {"train": 12, "val": 6, "test": 6}
TINY_IMAGE_SIZE = 96


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory: pytest.TempPathFactory) -> ShapesLayout:
    """A tiny multi-object shapes dataset in VOC + COCO layouts (12/6/6 images, 96 px)."""
    return write_shapes(tmp_path_factory.mktemp("shapes"), sizes=TINY_SIZES, image_size=TINY_IMAGE_SIZE, seed=0)


@pytest.fixture(scope="session")
def shapes_single_root(tmp_path_factory: pytest.TempPathFactory) -> ShapesLayout:
    """The same in single-object mode (the localization head's data)."""
    return write_shapes(
        tmp_path_factory.mktemp("shapes_single"),
        sizes=TINY_SIZES,
        image_size=TINY_IMAGE_SIZE,
        seed=1,
        single_object=True,
    )


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repo; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA} (../shared/data beside the repo)")
    return SHARED_DATA
