"""detseg from Python: one object for a trained model, and training from a config.

    from detection import Detector, SplitSource

    detector = Detector.load("runs/detseg/version_0/checkpoints/best.ckpt")
    preds = detector(["photo.jpg", "other.png"])        # list of dicts: boxes [K, 4] xyxy pixels, labels [K], scores [K]
    metrics = detector.evaluate(SplitSource(shapes=Path("data/shapes"), split="test"), out_dir=Path("report"))
    detector.export("exported")                          # exported/model.onnx + metadata.json

``Detector`` is what the commands run (``docs/python_api.md``):

- ``Detector.load``: a checkpoint of ``scripts/train.py`` (``detection.checkpoint.load_detector``,
  nothing unpickled) or a ``model.onnx`` of ``export`` (on onnxruntime, ``detection.onnx_model``);
- ``detector(images)`` / ``predict``: images in memory or on disk through the one inference path
  (``detection.predictor.predict_images``);
- ``predict_folder``: a folder or a dataset split into the outputs of ``scripts/predict.py``
  (``detection.inference.batch_predict``: resumable, on one process or many);
- ``evaluate``: the report of ``scripts/evaluate.py --checkpoint``
  (``detection.evaluation.evaluate_split.evaluate_model``), returning the metrics;
- ``export``: the files of ``scripts/export.py`` (``detection.export.export_model``).

``train(config, overrides)`` is ``scripts/train.py fit --config config *overrides`` (LightningCLI).

Shape letters: ``N`` images, ``K`` detections, ``H, W`` an image's size.
"""

import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from tqdm import tqdm

from datasets.base import image_to_tensor
from datasets.folder import ImageFolder
from datasets.safe_io import read_image
from datasets.split_images import SplitImages
from datasets.split_source import SplitSource
from detection.checkpoint import DEFAULT_ALLOWED_PREFIXES, LoadedDetector
from detection.drawing import DRAW_SCORE_THRESHOLD
from detection.evaluation.evaluate_split import GALLERY_SIZE, open_model_split, Progress, ReportOptions, evaluate_model, read_metrics
from detection.export import ExportError, export_model
from detection.inference import PredictSummary, batch_predict
from detection.onnx_model import OnnxDetector, load_any
from detection.predictor import Prediction, keep_scores, model_task, predict_images
from detection.processes import Processes

ImageInput = str | Path | Image.Image | np.ndarray | Tensor
FOLDER_SCORE_THRESHOLD = 0.05  # predict_folder on a folder keeps detections scoring at least this; on a split, all


def as_image_tensor(image: ImageInput) -> Tensor:
    """One image -> ``Tensor[3, H, W]`` float32 RGB in ``[0, 1]``.

    Accepts a path (decoded as batch inference decodes files: EXIF orientation applied, grayscale,
    palette, alpha and 16-bit made RGB), a PIL image, an ``np.ndarray[H, W, 3]`` uint8, or a tensor
    ``[3, H, W]`` (float in ``[0, 1]``, or uint8 as ``torchvision.io.read_image`` gives it).
    """
    if isinstance(image, (str, Path)):
        return image_to_tensor(read_image(image))
    if isinstance(image, Image.Image):
        return image_to_tensor(np.asarray(image.convert("RGB")))
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"an array image must be [H, W, 3] uint8 RGB, got shape {image.shape} {image.dtype}")
        return image_to_tensor(image)
    if isinstance(image, Tensor):
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"a tensor image must be [3, H, W], got shape {list(image.shape)}")
        if image.dtype == torch.uint8:
            return image.float() / 255.0
        if not image.is_floating_point():
            raise ValueError(f"a tensor image must be float in [0, 1] or uint8, got {image.dtype}")
        return image
    raise TypeError(f"an image must be a path, a PIL image, an np.ndarray or a Tensor, got {type(image).__name__}")


def _progress(enabled: bool) -> Progress | None:
    """``progress(batches, total)`` for batch inference: a tqdm bar, or none."""
    if not enabled:
        return None

    def progress(batches: Iterable, total: int) -> Iterable:
        return tqdm(batches, total=total, unit="batch", desc="predict")

    return progress


