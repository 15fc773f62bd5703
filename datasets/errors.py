"""The bad-input policy's error type.

Readers raise :class:`DatasetError` for any input that would otherwise crash deep inside a
worker or give silently wrong numbers. The message always names the offending file.
"""

from dataclasses import dataclass
from pathlib import Path


class DatasetError(ValueError):
    """A dataset or image file is unusable; ``path`` names it and ``problem`` says why."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass(frozen=True)
class Problem:
    """One finding about one file. ``severity`` is ``"error"`` (data would be wrong or lost) or ``"warning"``."""

    path: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.severity}: {self.path}: {self.message}"
