"""A detector that kills its own process, for the kill-and-resume tests of multi-process inference."""

import os
import signal
from pathlib import Path

from torch import Tensor

from detection.tiny import TinyDetector


class SelfKillingDetector(TinyDetector):
    """``TinyDetector`` that sends itself ``SIGKILL`` (``kill -9``) when, in eval, it meets an all-white
    image while the file ``kill_file`` exists: the process dies mid-run, at an image the test chose."""

    def __init__(self, *, num_classes: int, kill_file: str, width: int = 8, image_size: int = 32) -> None:
        super().__init__(num_classes=num_classes, width=width, image_size=image_size)
        self.kill_file = kill_file

    def forward(self, images: list[Tensor], targets: list[dict] | None = None):  # noqa: ANN201 - the contract's return
        if not self.training and Path(self.kill_file).exists() and any(bool((image == 1).all()) for image in images):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().forward(images, targets)
