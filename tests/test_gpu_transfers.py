"""Pinned memory when the accelerator is a GPU: training's loaders and batch inference's.

No GPU here: the tests check the decision (pin for CUDA, not for the CPU) and that what the
loaders yield can be pinned; the copies that follow are ``non_blocking`` (Lightning's
``move_data_to_device`` for training, ``detection/inference.py`` for prediction).
"""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data._utils.pin_memory import pin_memory

from datasets.datamodule import DetectionDataModule
from datasets.folder import ImageFolder
from detection import inference
from detection.processes import Processes
from detection.tiny import TinyDetector


@pytest.mark.parametrize(("device", "pinned"), [("cuda", True), ("cpu", False)])
def test_training_loaders_pin_their_batches_on_cuda_only(shapes_root, tmp_path: Path, device: str, pinned: bool) -> None:
    data = DetectionDataModule(format="shapes", root=str(shapes_root.root), num_workers=0, batch_size=2, bad_images_file=str(tmp_path / "bad.txt"))
    data.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)), log_dir=None)
    data.setup("fit")
    assert data.train_dataloader().pin_memory is pinned and data.val_dataloader().pin_memory is pinned


def test_a_plain_data_module_does_not_pin(shapes_root, tmp_path: Path) -> None:
    data = DetectionDataModule(format="shapes", root=str(shapes_root.root), num_workers=0, bad_images_file=str(tmp_path / "bad.txt"))
    data.setup("fit")
    assert not data.train_dataloader().pin_memory


@pytest.mark.parametrize(("device", "pinned"), [("cuda", True), ("cpu", False)])
def test_batch_inference_pins_images_on_cuda_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, device: str, pinned: bool) -> None:
    """An empty folder: the loader is built (its pinning decided) and yields no batch to copy."""
    asked = []
    real_loader = inference.DataLoader

    def spy(*args, **kwargs):  # noqa: ANN202 - the DataLoader
        asked.append(kwargs["pin_memory"])
        return real_loader(*args, **{**kwargs, "pin_memory": False})

    monkeypatch.setattr(inference, "DataLoader", spy)
    monkeypatch.setattr(TinyDetector, "to", lambda self, *args, **kwargs: self)  # no CUDA to move to
    (tmp_path / "empty").mkdir()
    group = Processes(device=torch.device(device))
    inference.batch_predict(TinyDetector(num_classes=2), ["a", "b"], ImageFolder(tmp_path / "empty"), root=tmp_path / "empty",
                            out_dir=tmp_path / "out", processes=group)  # fmt: skip
    assert asked == [pinned]


def test_the_loaders_pinning_reaches_the_image_of_a_record(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``DataLoader(pin_memory=True)`` pins what has a ``pin_memory`` method and passes other objects
    through untouched: ``ImageRecord`` has one, so its image is pinned (an unreadable file's record too)."""
    pinned_ids = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *a: pinned_ids.append(id(self)) or self.clone())
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"not a png")
    records = [ImageFolder(tmp_path)[i] for i in range(2)]
    batch = pin_memory(records)
    assert pinned_ids == [id(records[0].image)]
    assert batch[0].image is not records[0].image and torch.equal(batch[0].image, records[0].image)
    assert batch[1].image is None and batch[1].error == records[1].error


def test_batch_inference_on_the_simulated_device_writes_what_the_cpu_writes(shapes_root, tmp_path: Path) -> None:
    """The whole batch-inference path (loader, copy to the device, the one inference path, masks
    and instance maps back on the host, journal, summaries) on a second device: MNC's shapes config."""
    import yaml
    from simulated_device import SIMULATED, simulated_device

    from datasets.split_images import SplitImages
    from datasets.voc import VOCDetection
    from detection.checkpoint import build_model

    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "mnc" / "shapes.yaml").read_text())
    torch.manual_seed(0)
    model = build_model(config["model"]["model"])
    reader = VOCDetection(shapes_root.voc_root, "val", classes=["circle", "square", "triangle", "cross"])
    outputs = {}
    for name, device in (("cpu", torch.device("cpu")), ("simulated", SIMULATED)):
        with simulated_device():
            inference.batch_predict(model, reader.classes, SplitImages(reader), root=shapes_root.voc_root, out_dir=tmp_path / name,
                                    score_threshold=0.0, processes=Processes(device=device))  # fmt: skip
            assert next(model.parameters()).device == device  # the model ran there
        model.cpu()
        outputs[name] = {p.relative_to(tmp_path / name).as_posix(): p.read_bytes() for p in sorted((tmp_path / name).rglob("*.*"))
                         if not p.name.startswith("journal")}  # fmt: skip
    assert outputs["simulated"] == outputs["cpu"]
    assert any(name.startswith("instances/") for name in outputs["cpu"]) and len(outputs["cpu"]["predictions.json"]) > 2
