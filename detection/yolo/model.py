"""YOLO v1 (Redmon et al. 2016): detection as one regression to an ``S x S x (5B + C)`` grid.

Data flow (shape letters: ``N`` images, ``S`` grid side, ``B`` boxes per cell, ``C``
classes, ``D = 5B + C``, ``Hf, Wf`` the size of the backbone tap)::

    images --transform--> [N, 3, I, I] --backbone[feature]--> [N, Cf, Hf, Wf]
      --head convs--> [N, Ch, Hf, Wf] --adaptive pool--> [N, Ch, S, S]
      --FC, FC--> [N, S*S*D] --view--> [N, S, S, D]       (prediction="fc")
      --1x1 conv, 1x1 conv--> [N, D, S, S] --permute--> [N, S, S, D]   (prediction="conv")
    training: targets --encode--> [N, S, S, D]; loss = eq. 3 (five terms)
    eval:     decode -> class-specific confidence -> threshold -> per-class NMS
              -> boxes mapped back to each original image

As in the paper the grid comes out of fully connected layers, which see the whole image
(``prediction="fc"``, the default); the adaptive pooling in front of them lets any backbone
tap and any input size feed the same head. Deviations from the paper, each a constructor
argument: batch norm in the head convolutions (``batch_norm``; the paper's network has none,
YOLO v2 added it), the widths of the head (``head_channels``, ``hidden_dim``; the paper uses
1024 and 4096), and ``prediction="conv"``: the same two layers applied to each cell of the
pooled ``S x S`` map as 1 x 1 convolutions, so all cells share one predictor that sees the
cell's receptive field instead of the whole image (YOLO v2's change). The output tensor,
its layout, the loss and the decoding are the same for both.
"""

from typing import Any, Literal, get_args

from torch import Tensor, nn

from detection.exportable import ExportCut, fixed_square_cut
from detection.transform import build_transform
from detection.yolo.loss import LAMBDA_COORD, LAMBDA_NOOBJ, yolo_loss
from detection.yolo.postprocess import DETECTIONS_PER_IMAGE, NMS_THRESHOLD, SCORE_THRESHOLD, select_detections
from detection.yolo.targets import GridLayout, decode_grid, encode_batch

GRID_SIZE = 7  # S in the paper (448 / 64)
BOXES_PER_CELL = 2  # B in the paper
IMAGE_SIZE = 448  # the paper's detection input resolution
LEAKY_SLOPE = 0.1  # the paper's leaky rectified linear activation
DROPOUT = 0.5  # "a dropout layer with rate = .5 after the first connected layer"
HEAD_CONVS = 4  # the paper adds four convolutional layers on top of the pretrained ones
HEAD_CHANNELS = 1024
HIDDEN_DIM = 4096
Prediction = Literal["fc", "conv"]  # see the module docstring


