"""scripts/evaluate.py end to end on the generated shapes data, and the report writer."""

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO as PyCOCO
from pycocotools.cocoeval import COCOeval as PyCOCOeval

from detection.evaluation.pr_curve import PRCurve
from detection.evaluation.report import safe_filename, write_report
from detection.evaluation.results_io import read_voc_results
from script_loader import load_script



def _jittered_results(ann_file: Path, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    data = json.loads(ann_file.read_text())
    results = []
    for ann in data["annotations"]:
        x, y, w, h = ann["bbox"]
        dx, dy = rng.normal(0, 0.12 * w), rng.normal(0, 0.12 * h)
        results.append({"image_id": ann["image_id"], "category_id": ann["category_id"],
                        "bbox": [x + dx, y + dy, w, h], "score": float(rng.random())})  # fmt: skip
        if rng.random() < 0.3:  # a false positive
            results.append({"image_id": ann["image_id"], "category_id": int(rng.integers(1, 5)),
                            "bbox": [float(rng.uniform(0, 60)), float(rng.uniform(0, 60)), 20.0, 20.0],
                            "score": float(rng.random())})  # fmt: skip
    return results


def test_coco_protocol_matches_pycocotools_on_the_files(shapes_root, tmp_path: Path) -> None:
    ann = shapes_root.coco_ann("val")
    results_path = tmp_path / "results.json"
    results_path.write_text(json.dumps(_jittered_results(ann, 0)))
    out = tmp_path / "coco_report"
    load_script("evaluate").main(["--predictions", str(results_path), "--coco-ann", str(ann), "--protocol", "coco",
                         "--out", str(out), "--voc-results", str(tmp_path / "voc")])  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    with contextlib.redirect_stdout(io.StringIO()):
        gt = PyCOCO(str(ann))
        reference = PyCOCOeval(gt, gt.loadRes(str(results_path)), "bbox")
        reference.evaluate()
        reference.accumulate()
        reference.summarize()
    assert metrics["map"] == pytest.approx(reference.stats[0], abs=1e-9)
    assert metrics["mar_100"] == pytest.approx(reference.stats[8], abs=1e-9)
    assert 0.0 < metrics["map"] < 1.0
    report = (out / "report.md").read_text()
    assert "Crowd regions" in report and "| circle |" in report
    assert all((out / "pr_curves" / f"{name}.png").is_file() for name in ("circle", "square", "triangle", "cross"))
    names, scores, boxes = read_voc_results(tmp_path / "voc" / "comp4_det_val_circle.txt")
    assert len(names) == len(scores) == len(boxes) > 0


def test_voc_and_cls_loc_protocols_on_coco_layout(shapes_root, tmp_path: Path) -> None:
    ann = shapes_root.coco_ann("val")
    results_path = tmp_path / "results.json"
    results_path.write_text(json.dumps(_jittered_results(ann, 1)))
    script = load_script("evaluate")
    values = {}
    for protocol in ("voc07", "voc", "cls_loc"):
        out = tmp_path / protocol
        script.main(["--predictions", str(results_path), "--coco-ann", str(ann), "--protocol", protocol, "--out", str(out)])
        values[protocol] = json.loads((out / "metrics.json").read_text())
        assert "VOC" in (out / "report.md").read_text() or protocol == "cls_loc"
    assert 0.0 < values["voc07"]["map_50"] < 1.0 and 0.0 < values["voc"]["map_50"] < 1.0
    assert values["voc07"]["map_50"] != values["voc"]["map_50"]
    assert 0.0 <= values["cls_loc"]["cls_loc_error"] <= 1.0


def test_segmentation_mode_with_confusion_png(shapes_root, tmp_path: Path) -> None:
    voc = shapes_root.voc_root
    preds = tmp_path / "preds"
    preds.mkdir()
    names = (voc / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    for name in names:
        shutil.copy(voc / "SegmentationClass" / f"{name}.png", preds / f"{name}.png")
    script = load_script("evaluate")
    script.main(["--masks-dir", str(preds), "--shapes", str(shapes_root.root), "--split", "val", "--out", str(tmp_path / "perfect")])
    perfect = json.loads((tmp_path / "perfect" / "metrics.json").read_text())
    assert perfect["pixel_accuracy"] == 1.0 and perfect["mean_iou"] == 1.0
    assert (tmp_path / "perfect" / "confusion_matrix.png").is_file()
    # shift every prediction by 3 pixels: the scores must drop
    for name in names:
        with Image.open(preds / f"{name}.png") as image:
            shifted = Image.fromarray(np.roll(np.asarray(image), 3, axis=1), mode="P")
            shifted.putpalette(image.getpalette())
        shifted.save(preds / f"{name}.png")
    script.main(["--masks-dir", str(preds), "--shapes", str(shapes_root.root), "--split", "val", "--out", str(tmp_path / "shifted")])
    shifted_metrics = json.loads((tmp_path / "shifted" / "metrics.json").read_text())
    assert shifted_metrics["mean_iou"] < 0.95 and shifted_metrics["pixel_accuracy"] < 1.0


def test_write_report_handles_odd_names_and_undefined_ap(tmp_path: Path) -> None:
    curves = {"a/b c": PRCurve(np.array([1.0, 0.5]), np.array([0.5, 0.5]), 0.5, 2, 2),
              "empty": PRCurve(np.zeros(0), np.zeros(0), -1.0, 0, 3)}  # fmt: skip
    metrics = {"map_50": 0.5, "ap_50/a/b c": 0.5, "ap_50/empty": -1.0, "weird": float("nan")}
    report = write_report(tmp_path, metrics, curves, "protocol words").read_text()
    assert "| empty | n/a | 0 | 3 |" in report
    assert (tmp_path / "pr_curves" / f"{safe_filename('a/b c')}.png").is_file()
    assert json.loads((tmp_path / "metrics.json").read_text())["weird"] is None


def test_shapes_mode_through_the_voc_reader(shapes_root, tmp_path: Path) -> None:
    """Perfect predictions (the reader's own gts, with masks) score 1 under voc07 and region AP;
    dropping half of them lowers both."""
    voc = pytest.importorskip("datasets.voc")
    from faster_coco_eval.core import mask as mask_utils

    from datasets.boxes import xyxy_to_xywh
    from datasets.shapes import SHAPE_CLASSES

    dataset = voc.VOCDetection(shapes_root.voc_root, "val", classes=list(SHAPE_CLASSES), with_masks=True)
    results = []
    for i in range(len(dataset)):
        _, target = dataset.load(i)
        for box, label, mask in zip(target["boxes"], target["labels"], target["masks"]):
            rle = mask_utils.encode(np.asfortranarray(mask[:, :, None].astype(np.uint8)))[0]
            results.append({"image_id": int(target["image_id"]), "category_id": int(label),
                            "bbox": xyxy_to_xywh(box[None])[0].tolist(), "score": 0.9,
                            "segmentation": {"size": rle["size"], "counts": rle["counts"] if isinstance(rle["counts"], str) else rle["counts"].decode("ascii")}})  # fmt: skip
    script = load_script("evaluate")
    for name, subset in (("all", results), ("half", results[::2])):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(subset))
        for protocol in ("voc07", "region"):
            out = tmp_path / f"{name}_{protocol}"
            script.main(["--predictions", str(path), "--shapes", str(shapes_root.root), "--split", "val",
                         "--protocol", protocol, "--out", str(out)])  # fmt: skip
            metrics = json.loads((out / "metrics.json").read_text())
            key = "map_50" if protocol == "voc07" else "map_r_70"
            if name == "all":
                assert metrics[key] == pytest.approx(1.0)
            else:
                assert 0.2 < metrics[key] < 0.9


def test_coco_segm_report_shows_segm_and_bbox_in_the_summary(shapes_root, tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    ann = shapes_root.coco_ann("val")
    coco = COCO(str(ann))
    results = []
    for a in coco.dataset["annotations"][::2]:  # half the objects: APs strictly between 0 and 1
        rle = coco.annToRLE(a)
        results.append({"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9,
                        "segmentation": {"size": rle["size"], "counts": rle["counts"] if isinstance(rle["counts"], str) else rle["counts"].decode("ascii")}})  # fmt: skip
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    out = tmp_path / "segm"
    load_script("evaluate").main(["--predictions", str(path), "--coco-ann", str(ann), "--protocol", "coco_segm", "--out", str(out), "--no-progress"])
    report = (out / "report.md").read_text()
    summary = report.split("## Summary")[1].split("## Per class")[0]
    assert "| segm/map |" in summary and "| map |" in summary and "| segm/map_50 |" in summary
    header = report.split("## Per class")[1].split("\n")[2]
    assert header.startswith("| class |") and "| ap |" in header and "| segm/ap |" in header
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 < metrics["segm/map"] < 1.0
