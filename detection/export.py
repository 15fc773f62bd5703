"""Export a trained head to ONNX or ``torch.export``: what each head puts in the file, and the file's metadata.

Every head is cut where a graph can hold it with the same numbers as eager:

=============  ==========================================================  ===========================================
head           in the file (input -> outputs)                              stays in Python (``detection/onnx_model.py``
                                                                           runs the head's own code around the graph)
=============  ==========================================================  ===========================================
localization   ``_heads``: images ``[N, 3, S, S]`` normalised ->            resize + normalise (the transform), softmax,
               ``class_logits [N, K, C]``, ``boxes [N, K, B, 4]``           box of the best class, back to original size
YOLO           ``predict_grid``: images ``[N, 3, I, I]`` normalised ->      resize + normalise, grid decoding, class
               ``grid [N, S, S, 5B + C]``                                   confidences, per-class NMS, original size
FCN            ``logits``: images ``[N, 3, H, W]`` in ``[0, 1]`` (any       per-pixel argmax
               size; normalise, pad, skips and crop inside) ->
               ``logits [N, C + 1, H, W]``
OverFeat       ``net.dense``: images ``[N, 3, H, W]`` normalised (any       every test view (scales, flips), resize +
               size >= the window) -> ``outputs [N, K, Ho, Wo]``            normalise, box decoding, greedy merge
Faster R-CNN   the whole model (torchvision's way): ``image [3, H, W]``     nothing
               in ``[0, 1]`` -> ``boxes [K, 4]``, ``labels [K]``,
               ``scores [K]`` in original pixels; one image per run
R-CNN          the region network with its SVMs and box regressors:         selective search, context dilation + warping
               ``crops [R, 3, S, S]`` normalised -> ``scores [R, C]``,      of each region, applying the deltas, per-class
               ``box_deltas [R, 4C]`` (not runnable by ``predict.py``)      NMS
=============  ==========================================================  ===========================================

MNC, Fast R-CNN and any other head are refused (``ExportError`` says why). The network-only cuts
keep decoding and NMS in the very code the eager head runs, so the two paths differ only by the
graph's floating-point summation order (``tests/test_export.py``); those graphs have a dynamic batch
axis (and dynamic height and width for FCN and OverFeat). Faster R-CNN's graph takes one image of any
size: torchvision's transform, RPN, RoI heads and NMS trace with the TorchScript exporter at opset
``WHOLE_MODEL_OPSET`` (>= 11 for ``NonMaxSuppression``); ``torch.export`` cannot capture its
data-dependent NMS, so ``torch-export`` refuses it.

The file carries a JSON metadata document (``METADATA_KEY``): the class names, the head's
``class_path`` / ``init_args``, the cut, the input it expects (size, mean, std, value range), the
outputs, the task, and what stays in Python. ONNX keeps it in the model's ``metadata_props``;
``torch.export``'s ``.pt2`` in its extra files; ``metadata.json`` beside either repeats it.
"""

import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.export import Dim

from detection.faster_rcnn import FasterRCNN
from detection.localization import ClassLocalizationNet
from detection.overfeat import OverFeat
from detection.rcnn import RCNN
from detection.yolo import YOLOv1
from segmentation.fcn import FCN

FORMATS: tuple[str, ...] = ("onnx", "torch-export")
FILE_NAMES = {"onnx": "model.onnx", "torch-export": "model.pt2"}
METADATA_KEY = "detseg"  # ONNX metadata_props key, and "<key>.json" among the .pt2 extra files
METADATA_FILE = "metadata.json"
METADATA_VERSION = 1
NETWORK_OPSET = 18  # torch.onnx's dynamo exporter
WHOLE_MODEL_OPSET = 17  # TorchScript exporter, Faster R-CNN (torchvision's NMS / RoI pooling symbolics need >= 11)
EXAMPLE_BATCH = 2  # export examples avoid sizes 0 and 1, which torch.export specialises


class ExportError(ValueError):
    """This model cannot be exported in this format; the message names the head and says why."""


@dataclass
class Cut:
    """Where a head is cut: the module traced into the graph and what stays in Python."""

    kind: Literal["network", "whole", "region_network"]
    module: nn.Module  # what the graph computes: Tensor -> tuple[Tensor, ...]
    example: Tensor  # an input to trace with
    input_name: str
    output_names: list[str]
    dynamic: dict[int, str]  # the input's dynamic axes -> their names (the others are fixed)
    input: dict[str, Any]  # what the input tensor holds, for the metadata
    python_side: str  # what the caller still runs in Python
    attribute: str | None = None  # the head's method the graph replaces (network cuts)
    runnable: bool = True  # detection.onnx_model can run it as the head
    torch_export_refusal: str | None = None  # why torch.export cannot hold this cut


