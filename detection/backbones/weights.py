"""Loading backbone weights offline: torchvision weight names from the local cache, or a file.

``weights`` is one of:
- ``None``: random initialisation (always works offline);
- a torchvision weight enum name such as ``"IMAGENET1K_V1"``: read from the torch hub cache
  (``torch.hub.get_dir()/checkpoints/``) if the file is there; never downloaded;
- a path to a local state-dict file, read with ``torch.load(weights_only=True)``.
"""

import os
from pathlib import Path

import torch
from torch import nn
from torchvision.models import get_model_weights


def _cached_file(weights_enum: type, name: str) -> Path:
    try:
        entry = weights_enum[name]
    except KeyError:
        choices = [w.name for w in weights_enum]
        raise ValueError(f"unknown weights {name!r} for {weights_enum.__name__}; choose one of {choices}") from None
    filename = os.path.basename(entry.url)
    path = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if not path.is_file():
        raise FileNotFoundError(
            f"weights {weights_enum.__name__}.{name} are not in the local cache: put {filename} at {path} "
            "(detseg never downloads), pass a local file path, or use weights=None"
        )
    return path


def load_weights(model: nn.Module, weights: str | os.PathLike | None, *, arch: str) -> None:
    """Load ``weights`` into the torchvision model ``model`` (architecture name ``arch``, e.g. ``"vgg16"``)."""
    if weights is None:
        return
    path = Path(weights)
    if not path.is_file():
        path = _cached_file(get_model_weights(arch), str(weights))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or len(missing) == len(model.state_dict()):
        raise ValueError(f"{path}: not a {arch} state dict (unexpected keys: {unexpected[:5]}, missing: {missing[:5]})")
