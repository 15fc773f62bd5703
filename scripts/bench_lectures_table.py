"""The lectures' table in one run: R-CNN -> Fast R-CNN -> Faster R-CNN on one dataset and one backbone.

Each head is trained from its shapes config (SmallCNN width 16 for all three) by a
``scripts/train.py fit`` subprocess, then tested here on the test split:

- ``mAP@0.5``: VOC AP (all points) with ``detection.evaluation.VOCEvaluator``;
- ``train min``: wall minutes of the whole ``fit`` (R-CNN: fine-tuning + features + SVMs +
  regressors), with the proposal cache filled beforehand (``scripts/make_proposals.py``);
- ``test s/img``: per image, batch 1, ``--threads`` torch threads; *without proposals* reads the
  cached selective-search boxes (Faster R-CNN's RPN is part of its network, so both columns
  agree), *with proposals* adds selective search run on the image.

It also writes R-CNN's two ablations on the same checkpoint (the paper, VOC07: SVMs +3.3 mAP
over the fine-tuned softmax, box regression +4.3): SVM or softmax scores, with or without box
regression. The output is ``<out>/lectures_table.md`` (printed too).

    python scripts/bench_lectures_table.py [--root data/shapes] [--cache-dir data/proposals] [--out outputs/lectures_table]
    python scripts/bench_lectures_table.py --max-time 00:00:15:00          # a time budget per head (configs end by epochs)
    python scripts/bench_lectures_table.py --train-args "--trainer.max_epochs 1 --trainer.limit_train_batches 2" --test-images 5   # smoke
"""

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from datasets.datamodule import DetectionDataModule  # noqa: E402
from detection.checkpoint import load_detector  # noqa: E402
from detection.evaluation import VOCEvaluator  # noqa: E402
from detection.proposals.selective_search import image_to_uint8  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HEADS = {  # head -> (config, table name, reads selective-search proposals)
    "rcnn": ("configs/rcnn/shapes.yaml", "R-CNN", True),
    "fast_rcnn": ("configs/fast_rcnn/shapes.yaml", "Fast R-CNN", True),
    "faster_rcnn": ("configs/faster_rcnn/shapes.yaml", "Faster R-CNN", False),
}
ABLATIONS = [("svm", True), ("softmax", True), ("svm", False), ("softmax", False)]
THREADS = 2


def run(command: list[str]) -> float:
    """Run a subprocess from the repo root; its wall seconds (raises on failure)."""
    print("$", " ".join(shlex.quote(c) for c in command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True)
    return time.perf_counter() - start


def fill_proposal_cache(root: str, cache_dir: str) -> None:
    run([sys.executable, "scripts/make_proposals.py", "--config", HEADS["rcnn"][0], "--root", root,
         "--cache-dir", cache_dir, "--splits", "train", "val", "test", "--no-progress"])


def train(head: str, *, root: str, cache_dir: str, out: Path, max_time: str | None, train_args: list[str]) -> tuple[Path, float]:
    """``scripts/train.py fit`` for one head into ``out/<head>``; ``(best.ckpt, wall seconds)``."""
    config, _, uses_proposals = HEADS[head]
    run_dir = out / head
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run: checkpoint names stay best.ckpt / last.ckpt
    command = [
        sys.executable, "scripts/train.py", "fit", "--config", config, "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(run_dir),
        "--data.init_args.root", root,
    ]
    if uses_proposals:
        command += ["--model.model.init_args.cache_dir", cache_dir]
    if max_time is not None:
        command += ["--trainer.max_time", max_time]
    seconds = run(command + train_args)
    best = run_dir / "checkpoints" / "best.ckpt"
    if not best.is_file():
        raise SystemExit(f"{head}: no {best} after training")
    return best, seconds


def evaluate(model: nn.Module, classes: list[str], images: list[Tensor], targets: list[dict], *, time_proposals: bool) -> dict[str, float]:
    """mAP@0.5 over ``images``, test seconds per image (batch 1) and selective-search seconds per image."""
    evaluator = VOCEvaluator(classes=classes, use_07_metric=False)
    network, proposals = 0.0, 0.0
    with torch.inference_mode():
        model([images[0]])  # warm-up
        for image, target in zip(images, targets):
            start = time.perf_counter()
            preds = model([image])
            network += time.perf_counter() - start
            evaluator.update(preds, [target])
            if time_proposals:
                start = time.perf_counter()
                model.proposals.compute(image_to_uint8(image))
                proposals += time.perf_counter() - start
    count = len(images)
    return {"map_50": evaluator.compute()["map_50"], "network_s": network / count, "proposals_s": proposals / count}


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="data/shapes", help="the shapes dataset (generated when missing)")
    parser.add_argument("--cache-dir", default="data/proposals")
    parser.add_argument("--out", type=Path, default=Path("outputs/lectures_table"))
    parser.add_argument("--heads", nargs="+", default=list(HEADS), choices=list(HEADS))
    parser.add_argument("--max-time", default=None, help="--trainer.max_time for every head, e.g. 00:00:15:00")
    parser.add_argument("--train-args", default="", help="more train.py overrides for every head (one string)")
    parser.add_argument("--test-images", type=int, default=None, help="only the first N test images")
    parser.add_argument("--threads", type=int, default=THREADS)
    parser.add_argument("--no-prefill", action="store_true", help="do not fill the proposal cache first")
    args = parser.parse_args(argv)
    out = args.out if args.out.is_absolute() else REPO / args.out
    out.mkdir(parents=True, exist_ok=True)

    if not args.no_prefill:
        fill_proposal_cache(args.root, args.cache_dir)
    trained = {head: train(head, root=args.root, cache_dir=args.cache_dir, out=out, max_time=args.max_time,
                           train_args=shlex.split(args.train_args)) for head in args.heads}

    torch.set_num_threads(args.threads)
    dataset = DetectionDataModule(format="shapes", root=args.root, augment=False).dataset("test")
    count = len(dataset) if args.test_images is None else min(args.test_images, len(dataset))
    images, targets = zip(*(dataset[i] for i in range(count)))
    rows, ablation_rows = [], []
    for head, (checkpoint, train_seconds) in trained.items():
        _, name, uses_proposals = HEADS[head]
        loaded = load_detector(checkpoint)
        result = evaluate(loaded.model, loaded.classes, list(images), list(targets), time_proposals=uses_proposals)
        rows.append(f"| {name} | {result['map_50']:.3f} | {train_seconds / 60:.1f} | {result['network_s']:.4f} | "
                    f"{result['network_s'] + result['proposals_s']:.4f} |")
        if head == "rcnn":
            for scorer, box_regression in ABLATIONS:
                loaded.model.scorer, loaded.model.box_regression = scorer, box_regression
                ablation = evaluate(loaded.model, loaded.classes, list(images), list(targets), time_proposals=False)
                ablation_rows.append(f"| {scorer} | {'yes' if box_regression else 'no'} | {ablation['map_50']:.3f} |")

    lines = [
        f"Generated shapes (`{args.root}`), {count} test images, SmallCNN width 16 for every head, "
        f"test batch 1 with {args.threads} torch threads.",
        "",
        "| head | mAP@0.5 | train min | test s/img without proposals | test s/img with proposals |",
        "|---|---|---|---|---|",
        *rows,
    ]
    if ablation_rows:
        lines += ["", "R-CNN ablations (same checkpoint):", "", "| scores | box regression | mAP@0.5 |", "|---|---|---|", *ablation_rows]
    table = "\n".join(lines) + "\n"
    (out / "lectures_table.md").write_text(table)
    print(table)
    return table


if __name__ == "__main__":
    main()