class _Outputs(nn.Module):
    """``fn(x)`` as a module returning a tuple (one graph output per tensor)."""

    def __init__(self, owner: nn.Module, fn: Callable[[Tensor], Any]) -> None:
        super().__init__()
        self.owner = owner  # registers the parameters fn reads
        self.fn = fn

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        out = self.fn(x)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)


class _WholeDetector(nn.Module):
    """One image ``[3, H, W]`` -> ``(boxes [K, 4], labels [K], scores [K])`` through the head's own forward."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        (pred,) = self.model([image])
        return pred["boxes"], pred["labels"], pred["scores"]


class _RegionScorer(nn.Module):
    """R-CNN's crops ``[R, 3, S, S]`` -> ``(scores [R, C], box_deltas [R, 4C])``: the region network, then
    the SVMs (or the softmax before they are fitted) and the box regressors (zeros when off or unfitted).

    The formulas of ``RCNN.class_scores`` / ``class_boxes``, with the stage flags (buffers) read once
    here, since a graph cannot branch on a buffer; ``tests/test_export.py`` compares the scores with
    ``class_scores``.
    """

    def __init__(self, model: RCNN) -> None:
        super().__init__()
        self.model = model
        self.svm = model.scorer == "svm" and bool(model.svm_fitted)
        self.regression = model.box_regression and bool(model.regressor_fitted)

    def forward(self, crops: Tensor) -> tuple[Tensor, Tensor]:
        model = self.model
        outputs = model.region_net(crops)
        if self.svm:
            scores = torch.sigmoid(outputs.fc7 @ model.svm_weight.T + model.svm_bias)  # [R, H] @ [H, C] -> [R, C]
        else:
            scores = outputs.class_logits.softmax(dim=1)[:, 1:]  # [R, C + 1] -> [R, C]
        if self.regression:
            deltas = outputs.pool5 @ model.bbox_weight.flatten(0, 1).T + model.bbox_bias.flatten()  # [R, D] @ [D, 4C] -> [R, 4C]
        else:
            deltas = torch.zeros_like(scores).repeat(1, 4)  # [R, 4C]
        return scores, deltas


def _transform_input(transform: nn.Module) -> dict[str, Any]:
    """What a torchvision ``GeneralizedRCNNTransform`` does to an image, for the metadata."""
    fixed = getattr(transform, "fixed_size", None)
    return {
        "resize": {"fixed_size": list(fixed)} if fixed else {"min_size": int(transform.min_size[0]), "max_size": int(transform.max_size)},
        "mean": [float(v) for v in transform.image_mean],
        "std": [float(v) for v in transform.image_std],
        "size_divisible": int(transform.size_divisible),
    }


def _fixed_input(size: int, transform: nn.Module) -> dict[str, Any]:
    return {"shape": ["N", 3, size, size], "values": "RGB [0, 1] image resized to a fixed square by the transform, then normalised",
            "transform": _transform_input(transform)}  # fmt: skip


def network_attribute(model: nn.Module) -> str | None:
    """The head's method a network cut's graph replaces (``detection.onnx_model`` sets it to the graph),
    or ``None`` for a head without a network cut."""
    if isinstance(model, ClassLocalizationNet):
        return "_heads"
    if isinstance(model, YOLOv1):
        return "predict_grid"
    if isinstance(model, FCN):
        return "logits"
    if isinstance(model, OverFeat):
        return "net.dense"
    return None


def cut_for(model: nn.Module) -> Cut:
    """The cut of ``model``'s head (see the module docstring); ``ExportError`` for a head that has none."""
    name = type(model).__name__
    if isinstance(model, ClassLocalizationNet):
        size = model.image_size
        return Cut(
            kind="network", attribute=network_attribute(model), module=_Outputs(model, model._heads),
            example=torch.rand(EXAMPLE_BATCH, 3, size, size), input_name="images", output_names=["class_logits", "boxes"],
            dynamic={0: "batch"}, input=_fixed_input(size, model.transform),
            python_side="transform (resize, normalise), softmax, the box of the best class, boxes back to the original size",
        )  # fmt: skip
    if isinstance(model, YOLOv1):
        size = model.image_size
        return Cut(
            kind="network", attribute=network_attribute(model), module=_Outputs(model, model.predict_grid),
            example=torch.rand(EXAMPLE_BATCH, 3, size, size), input_name="images", output_names=["grid"],
            dynamic={0: "batch"}, input=_fixed_input(size, model.transform),
            python_side="transform (resize, normalise), grid decoding, class-specific confidences, score threshold, "
            "per-class NMS, boxes back to the original size",
        )  # fmt: skip
    if isinstance(model, FCN):
        return Cut(
            kind="network", attribute=network_attribute(model), module=_Outputs(model, model.logits),
            example=torch.rand(EXAMPLE_BATCH, 3, 64, 96), input_name="images", output_names=["logits"],
            dynamic={0: "batch", 2: "height", 3: "width"},
            input={"shape": ["N", 3, "H", "W"], "values": "RGB [0, 1] image at its own size (normalised and padded inside the graph)",
                   "mean": [float(v) for v in model.mean.flatten()], "std": [float(v) for v in model.std.flatten()]},
            python_side="per-pixel argmax of the logits",
        )  # fmt: skip
    if isinstance(model, OverFeat):
        window = model.window_size
        any_scale = next(iter(model.transforms.values()))
        return Cut(
            kind="network", attribute=network_attribute(model), module=_Outputs(model.net, model.net.dense),
            example=torch.rand(EXAMPLE_BATCH, 3, 2 * window, 2 * window), input_name="images", output_names=["outputs"],
            dynamic={0: "batch", 2: "height", 3: "width"},
            input={"shape": ["N", 3, "s", "s"], "values": "RGB [0, 1] image resized to each test scale s, then normalised",
                   "test_scales": model.test_scales, "test_flip": model.test_flip,
                   "transform": {k: v for k, v in _transform_input(any_scale).items() if k != "resize"}},
            python_side="every test view (scale, flip): transform (resize, normalise), class probabilities, box decoding, "
            "top-k classes, greedy merge over the views, boxes back to the original size",
        )  # fmt: skip
    if isinstance(model, FasterRCNN):
        return Cut(
            kind="whole", module=_WholeDetector(model), example=torch.rand(3, 96, 128), input_name="image",
            output_names=["boxes", "labels", "scores"], dynamic={1: "height", 2: "width"},
            input={"shape": [3, "H", "W"], "values": "one RGB [0, 1] image at its own size (resized and normalised inside the graph)",
                   "transform": _transform_input(model.transform)},
            python_side="nothing (one image per run)",
            torch_export_refusal="torch.export cannot capture torchvision's data-dependent NMS (batched_nms guards on the "
            "number of boxes); export it with --format onnx",
        )  # fmt: skip
    if isinstance(model, RCNN):
        size = model.crop_size
        return Cut(
            kind="region_network", module=_RegionScorer(model), example=torch.rand(EXAMPLE_BATCH, 3, size, size),
            input_name="crops", output_names=["scores", "box_deltas"], dynamic={0: "regions"},
            input={"shape": ["R", 3, size, size], "values": "regions dilated for context and warped to the crop size, "
                   "cut from the image normalised with mean / std", "mean": [float(v) for v in model.image_mean.flatten()],
                   "std": [float(v) for v in model.image_std.flatten()], "context_padding": model.context_padding},
            python_side="selective search proposals, context dilation and warping of each region, applying the box deltas "
            "(detection.rcnn.box_regression.apply_deltas), per-class NMS: predict.py cannot run this file",
            runnable=False,
        )  # fmt: skip
    raise ExportError(_refusal(model, name))