class YOLOHead(nn.Module):
    """Backbone tap ``[N, Cf, Hf, Wf]`` -> grid ``[N, S, S, D]``: convs, adaptive pool, two FC layers

    (``prediction="fc"``) or the same two layers as 1 x 1 convolutions on every cell (``"conv"``).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        layout: GridLayout,
        num_convs: int = HEAD_CONVS,
        channels: int = HEAD_CHANNELS,
        hidden_dim: int = HIDDEN_DIM,
        dropout: float = DROPOUT,
        batch_norm: bool = True,
        prediction: Prediction = "fc",
    ) -> None:
        super().__init__()
        if prediction not in get_args(Prediction):
            raise ValueError(f"prediction must be one of {get_args(Prediction)}, got {prediction!r}")
        self.layout = layout
        convs: list[nn.Module] = []
        for i in range(num_convs):
            convs.append(nn.Conv2d(in_channels if i == 0 else channels, channels, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                convs.append(nn.BatchNorm2d(channels))
            convs.append(nn.LeakyReLU(LEAKY_SLOPE, inplace=True))
        self.convs = nn.Sequential(*convs)
        pooled_channels = channels if num_convs else in_channels
        s = layout.grid_size
        self.pool = nn.AdaptiveAvgPool2d((s, s))
        self.per_cell = prediction == "conv"
        if self.per_cell:  # [N, Ch, S, S] -> [N, D, S, S]
            first: nn.Module = nn.Conv2d(pooled_channels, hidden_dim, 1)
            last: nn.Module = nn.Conv2d(hidden_dim, layout.depth, 1)
        else:  # [N, Ch * S * S] -> [N, S * S * D]
            first = nn.Sequential(nn.Flatten(), nn.Linear(pooled_channels * s * s, hidden_dim))
            last = nn.Linear(hidden_dim, s * s * layout.depth)
        # linear activation for the final layer
        self.predictor = nn.Sequential(first, nn.LeakyReLU(LEAKY_SLOPE, inplace=True), nn.Dropout(dropout), last)

    def forward(self, feature: Tensor) -> Tensor:
        x = self.predictor(self.pool(self.convs(feature)))  # [N, D, S, S] or [N, S*S*D]
        if self.per_cell:
            return x.permute(0, 2, 3, 1)  # [N, S, S, D]
        s, depth = self.layout.grid_size, self.layout.depth
        return x.view(-1, s, s, depth)  # [N, S*S*D] -> [N, S, S, D]


class YOLOv1(nn.Module):
    """YOLO v1 on any shared backbone; honours the detector contract (``docs/ARCHITECTURE.md``).

    ``model(images, targets)`` returns ``{"loss_coord", "loss_size", "loss_obj", "loss_noobj",
    "loss_class"}`` in training and a list of ``{"boxes", "labels", "scores"}`` (original image
    pixels, labels in ``1..C``) in eval.

    Args:
        backbone: any shared backbone (``channels``/``strides`` dicts, ``forward -> dict``).
        num_classes: ``C``, foreground classes only.
        grid_size, boxes_per_cell: ``S`` and ``B``.
        image_size: every image is resized to ``image_size x image_size`` (aspect not kept).
        feature: the backbone tap the head reads (``c4``, ``c5``, ``conv5_3``, ...).
        head_convs, head_channels, hidden_dim, dropout, batch_norm, prediction: the head
            (see ``YOLOHead`` and the module docstring).
        lambda_coord, lambda_noobj: the weights of eq. 3.
        rescore: confidence target ``IoU(pred, truth)`` (the paper) or 1.
        score_threshold: minimum class-specific confidence kept at test time.
        nms_threshold, detections_per_image: per-class NMS and the cap per image.
    """

    def __init__(
        self,
        *,
        backbone: nn.Module,
        num_classes: int,
        grid_size: int = GRID_SIZE,
        boxes_per_cell: int = BOXES_PER_CELL,
        image_size: int = IMAGE_SIZE,
        feature: str = "c5",
        head_convs: int = HEAD_CONVS,
        head_channels: int = HEAD_CHANNELS,
        hidden_dim: int = HIDDEN_DIM,
        dropout: float = DROPOUT,
        batch_norm: bool = True,
        prediction: Prediction = "fc",
        lambda_coord: float = LAMBDA_COORD,
        lambda_noobj: float = LAMBDA_NOOBJ,
        rescore: bool = True,
        score_threshold: float = SCORE_THRESHOLD,
        nms_threshold: float = NMS_THRESHOLD,
        detections_per_image: int = DETECTIONS_PER_IMAGE,
    ) -> None:
        super().__init__()
        channels = getattr(backbone, "channels", None)
        if not isinstance(channels, dict) or feature not in channels:
            raise ValueError(
                f"backbone {type(backbone).__name__} has no tap {feature!r}; its taps are "
                f"{sorted(channels) if isinstance(channels, dict) else 'unknown (no `channels` dict)'}"
            )
        if image_size < grid_size:
            raise ValueError(f"image_size ({image_size}) must be at least grid_size ({grid_size})")
        self.layout = GridLayout(grid_size=grid_size, boxes_per_cell=boxes_per_cell, num_classes=num_classes)
        self.num_classes = num_classes
        self.image_size = image_size
        self.feature = feature
        self.lambda_coord = lambda_coord
        self.lambda_noobj = lambda_noobj
        self.rescore = rescore
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.detections_per_image = detections_per_image
        # every image resized to image_size x image_size: the grid covers the whole input
        self.transform = build_transform(fixed_size=image_size, size_divisible=1)
        backbone.truncate(feature)  # stages past the tap would run without gradients (DDP refuses them)
        self.backbone = backbone
        self.head = YOLOHead(
            in_channels=channels[feature],
            layout=self.layout,
            num_convs=head_convs,
            channels=head_channels,
            hidden_dim=hidden_dim,
            dropout=dropout,
            batch_norm=batch_norm,
            prediction=prediction,
        )

    def predict_grid(self, batch: Tensor) -> Tensor:
        """Normalised, resized batch ``[N, 3, I, I]`` -> raw grid ``[N, S, S, D]``, fp32 also under
        autocast (mixed precision): the loss (eq. 3) and the box decoding read it in fp32."""
        return self.head(self.backbone(batch)[self.feature]).float()

    export_attribute = "predict_grid"  # the method an exported graph replaces (detection/exportable.py)

    def export_cut(self) -> ExportCut:
        """The network: images ``[N, 3, I, I]`` normalised -> ``grid [N, S, S, 5B + C]`` (dynamic batch);
        the transform, grid decoding and NMS stay in Python."""
        return fixed_square_cut(
            self, self.image_size, ["grid"],
            python_side="transform (resize, normalise), grid decoding, class-specific confidences, score threshold, "
            "per-class NMS, boxes back to the original size",
        )  # fmt: skip

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Any]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        if self.training and targets is None:
            raise ValueError("YOLOv1 needs targets in training mode")
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        image_list, targets = self.transform(images, targets)
        input_size = (int(image_list.tensors.shape[-2]), int(image_list.tensors.shape[-1]))  # (I, I)
        grid = self.predict_grid(image_list.tensors)  # [N, S, S, D]
        if self.training:
            assert targets is not None
            target_grid = encode_batch(targets, image_size=input_size, layout=self.layout)
            return yolo_loss(
                grid,
                target_grid,
                image_size=input_size,
                layout=self.layout,
                lambda_coord=self.lambda_coord,
                lambda_noobj=self.lambda_noobj,
                rescore=self.rescore,
            )
        boxes, scores = decode_grid(grid, image_size=input_size, layout=self.layout)  # [N, M, 4], [N, M, C]
        detections = [
            select_detections(
                b,
                s,
                score_threshold=self.score_threshold,
                nms_threshold=self.nms_threshold,
                detections_per_image=self.detections_per_image,
            )
            for b, s in zip(boxes, scores)
        ]
        return self.transform.postprocess(detections, image_list.image_sizes, original_sizes)
