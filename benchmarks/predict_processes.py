"""``predict.py`` on 1 process vs 2 (``--devices 2``), one thread each, on the same folder: images/s and identical outputs.

The Faster R-CNN of ``configs/faster_rcnn/shapes.yaml`` (untrained: speed does not depend on
the weights) predicts a folder of generated 128-px shapes scenes (made once under
``data/predict_processes_N/``), ``OMP_NUM_THREADS=1``, no decoding workers, batch 8, drawings on,
score threshold 0.05, the two runs one after the other into fresh folders.
``benchmarks/predict_command.py`` watches them from outside.

    python -m benchmarks run predict_processes [--quick]

Figures per run (``1``, ``2`` processes): ``seconds`` (start to exit, Python's start and the second
process's included); ``images_per_s`` as ``predict.py`` prints it (images over the seconds from
its start to its end, the launch of the second process included); ``steady_images_per_s``
between the polls that saw 10 % and 90 % of the images journalled. ``speedup`` of each, 2 over 1,
and ``identical_outputs``: the summary files and every drawing of the two runs are the same bytes.
"""

import re
import tempfile
from pathlib import Path

import yaml

from benchmarks.predict_command import checkpoint, shapes_folder, watch_predict
from benchmarks.runs import REPO

IMAGES, QUICK_IMAGES = 6_000, 40
IMAGE_SIZE = 128
CONFIG = REPO / "configs" / "faster_rcnn" / "shapes.yaml"
ARGS = ["--batch-size", "8", "--num-workers", "0", "--device", "cpu", "--no-progress"]
SUMMARIES = ("predictions.json", "images.json", "predictions.csv", "errors.txt")


def _outputs(out: Path) -> dict[str, bytes]:
    files = {name: (out / name).read_bytes() for name in SUMMARIES}
    return files | {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted((out / "drawn").rglob("*.png"))}


def run(quick: bool) -> dict:
    count = QUICK_IMAGES if quick else IMAGES
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = work / "images" if quick else REPO / "data" / f"predict_processes_{count}"
        if not (root / "complete").is_file():
            shapes_folder(root / "images", count, image_size=IMAGE_SIZE)
            (root / "complete").touch()
        model = checkpoint(yaml.safe_load(CONFIG.read_text())["model"]["model"], work / "faster_rcnn.ckpt")
        figures, outputs = {}, {}
        for devices in (1, 2):
            out = work / f"out_{devices}"
            args = ["--checkpoint", str(model), "--input", str(root / "images"), *ARGS, "--devices", str(devices)]
            watched = watch_predict(args, out, threads=1)
            if watched.exit_code != 0:
                raise RuntimeError(f"--devices {devices} failed (exit {watched.exit_code}):\n{watched.stdout[-3000:]}")
            printed = re.search(r"predicted now \(([\d.]+) images/s\)", watched.stdout)
            figures[str(devices)] = {
                "seconds": watched.seconds,
                "images_per_s": float(printed.group(1)),
                "steady_images_per_s": watched.rate(count // 10, 9 * count // 10),
                "peak_rss_mb": watched.peak_rss_mb,
            }
            outputs[devices] = _outputs(out)
            print(f"--devices {devices}: {figures[str(devices)]}", flush=True)
    one, two = figures["1"], figures["2"]
    figures["speedup"] = {
        "images_per_s": two["images_per_s"] / one["images_per_s"],
        "steady_images_per_s": two["steady_images_per_s"] / one["steady_images_per_s"] if one["steady_images_per_s"] and two["steady_images_per_s"] else None,
        "seconds": one["seconds"] / two["seconds"],
    }
    figures["identical_outputs"] = outputs[1] == outputs[2]
    figures["settings"] = {"config": str(CONFIG.relative_to(REPO)), "images": count, "image_size": IMAGE_SIZE, "args": ARGS, "threads": 1}
    return figures
