"""What every backbone shares: named taps with known strides and channels.

Shape letters: ``N`` images, ``C_k`` channels of tap ``k``, ``H/s_k, W/s_k`` its size.
A backbone's ``forward(x: Tensor[N, 3, H, W])`` returns ``dict[str, Tensor[N, C_k, H/s_k, W/s_k]]``
ordered by increasing stride.
"""

from collections import OrderedDict

from torch import Tensor, nn
from torchvision.ops import FrozenBatchNorm2d


class Backbone(nn.Module):
    """Runs ``stages`` in order and returns the outputs of the tapped ones.

    ``stages`` maps a stage name to its module; ``taps`` maps each tapped stage name to its
    ``(stride, channels)``. ``frozen_stages`` freezes the first stages (parameters stop
    requiring grad, and their BatchNorm layers stay in eval mode even in training).
    ``frozen_bn`` replaces every BatchNorm layer with torchvision's ``FrozenBatchNorm2d`` holding
    the same (pretrained) statistics and affine terms, as detectron2 and torchvision's detectors
    fine-tune: detection batches of a few images give noisy batch statistics.
    """

    def __init__(
        self,
        *,
        stages: "OrderedDict[str, nn.Module]",
        taps: dict[str, tuple[int, int]],
        frozen_stages: int = 0,
        frozen_bn: bool = False,
    ) -> None:
        super().__init__()
        if not 0 <= frozen_stages <= len(stages):
            raise ValueError(f"frozen_stages must be in 0..{len(stages)}, got {frozen_stages}")
        missing = set(taps) - set(stages)
        if missing:
            raise ValueError(f"taps {sorted(missing)} are not stages ({list(stages)})")
        self.stages = nn.ModuleDict(stages)
        if frozen_bn:
            freeze_batch_norm(self.stages)
        self.strides = {name: taps[name][0] for name in stages if name in taps}
        self.channels = {name: taps[name][1] for name in stages if name in taps}
        self.out_channels = list(self.channels.values())[-1]
        self.frozen_stages = frozen_stages
        self._frozen = list(self.stages.values())[:frozen_stages]
        for stage in self._frozen:
            stage.requires_grad_(False)

    def train(self, mode: bool = True) -> "Backbone":
        super().train(mode)
        for stage in self._frozen:
            stage.eval()
        return self

    def truncate(self, last: str) -> None:
        """Drop every stage after the tap ``last``, for a head that reads only up to it.

        Stages nobody reads would cost time and leave parameters without gradients (which DDP
        rejects unless told to look for them).
        """
        if last not in self.strides:
            raise ValueError(f"{last!r} is not a tap of this backbone: {list(self.strides)}")
        names = list(self.stages)
        for name in names[names.index(last) + 1 :]:
            del self.stages[name]
            self.strides.pop(name, None)
            self.channels.pop(name, None)
        self.out_channels = self.channels[last]

    def tap_for_stride(self, stride: int) -> str:
        """Name of the tap at ``stride`` (the deepest one if several share it)."""
        names = [name for name, s in self.strides.items() if s == stride]
        if not names:
            raise ValueError(f"no tap at stride {stride}; taps: {self.strides}")
        return names[-1]

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for name, stage in self.stages.items():
            x = stage(x)
            if name in self.strides:
                out[name] = x
        return out


def freeze_batch_norm(module: nn.Module) -> None:
    """Replace, in place, every ``BatchNorm2d`` under ``module`` with a ``FrozenBatchNorm2d``
    carrying its running statistics, weight and bias (state-dict keys are unchanged, less
    ``num_batches_tracked``)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(child, key).detach())
            setattr(module, name, frozen)
        else:
            freeze_batch_norm(child)
