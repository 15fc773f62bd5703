"""An exported ``model.onnx`` as a head: ``model(images: list[Tensor[3, H, W]]) -> list[dict]`` on onnxruntime.

``OnnxDetector`` honours the eval half of the head contract (``docs/ARCHITECTURE.md``), with the
eager head's ``num_classes`` and ``task``, so the one inference path
(``detection.predictor.predict_images``, ``detection.inference.batch_predict``) runs it unchanged.

How it runs each kind of cut (``detection/exportable.py``; no head is named here):

- ``whole``: the graph is the head; one run per image.
- ``network``: the head is rebuilt from the file's ``class_path`` / ``init_args`` on the ``meta``
  device (no memory, no weights), and the method the graph replaces (the head class's
  ``export_attribute``, which must equal the file's) is set to the graph on that instance; the
  head's own forward then runs everything else (transform, decoding, NMS, merging, postprocess),
  so eager and onnxruntime share that code line for line.
- a cut the file marks not ``runnable`` (a region network whose proposals, warping and NMS are
  not in the file) is refused, with what stays in Python.

The file is untrusted like a checkpoint: its ``class_path`` must start with one of
``allowed_prefixes`` (``detection.checkpoint.build_model`` checks), and no weights leave the graph.

Shape letters: ``N`` images, ``K`` detections, ``H, W`` an image's size.
"""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from detection.checkpoint import DEFAULT_ALLOWED_PREFIXES, CheckpointError, LoadedDetector, build_model, load_detector
from detection.export import METADATA_KEY, METADATA_VERSION
from detection.exportable import network_attribute

ONNX_SUFFIX = ".onnx"
QUIET_LOG_LEVEL = 3  # onnxruntime: errors only (its graph-optimisation warnings are not the user's concern)


class OrtGraph:
    """An onnxruntime session as a torch function: ``Tensor -> Tensor`` (one output) or a tuple.

    Inputs go to the CPU for onnxruntime; outputs come back on the input's device. Runs with
    ``torch.get_num_threads()`` threads at session creation.
    """

    def __init__(self, path: str | Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = QUIET_LOG_LEVEL
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as error:  # noqa: BLE001 - any parse failure means "not a model we can run"
            raise CheckpointError(f"{path}: not loadable by onnxruntime ({error})") from error
        self.input_name = self.session.get_inputs()[0].name

    def metadata(self) -> dict[str, str]:
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def __call__(self, x: Tensor) -> Tensor | tuple[Tensor, ...]:
        outputs = self.session.run(None, {self.input_name: x.detach().float().cpu().contiguous().numpy()})
        tensors = tuple(torch.from_numpy(out).to(x.device) for out in outputs)
        return tensors[0] if len(tensors) == 1 else tensors


def _set_attribute(model: nn.Module, dotted: str, value: Any) -> None:
    """``model.a.b = value`` for ``dotted = "a.b"`` (an instance attribute: it shadows the method)."""
    owner_path, _, name = dotted.rpartition(".")
    owner = model.get_submodule(owner_path) if owner_path else model
    object.__setattr__(owner, name, value)


class OnnxDetector(nn.Module):
    """An exported head on onnxruntime (module docstring); eval only.

    Args:
        graph: the session.
        metadata: the file's metadata document (``detection.export.build_metadata``).
        host: the head rebuilt on the meta device, whose network method is the graph (network
            cuts), or ``None`` (whole-model cut).
    """

    def __init__(self, graph: OrtGraph, metadata: dict[str, Any], host: nn.Module | None) -> None:
        super().__init__()
        self.graph = graph
        self.metadata = metadata
        self.num_classes = int(metadata["num_classes"])
        self.task = metadata["task"]
        # Not a submodule: its parameters are meta tensors that .to() / state_dict() must not see.
        object.__setattr__(self, "host", host)

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None) -> list[dict[str, Tensor]]:
        if self.training or targets is not None:
            raise RuntimeError("an exported model only predicts: call .eval() and pass no targets")
        if self.host is not None:
            return self.host(images)
        predictions = []
        for image in images:  # the whole-model graph takes one image
            boxes, labels, scores = self.graph(image)
            predictions.append({"boxes": boxes, "labels": labels.to(torch.int64), "scores": scores})
        return predictions


