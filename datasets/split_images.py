"""A dataset split seen as images to predict, keyed by the reader's image ids.

``SplitImages(reader)`` turns any reader (``VOCDetection``, ``VOCSegmentation``,
``COCODetection``) into the records batch inference takes (``datasets.folder.ImageRecord``):
the decoded image, its file, and the reader's ``image_id`` (``DetectionDataset.image_ids``), so
that ``predictions.json`` written from a split is scored by ``scripts/evaluate.py`` against the
same split. An image the reader refuses
is returned with its error (batch inference lists it in ``errors.txt``).
"""

from pathlib import Path

from torch.utils.data import Dataset

from datasets.base import DetectionDataset
from datasets.errors import DatasetError
from datasets.folder import ImageRecord


class SplitImages(Dataset):
    """``SplitImages(reader)[i] -> ImageRecord`` with the reader's ``image_id``; lists ``paths`` and ``image_ids``."""

    def __init__(self, reader: DetectionDataset) -> None:
        if reader.transforms is not None:
            raise ValueError("predict a split without augmentation: the reader must have no transforms")
        self.reader = reader
        self.paths: list[Path] = [reader.image_path(i) for i in range(len(reader))]
        self.image_ids = reader.image_ids

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> ImageRecord:
        path, image_id = str(self.paths[index]), self.image_ids[index]
        try:
            image, target = self.reader[index]
        except DatasetError as error:
            return ImageRecord(image=None, path=path, orig_size=None, error=str(error), image_id=image_id)
        if int(target["image_id"]) != image_id:
            raise RuntimeError(f"{path}: the reader gave image_id {target['image_id']}, expected {image_id}")
        return ImageRecord(image=image, path=path, orig_size=tuple(image.shape[-2:]), image_id=image_id)
