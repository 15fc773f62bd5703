"""Rebuild a trained detector from a checkpoint, or start a model from one, without unpickling anything.

A checkpoint is an untrusted file: it is read with ``torch.load(weights_only=True)``, which
allows tensors and plain containers only. The model is rebuilt from its plain-typed config
(``class_path`` / ``init_args``), taken from, in order:

1. an explicit YAML config (``model.model`` of a LightningCLI config, e.g. the ``config.yaml``
   LightningCLI writes into the run directory);
2. the checkpoint's ``hyper_parameters["model"]`` (written by ``DetectionSystem`` under
   LightningCLI, with linked values filled in);
3. ``config.yaml`` discovered beside the checkpoint or one directory up
   (``runs/<name>/version_N/{config.yaml,checkpoints/*.ckpt}``).

Every ``class_path`` in that config must start with one of ``allowed_prefixes`` (importing a
module named by a file runs that module's code); every backbone ``weights`` init arg is set to
``None`` since the checkpoint's state dict replaces them anyway (and nothing is downloaded).

``init_from_checkpoint`` copies the matching parameters of a checkpoint into a model built
elsewhere (``DetectionSystem(init_from=...)``).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from jsonargparse import ArgumentParser
from torch import nn

DEFAULT_ALLOWED_PREFIXES = ("detection.", "segmentation.", "torchvision.", "torch.nn.")
STATE_PREFIX = "model."  # DetectionSystem holds the detector as `self.model`
CONFIG_NAME = "config.yaml"


class CheckpointError(ValueError):
    """The checkpoint (or its config) cannot be turned into a model; the message says why."""


@dataclass
class LoadedDetector:
    model: nn.Module  # in eval mode
    classes: list[str]  # foreground names, classes[label - 1]
    model_config: dict[str, Any]  # the class_path / init_args it was built from
    evaluator: str | None = None  # class name of the evaluator it was trained with (e.g. "VOCEvaluator")


def _find_config(checkpoint: Path) -> Path | None:
    for folder in (checkpoint.parent, checkpoint.parent.parent):
        if (folder / CONFIG_NAME).is_file():
            return folder / CONFIG_NAME
    return None


def _model_config_from_yaml(path: Path) -> tuple[dict[str, Any] | None, list[str] | None]:
    config = yaml.safe_load(Path(path).read_text()) or {}
    if "fit" in config:  # a config dumped with its subcommand
        config = config["fit"]
    system = config.get("model") or {}
    classes = system.get("classes")
    return system.get("model"), classes


def _check_class_paths(node: Any, allowed: Sequence[str], where: str = "model") -> None:
    if isinstance(node, dict):
        class_path = node.get("class_path")
        if class_path is not None and not any(str(class_path).startswith(p) for p in allowed):
            raise CheckpointError(
                f"{where}.class_path {class_path!r} is outside the allowed packages {list(allowed)}; "
                "pass allowed_prefixes (predict.py --allow-class-prefix) if you trust it"
            )
        for key, value in node.items():
            _check_class_paths(value, allowed, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _check_class_paths(value, allowed, f"{where}[{i}]")


def _without_pretrained_weights(node: Any) -> Any:
    """A copy with every ``init_args.weights`` set to ``None``."""
    if isinstance(node, dict):
        out = {key: _without_pretrained_weights(value) for key, value in node.items()}
        if isinstance(out.get("init_args"), dict) and "weights" in out["init_args"]:
            out["init_args"]["weights"] = None
        return out
    if isinstance(node, list):
        return [_without_pretrained_weights(value) for value in node]
    return node


def build_model(
    model_config: dict[str, Any], *, allowed_prefixes: Sequence[str] = DEFAULT_ALLOWED_PREFIXES
) -> nn.Module:
    """``{"class_path": ..., "init_args": {...}}`` -> an ``nn.Module`` (pretrained weights off)."""
    if not isinstance(model_config, dict) or "class_path" not in model_config:
        raise CheckpointError(f"model config must be a dict with class_path / init_args, got {model_config!r}")
    _check_class_paths(model_config, allowed_prefixes)
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(nn.Module, "model", required=True)
    config = parser.parse_object({"model": _without_pretrained_weights(model_config)})
    return parser.instantiate_classes(config).model


def _read_checkpoint(checkpoint: Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint dict, read with ``weights_only=True``; ``CheckpointError`` naming the file otherwise."""
    if not checkpoint.is_file():
        raise CheckpointError(f"{checkpoint}: no such checkpoint file")
    try:
        ckpt = torch.load(checkpoint, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means "not a checkpoint we accept"
        raise CheckpointError(f"{checkpoint}: not loadable with weights_only=True ({error})") from error
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{checkpoint}: not a Lightning checkpoint (no state_dict)")
    return ckpt


def _model_state(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The system's ``self.model`` entries of a Lightning state dict, without the ``model.`` prefix."""
    return {k[len(STATE_PREFIX) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(STATE_PREFIX)}


def init_from_checkpoint(model: nn.Module, checkpoint: str | Path) -> list[str]:
    """Copy every parameter whose name and shape match from a Lightning checkpoint into ``model``.

    Starts a model from another trained one: FCN-16s from FCN-32s (the paper's staged
    training), or a detector from a network trained on classification (the backbone
    entries ``backbone.*`` match; heads of another shape keep their initialisation).
    Returns the names left as initialised; ``CheckpointError`` naming the file when nothing matches.
    """
    checkpoint = Path(checkpoint)
    source = _model_state(_read_checkpoint(checkpoint))
    own = model.state_dict()
    taken = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
    if not taken:
        raise CheckpointError(f"{checkpoint}: no parameter matches this model by name and shape")
    model.load_state_dict(taken, strict=False)
    return sorted(set(own) - set(taken))


def load_detector(
    checkpoint: str | Path,
    *,
    config: str | Path | None = None,
    classes: Sequence[str] | None = None,
    allowed_prefixes: Sequence[str] = DEFAULT_ALLOWED_PREFIXES,
    map_location: str | torch.device = "cpu",
) -> LoadedDetector:
    """Load ``DetectionSystem`` checkpoint -> model in eval mode + class names (see module doc).

    The class names are the ones stored with the model; ``classes`` serves only a checkpoint
    that stores none.
    """
    checkpoint = Path(checkpoint)
    ckpt = _read_checkpoint(checkpoint, map_location=map_location)
    hparams = ckpt.get("hyper_parameters") or {}

    model_config, config_classes = None, None
    config_path = Path(config) if config is not None else None
    if config_path is not None:
        model_config, config_classes = _model_config_from_yaml(config_path)
    if model_config is None and isinstance(hparams.get("model"), dict):
        model_config = hparams["model"]
    if model_config is None and (found := _find_config(checkpoint)) is not None:
        model_config, config_classes = _model_config_from_yaml(found)
    if model_config is None:
        raise CheckpointError(
            f"{checkpoint}: no model config in the checkpoint and no {CONFIG_NAME} beside it; pass --config"
        )

    names = ckpt.get("detseg_classes") or hparams.get("classes") or config_classes or classes
    if not names:
        raise CheckpointError(f"{checkpoint}: no class names stored; pass them explicitly (--classes a,b,c)")
    if "num_classes" not in model_config.get("init_args", {}):  # a config taking it from the data, as training did
        model_config = {**model_config, "init_args": {**model_config.get("init_args", {}), "num_classes": len(names)}}

    model = build_model(model_config, allowed_prefixes=allowed_prefixes)
    missing, unexpected = model.load_state_dict(_model_state(ckpt), strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{checkpoint}: state dict does not match {model_config['class_path']}: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
        )
    num_classes = getattr(model, "num_classes", None)
    if num_classes is not None and num_classes != len(names):
        raise CheckpointError(
            f"{checkpoint}: model has num_classes={num_classes} but {len(names)} class names {list(names)}"
        )
    evaluator = hparams.get("evaluator")
    evaluator_name = str(evaluator["class_path"]).rsplit(".", 1)[-1] if isinstance(evaluator, dict) and "class_path" in evaluator else None
    return LoadedDetector(model=model.eval(), classes=list(names), model_config=model_config, evaluator=evaluator_name)
