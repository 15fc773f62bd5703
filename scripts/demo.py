"""The README's main job on the embedded default data, end to end.

1. generate the shapes dataset (skipped when it is already there);
2. check it with the dataset checker and print the summary;
3. train the configured head through ``scripts/train.py fit``;
4. score the best checkpoint on the test split and write the report (``scripts/evaluate.py``);
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
from pathlib import Path

import torch
import yaml

from datasets.check import check_voc
from datasets.shapes import SHAPE_CLASSES
from datasets.shapes_writer import write_shapes
from datasets.voc import VOCDetection
from detection.checkpoint import load_detector
from detection.evaluation.records import make_records
from detection.evaluation.results_io import coco_results, write_coco_results

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "configs" / "faster_rcnn" / "shapes.yaml"
PREDICT_IMAGES = 16
PROTOCOLS = {"VOCEvaluator": "voc", "ClsLocEvaluator": "cls_loc", "COCOEvaluator": "coco"}


def _run(args: list[str]) -> None:
    print("$", " ".join(args), flush=True)
    subprocess.run([sys.executable, *args], check=True, cwd=REPO)


def _predict_split(checkpoint: Path, voc_root: Path, split: str, out: Path) -> Path:
    """Run the trained model over a split and write COCO results keyed by the reader's image ids."""
    detector = load_detector(checkpoint)
    dataset = VOCDetection(voc_root, split, classes=SHAPE_CLASSES)
    records = []
    with torch.inference_mode():
        for start in range(0, len(dataset), 16):
            batch = [dataset[i] for i in range(start, min(start + 16, len(dataset)))]
            images, targets = zip(*batch)
            records += make_records(detector.model(list(images)), targets, num_classes=len(SHAPE_CLASSES))
    return write_coco_results(out, coco_results(records))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="a detection head's shapes config")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "demo")
    args = parser.parse_args()
    # the steps run with the repository as working directory: paths given here are made absolute
    args.config, args.out = args.config.resolve(), args.out.resolve()
    started = time.perf_counter()
    config = yaml.safe_load(args.config.read_text())
    data_args = config["data"]["init_args"]
    root = REPO / data_args["root"]
    evaluator = config["model"]["evaluator"]["class_path"].rsplit(".", 1)[-1]

    print(f"== 1. shapes dataset at {root}")
    if not (root / "VOC").is_dir():
        write_shapes(root, single_object=bool(data_args.get("shapes_single_object", False)))
    print("== 2. dataset check (train split)")
    report = check_voc(root / "VOC", "train", list(SHAPE_CLASSES))
    print(report.summary())
    if report.errors:
        sys.exit("the generated dataset has errors; see above")

    print(f"== 3. training {args.config}")
    run_dir = args.out / "train"
    shutil.rmtree(run_dir, ignore_errors=True)
    _run(["scripts/train.py", "fit", "--config", str(args.config), "--trainer.logger", "false",
          "--trainer.default_root_dir", str(run_dir), "--checkpoint.dirpath", str(run_dir / "checkpoints"),
          "--last_checkpoint.dirpath", str(run_dir / "checkpoints")])
    checkpoint = run_dir / "checkpoints" / "best.ckpt"

    print("== 4. evaluation on the test split")
    predictions = _predict_split(checkpoint, root / "VOC", "test", args.out / "test_predictions.json")
    report_dir = args.out / "report"
    _run(["scripts/evaluate.py", "--predictions", str(predictions), "--shapes", str(root), "--split", "test",
          "--protocol", PROTOCOLS[evaluator], "--out", str(report_dir)])

    print("== 5. batch prediction over a folder")
    folder = args.out / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for name in (root / "VOC" / "ImageSets" / "Main" / "test.txt").read_text().split()[:PREDICT_IMAGES]:
        shutil.copy(root / "VOC" / "JPEGImages" / f"{name}.jpg", folder / f"{name}.jpg")
    _run(["scripts/predict.py", "--checkpoint", str(checkpoint), "--input", str(folder),
          "--out", str(args.out / "predictions"), "--score-threshold", "0.5", "--no-progress"])

    metrics = json.loads((report_dir / "metrics.json").read_text())
    headline = {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float) and "/" not in k}
    print(f"== done in {time.perf_counter() - started:.0f} s")
    print(f"test metrics:  {headline}")
    print(f"report:        {report_dir / 'report.md'}")
    print(f"predictions:   {args.out / 'predictions'} (predictions.json, predictions.csv, drawn/)")
    print(f"checkpoint:    {checkpoint}")


if __name__ == "__main__":
    main()
