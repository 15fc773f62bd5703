"""The bad-input policy's error type.

Readers raise :class:`DatasetError` for any input that would otherwise crash deep inside a
worker or give silently wrong numbers. The message always names the offending file.
"""

from pathlib import Path


class DatasetError(ValueError):
    """A dataset or image file is unusable; ``path`` names it and ``problem`` says why."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
