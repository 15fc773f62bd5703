"""COCO evaluation: identical to pycocotools' COCOeval on randomized data with crowd regions."""

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO as PyCOCO
from pycocotools.cocoeval import COCOeval as PyCOCOeval

from benchmarks.eval import make_data
from detection.evaluation.coco_eval import STAT_NAMES, COCOEvaluator, coco_ground_truth
from detection.evaluation.results_io import coco_results, read_coco_results, write_coco_results

IMAGE_SIZE = 48
CLASSES = ["c1", "c2", "c3", "c4"]


def _rectangle_mask(box: np.ndarray, value: float) -> np.ndarray:
    mask = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    x1, y1, x2, y2 = np.clip(box, 0, IMAGE_SIZE - 1).astype(int)
    mask[y1 : y2 + 1, x1 : x2 + 1] = value
    return mask


def random_batch(seed: int, *, num_images: int = 25, num_classes: int = 4) -> tuple[list[dict], list[dict]]:
    """Gts with ~20% crowd, detections jittered around gts plus wrong labels, coarse scores (ties)."""
    rng = np.random.default_rng(seed)
    preds, targets = [], []
    for i in range(num_images):
        g = int(rng.integers(0, 6))
        xy = rng.uniform(0, 30, size=(g, 2))
        gt_boxes = np.concatenate([xy, xy + rng.uniform(2, 20, size=(g, 2))], axis=1)
        gt_labels = rng.integers(1, num_classes + 1, size=g)
        d = int(rng.integers(0, 12))
        if g:
            src = rng.integers(0, g, size=d)
            dt_boxes = gt_boxes[src] + rng.normal(0, 2.5, size=(d, 4))
            dt_labels = np.where(rng.random(d) < 0.8, gt_labels[src], rng.integers(1, num_classes + 1, size=d))
        else:
            dt_boxes = rng.uniform(0, 30, size=(d, 4))
            dt_labels = rng.integers(1, num_classes + 1, size=d)
        dt_boxes[:, 2:] = np.maximum(dt_boxes[:, 2:], dt_boxes[:, :2] + 1)
        preds.append(
            {
                "boxes": torch.tensor(dt_boxes, dtype=torch.float32),
                "labels": torch.tensor(dt_labels, dtype=torch.int64),
                "scores": torch.tensor(np.round(rng.random(d), 2), dtype=torch.float32),
                "masks": torch.tensor(np.stack([_rectangle_mask(b, rng.uniform(0.3, 1)) for b in dt_boxes]))
                if d
                else torch.zeros(0, IMAGE_SIZE, IMAGE_SIZE),
            }
        )
        targets.append(
            {
                "image_id": 3 * i + 1,
                "boxes": torch.tensor(gt_boxes, dtype=torch.float32).reshape(-1, 4),
                "labels": torch.tensor(gt_labels, dtype=torch.int64),
                "iscrowd": torch.tensor(rng.random(g) < 0.2),
                "difficult": torch.zeros(g, dtype=torch.bool),
                "masks": torch.tensor(np.stack([_rectangle_mask(b, 1) for b in gt_boxes]).astype(np.uint8))
                if g
                else torch.zeros(0, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8),
            }
        )
    return preds, targets


def pycocotools_eval(gt: dict, results: list[dict], iou_type: str) -> PyCOCOeval:
    """The reference: pycocotools from JSON text, results through loadRes."""
    gt = json.loads(json.dumps(gt, default=lambda b: b.decode("ascii")))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = PyCOCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(json.loads(json.dumps(results)))
        evaluator = PyCOCOeval(coco_gt, coco_dt, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def reference_inputs(evaluator: COCOEvaluator, iou_type: str, mapping: dict | None = None) -> tuple[dict, list]:
    records = evaluator.records()
    with_masks = iou_type == "segm"
    gt = coco_ground_truth(records, classes=CLASSES, label_to_category_id=mapping, with_masks=with_masks)
    results = coco_results(records, label_to_category_id=mapping, with_masks=with_masks)
    if with_masks:
        for r in results:
            del r["bbox"]  # a segm results list, as torchvision's references write it
    return gt, results


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_pycocotools_bbox_and_segm_with_crowd(seed: int) -> None:
    preds, targets = random_batch(seed)
    assert sum(int(t["iscrowd"].sum()) for t in targets) > 0
    evaluator = COCOEvaluator(classes=CLASSES, iou_types=("bbox", "segm"))
    for start in range(0, len(preds), 4):  # batch by batch
        evaluator.update(preds[start : start + 4], targets[start : start + 4])
    metrics = evaluator.compute()
    for iou_type, prefix in (("bbox", ""), ("segm", "segm/")):
        reference = pycocotools_eval(*reference_inputs(evaluator, iou_type), iou_type)
        ours = np.array([metrics[prefix + name] for name in STAT_NAMES])
        np.testing.assert_allclose(ours, reference.stats, rtol=0, atol=1e-9)
        assert 0.01 < metrics[prefix + "map"] < 0.95  # not a degenerate case
        ours_eval = evaluator._last[iou_type].eval
        np.testing.assert_allclose(ours_eval["precision"], reference.eval["precision"], rtol=0, atol=1e-9)
        np.testing.assert_allclose(ours_eval["recall"], reference.eval["recall"], rtol=0, atol=1e-9)
        # per-class AP = mean of the defined precision entries of that class (area all, 100 dets)
        p = reference.eval["precision"][:, :, :, 0, -1]
        for k, name in enumerate(CLASSES):
            defined = p[:, :, k][p[:, :, k] > -1]
            expected = defined.mean() if defined.size else -1.0
            assert metrics[f"{prefix}ap/{name}"] == pytest.approx(expected, abs=1e-9)


def test_category_id_mapping() -> None:
    mapping = {1: 17, 2: 3, 3: 90, 4: 5}
    preds, targets = random_batch(5)
    evaluator = COCOEvaluator(classes=CLASSES, label_to_category_id=mapping)
    evaluator.update(preds, targets)
    metrics = evaluator.compute()
    gt, results = reference_inputs(evaluator, "bbox", mapping)
    assert {c["id"] for c in gt["categories"]} == {17, 3, 90, 5}
    reference = pycocotools_eval(gt, results, "bbox")
    np.testing.assert_allclose([metrics[n] for n in STAT_NAMES], reference.stats, atol=1e-9)
    # pycocotools sorts category ids: class "c2" (id 3) is column 0
    column = sorted(mapping.values()).index(mapping[2])
    p = reference.eval["precision"][:, :, column, 0, -1]
    assert metrics["ap/c2"] == pytest.approx(p[p > -1].mean(), abs=1e-9)


def test_no_detections_at_all() -> None:
    _, targets = random_batch(3)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0)}
    evaluator = COCOEvaluator(classes=CLASSES)
    evaluator.update([empty] * len(targets), targets)
    metrics = evaluator.compute()
    assert metrics["map"] == 0.0 and metrics["mar_100"] == 0.0
    assert all(metrics[f"ap/{c}"] == 0.0 for c in CLASSES)


