"""Loading backbone weights: torchvision weight names (downloaded as torchvision does), or a file.

``weights`` is one of:
- ``None``: random initialisation;
- a torchvision weight enum name such as ``"IMAGENET1K_V1"``: read from the torch hub cache
  (``torch.hub.get_dir()/checkpoints/``); a file missing there is downloaded into it with a
  progress bar, through torchvision's own ``WeightsEnum.get_state_dict`` (torch.hub), unless
  the environment variable ``DETSEG_OFFLINE=1`` is set, which turns the download into a clear
  error naming the file to put in the cache;
- a path to a local state-dict file.

Every file is read with ``torch.load(weights_only=True)``: a state dict is data, never code.

The annotation is ``str | None`` on purpose: jsonargparse turns ``null`` on the command line
into the string ``'None'`` when ``os.PathLike`` is part of the union (``Path`` objects still
work at run time).
"""

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import get_model_weights

OFFLINE_ENV = "DETSEG_OFFLINE"
_FALSE = ("", "0", "false", "no", "off")


def offline() -> bool:
    """True when ``DETSEG_OFFLINE`` is set to anything but ``0``/``false``/``no``/``off``/empty."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in _FALSE


def hub_checkpoint_path(url: str) -> Path:
    """Where torch.hub keeps the file downloaded from ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def torchvision_state_dict(arch: str, name: str, *, progress: bool = True) -> dict[str, Any]:
    """The state dict of torchvision's ``<arch> weights <name>``: cached, or downloaded unless offline."""
    weights_enum = get_model_weights(arch)
    try:
        entry = weights_enum[name]
    except KeyError:
        choices = [w.name for w in weights_enum]
        raise ValueError(f"unknown weights {name!r} for {weights_enum.__name__}; choose one of {choices}") from None
    path = hub_checkpoint_path(entry.url)
    if not path.is_file() and offline():
        raise FileNotFoundError(
            f"weights {weights_enum.__name__}.{name} are not in the local cache and {OFFLINE_ENV} is set: "
            f"put {path.name} (from {entry.url}) at {path}, pass a local file path, or use weights=None"
        )
    # cached: read; missing: downloaded to `path` with a progress bar, then read (weights only)
    return entry.get_state_dict(progress=progress, map_location="cpu", weights_only=True)


def read_state_dict(path: str | os.PathLike) -> dict[str, Any]:
    """A local state-dict file (``{"state_dict": ...}`` wrappers unwrapped), read as data only."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a state dict (got {type(state).__name__})")
    return state


def load_weights(model: nn.Module, weights: str | os.PathLike | None, *, arch: str) -> None:
    """Load ``weights`` into the torchvision model ``model`` (architecture name ``arch``, e.g. ``"vgg16"``)."""
    if weights is None:
        return
    path = Path(weights)
    state = read_state_dict(path) if path.is_file() else torchvision_state_dict(arch, str(weights))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or len(missing) == len(model.state_dict()):
        raise ValueError(f"{weights}: not a {arch} state dict (unexpected keys: {unexpected[:5]}, missing: {missing[:5]})")
