"""The journals of a batch-inference run: one JSON line per finished image, the run's source of truth.

Each process of a run appends to its own journal in the output folder: rank 0 to
``journal.jsonl``, rank ``r`` to ``journal.<r>.jsonl``. A line is written, flushed and fsynced
after the image's masks and drawings are on disk, so an image is finished exactly when its line
is complete; a last line cut short by a crash (``kill -9`` included) is ignored on reading and
terminated before the next run appends.

Reading keeps an index, not the entries: for every finished image its journal, the byte offset of
its line and whether it was an unreadable file. The summaries then read the lines one by one in
image-id order, so memory does not grow with the detections of a large folder.

A writer holds an exclusive ``flock`` on its journal for as long as it writes: a process left
over from a killed run (whose launcher died) finishes its line before a new run's process of the
same rank can open the file.
"""

import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

JOURNAL = "journal.jsonl"


def journal_path(out_dir: Path, rank: int) -> Path:
    """The journal process ``rank`` appends to."""
    return out_dir / (JOURNAL if rank == 0 else f"journal.{rank}.jsonl")


def journal_paths(out_dir: Path) -> list[Path]:
    """Every journal in ``out_dir``, by rank (those of an earlier run with more processes included)."""
    ranks = [0] if (out_dir / JOURNAL).is_file() else []
    for path in out_dir.glob("journal.*.jsonl"):
        if (rank := path.name.split(".")[1]).isdigit():
            ranks.append(int(rank))
    return [journal_path(out_dir, rank) for rank in sorted(ranks)]


def _parse(line: bytes) -> dict | None:
    try:
        entry = json.loads(line)
    except ValueError:  # a line cut short by an interruption
        return None
    return entry if isinstance(entry, dict) and "path" in entry else None


@dataclass(frozen=True)
class JournalLine:
    journal: int  # index into ``JournalIndex.paths``
    offset: int  # byte offset of the line
    error: bool  # an unreadable file, not a prediction


@dataclass
class JournalIndex:
    paths: list[Path]
    lines: dict[str, JournalLine]  # finished images by relative path; a later line wins

    @classmethod
    def read(cls, out_dir: Path) -> "JournalIndex":
        paths = journal_paths(out_dir)
        lines: dict[str, JournalLine] = {}
        for number, path in enumerate(paths):
            with open(path, "rb") as f:
                offset = 0
                for line in f:
                    if (entry := _parse(line)) is not None:
                        lines[entry["path"]] = JournalLine(number, offset, "error" in entry)
                    offset += len(line)
        return cls(paths, lines)

    @contextmanager
    def reader(self) -> Iterator["JournalReader"]:
        files = [open(path, "rb") for path in self.paths]
        try:
            yield JournalReader(files, self.lines)
        finally:
            for f in files:
                f.close()


@dataclass
class JournalReader:
    files: list[IO[bytes]]
    lines: dict[str, JournalLine]

    def entry(self, rel: str) -> dict:
        """The journal entry of the finished image ``rel``."""
        line = self.lines[rel]
        f = self.files[line.journal]
        f.seek(line.offset)
        entry = _parse(f.readline())
        if entry is None or entry["path"] != rel:
            raise ValueError(f"{f.name}: the line at byte {line.offset} changed while the summaries were written")
        return entry


class JournalWriter:
    """Appends entries to one journal under an exclusive lock (use as a context manager)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> "JournalWriter":
        self.file = open(self.path, "a+b")
        fcntl.flock(self.file, fcntl.LOCK_EX)  # waits for a leftover writer of an earlier run
        self.file.seek(0, os.SEEK_END)
        if self.file.tell() > 0:
            self.file.seek(-1, os.SEEK_END)
            if self.file.read(1) != b"\n":  # terminate a line cut short, so the next line starts clean
                self.file.write(b"\n")
        return self

    def write(self, entries: Iterable[dict]) -> None:
        """Append ``entries`` and make them durable (the images they name are then finished)."""
        self.file.write(b"".join(json.dumps(entry).encode() + b"\n" for entry in entries))
        self.file.flush()
        os.fsync(self.file.fileno())

    def __exit__(self, *exc: object) -> None:
        self.file.close()  # releases the lock
