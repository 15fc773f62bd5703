"""Object detection: backbones, heads, the Lightning system, evaluation and inference.

The Python API (``docs/python_api.md``): ``detection.Detector`` (load a checkpoint or an exported
model; predict, predict a folder or split, evaluate, export), ``detection.train`` (the run of
``scripts/train.py fit``) and ``detection.SplitSource`` (which dataset split to read). They are
imported on first use, so ``import detection.<module>`` stays light.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datasets.split_source import SplitSource
    from detection.api import Detector, Training, train

_API = {"Detector": "detection.api", "Training": "detection.api", "train": "detection.api", "SplitSource": "datasets.split_source"}
__all__ = ["Detector", "SplitSource", "Training", "train"]  # the keys of _API


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'detection' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_API[name]), name)