def _refusal(model: nn.Module, name: str) -> str:
    from detection.fast_rcnn import FastRCNN
    from detection.mnc import MNC

    if isinstance(model, MNC):
        return (
            "MNC cannot be exported: mask voting (detection/mnc/voting.py) is a Python loop over the kept instances, "
            "a data-dependent loop that no traced graph holds, and the 5-stage cascade warps the boxes stage 3 regressed "
            "again; the RPN, RoI warping, the cascade, NMS, mask voting and pasting the masks into each image all stay "
            "in Python: run predict.py on the checkpoint"
        )
    if isinstance(model, FastRCNN):
        return (
            "Fast R-CNN cannot be exported: its proposals come from selective search (OpenCV, in Python), "
            "which no graph holds; run predict.py on the checkpoint"
        )
    return (
        f"{name} ({type(model).__module__}) has no export cut; the heads that export are localization, YOLO, FCN, "
        "OverFeat, Faster R-CNN and R-CNN (its region network)"
    )


def build_metadata(
    model: nn.Module, cut: Cut, *, classes: Sequence[str], model_config: dict[str, Any], evaluator: str | None, format: str
) -> dict[str, Any]:
    """The JSON document stored with the graph (module docstring)."""
    return {
        "version": METADATA_VERSION,
        "format": format,
        "head": model_config.get("class_path", f"{type(model).__module__}.{type(model).__name__}"),
        "model_config": model_config,
        "classes": list(classes),
        "num_classes": int(getattr(model, "num_classes", len(classes))),
        "task": getattr(model, "task", "detection"),
        "evaluator": evaluator,
        "cut": cut.kind,
        "network_attribute": cut.attribute,
        "runnable": cut.runnable,
        "input_name": cut.input_name,
        "input": cut.input,
        "dynamic_axes": {str(axis): name for axis, name in cut.dynamic.items()},
        "outputs": cut.output_names,
        "python_side": cut.python_side,
        "opset": (WHOLE_MODEL_OPSET if cut.kind == "whole" else NETWORK_OPSET) if format == "onnx" else None,
    }


