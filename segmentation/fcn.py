"""FCN-32s / 16s / 8s (Long, Shelhamer, Darrell 2015): per-pixel classification in one pass.

The data flow:

1. normalise with ImageNet statistics and pad right/bottom to a multiple of the coarsest
   stride (so every map has an exact size; padding at the far side moves no pixel centre);
2. ``backbone``: taps at strides 8, 16 and 32 (VGG-16: pool3, pool4, pool5);
3. ``head``: the classifier's fully connected layers as convolutions (VGG-16's fc6/fc7, 7x7 and
   4096 channels, with their weights when the backbone has them; for other backbones a ``k x k``
   conv + 1x1 conv sized for the backbone: by default 3x3 and ``min(C, 512)`` channels for a
   ``C``-channel stride-32 map, since no pretrained fc layers justify VGG's 100M-parameter head);
4. ``score``: 1x1 convolutions to ``K = num_classes + 1`` class scores (background is 0);
5. 16s / 8s: upsample the coarse scores 2x (transposed conv, bilinear init), crop them onto the
   grid of the pool4 (then pool3) scores, and add (the skip connections);
6. upsample to the input grid, crop to ``H x W``.

Every crop comes from the traced layer geometry (``segmentation/geometry.py``), not from
offsets copied from the Caffe model. Where a backbone's geometry admits no exact crop (ValidCNN's
unpadded convolutions), the upsampled map is resampled bilinearly onto the finer grid's pixel
centres instead (``segmentation/upsample.py``, :class:`~segmentation.upsample.Resample`). The skip score layers start at zero, so an FCN-16s
initialised from an FCN-32s starts out predicting exactly what the 32s did (paper, sec. 4.2).

Shape letters: ``N`` images, ``K`` classes with background, ``H, W`` the input size.

Contract (every head's, ``docs/ARCHITECTURE.md``): ``model(images: list[Tensor[3, H_i, W_i]],
targets=None)``. In training, the images are padded right and bottom into one batch (0 in the
image, void 255 in ``target["semantic"]``, so the loss ignores the padding) and the model returns
``{"loss_seg": cross-entropy over non-void pixels}`` (paper, sec. 3). In eval it returns one dict
per image, ``{"semantic": Tensor[H_i, W_i] int64}`` (argmax class, 0 background), each image run
on its own so no padding reaches it. ``logits(Tensor[N, 3, H, W]) -> Tensor[N, K, H, W]`` is the
network itself.
"""

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from datasets.palette import VOID_INDEX
from detection.backbones.base import Backbone
from detection.exportable import EXAMPLE_BATCH, ExportCut, Outputs
from detection.transform import IMAGENET_MEAN, IMAGENET_STD
from segmentation.geometry import INPUT, Geometry, trace
from segmentation.upsample import upsampler_onto

SKIP_STRIDES = {"32s": (), "16s": (16,), "8s": (16, 8)}  # the score maps fused into the stride-32 scores
COARSEST_STRIDE = 32
VGG_FC6_PADDING = 3  # keeps the pool5 grid (7x7 kernel)
HEAD_KERNEL = 3  # fc6 of a backbone without fc weights: a 3x3 window on the stride-32 map
MAX_HEAD_CHANNELS = 512  # fc6/fc7 width of such a backbone: its own channels, at most this


def default_head_size(in_channels: int, channels: int | None, kernel_size: int | None) -> tuple[int, int]:
    """fc6/fc7 ``(channels, kernel)`` for a ``in_channels``-channel stride-32 map; ``None`` picks the default."""
    channels = min(in_channels, MAX_HEAD_CHANNELS) if channels is None else channels
    return channels, HEAD_KERNEL if kernel_size is None else kernel_size


def first_tap_at(backbone: Backbone, stride: int) -> str:
    """The first tap at ``stride``: the map that ends the stride (VGG-16: pool4, not conv5_3)."""
    names = [name for name, s in backbone.strides.items() if s == stride]
    if not names:
        raise ValueError(f"FCN needs a backbone tap at stride {stride}; taps: {backbone.strides}")
    return names[0]


