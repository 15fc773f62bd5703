"""``predict.py`` over folders of 10,000 and 100,000 small images: memory, images/s as the journal grows, resuming after 90 %.

For each size N, a folder of N generated 32-px shapes scenes (PNG, 1,000 a subfolder; made once
under ``data/predict_scale_N/``, which git ignores) is predicted by an untrained ``TinyDetector``
checkpoint, as a user runs it: one process, ``OMP_NUM_THREADS=1``, one decoding worker,
``--batch-size 32``, ``--no-draw``. The model costs little here on purpose: what grows with the
folder is the listing, the journal and the summaries, and that is what this measures. The
command is killed (``SIGKILL``) once 90 % of the images are journalled, then the same command is
run again and completes. ``benchmarks/predict_command.py`` watches both runs from outside.

    OMP_NUM_THREADS=1 python -m benchmarks run predict_scale [--quick]

Figures per size (``10000``, ``100000``):

- ``images_per_s.first_10pct`` / ``.from_80_to_90pct``: images/s between the polls that saw 1 and
  N/10 journal lines, and 80 % and 90 % (the periodic summary rebuilds included);
- ``peak_rss_mb``: peak resident memory of the first run; ``resume_peak_rss_mb`` of the second;
- ``resume_s``: the second run, start to exit (the last 10 % predicted, the summaries written);
  ``resume_first_image_s``: from its start until its first new journal line (listing the folder,
  reading the journal, loading the model; Python's own start included);
- ``complete``: the second run exited 0, the journal holds every image once and ``images.json``
  lists N images.

Ratios of the large size to the small one: ``peak_rss``, ``resume_first_image_s``; and per size
``late_over_early_rate`` (1.0: images/s do not fall as the journal grows).
"""

import json
import tempfile
from pathlib import Path

from benchmarks.predict_command import checkpoint, shapes_folder, watch_predict
from benchmarks.runs import REPO
from detection.journal import journal_paths

SIZES, QUICK_SIZES = (10_000, 100_000), (100, 300)
IMAGE_SIZE = 32
MODEL = {"class_path": "detection.tiny.TinyDetector", "init_args": {"num_classes": 4, "width": 8, "image_size": IMAGE_SIZE}}
ARGS = ["--batch-size", "32", "--num-workers", "1", "--no-draw", "--device", "cpu", "--no-progress"]
KILL_AT = 0.9


def folder(count: int, quick: bool, work: Path) -> Path:
    """``data/predict_scale_<count>/`` (generated when its stamp is missing); quick runs use ``work``."""
    root = work / f"images_{count}" if quick else REPO / "data" / f"predict_scale_{count}"
    stamp = root / "complete"
    if not stamp.is_file():
        shapes_folder(root / "images", count, image_size=IMAGE_SIZE)
        stamp.touch()
    return root / "images"


def _journalled_once(out: Path) -> tuple[int, int]:
    """(lines, distinct paths) over the run's journals."""
    paths = [json.loads(line)["path"] for journal in journal_paths(out) for line in journal.read_text().splitlines() if line.endswith("}")]
    return len(paths), len(set(paths))


def one_size(count: int, quick: bool, work: Path) -> dict:
    images = folder(count, quick, work)
    model = checkpoint(MODEL, work / f"tiny_{count}.ckpt")
    out = work / f"out_{count}"
    args = ["--checkpoint", str(model), "--input", str(images), *ARGS]
    first = watch_predict(args, out, kill_at=int(KILL_AT * count))
    if first.exit_code >= 0:
        raise RuntimeError(f"the first run was not killed (exit {first.exit_code}):\n{first.stdout[-2000:]}")
    before = first.lines[-1][1]
    second = watch_predict(args, out)
    lines, distinct = _journalled_once(out)
    listed = len(json.loads((out / "images.json").read_text())["images"])
    early, late = first.rate(1, count // 10), first.rate(int(0.8 * count), int(0.9 * count))
    resumed_at = second.seconds_at(before + 1)
    print(f"{count} images: {early} -> {late} images/s, peak {first.peak_rss_mb:.0f} MB; "
          f"resume {second.seconds:.1f} s (first new image after {resumed_at} s)", flush=True)  # fmt: skip
    return {
        "images": count,
        "killed_at_lines": before,
        "images_per_s": {"first_10pct": early, "from_80_to_90pct": late},
        "late_over_early_rate": _ratio(late, early),
        "peak_rss_mb": first.peak_rss_mb,
        "first_run_s": first.seconds,
        "resume_s": second.seconds,
        "resume_first_image_s": resumed_at,
        "resume_peak_rss_mb": second.peak_rss_mb,
        "complete": second.exit_code == 0 and lines == distinct == count and listed == count,
        "stdout": second.stdout.strip().splitlines()[-1:],
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def run(quick: bool) -> dict:
    small, large = QUICK_SIZES if quick else SIZES
    with tempfile.TemporaryDirectory() as tmp:
        figures = {str(count): one_size(count, quick, Path(tmp)) for count in (small, large)}
    figures["large_over_small"] = {
        "peak_rss": figures[str(large)]["peak_rss_mb"] / figures[str(small)]["peak_rss_mb"],
        "resume_first_image_s": _ratio(figures[str(large)]["resume_first_image_s"], figures[str(small)]["resume_first_image_s"]),
    }
    figures["settings"] = {"model": MODEL, "args": ARGS, "image_size": IMAGE_SIZE, "threads": 1, "kill_at": KILL_AT}
    return figures
