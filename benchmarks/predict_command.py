"""Not a benchmark: ``scripts/predict.py`` run as a user runs it, watched from outside, for
``predict_scale`` and ``predict_processes``.

``watch_predict`` starts the command, counts the lines of its journals (``detection/journal.py``)
every ``POLL_S`` seconds while it runs, and takes its peak resident memory from the kernel
(``wait4``'s ``ru_maxrss``, the process and the children it waited for); it can ``kill -9`` the
command once a given number of images are journalled. Nothing inside the command is
instrumented: images/s over a stretch of the run are lines over seconds between two polls.
"""

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.runs import REPO
from datasets.shapes import SHAPE_CLASSES, render_scene
from detection.checkpoint import build_model
from detection.journal import journal_paths

POLL_S = 0.2


@dataclass
class Watched:
    seconds: float  # from start to exit
    exit_code: int  # negative: killed by that signal
    peak_rss_mb: float
    stdout: str
    lines: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, journal lines), each poll

    def seconds_at(self, lines: int) -> float | None:
        """When the journals first held at least ``lines`` lines (the first poll that saw it; ``None``: never)."""
        return next((t for t, n in self.lines if n >= lines), None)

    def rate(self, lines_from: int, lines_to: int) -> float | None:
        """Images/s between the polls that first saw ``lines_from`` and ``lines_to`` journal lines
        (``None`` when one poll saw both: a stretch too short to time)."""
        (t0, n0), (t1, n1) = (next((t, n) for t, n in self.lines if n >= lines) for lines in (lines_from, lines_to))
        return (n1 - n0) / (t1 - t0) if t1 > t0 else None


class _JournalLines:
    """Counts the newlines of every journal in ``out``, reading only what was appended since the last count."""

    def __init__(self, out: Path) -> None:
        self.out, self.read, self.count = out, {}, 0

    def __call__(self) -> int:
        for path in journal_paths(self.out) if self.out.is_dir() else []:
            with open(path, "rb") as f:
                f.seek(self.read.get(path, 0))
                chunk = f.read()
            self.read[path] = self.read.get(path, 0) + len(chunk)
            self.count += chunk.count(b"\n")
        return self.count


def watch_predict(args: list[str], out: Path, *, threads: int = 1, kill_at: int | None = None) -> Watched:
    """``scripts/predict.py args --out out`` with ``OMP_NUM_THREADS=threads``; ``kill_at``: ``SIGKILL``
    the command once its journals hold that many lines (counting those of earlier runs)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    lines = _JournalLines(out)
    with tempfile.TemporaryFile("w+") as stdout:
        start = time.perf_counter()
        process = subprocess.Popen([sys.executable, str(REPO / "scripts" / "predict.py"), *args, "--out", str(out)],
                                   cwd=REPO, env=env, stdout=stdout, stderr=subprocess.STDOUT, text=True)  # fmt: skip
        polls = []
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            polls.append((time.perf_counter() - start, lines()))
            if pid:
                break
            if kill_at is not None and polls[-1][1] >= kill_at:
                os.kill(process.pid, signal.SIGKILL)
            time.sleep(POLL_S)
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4 above
        stdout.seek(0)
        text = stdout.read()
    return Watched(time.perf_counter() - start, process.returncode, usage.ru_maxrss / 1024, text, polls)


def checkpoint(config: dict, path: Path) -> Path:
    """A checkpoint of ``config``'s model with its initial weights (seed 0) and the shapes classes:
    inference speed does not depend on training."""
    torch.manual_seed(0)
    model = build_model(config)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"model": config, "classes": list(SHAPE_CLASSES)}}, path)
    return path


def shapes_folder(root: Path, count: int, *, image_size: int, seed: int = 0) -> Path:
    """``count`` generated shapes scenes as PNGs in ``root`` (created), 1000 a subfolder."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        path = root / f"{i // 1000:04d}" / f"{i:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(render_scene(rng, image_size=image_size).image).save(path)
    return root
