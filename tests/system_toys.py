"""In-memory stand-ins for the system / CLI / resume / predict tests.

``ToyDataModule``: seeded single-object images (a filled rectangle, class = its colour) as
``(list[Tensor[3, H, W]], list[dict])`` batches; ``ToyEvaluator``: classification accuracy and
mean IoU of each image's top-scoring box (a real metric, computed with ``torchvision.ops``).
Importable as ``system_toys.<Class>`` from a LightningCLI config, because pytest puts ``tests/``
on ``sys.path``.
"""

from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torchvision.ops import box_iou

from datasets.shapes import SHAPE_CLASSES

TOY_CLASSES = ["red", "green"]
COLOURS = torch.tensor([[1.0, 0.1, 0.1], [0.1, 1.0, 0.1]])


class ToyBoxes(Dataset):
    """``count`` images of ``size`` x ``size`` (or varying sizes) with one coloured rectangle each."""

    def __init__(self, *, count: int, size: int = 32, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.items = []
        for i in range(count):
            height, width = size, size + 8 * (i % 2)  # two image sizes: collate must cope
            image = torch.full((3, height, width), 0.2) + 0.05 * torch.rand(3, height, width, generator=gen)
            label = int(torch.randint(0, len(TOY_CLASSES), (1,), generator=gen))
            x1, y1 = (int(v) for v in torch.randint(0, size // 2, (2,), generator=gen))
            x2, y2 = x1 + size // 4 + int(torch.randint(0, size // 4, (1,), generator=gen)), y1 + size // 3
            image[:, y1:y2, x1:x2] = COLOURS[label][:, None, None]
            target = {
                "boxes": torch.tensor([[x1, y1, x2, y2]], dtype=torch.float32),
                "labels": torch.tensor([label + 1]),
                "image_id": i,
                "difficult": torch.zeros(1, dtype=torch.bool),
                "iscrowd": torch.zeros(1, dtype=torch.bool),
                "orig_size": (height, width),
            }
            self.items.append((image, target))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Tensor, dict]:
        return self.items[index]


def collate(batch: list) -> tuple[list[Tensor], list[dict]]:
    images, targets = zip(*batch)
    return list(images), list(targets)


class ToyDataModule(L.LightningDataModule):
    def __init__(self, *, train_count: int = 8, val_count: int = 4, batch_size: int = 2, shuffle: bool = True) -> None:
        super().__init__()
        self.train_count, self.val_count, self.batch_size, self.shuffle = train_count, val_count, batch_size, shuffle
        self.classes: list[str] | None = None

    @property
    def num_classes(self) -> int:
        return len(TOY_CLASSES)

    def setup(self, stage: str) -> None:
        self.classes = list(TOY_CLASSES)
        self.train_set = ToyBoxes(count=self.train_count, seed=0)
        self.val_set = ToyBoxes(count=self.val_count, seed=1)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=self.shuffle, collate_fn=collate)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size, collate_fn=collate)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def val_dataloader_after_setup(self) -> DataLoader:
        """The validation batches outside a Trainer (to recompute a logged metric)."""
        self.setup("validate")
        return self.val_dataloader()


class ToyEvaluator:
    """Top-1 class accuracy and mean IoU of the best-scoring box per image."""

    def __init__(self, *, classes: Sequence[str], iou_threshold: float = 0.5) -> None:
        self.classes = list(classes)
        self.iou_threshold = iou_threshold
        self.reset()

    def reset(self) -> None:
        self.correct: list[float] = []
        self.ious: list[float] = []

    def update(self, preds: list[dict], targets: list[dict]) -> None:
        for pred, target in zip(preds, targets, strict=True):
            if len(pred["scores"]) == 0:
                self.correct.append(0.0)
                self.ious.append(0.0)
                continue
            top = int(pred["scores"].argmax())
            iou = float(box_iou(pred["boxes"][top : top + 1].cpu(), target["boxes"][:1].cpu())[0, 0])
            self.ious.append(iou)
            self.correct.append(float(int(pred["labels"][top]) == int(target["labels"][0])))

    def compute(self) -> dict[str, float]:
        n = max(1, len(self.correct))
        hits = [c for c, iou in zip(self.correct, self.ious) if iou >= self.iou_threshold]
        return {
            "cls_accuracy": sum(self.correct) / n,
            "mean_iou": sum(self.ious) / n,
            "cls_loc_accuracy": sum(hits) / n,
        }


class ToyMaskDetector(nn.Module):
    """An instance head for the mask path: ``TinyDetector``'s box, with the box filled as its mask."""

    def __init__(self, *, num_classes: int) -> None:
        super().__init__()
        from detection.tiny import TinyDetector

        self.num_classes = num_classes
        self.detector = TinyDetector(num_classes=num_classes)

    def forward(self, images, targets=None):
        if self.training:
            return self.detector(images, targets)
        preds = self.detector(images)
        for image, pred in zip(images, preds):
            masks = torch.zeros(len(pred["boxes"]), *image.shape[-2:])
            for k, (x1, y1, x2, y2) in enumerate(pred["boxes"].round().long().tolist()):
                masks[k, y1:y2, x1:x2] = 1.0
            pred["masks"] = masks
        return preds


def save_checkpoint(model: nn.Module, config: dict, path: Path, classes: Sequence[str] = SHAPE_CLASSES) -> Path:
    """``model``'s weights with its ``{"class_path", "init_args"}`` config and ``classes``, as the
    checkpoint a command or ``detection.Detector.load`` reads (``weights_only=True``)."""
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"model": config, "classes": list(classes)}}, path)
    return path
