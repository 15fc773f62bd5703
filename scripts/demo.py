"""The README's main job on the embedded default data, end to end.

1. generate the shapes dataset (skipped when it is already there);
2. check it with the dataset checker and print the summary;
3. train the configured head through ``scripts/train.py fit``;
4. score the best checkpoint on the test split and write the report (``scripts/evaluate.py --checkpoint``);
5. batch-predict a folder of images (``scripts/predict.py``);
6. print where the report and the predictions are.

    python scripts/demo.py [--config configs/faster_rcnn/shapes.yaml] [--out outputs/demo]
"""

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from datasets.check import check_voc
from datasets.shapes import SHAPE_CLASSES
from datasets.shapes_writer import write_shapes

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "configs" / "faster_rcnn" / "shapes.yaml"
PREDICT_IMAGES = 16


def _run(args: list[str]) -> None:
    print("$", " ".join(args), flush=True)
    subprocess.run([sys.executable, *args], check=True, cwd=REPO)


@contextmanager
def step(seconds: dict[str, float], name: str) -> Iterator[None]:
    """Times the block into ``seconds[name]``."""
    start = time.perf_counter()
    yield
    seconds[name] = round(time.perf_counter() - start, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="any head's shapes config")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "demo")
    args = parser.parse_args()
    # the steps run with the repository as working directory: paths given here are made absolute
    args.config, args.out = args.config.resolve(), args.out.resolve()
    started = time.perf_counter()
    config = yaml.safe_load(args.config.read_text())
    data_args = config["data"]["init_args"]
    root = REPO / data_args["root"]

    seconds: dict[str, float] = {}

    print(f"== 1. shapes dataset at {root}")
    with step(seconds, "data"):
        if not (root / "VOC").is_dir():
            write_shapes(root, single_object=bool(data_args.get("shapes_single_object", False)))
    print("== 2. dataset check (train split)")
    with step(seconds, "check"):
        report = check_voc(root / "VOC", "train", list(SHAPE_CLASSES))
    print(report.summary())
    if report.errors:
        sys.exit("the generated dataset has errors; see above")

    print(f"== 3. training {args.config}")
    run_dir = args.out / "train"
    shutil.rmtree(run_dir, ignore_errors=True)
    with step(seconds, "train"):
        _run(["scripts/train.py", "fit", "--config", str(args.config), "--trainer.logger", "false",
              "--trainer.default_root_dir", str(run_dir), "--checkpoint.dirpath", str(run_dir / "checkpoints"),
              "--last_checkpoint.dirpath", str(run_dir / "checkpoints")])
    checkpoint = run_dir / "checkpoints" / "best.ckpt"

    print("== 4. evaluation of the checkpoint on the test split (the protocol it was trained with)")
    report_dir = args.out / "report"
    with step(seconds, "evaluate"):
        _run(["scripts/evaluate.py", "--checkpoint", str(checkpoint), "--shapes", str(root), "--split", "test",
              "--out", str(report_dir), "--no-progress"])

    print("== 5. batch prediction over a folder")
    folder = args.out / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for name in (root / "VOC" / "ImageSets" / "Main" / "test.txt").read_text().split()[:PREDICT_IMAGES]:
        shutil.copy(root / "VOC" / "JPEGImages" / f"{name}.jpg", folder / f"{name}.jpg")
    with step(seconds, "predict"):
        _run(["scripts/predict.py", "--checkpoint", str(checkpoint), "--input", str(folder),
              "--out", str(args.out / "predictions"), "--score-threshold", "0.5", "--no-progress"])

    metrics = json.loads((report_dir / "metrics.json").read_text())
    headline = {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float) and "/" not in k}
    total = round(time.perf_counter() - started, 1)
    (args.out / "summary.json").write_text(json.dumps({"total_s": total, "steps_s": seconds, "test_metrics": headline}, indent=2))
    print(f"== done in {total:.0f} s ({', '.join(f'{name} {s:.0f} s' for name, s in seconds.items())})")
    print(f"test metrics:  {headline}")
    print(f"report:        {report_dir / 'report.md'}")
    print(f"predictions:   {args.out / 'predictions'} (predictions.json, predictions.csv, masks/ for semantic heads, drawn/)")
    print(f"checkpoint:    {checkpoint}")

if __name__ == "__main__":
    main()
