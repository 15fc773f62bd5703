"""Staged FCN training: start a finer net (16s, 8s) from a trained coarser one (32s, 16s).

The paper (sec. 4.2) initialises FCN-16s with the parameters of FCN-32s and the new skip
score layer at zero, so training starts from the coarser net's predictions; likewise 8s from
16s. Every parameter whose name and shape match is copied; the others (new skip layers, and
final upsamplers whose kernel size changed) keep their initialisation.
"""

from pathlib import Path

import torch
from torch import nn

STATE_PREFIX = "model."  # the systems hold their network as `self.model`


def init_from_checkpoint(model: nn.Module, checkpoint: str | Path) -> list[str]:
    """Copy matching parameters from a Lightning checkpoint; returns the names left as initialised.

    Raises ``ValueError`` naming the file when nothing matches (a different architecture).
    """
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{checkpoint}: not a Lightning checkpoint (no state_dict)")
    source = {k[len(STATE_PREFIX) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(STATE_PREFIX)}
    own = model.state_dict()
    taken = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
    if not taken:
        raise ValueError(f"{checkpoint}: no parameter matches this model by name and shape")
    model.load_state_dict(taken, strict=False)
    return sorted(set(own) - set(taken))
