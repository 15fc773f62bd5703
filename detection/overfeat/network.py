"""OverFeat's network: a backbone, a last max-pool, and fully connected layers as convolutions.

Shape letters: ``N`` images, ``D`` backbone channels at the tap, ``Hf, Wf`` the tap's size,
``P`` the last pool's size (kernel = stride), ``k`` fc6's kernel, ``C`` foreground classes,
``B`` boxes per position (1 class-agnostic, ``C`` per class), ``K = (C + 1) + 4 * B`` output
channels, ``Ho, Wo`` the output map.

**FC layers as convolutions** (paper sec. 3.5). The classifier trained on a window of
``window_size`` pixels sees a pooled map of ``k x k`` cells (``k = window_size / (s * P)``,
``s`` the tap's stride). Its fc6 is a ``k x k`` convolution over that map and fc7/fc8 are
``1 x 1`` convolutions, so the trained window gives a ``1 x 1`` output, and one pass over a
larger image gives the classifier at every window position, ``s * P`` pixels apart, at the
cost of the shared convolutions once.

**Offset ("fine-stride") pooling** (paper sec. 3.3, fig. 3). The last max-pool is applied at
each of its ``P x P`` offsets ``(dy, dx)`` (the map shifted by ``(dy, dx)`` before pooling), the
classifier runs on each pooled map, and the outputs are interleaved: output ``(u, v)`` is the
window whose pooled cells start at tap position ``(u, v)``, i.e. ``out[u] = out_(u % P)[u // P]``.
Every window at the tap's stride ``s`` is evaluated, so the output stride drops from
``s * P`` to ``s`` (36 -> 12 in the paper), and ``Ho = Hf - k * P + 1``.

The network's output channels are ``[class logits (C + 1) | box edges (4 * B)]`` (``OverFeatNet.split_outputs``). Class ``0`` is background; in localization
mode the model masks it out (``detection.overfeat.model``). Box edges are the object's
``(x1, y1, x2, y2)`` relative to the window's top-left corner, in units of ``window_size``.

Choices for the shapes configs: ``SmallCNN`` tap ``c4`` (stride 16) and ``P = 2``. A 64 px
detection window is 4 x 4 at ``c4``, which the paper's ``P = 3`` does not divide (k = 2); a 96 px
localization window is 6 x 6, which takes ``P = 2`` (k = 3, the config's choice) or ``P = 3``
(k = 2, not compared). Output stride: ``s * P`` coarse, ``s`` = 16 px with offset pooling.
``P = 3`` works wherever ``window_size`` is a multiple of ``3 * s`` (e.g. 96 px at ``c3``,
stride 8: k = 4).
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detection.backbones.base import Backbone

BOX_DIM = 4
PAPER_POOL_SIZE = 3  # the paper's last pooling (3 x 3, stride 3)
WINDOW_EDGES = torch.tensor([0.0, 0.0, 1.0, 1.0])  # the window itself, in window units


def offset_pool_interleave(features: Tensor, classifier: Callable[[Tensor], Tensor], pool_size: int, *, kernel: int = 1) -> Tensor:
    """Max-pool ``features [N, D, Hf, Wf]`` at each of the ``P x P`` offsets, run ``classifier``
    on each pooled map, and interleave: ``-> Tensor[N, K, Ho, Wo]``, output stride = the tap's.

    ``kernel`` is the classifier's receptive field ``k`` in pooled cells (fc6's kernel), so
    ``Ho = Hf - k * P + 1`` and ``out[:, :, dy::P, dx::P] = classifier(max_pool(features[:, :, dy:, dx:], P, P))``.
    An offset whose pooled map is smaller than ``k`` holds no window and is skipped (an exported graph
    runs it on padding and drops it, see below).
    """
    if pool_size < 1 or kernel < 1:
        raise ValueError(f"pool_size and kernel must be >= 1, got {pool_size}, {kernel}")
    height = features.shape[-2] - kernel * pool_size + 1
    width = features.shape[-1] - kernel * pool_size + 1
    if height < 1 or width < 1:
        raise ValueError(
            f"feature map {tuple(features.shape[-2:])} is smaller than one window ({kernel} cells of {pool_size})"
        )
    # An exported graph (detection/export.py) serves every input size, so it runs all P x P offsets on
    # the features padded right and bottom by P - 1: every offset then pools at least one window, and
    # what the padding adds feeds only windows past the last one, which are dropped. Eager runs the
    # offsets that hold windows on the features as they are (the same values; no padding to round with).
    exporting = torch.compiler.is_exporting()
    source = F.pad(features, (0, pool_size - 1, 0, pool_size - 1)) if exporting else features
    offsets_y = range(pool_size if exporting else min(pool_size, height))
    offsets_x = range(pool_size if exporting else min(pool_size, width))
    out: Tensor | None = None
    for dy in offsets_y:
        for dx in offsets_x:
            shifted = source[:, :, dy:, dx:]  # [N, D, Hf - dy, Wf - dx] (+ P - 1 when exporting)
            part = classifier(F.max_pool2d(shifted, pool_size, pool_size))  # [N, K, ceil((Ho - dy) / P), ...] (or more)
            if out is None:
                out = part.new_empty(part.shape[0], part.shape[1], height, width)
            rows, cols = (height - dy + pool_size - 1) // pool_size, (width - dx + pool_size - 1) // pool_size  # windows at this offset
            out[:, :, dy::pool_size, dx::pool_size] = part[:, :, :rows, :cols]
    assert out is not None
    return out


class OverFeatHeads(nn.Module):
    """The classifier (fc6 ``k x k``, fc7, fc8 ``1 x 1`` -> ``C + 1``) and the regressor (the same
    layout -> ``4 * B``) on one pooled map: ``Tensor[N, D, Hp, Wp] -> Tensor[N, K, Hp-k+1, Wp-k+1]``.

    ``detach_regressor``: the regressor sees the features detached, so the box loss trains only
    the regressor (the paper trains it on frozen feature layers).
    """

    def __init__(
        self, *, in_channels: int, kernel: int, num_classes: int, boxes_per_position: int, hidden: int, detach_regressor: bool
    ) -> None:
        super().__init__()
        self.detach_regressor = detach_regressor
        self.classifier = self._fc_as_conv(in_channels, kernel, hidden, num_classes + 1)
        self.regressor = self._fc_as_conv(in_channels, kernel, hidden, BOX_DIM * boxes_per_position)
        # Start every box as its window, (0, 0, 1, 1) in window units, instead of a point.
        with torch.no_grad():
            self.regressor[-1].bias.copy_(WINDOW_EDGES.repeat(boxes_per_position))

    @staticmethod
    def _fc_as_conv(in_channels: int, kernel: int, hidden: int, out_channels: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(in_channels, hidden, kernel),  # fc6: a k x k window of pooled cells
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 1),  # fc7
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, out_channels, 1),  # fc8
        )

    def forward(self, pooled: Tensor) -> Tensor:
        box_input = pooled.detach() if self.detach_regressor else pooled
        return torch.cat([self.classifier(pooled), self.regressor(box_input)], dim=1)


class OverFeatNet(nn.Module):
    """``Tensor[N, 3, H, W] -> (class_logits [N, C+1, Ho, Wo], box_edges [N, B, 4, Ho, Wo])``.

    Args:
        backbone: read at ``feature`` (the backbone is truncated after it).
        num_classes: ``C`` foreground classes (the classifier has ``C + 1`` outputs, 0 = background).
        window_size: the training window in pixels; must be a multiple of ``stride * pool_size``.
        pool_size: the last max-pool's kernel and stride ``P``.
        offset_pooling: evaluate at every ``P x P`` offset (output stride ``s``) or not (``s * P``).
        class_agnostic: one box per position, or one per class.
        hidden: fc6/fc7 width.
        detach_regressor: see ``OverFeatHeads``.
    """

    def __init__(
        self,
        *,
        backbone: Backbone,
        num_classes: int,
        feature: str = "c4",
        window_size: int = 128,
        pool_size: int = 2,
        offset_pooling: bool = True,
        class_agnostic: bool = True,
        hidden: int = 256,
        detach_regressor: bool = False,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        backbone.truncate(feature)
        self.backbone = backbone
        self.feature = feature
        self.num_classes = num_classes
        self.pool_size = pool_size
        self.offset_pooling = offset_pooling
        self.window_size = window_size
        cell = backbone.strides[feature] * pool_size
        if window_size % cell:
            raise ValueError(f"window_size {window_size} must be a multiple of stride * pool_size = {cell}")
        self.kernel = window_size // cell  # fc6 kernel k, in pooled cells
        self.boxes_per_position = 1 if class_agnostic else num_classes
        self.heads = OverFeatHeads(
            in_channels=backbone.channels[feature],
            kernel=self.kernel,
            num_classes=num_classes,
            boxes_per_position=self.boxes_per_position,
            hidden=hidden,
            detach_regressor=detach_regressor,
        )

    @property
    def stride(self) -> int:
        """Pixels between neighbouring output positions."""
        tap = self.backbone.strides[self.feature]
        return tap if self.offset_pooling else tap * self.pool_size

    def dense(self, images: Tensor) -> Tensor:
        """``Tensor[N, 3, H, W] -> Tensor[N, K, Ho, Wo]``: raw outputs at every window position."""
        features = self.backbone(images)[self.feature]  # [N, D, H/s, W/s]
        if self.offset_pooling:
            return offset_pool_interleave(features, self.heads, self.pool_size, kernel=self.kernel)
        return self.heads(F.max_pool2d(features, self.pool_size, self.pool_size))

    def split_outputs(self, outputs: Tensor) -> tuple[Tensor, Tensor]:
        """``[N, K, Ho, Wo] -> (class_logits [N, C+1, Ho, Wo], box_edges [N, B, 4, Ho, Wo])``."""
        n, _, h, w = outputs.shape
        class_logits = outputs[:, : self.num_classes + 1]
        box_edges = outputs[:, self.num_classes + 1 :].reshape(n, self.boxes_per_position, BOX_DIM, h, w)  # [N, 4B, ..] -> [N, B, 4, ..]
        return class_logits, box_edges

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return self.split_outputs(self.dense(images))

    def window_origins(self, height: int, width: int, device: torch.device | None = None) -> Tensor:
        """Top-left pixel ``(x, y)`` of each output position's window: ``Tensor[Ho, Wo, 2]``."""
        ys = torch.arange(height, device=device, dtype=torch.float32) * self.stride
        xs = torch.arange(width, device=device, dtype=torch.float32) * self.stride
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        return torch.stack([grid_x, grid_y], dim=-1)