def conv_head(in_channels: int, channels: int, kernel_size: int, dropout: float) -> nn.Sequential:
    """fc6/fc7 for a backbone without a classifier: ``k x k`` conv (same padding) and 1x1 conv."""
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, kernel_size, padding=kernel_size // 2),
        nn.ReLU(inplace=True),
        nn.Dropout2d(dropout),
        nn.Conv2d(channels, channels, 1),
        nn.ReLU(inplace=True),
        nn.Dropout2d(dropout),
    )


def pixel_loss(logits: Tensor, masks: Tensor) -> Tensor:
    """``logits [N, K, H, W]``, ``masks [N, H, W]`` -> the mean cross-entropy over non-void pixels."""
    return F.cross_entropy(logits, masks, ignore_index=VOID_INDEX)


def pad_batch(images: list[Tensor], masks: list[Tensor]) -> tuple[Tensor, Tensor]:
    """``N`` images ``[3, H_i, W_i]`` and masks ``[H_i, W_i]`` -> ``[N, 3, H, W]``, ``[N, H, W]`` int64.

    Padded right and bottom to the largest size: 0 in the images, void in the masks.
    """
    height = max(image.shape[-2] for image in images)
    width = max(image.shape[-1] for image in images)
    padded_images, padded_masks = [], []
    for image, mask in zip(images, masks, strict=True):
        if mask.shape != image.shape[-2:]:
            raise ValueError(f"semantic mask {tuple(mask.shape)} != image {tuple(image.shape[-2:])}")
        pad = (0, width - image.shape[-1], 0, height - image.shape[-2])  # (left, right, top, bottom)
        padded_images.append(F.pad(image, pad, value=0.0))
        padded_masks.append(F.pad(mask.long(), pad, value=VOID_INDEX))
    return torch.stack(padded_images), torch.stack(padded_masks)


def padded_size(size: int, minimum: int = 0) -> int:
    """``size`` padded up to a multiple of the coarsest stride, and to at least ``minimum``."""
    size = max(size, minimum)
    return size + -size % COARSEST_STRIDE


