"""``predict.py`` and ``evaluate.py --checkpoint`` on 2 CPU processes (gloo, Lightning Fabric):
the outputs and metrics of one process, on one machine or on two "nodes" under torchrun, and a
run that survives ``kill -9`` of either process.

The commands run as subprocesses, as a user runs them: the first process starts the second by
re-running the command line (Lightning's launcher). Batches are dealt round-robin, so with
``--batch-size 2`` batch ``b`` (images ``2b``, ``2b + 1`` in name order) runs on rank ``b mod 2``.
"""

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from system_toys import save_checkpoint

from datasets.shapes import SHAPE_CLASSES
from detection.journal import journal_paths

REPO = Path(__file__).resolve().parents[1]
IMAGES = 24
BATCH = 2
SUMMARIES = ("predictions.json", "images.json", "predictions.csv", "errors.txt")
RUN_TIMEOUT_S = 300  # a hung process group fails the test instead of the suite


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained ``SelfKillingDetector`` (4 shapes classes); it kills itself only while ``armed`` exists."""
    from crash_toys import SelfKillingDetector

    run = tmp_path_factory.mktemp("killer")
    kill_file = run / "armed"
    torch.manual_seed(0)
    model = SelfKillingDetector(num_classes=len(SHAPE_CLASSES), kill_file=str(kill_file))
    config = {"class_path": "crash_toys.SelfKillingDetector", "init_args": {"num_classes": len(SHAPE_CLASSES), "kill_file": str(kill_file)}}
    path = run / "model.ckpt"
    save_checkpoint(model, config, path)
    return path


def _folder(root: Path, white: int) -> Path:
    """``IMAGES`` random images of two sizes, image ``white`` all white, and one corrupt file."""
    rng = np.random.default_rng(0)
    root.mkdir()
    for i in range(IMAGES):
        size = (32, 32) if i % 3 else (24, 40)
        pixels = np.full((*size, 3), 255, np.uint8) if i == white else rng.integers(0, 255, (*size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"img_{i:03d}.png")
    (root / "img_005_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    return root


def _environment() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO)])}
    for name in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def _command(script: str, *args: str, devices: int) -> list[str]:
    return [str(REPO / "scripts" / f"{script}.py"), *args, "--devices", str(devices), "--device", "cpu", "--num-workers", "0",
            "--no-progress", "--allow-class-prefix", "crash_toys."]  # fmt: skip


def _run(script: str, *args: str, devices: int) -> subprocess.CompletedProcess:
    command = [sys.executable, *_command(script, *args, devices=devices)]
    return subprocess.run(command, env=_environment(), capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=REPO)


def _predict_args(checkpoint: Path, folder: Path, out: Path) -> list[str]:
    return ["--checkpoint", str(checkpoint), "--input", str(folder), "--out", str(out), "--batch-size", str(BATCH), "--score-threshold", "0"]


def _predict(checkpoint: Path, folder: Path, out: Path, devices: int) -> subprocess.CompletedProcess:
    return _run("predict", *_predict_args(checkpoint, folder, out), devices=devices)


def _files(out: Path) -> dict[str, bytes]:
    """The outputs a user reads: the summaries and every drawing, by relative path."""
    files = {name: (out / name).read_bytes() for name in SUMMARIES}
    files |= {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted((out / "drawn").rglob("*.png"))}
    return files


def _journalled(out: Path) -> list[str]:
    """Every complete journal line's path, over all the processes' journals."""
    paths = []
    for journal in journal_paths(out):
        for line in journal.read_text().splitlines():
            try:
                paths.append(json.loads(line)["path"])
            except json.JSONDecodeError:
                continue  # a line cut short by the kill
    return paths


@pytest.fixture(scope="module")
def one_process(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], dict[str, bytes]]:
    """``one_process(white)``: the outputs of one process over the folder whose image ``white`` is
    white (nothing armed: no kill)."""
    outputs: dict[int, dict[str, bytes]] = {}

    def run(white: int) -> dict[str, bytes]:
        if white not in outputs:
            root = tmp_path_factory.mktemp(f"one_{white}")
            done = _predict(checkpoint, _folder(root / "images", white=white), root / "out", devices=1)
            assert done.returncode == 0, done.stderr
            outputs[white] = _files(root / "out")
        return outputs[white]

    return run


def test_two_processes_write_what_one_process_writes(checkpoint: Path, one_process, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "images", white=6)
    done = _predict(checkpoint, folder, tmp_path / "out", devices=2)
    assert done.returncode == 0, done.stderr
    assert f"{IMAGES + 1} images: {IMAGES} predicted now" in done.stdout  # one report, from the main process
    assert done.stdout.count("images:") == 1
    journals = journal_paths(tmp_path / "out")
    assert [p.name for p in journals] == ["journal.jsonl", "journal.1.jsonl"]
    assert all(p.stat().st_size > 0 for p in journals)  # both processes predicted a share
    assert _files(tmp_path / "out") == one_process(6)


def test_two_nodes_under_torchrun_write_what_one_process_writes(checkpoint: Path, one_process, tmp_path: Path) -> None:
    """Two "machines" on this one, each a ``torchrun --nnodes 2 --node-rank R --nproc-per-node 1``
    of ``predict.py --devices 1 --num-nodes 2``, as a user starts them on a cluster without SLURM."""
    folder = _folder(tmp_path / "images", white=6)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(rank), "--nproc-per-node", "1",
             "--master-addr", "127.0.0.1", "--master-port", str(port),
             *_command("predict", *_predict_args(checkpoint, folder, tmp_path / "out"), devices=1), "--num-nodes", "2"],
            env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
        )  # fmt: skip
        for rank in (0, 1)
    ]
    logs = [node.communicate(timeout=RUN_TIMEOUT_S)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], logs
    assert f"{IMAGES + 1} images: {IMAGES} predicted now" in logs[0] and "images:" not in logs[1]
    assert all(p.stat().st_size > 0 for p in journal_paths(tmp_path / "out")) and len(journal_paths(tmp_path / "out")) == 2
    assert _files(tmp_path / "out") == one_process(6)


@pytest.mark.parametrize(("killed_rank", "white"), [(1, 6), (0, 8)])
def test_kill_9_of_one_process_then_the_same_command_completes(
    checkpoint: Path, one_process, tmp_path: Path, killed_rank: int, white: int
) -> None:
    """Image ``white`` is in batch ``white // 2``, which rank ``killed_rank`` runs: that process kills
    itself there (``SIGKILL``, after its earlier batches were journalled). The rerun of the same
    command completes: every image journalled exactly once, the outputs of one process."""
    assert (white // BATCH) % 2 == killed_rank
    folder = _folder(tmp_path / "images", white=white)
    out = tmp_path / "out"
    armed = checkpoint.parent / "armed"
    armed.touch()
    try:
        killed = _predict(checkpoint, folder, out, devices=2)
    finally:
        armed.unlink()
    assert killed.returncode != 0
    before = _journalled(out)
    assert 0 < len(before) < IMAGES + 1 and f"img_{white:03d}.png" not in before
    done = _predict(checkpoint, folder, out, devices=2)
    assert done.returncode == 0, done.stderr
    after = _journalled(out)
    assert len(after) == len(set(after)) == IMAGES + 1  # no image lost, none written twice
    assert _files(out) == one_process(white)


def test_evaluate_on_two_processes_gives_the_metrics_of_one(shapes_root, tmp_path: Path) -> None:
    from detection.tiny import TinyDetector

    torch.manual_seed(0)
    model = TinyDetector(num_classes=len(SHAPE_CLASSES))
    config = {"class_path": "detection.tiny.TinyDetector", "init_args": {"num_classes": len(SHAPE_CLASSES)}}
    checkpoint = tmp_path / "tiny.ckpt"
    save_checkpoint(model, config, checkpoint)
    metrics = []
    for devices in (1, 2):
        out = tmp_path / f"report_{devices}"
        done = _run("evaluate", "--checkpoint", str(checkpoint), "--shapes", str(shapes_root.root), "--split", "val",
                    "--protocol", "voc", "--batch-size", "1", "--out", str(out), devices=devices)  # fmt: skip
        assert done.returncode == 0, done.stderr
        metrics.append(json.loads((out / "metrics.json").read_text()))
        assert (out / "predictions" / "predictions.json").is_file()
    assert metrics[0] == metrics[1] and "map_50" in metrics[0]
