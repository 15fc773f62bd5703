"""The checker's suggestion applied: BCCD's pretrained Faster R-CNN as shipped, with the input size
and anchors that ``scripts/check_dataset.py --config`` suggests for its training split, and with the
ones it fits to the boxes.

1. ``scripts/check_dataset.py --config configs/faster_rcnn/bccd_pretrained.yaml --split train``: its
   ``suggested input size`` / ``suggested anchors`` lines (what a user copies into the config) and
   its ``fitted to the boxes`` line (printed, not suggested, when the config's own already reach
   the objects: YOLOv5 AutoAnchor's rule, ``datasets/object_sizes.py``) are read from its output.
2. ``scripts/train.py fit`` on BCCD: the config as shipped, with the suggestion (not trained again
   when it is the config's own values: the same command), and with the fitted values, each as
   command-line overrides (``min_size``, ``max_size``, ``anchor_sizes``, ``aspect_ratios``). All
   train the config's fixed schedule (6 epochs, one loader worker, seed 0), so they differ in those
   values only. ``--trainer.max_time`` is a safety stop far beyond the expected time.
3. ``scripts/evaluate.py --checkpoint`` on ``best.ckpt`` (picked on val) on the test split (VOC area
   AP at IoU 0.5), as ``benchmarks/pretrained.py`` scores the same config.

Run it on a quiet machine, one thread per process:

    OMP_NUM_THREADS=1 python -m benchmarks run anchor_suggestion [--quick]

Figures: ``suggestion`` and ``fitted`` (the values, ``suggestion.is_the_config``, the checker's
command and exit status: 1 on BCCD, whose one degenerate box is an error that training drops), per
run ``{overrides, epochs, train_min, test_map_50, test_ap_50 (per class)}``,
``suggested_minus_shipped`` and ``fitted_minus_shipped`` (test mAP@0.5), and
``suggestion_keeps_map`` (not negative). One run each; training is deterministic here (the shipped
run repeats ``pretrained.json``'s 0.9073). The quick run trains each for two batches on a few BCCD
images (copied into a temporary VOC folder), or on tiny generated shapes when ``../shared/data`` is
absent.
"""

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from benchmarks.pretrained import BCCD, QUICK_SIZES, voc_subset
from benchmarks.runs import QUICK_TRAIN, REPO, epochs_done, evaluate_checkpoint, fit, map50_figures, tiny_shapes

CONFIG = REPO / "configs" / "faster_rcnn" / "bccd_pretrained.yaml"
SAFETY_MINUTES = 40.0  # max_time, a stop for a runaway run only: the config's 6 epochs end it
SUGGESTED_SIZE = re.compile(r"suggested input size: min_size (\d+), max_size (\d+)")
SUGGESTED_ANCHORS = re.compile(r"suggested anchors[^:]*: anchor_sizes: (\[[^\]]*\]), aspect_ratios: (\[[^\]]*\])")
FITTED = re.compile(r"fitted to the boxes, not suggested[^:]*: min_size (\d+), max_size (\d+), anchor_sizes: (\[[^\]]*\]), aspect_ratios: (\[[^\]]*\])")
KEYS = ("min_size", "max_size", "anchor_sizes", "aspect_ratios")
MODEL = "--model.model.init_args."


def checker_suggestion(config: Path) -> dict:
    """``scripts/check_dataset.py --config config --split train``'s output, parsed: ``{"suggestion":
    {min_size, max_size, anchor_sizes, aspect_ratios, is_the_config, command, checker_exit},
    "fitted": {the four values} or None}``. Exit status 1 (the split has errors, such as BCCD's
    degenerate box, which training drops) still prints the sizes."""
    args = ["--config", str(config), "--split", "train"]
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "check_dataset.py"), *args], cwd=REPO, capture_output=True, text=True)
    size, anchors, fitted = SUGGESTED_SIZE.search(result.stdout), SUGGESTED_ANCHORS.search(result.stdout), FITTED.search(result.stdout)
    if result.returncode not in (0, 1) or size is None or anchors is None:
        raise RuntimeError(f"check_dataset.py (exit {result.returncode}) printed no suggestion for {config}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    suggestion = dict(zip(KEYS, (int(size[1]), int(size[2]), yaml.safe_load(anchors[1]), yaml.safe_load(anchors[2]))))
    model = yaml.safe_load(config.read_text())["model"]["model"]["init_args"]
    suggestion["is_the_config"] = all(suggestion[key] == model[key] for key in KEYS)
    suggestion |= {"command": "python scripts/check_dataset.py " + " ".join(args), "checker_exit": result.returncode}
    values = (int(fitted[1]), int(fitted[2]), yaml.safe_load(fitted[3]), yaml.safe_load(fitted[4])) if fitted else None
    return {"suggestion": suggestion, "fitted": dict(zip(KEYS, values)) if values else None}


def overrides(values: dict) -> list[str]:
    """The four values as ``scripts/train.py`` command-line overrides of the model's arguments."""
    return [f"{MODEL}{key}={values[key]}" for key in KEYS]


def _quick_config(root: Path, out: Path) -> Path:
    """A copy of ``CONFIG`` reading ``root``: the checker reads the data a config names."""
    config = yaml.safe_load(CONFIG.read_text())
    config["data"]["init_args"]["root"] = str(root)
    out.write_text(yaml.safe_dump(config))
    return out


def run(quick: bool) -> dict:
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench_anchor_suggestion_") as tmp:
        work = Path(tmp)
        config, root, extra = CONFIG, BCCD, ["--data.init_args.num_workers=1"]
        if quick:
            root = voc_subset(BCCD, work / "BCCD", QUICK_SIZES) if BCCD.is_dir() else tiny_shapes(work / "shapes") / "VOC"
            config = _quick_config(root, work / "config.yaml")
            extra += QUICK_TRAIN
            figures["data"] = "BCCD subset" if BCCD.is_dir() else "generated shapes (no ../shared/data)"
        elif not BCCD.is_dir():
            raise FileNotFoundError(f"BCCD is missing: {BCCD} (VOC layout, from ../shared/data/voc_bccd)")
        checked = checker_suggestion(config)
        figures |= checked
        runs = {"shipped": []}
        if not checked["suggestion"]["is_the_config"]:
            runs["suggested"] = overrides(checked["suggestion"])
        if checked["fitted"]:
            runs["fitted"] = overrides(checked["fitted"])
        split = ["--voc", str(root), "--split", "test", "--protocol", "voc"]
        for name, extra_overrides in runs.items():
            run_dir, seconds = fit(config, work / name, [*extra, *extra_overrides], minutes=SAFETY_MINUTES)
            metrics = evaluate_checkpoint(run_dir / "checkpoints" / "best.ckpt", split, run_dir / "report")
            figures[name + "_run"] = {
                "overrides": " ".join(extra_overrides),
                "epochs": epochs_done(run_dir),
                "train_min": round(seconds / 60, 2),
                **map50_figures(metrics),
            }
    shipped = figures["shipped_run"]["test_map_50"]
    suggested = figures.get("suggested_run", figures["shipped_run"])["test_map_50"]  # the config's own values: the shipped run
    figures["suggested_minus_shipped"] = round(suggested - shipped, 4)
    figures["suggestion_keeps_map"] = suggested >= shipped
    if "fitted_run" in figures:
        figures["fitted_minus_shipped"] = round(figures["fitted_run"]["test_map_50"] - shipped, 4)
    return figures
