"""How a head is cut for export: the protocol a head implements next to its own code.

``detection/export.py`` asks the model for its cut and never names a head: a head that can be
exported has a method ``export_cut() -> ExportCut`` saying which module is traced into the graph,
with which example input, which outputs, and what stays in Python around it; a head that cannot
be exported has ``export_cut()`` raise ``NotExportable`` with the reason. A model without the
method is refused too (``ExportError``).

Cuts (``ExportCut.kind``):

- ``network``: a method of the head (``attribute``, also the head's class attribute
  ``export_attribute``) becomes the graph; ``detection/onnx_model.py`` rebuilds the head without
  weights, sets that method to the graph, and the head's own forward runs everything else
  (transform, decoding, NMS, merging), so eager and onnxruntime share that code line for line.
- ``whole``: the head's whole forward for one image (``WholeDetector``); nothing stays in Python.
- ``region_network``: a part the head's Python pipeline calls per region; the file is for
  deployment with that pipeline, and ``predict.py`` cannot run it (``runnable=False``).

Shape letters: ``N`` images, ``R`` regions, ``H, W`` an image's size, ``S`` a fixed square size.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

EXAMPLE_BATCH = 2  # export examples avoid sizes 0 and 1, which torch.export specialises


class ExportError(ValueError):
    """This model cannot be exported in this format; the message names the head and says why."""


class NotExportable(ExportError):
    """Raised by a head's ``export_cut()`` when it cannot be exported; the message says why."""


@dataclass
class ExportCut:
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


@runtime_checkable
class Exportable(Protocol):
    """A head that says how it is exported (or, raising ``NotExportable``, why it is not)."""

    def export_cut(self) -> ExportCut: ...


def network_attribute(model: nn.Module) -> str | None:
    """The method of ``model``'s head that a network cut's graph replaces (its class attribute
    ``export_attribute``), or ``None``. Read from the type, so it needs no weights (a head built on
    the ``meta`` device answers too)."""
    return getattr(type(model), "export_attribute", None)


class Outputs(nn.Module):
    """``fn(x)`` as a module returning a tuple (one graph output per tensor); ``owner`` registers
    the parameters ``fn`` reads."""

    def __init__(self, owner: nn.Module, fn: Callable[[Tensor], Any]) -> None:
        super().__init__()
        self.owner = owner
        self.fn = fn

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        out = self.fn(x)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)


class WholeDetector(nn.Module):
    """One image ``[3, H, W]`` -> ``(boxes [K, 4], labels [K], scores [K])`` through the head's own forward."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        (pred,) = self.model([image])
        return pred["boxes"], pred["labels"], pred["scores"]


def transform_input(transform: nn.Module) -> dict[str, Any]:
    """What a torchvision ``GeneralizedRCNNTransform`` does to an image, for the metadata."""
    fixed = getattr(transform, "fixed_size", None)
    return {
        "resize": {"fixed_size": list(fixed)} if fixed else {"min_size": int(transform.min_size[0]), "max_size": int(transform.max_size)},
        "mean": [float(v) for v in transform.image_mean],
        "std": [float(v) for v in transform.image_std],
        "size_divisible": int(transform.size_divisible),
    }


def fixed_square_cut(model: nn.Module, size: int, output_names: list[str], python_side: str) -> ExportCut:
    """The network cut of a head that resizes every image to ``size x size`` with its ``transform``
    and whose ``export_attribute`` maps images ``[N, 3, S, S]`` (normalised) to ``output_names``."""
    attribute = network_attribute(model)
    return ExportCut(
        kind="network", attribute=attribute, module=Outputs(model, getattr(model, attribute)),
        example=torch.rand(EXAMPLE_BATCH, 3, size, size), input_name="images", output_names=output_names, dynamic={0: "batch"},
        input={"shape": ["N", 3, size, size], "values": "RGB [0, 1] image resized to a fixed square by the transform, then normalised",
               "transform": transform_input(model.transform)},
        python_side=python_side,
    )  # fmt: skip