class Detector:
    """A trained model of any head, and the verbs of the commands on it.

    Build it with ``Detector.load``. ``model`` is the head (``nn.Module`` in eval mode, or an
    ``OnnxDetector``), ``classes`` its foreground names (``classes[label - 1]``), ``task``
    ``"detection"`` (boxes, and instance masks for instance heads) or ``"semantic"`` (class maps).
    """

    def __init__(self, loaded: LoadedDetector, *, path: Path, config: Path | None = None, device: str | torch.device = "cpu") -> None:
        self.loaded = loaded
        self.path = path  # the checkpoint or model.onnx it came from
        self.config = config
        self.device = torch.device(device)
        loaded.model.eval().to(self.device)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        config: str | Path | None = None,
        device: str | torch.device = "cpu",
        classes: Sequence[str] | None = None,
        allowed_prefixes: Sequence[str] = DEFAULT_ALLOWED_PREFIXES,
    ) -> "Detector":
        """A checkpoint (``.ckpt``, read with ``weights_only=True``) or an exported ``model.onnx``.

        ``config``: a YAML config to rebuild the model from (default: the checkpoint's own, or the
        ``config.yaml`` beside it); ``classes``: the names of a checkpoint that stores none;
        ``allowed_prefixes``: the packages a model ``class_path`` may come from. Raises
        ``detection.checkpoint.CheckpointError`` saying what is wrong.
        """
        config = Path(config) if config is not None else None
        loaded = load_any(path, config=config, classes=classes, allowed_prefixes=allowed_prefixes)
        return cls(loaded, path=Path(path), config=config, device=device)

    @property
    def model(self) -> nn.Module:
        return self.loaded.model

    @property
    def classes(self) -> list[str]:
        return self.loaded.classes

    @property
    def task(self) -> str:
        return model_task(self.model)

    def __repr__(self) -> str:
        return f"Detector({type(self.model).__name__}, classes={self.classes}, device={self.device}, path={str(self.path)!r})"

    @overload
    def predict(self, images: ImageInput, *, score_threshold: float = 0.0, batch_size: int = 8) -> Prediction: ...

    @overload
    def predict(self, images: Sequence[ImageInput], *, score_threshold: float = 0.0, batch_size: int = 8) -> list[Prediction]: ...

    def predict(
        self, images: ImageInput | Sequence[ImageInput], *, score_threshold: float = 0.0, batch_size: int = 8
    ) -> Prediction | list[Prediction]:
        """Predict one image (-> one dict) or a list of ``N`` images (-> ``N`` dicts, in order).

        Images: see ``as_image_tensor``. Each dict is the head contract's, in the image's own
        pixels, on ``device``: ``boxes`` ``Tensor[K, 4]`` float32 xyxy, ``labels`` ``Tensor[K]``
        int64 in ``1..C`` (``classes[label - 1]``), ``scores`` ``Tensor[K]``, ``masks``
        ``Tensor[K, H, W]`` for instance heads; ``semantic`` ``Tensor[H, W]`` int64 for semantic
        heads. Detections scoring below ``score_threshold`` are dropped. ``batch_size`` images are
        decoded and predicted together (same-size ones share a forward pass).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        preds: list[Prediction] = []
        for start in range(0, len(items), batch_size):
            tensors = [as_image_tensor(image).to(self.device) for image in items[start : start + batch_size]]
            preds += [keep_scores(pred, score_threshold) for pred in predict_images(self.model, tensors)]
        return preds[0] if single else preds

    __call__ = predict

    def predict_folder(
        self,
        source: str | Path | SplitSource,
        out_dir: str | Path,
        *,
        batch_size: int = 8,
        score_threshold: float | None = None,
        draw: bool = True,
        draw_threshold: float = DRAW_SCORE_THRESHOLD,
        num_workers: int = 0,
        progress: bool = False,
        processes: Processes | None = None,
    ) -> PredictSummary | None:
        """Predict an image folder (searched recursively) or a dataset split into ``out_dir``, as
        ``scripts/predict.py`` does: ``predictions.json`` / ``.csv``, ``masks/`` or ``instances/``,
        ``drawn/``, ``errors.txt`` (``detection/inference.py``). A rerun resumes.

        ``score_threshold``: default ``FOLDER_SCORE_THRESHOLD`` for a folder, 0 for a split (whose
        image and category ids are the dataset's, so ``evaluate`` scores the file directly).
        ``processes`` (``detection.processes.start_processes``): every process of a run calls this;
        the main one gets the summary, the others ``None``.
        """
        if isinstance(source, SplitSource):
            split = open_model_split(source, self.task, self.classes)
            images, root, categories = SplitImages(split.reader), split.images_root, split.label_to_category_id
            threshold = 0.0 if score_threshold is None else score_threshold
        else:
            images, root, categories = ImageFolder(source), Path(source), None
            threshold = FOLDER_SCORE_THRESHOLD if score_threshold is None else score_threshold
        processes = processes or Processes(device=self.device)
        summary = batch_predict(
            self.model, self.classes, images, root=root, out_dir=out_dir, batch_size=batch_size, score_threshold=threshold,
            draw=draw, draw_threshold=draw_threshold, num_workers=num_workers, label_to_category_id=categories,
            progress=_progress(progress), processes=processes,
        )  # fmt: skip
        self.device = processes.device  # batch_predict ran the model there
        return summary

    def evaluate(
        self,
        source: SplitSource,
        *,
        protocol: str | None = None,
        out_dir: str | Path | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        gallery: int = GALLERY_SIZE,
        voc_results: str | Path | None = None,
        progress: bool = False,
        processes: Processes | None = None,
    ) -> dict[str, float] | None:
        """Score the model on a dataset split under ``protocol``; returns the metrics (``map``,
        ``map_50``, ``ap_50/<class>``, ``mean_iou``, ...: flat names as the evaluators give them).

        ``protocol``: one of ``detection.evaluation.evaluate_split.PROTOCOLS``, default the one of
        the evaluator the model was trained with. ``out_dir``: where ``report.md``, ``metrics.json``,
        the PR curves, the galleries (``gallery`` crops each; 0: none) and the predictions
        (``predictions/``, resumed by a rerun) go; ``None`` writes them to a folder removed
        afterwards. ``voc_results``: also write the devkit's ``comp4`` files there. ``processes``:
        predict on several processes (every one calls this with the same arguments and an
        ``out_dir``); the main one scores and gets the metrics, the others ``None``.
        """
        processes = processes or Processes(device=self.device)
        if out_dir is None and processes.world_size > 1:
            raise ValueError("evaluate on several processes needs an out_dir that they share")
        options = ReportOptions(gallery=gallery, voc_results=Path(voc_results) if voc_results is not None else None, progress=progress)
        with tempfile.TemporaryDirectory(prefix="detseg_evaluate_") as scratch:
            report = evaluate_model(
                self.loaded, source, Path(out_dir if out_dir is not None else scratch), model_file=self.path, config=self.config,
                protocol=protocol, batch_size=batch_size, num_workers=num_workers, progress=_progress(progress), options=options,
                processes=processes,
            )  # fmt: skip
            self.device = processes.device
            return None if report is None else read_metrics(report)

    def export(self, out_dir: str | Path, *, format: str = "onnx") -> Path:
        """Write ``out_dir/model.onnx`` (``format="onnx"``) or ``model.pt2`` (``"torch-export"``) and
        ``metadata.json``, as ``scripts/export.py``; returns the model file. The head says where it is
        cut (``export_cut()``, ``detection/exportable.py``); ``detection.export.ExportError`` for a head
        or format that cannot be exported, before anything is written."""
        if isinstance(self.model, OnnxDetector):
            raise ExportError(f"{self.path} is an exported model already; export its checkpoint")
        self.model.cpu()
        self.device = torch.device("cpu")  # export_model traces on the CPU
        return export_model(
            self.model, classes=self.classes, model_config=self.loaded.model_config, format=format, out_dir=out_dir,
            evaluator=self.loaded.evaluator,
        )  # fmt: skip


@dataclass
class Training:
    """What ``train`` ran: the Lightning ``trainer`` and ``system`` after the run, and the
    checkpoints it wrote (``None`` when checkpointing was off, e.g. ``fast_dev_run``)."""

    trainer: Any  # lightning.Trainer
    system: Any  # detection.system.DetectionSystem
    best_checkpoint: Path | None
    last_checkpoint: Path | None


def train(config: str | Path, overrides: Sequence[str] = (), *, subcommand: str = "fit") -> Training:
    """``scripts/train.py <subcommand> --config config *overrides``: the same LightningCLI run.

    ``overrides`` are the command line's own (``["--trainer.max_epochs", "2",
    "--data.init_args.root", "data/shapes"]``); ``subcommand`` is ``fit``, ``validate`` or ``test``
    (give ``--ckpt_path`` among the overrides for the last two). ``Detector.load(training.best_checkpoint)``
    then loads the result.
    """
    from detection.cli import run_cli
    from detection.system import DetectionSystem

    cli = run_cli(DetectionSystem, [subcommand, "--config", str(config), *overrides])
    trainer = cli.trainer
    paths = {}
    for callback in trainer.checkpoint_callbacks:
        name = "last" if callback.monitor is None else "best"
        found = callback.best_model_path or callback.last_model_path
        paths.setdefault(name, Path(found) if found else None)
    return Training(trainer=trainer, system=cli.model, best_checkpoint=paths.get("best"), last_checkpoint=paths.get("last"))