class FCN(nn.Module):
    """Args:
        backbone: any shared backbone with taps at strides 8, 16, 32 (truncated after stride 32).
        num_classes: foreground classes, as for the detectors; logits have ``num_classes + 1``
            channels with background at 0.
        variant: ``32s``, ``16s`` or ``8s``.
        head_channels, head_kernel, dropout: the fc6/fc7 convolutions of a non-VGG backbone;
            ``None`` sizes them for the backbone (3x3, ``min(channels, 512)``). VGG-16 uses its
            own 7x7 / 4096 fc layers and their weights and ignores these.
    """

    task = "semantic"  # predicts class maps: batch inference writes masks/, evaluation uses ConfusionMatrix

    def __init__(
        self,
        *,
        backbone: Backbone,
        num_classes: int,
        variant: Literal["32s", "16s", "8s"] = "8s",
        head_channels: int | None = None,
        head_kernel: int | None = None,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if variant not in SKIP_STRIDES:
            raise ValueError(f"variant must be one of {list(SKIP_STRIDES)}, got {variant!r}")
        if num_classes < 1:
            raise ValueError(f"num_classes counts foreground classes and must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.variant = variant
        classes = num_classes + 1
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

        self.coarse_tap = first_tap_at(backbone, COARSEST_STRIDE)
        self.skip_taps = [first_tap_at(backbone, s) for s in SKIP_STRIDES[variant]]
        backbone.truncate(self.coarse_tap)
        self.backbone = backbone
        geometry = self._tap_geometry(backbone)

        if hasattr(backbone, "fc_as_conv"):  # VGG-16: fc6/fc7 (and their ImageNet weights) as convolutions
            self.head = backbone.fc_as_conv(padding=VGG_FC6_PADDING)
        else:
            in_channels = backbone.channels[self.coarse_tap]
            self.head = conv_head(in_channels, *default_head_size(in_channels, head_channels, head_kernel), dropout)
        head_out = [m for m in self.head.modules() if isinstance(m, nn.Conv2d)][-1].out_channels
        score_geometry = trace(self.head, geometry[self.coarse_tap])
        self.score = nn.Conv2d(head_out, classes, 1)  # score_fr

        self.skip_scores = nn.ModuleList()  # score_pool4, score_pool3
        self.skip_upsamplers = nn.ModuleList()  # upscore2, upscore_pool4
        self.skip_aligners = nn.ModuleList()  # score_pool4c, score_pool3c: a Crop, or a Resample where no crop is exact
        for tap in self.skip_taps:
            score = nn.Conv2d(backbone.channels[tap], classes, 1)
            nn.init.zeros_(score.weight)
            nn.init.zeros_(score.bias)
            upsampler, aligner = upsampler_onto(classes, score_geometry, geometry[tap])
            self.skip_scores.append(score)
            self.skip_upsamplers.append(upsampler)
            self.skip_aligners.append(aligner)
            score_geometry = geometry[tap]
        self.final_upsampler, self.final_aligner = upsampler_onto(classes, score_geometry, INPUT)
        # ValidCNN-like backbones shrink the map at every convolution: pad small inputs up to one stride-32 cell
        self.min_input = backbone.input_size(self.coarse_tap, 1) if hasattr(backbone, "input_size") else 0

    def _tap_geometry(self, backbone: Backbone) -> dict[str, Geometry]:
        geometry, out = INPUT, {}
        for name, stage in backbone.stages.items():
            geometry = trace(stage, geometry)
            out[name] = geometry
        return out

    def forward(self, images: list[Tensor], targets: list[dict[str, Any]] | None = None) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        if self.training:
            if targets is None or any("semantic" not in t for t in targets):
                raise ValueError("FCN needs targets with 'semantic' masks [H, W] in training mode")
            batch, masks = pad_batch(images, [t["semantic"] for t in targets])
            return {"loss_seg": pixel_loss(self.logits(batch), masks)}
        return [{"semantic": self.logits(image[None])[0].argmax(dim=0)} for image in images]

    def logits(self, images: Tensor) -> Tensor:
        """``Tensor[N, 3, H, W]`` in ``[0, 1]`` -> logits ``Tensor[N, K, H, W]``."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"FCN expects images Tensor[N, 3, H, W], got {tuple(images.shape)}")
        height, width = images.shape[-2:]
        x = (images - self.mean) / self.std
        x = F.pad(x, (0, padded_size(width, self.min_input) - width, 0, padded_size(height, self.min_input) - height))
        features = self.backbone(x)
        scores = self.score(self.head(features[self.coarse_tap]))  # stride 32
        for tap, skip_score, upsampler, align in zip(self.skip_taps, self.skip_scores, self.skip_upsamplers, self.skip_aligners):
            skip = skip_score(features[tap])  # stride 16, then 8
            scores = align(upsampler(scores), *skip.shape[-2:]) + skip
        return self.final_aligner(self.final_upsampler(scores), height, width)

    export_attribute = "logits"  # the method an exported graph replaces (detection/exportable.py)

    def export_cut(self) -> ExportCut:
        """The network: images ``[N, 3, H, W]`` in ``[0, 1]`` at any size (normalise, pad, skips and
        crop inside) -> ``logits [N, C + 1, H, W]``; the per-pixel argmax stays in Python."""
        return ExportCut(
            kind="network", attribute=self.export_attribute, module=Outputs(self, self.logits),
            example=torch.rand(EXAMPLE_BATCH, 3, 64, 96), input_name="images", output_names=["logits"],
            dynamic={0: "batch", 2: "height", 3: "width"},
            input={"shape": ["N", 3, "H", "W"], "values": "RGB [0, 1] image at its own size (normalised and padded inside the graph)",
                   "mean": [float(v) for v in self.mean.flatten()], "std": [float(v) for v in self.std.flatten()]},
            python_side="per-pixel argmax of the logits",
        )  # fmt: skip