def read_metadata(graph: OrtGraph, path: Path) -> dict[str, Any]:
    """The file's metadata document; ``CheckpointError`` naming the file when absent or from another version."""
    text = graph.metadata().get(METADATA_KEY)
    if text is None:
        raise CheckpointError(f"{path}: no {METADATA_KEY!r} metadata: not written by scripts/export.py")
    try:
        metadata = json.loads(text)
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: {METADATA_KEY!r} metadata is not JSON ({error})") from error
    if not isinstance(metadata, dict) or metadata.get("version") != METADATA_VERSION:
        raise CheckpointError(f"{path}: metadata version {metadata.get('version') if isinstance(metadata, dict) else None!r}, expected {METADATA_VERSION}")
    return metadata


def _host(metadata: dict[str, Any], path: Path, allowed_prefixes: Sequence[str], graph: OrtGraph) -> nn.Module:
    """The head rebuilt without weights, its network method replaced by ``graph``."""
    with torch.device("meta"):
        host = build_model(metadata["model_config"], allowed_prefixes=allowed_prefixes)
    attribute = network_attribute(host)  # from the rebuilt head's type, not from the file
    if attribute is None or attribute != metadata.get("network_attribute"):
        raise CheckpointError(
            f"{path}: the file's cut {metadata.get('network_attribute')!r} does not match {metadata['head']}'s ({attribute!r})"
        )
    _set_attribute(host, attribute, graph)
    return host.eval()


def load_onnx(path: str | Path, *, allowed_prefixes: Sequence[str] = DEFAULT_ALLOWED_PREFIXES) -> LoadedDetector:
    """``model.onnx`` written by ``scripts/export.py`` -> a ``LoadedDetector`` whose model runs on onnxruntime."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such ONNX file")
    graph = OrtGraph(path)
    metadata = read_metadata(graph, path)
    if not metadata.get("runnable", False):
        raise CheckpointError(
            f"{path}: {metadata['head']} was exported as its {metadata['cut']} only; in Python stay: "
            f"{metadata['python_side']}"
        )
    if len(metadata["classes"]) != metadata["num_classes"]:
        raise CheckpointError(f"{path}: num_classes={metadata['num_classes']} but {len(metadata['classes'])} class names")
    if metadata["cut"] == "whole":
        host = None
    elif metadata["cut"] == "network":
        host = _host(metadata, path, allowed_prefixes, graph)
    else:
        raise CheckpointError(f"{path}: unknown cut {metadata['cut']!r}")
    model = OnnxDetector(graph, metadata, host).eval()
    return LoadedDetector(model=model, classes=list(metadata["classes"]), model_config=metadata["model_config"], evaluator=metadata.get("evaluator"))


def load_any(
    path: str | Path,
    *,
    config: str | Path | None = None,
    classes: Sequence[str] | None = None,
    allowed_prefixes: Sequence[str] = DEFAULT_ALLOWED_PREFIXES,
) -> LoadedDetector:
    """A checkpoint (``load_detector``) or, for a ``.onnx`` path, an exported model (``load_onnx``).

    The ONNX file carries its classes and config, so ``config`` and ``classes`` serve checkpoints only.
    """
    if Path(path).suffix.lower() == ONNX_SUFFIX:
        if config is not None:
            raise CheckpointError(f"{path}: an exported model carries its own config; drop --config {config}")
        return load_onnx(path, allowed_prefixes=allowed_prefixes)
    return load_detector(path, config=config, classes=classes, allowed_prefixes=allowed_prefixes)