def test_class_without_ground_truth_is_minus_one() -> None:
    target = {"image_id": 1, "boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([1])}
    pred = {"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]]), "labels": torch.tensor([1, 2]), "scores": torch.tensor([0.9, 0.8])}
    evaluator = COCOEvaluator(classes=CLASSES)
    evaluator.update([pred], [target])
    metrics = evaluator.compute()
    assert metrics["ap/c1"] == pytest.approx(1.0) and metrics["ap/c2"] == -1.0
    assert metrics["map"] == pytest.approx(1.0)


def test_dataset_area_is_used_for_size_ranges() -> None:
    box = torch.tensor([[0.0, 0, 50, 50]])  # box area 2500: "medium"
    pred = {"boxes": box, "labels": torch.tensor([1]), "scores": torch.tensor([0.9])}
    for area, expect_large in ((2500.0, False), (100.0**2, True)):
        evaluator = COCOEvaluator(classes=CLASSES)
        target = {"image_id": 1, "boxes": box, "labels": torch.tensor([1]), "area": torch.tensor([area])}
        evaluator.update([pred], [target])
        metrics = evaluator.compute()
        assert (metrics["map_large"] == pytest.approx(1.0)) is expect_large
        assert (metrics["map_medium"] == pytest.approx(1.0)) is not expect_large


def test_results_json_is_accepted_by_pycocotools_load_res(tmp_path) -> None:
    preds, targets = random_batch(7)
    evaluator = COCOEvaluator(classes=CLASSES, iou_types=("bbox", "segm"))
    evaluator.update(preds, targets)
    metrics = evaluator.compute()
    records = evaluator.records()
    path = write_coco_results(tmp_path / "results.json", coco_results(records, with_masks=True))
    gt_path = tmp_path / "gt.json"
    gt = coco_ground_truth(records, classes=CLASSES, with_masks=True)
    gt_path.write_text(json.dumps(gt, default=lambda b: b.decode("ascii")))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = PyCOCO(str(gt_path))
        coco_dt = coco_gt.loadRes(str(path))
        reference = PyCOCOeval(coco_gt, coco_dt, "bbox")
        reference.evaluate()
        reference.accumulate()
        reference.summarize()
    assert len(coco_dt.anns) == sum(len(p["scores"]) for p in preds)
    np.testing.assert_allclose([metrics[n] for n in STAT_NAMES], reference.stats, atol=1e-9)
    assert read_coco_results(path)[0].keys() >= {"image_id", "category_id", "bbox", "score", "segmentation"}


@pytest.mark.parametrize(
    "bad",
    [{"image_id": "1", "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5},
     {"image_id": 1, "category_id": 1, "bbox": [0, 0, 1], "score": 0.5},
     {"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": float("nan")},
     {"image_id": 1, "category_id": 1, "score": 0.5}],
)  # fmt: skip
def test_bad_results_entries_are_rejected(tmp_path, bad: dict) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([bad]).replace("NaN", "NaN"))
    with pytest.raises(ValueError, match="entry 0"):
        read_coco_results(path)


@pytest.mark.parametrize("backend", ["numpy", "faster_coco_eval"])
def test_matches_pycocotools_all_sizes_and_truncation(backend: str) -> None:
    """640x480 scenes (small, medium and large gts), 5% crowd, 130 detections over 2 classes:
    some (image, class) pairs exceed the 100-detection cap."""
    preds, targets = make_data(3, images=40, dets=130, classes=2)
    names = ["x", "y"]
    evaluator = COCOEvaluator(classes=names, bbox_backend=backend)
    evaluator.update(preds, targets)
    metrics = evaluator.compute()
    records = evaluator.records()
    assert max(int(np.sum(r.dt_labels == 1)) for r in records) > 100
    gt = coco_ground_truth(records, classes=names)
    reference = pycocotools_eval(gt, coco_results(records), "bbox")
    np.testing.assert_allclose([metrics[n] for n in STAT_NAMES], reference.stats, rtol=0, atol=1e-9)
    np.testing.assert_allclose(evaluator._last["bbox"].eval["precision"], reference.eval["precision"], rtol=0, atol=1e-9)
    assert all(0.0 < metrics[k] < 1.0 for k in ("map_small", "map_medium", "map_large"))
