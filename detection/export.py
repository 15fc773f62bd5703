"""Export a trained head to ONNX or ``torch.export``: what the head puts in the file, and the file's metadata.

The exporter asks the model where to cut it (``export_cut()``, the protocol of
``detection/exportable.py``, implemented next to each head's own code) and names no head: a
network cut (a method of the head, e.g. the network before decoding and NMS) traces with
torch.onnx's dynamo exporter at opset ``NETWORK_OPSET``, with the dynamic axes the cut gives; a
whole-model cut (one image in, boxes out) with the TorchScript exporter at opset
``WHOLE_MODEL_OPSET`` (>= 11 for torchvision's ``NonMaxSuppression``); a region-network cut as a
network cut, but ``predict.py`` cannot run the file. A head whose ``export_cut()`` raises
``NotExportable``, or that has none, is refused with its reason (``ExportError``), before anything
is written; so is ``torch-export`` for a cut that says ``torch.export`` cannot hold it. The
network-only cuts keep decoding and NMS in the very code the eager head runs, so the two paths
differ only by the graph's floating-point summation order (``tests/test_export.py``).

The file carries a JSON metadata document (``METADATA_KEY``): the class names, the head's
``class_path`` / ``init_args``, the cut, the input it expects (size, mean, std, value range), the
outputs, the task, and what stays in Python. ONNX keeps it in the model's ``metadata_props``;
``torch.export``'s ``.pt2`` in its extra files; ``metadata.json`` beside either repeats it.
"""

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.export import Dim

from detection.exportable import ExportCut, ExportError, NotExportable  # noqa: F401 (ExportError, NotExportable: this module's errors)

FORMATS: tuple[str, ...] = ("onnx", "torch-export")
FILE_NAMES = {"onnx": "model.onnx", "torch-export": "model.pt2"}
METADATA_KEY = "detseg"  # ONNX metadata_props key, and "<key>.json" among the .pt2 extra files
METADATA_FILE = "metadata.json"
METADATA_VERSION = 1
NETWORK_OPSET = 18  # torch.onnx's dynamo exporter
WHOLE_MODEL_OPSET = 17  # TorchScript exporter, whole-model cuts (torchvision's NMS / RoI pooling symbolics need >= 11)


def cut_for(model: nn.Module) -> ExportCut:
    """``model``'s own cut (``export_cut()``, ``detection/exportable.py``); ``ExportError`` with the
    head's reason when it cannot be exported, or when it does not say."""
    export_cut = getattr(model, "export_cut", None)
    if export_cut is None:
        raise ExportError(
            f"{type(model).__name__} ({type(model).__module__}) has no export cut: it does not implement "
            "export_cut() (detection/exportable.py)"
        )
    return export_cut()  # NotExportable (an ExportError) from a head that says why it cannot be exported


def build_metadata(
    model: nn.Module, cut: ExportCut, *, classes: Sequence[str], model_config: dict[str, Any], evaluator: str | None, format: str
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


def _exported_program(cut: ExportCut) -> torch.export.ExportedProgram:
    """``torch.export`` of a network cut with its dynamic axes.

    The shape checks of some heads (crops, interleaved outputs) hold for every size, but
    sympy cannot prove so over nested floor divisions; ``Dim.DYNAMIC`` lets them stay guards instead
    of failing, and size-oblivious reasoning keeps the batch axis dynamic (as torch.onnx's own capture
    does). Parity at sizes other than the example's is tested (``tests/test_export.py``).
    """
    dynamic = {axis: Dim.DYNAMIC for axis in cut.dynamic}
    with torch.fx.experimental._config.patch(backed_size_oblivious=True):
        return torch.export.export(cut.module, (cut.example,), dynamic_shapes=(dynamic,), strict=False)


def _export_onnx(cut: ExportCut, path: Path, metadata: dict[str, Any]) -> None:
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


def _export_torch(cut: ExportCut, path: Path, metadata: dict[str, Any]) -> None:
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