def _exported_program(cut: Cut) -> torch.export.ExportedProgram:
    """``torch.export`` of a network cut with its dynamic axes.

    The shape checks of the heads (FCN's crops, OverFeat's interleaving) hold for every size, but
    sympy cannot prove so over nested floor divisions; ``Dim.DYNAMIC`` lets them stay guards instead
    of failing, and size-oblivious reasoning keeps the batch axis dynamic (as torch.onnx's own capture
    does). Parity at sizes other than the example's is tested (``tests/test_export.py``).
    """
    dynamic = {axis: Dim.DYNAMIC for axis in cut.dynamic}
    with torch.fx.experimental._config.patch(backed_size_oblivious=True):
        return torch.export.export(cut.module, (cut.example,), dynamic_shapes=(dynamic,), strict=False)


def _export_onnx(cut: Cut, path: Path, metadata: dict[str, Any]) -> None:
    import onnx

    if cut.kind == "whole":  # torchvision's detectors trace with the TorchScript exporter
        axes = {cut.input_name: dict(cut.dynamic)} | {name: {0: "detections"} for name in cut.output_names}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings on torchvision's size arithmetic, made dynamic by `axes`
            torch.onnx.export(
                cut.module, (cut.example,), str(path), dynamo=False, opset_version=WHOLE_MODEL_OPSET,
                input_names=[cut.input_name], output_names=cut.output_names, dynamic_axes=axes,
            )  # fmt: skip
    else:
        program = torch.onnx.export(
            _exported_program(cut), (cut.example,), dynamo=True, opset_version=NETWORK_OPSET,
            input_names=[cut.input_name], output_names=cut.output_names, verbose=False,
        )  # fmt: skip
        program.save(str(path))
    proto = onnx.load(str(path), load_external_data=False)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    onnx.save(proto, str(path))


def _export_torch(cut: Cut, path: Path, metadata: dict[str, Any]) -> None:
    torch.export.save(_exported_program(cut), str(path), extra_files={f"{METADATA_KEY}.json": json.dumps(metadata)})


def export_model(
    model: nn.Module,
    *,
    classes: Sequence[str],
    model_config: dict[str, Any],
    format: str,
    out_dir: str | Path,
    evaluator: str | None = None,
) -> Path:
    """Write ``out_dir/model.onnx`` (or ``model.pt2``) and ``out_dir/metadata.json``; returns the model file.

    ``model`` is in eval mode (a loaded checkpoint's); raises ``ExportError`` for a head or format that
    cannot be exported, before writing anything.
    """
    if format not in FORMATS:
        raise ExportError(f"--format must be one of {list(FORMATS)}, got {format!r}")
    name = type(model).__name__
    model = model.eval().cpu()
    cut = cut_for(model)
    cut.module.eval()  # a fresh wrapper is in training mode, and an exporter restores the mode it found
    if format == "torch-export" and cut.torch_export_refusal:
        raise ExportError(f"{name}: {cut.torch_export_refusal}")
    metadata = build_metadata(model, cut, classes=classes, model_config=model_config, evaluator=evaluator, format=format)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / FILE_NAMES[format]
    try:
        if format == "onnx":
            _export_onnx(cut, path, metadata)
        else:
            _export_torch(cut, path, metadata)
    except ExportError:
        raise
    except Exception as error:  # noqa: BLE001 - a tracer failure names the head and the exporter's reason
        raise ExportError(f"{name}: the {format} exporter failed on its {cut.kind} cut: {type(error).__name__}: {error}") from error
    (out_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=1))
    return path
