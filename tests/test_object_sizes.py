"""datasets/object_sizes.py and check_dataset.py's object-size section, on boxes of known sizes.

The resize is torchvision's ``GeneralizedRCNNTransform``, the anchors its ``AnchorGenerator``:
both are checked against them. The last test reads BCCD in ../shared/data (skipped when absent).
"""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from script_loader import load_script
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from voc_fixtures import write_voc

from datasets.check import check_voc
from datasets.object_sizes import (
    BoxSizes,
    InputResize,
    ModelSizing,
    anchor_shapes,
    best_possible_recall,
    kmeans_anchors,
    mean_best_iou,
    model_sizing,
    percentiles,
    size_lines,
    suggest_anchors,
    suggest_input_size,
)

REPO = Path(__file__).resolve().parents[1]


def sizes_of(wh: list[tuple[float, float]], image_hw: tuple[int, int]) -> BoxSizes:
    """One image per box, each ``image_hw``, the box at the top left."""
    sizes = BoxSizes()
    for w, h in wh:
        sizes.add(np.array([[0.0, 0.0, w, h]]), image_hw)
    return sizes


@pytest.mark.parametrize("image_hw", [(480, 640), (640, 480), (300, 1200), (1000, 1000)])
def test_resize_scales_as_torchvision_transform(image_hw):
    transform = GeneralizedRCNNTransform(min_size=360, max_size=480, image_mean=[0, 0, 0], image_std=[1, 1, 1])
    transform.eval()
    images, _ = transform([torch.zeros(3, *image_hw)])
    resized_h, resized_w = images.image_sizes[0]
    scale_x, scale_y = InputResize(min_size=360, max_size=480).scales(np.array([image_hw]))[0]
    assert scale_x == scale_y
    assert (resized_h, resized_w) == (int(image_hw[0] * scale_y), int(image_hw[1] * scale_x))
    fixed = InputResize(fixed_size=224).scales(np.array([image_hw]))[0]
    np.testing.assert_allclose(fixed, [224 / image_hw[1], 224 / image_hw[0]])
    np.testing.assert_array_equal(InputResize().scales(np.array([image_hw])), [[1.0, 1.0]])


def test_anchor_shapes_are_torchvision_anchor_generator_cells():
    sizes, ratios = (16.0, 32.0, 64.0), (0.5, 1.0, 2.0)
    (cells,) = AnchorGenerator(sizes=(sizes,), aspect_ratios=(ratios,)).cell_anchors
    expected = torch.stack([cells[:, 2] - cells[:, 0], cells[:, 3] - cells[:, 1]], dim=1).numpy()
    mine = anchor_shapes(sizes, ratios)  # torchvision orders ratio-major; the set is what counts
    np.testing.assert_allclose(sorted(map(tuple, mine)), sorted(map(tuple, expected)), atol=1.0)  # torchvision rounds


def test_best_possible_recall_uses_the_ratio_threshold_four():
    anchors = np.array([[40.0, 40.0]])
    assert best_possible_recall(np.array([[10.0, 10.0]]), anchors) == 1.0  # exactly 4x smaller still fits
    assert best_possible_recall(np.array([[9.9, 10.0]]), anchors) == 0.0
    assert best_possible_recall(np.array([[40.0, 160.0], [40.0, 161.0]]), anchors) == 0.5
    assert mean_best_iou(np.array([[20.0, 40.0]]), anchors) == pytest.approx(0.5)
    assert mean_best_iou(np.array([[40.0, 40.0]]), np.vstack([anchors, [[80.0, 80.0]]])) == 1.0


def test_kmeans_recovers_three_known_shapes():
    rng = np.random.default_rng(0)
    truth = np.array([[10.0, 20.0], [50.0, 50.0], [200.0, 100.0]])
    wh = np.concatenate([shape * rng.uniform(0.95, 1.05, size=(100, 2)) for shape in truth])
    clusters = kmeans_anchors(wh, 3)
    np.testing.assert_allclose(clusters, truth, rtol=0.05)
    assert mean_best_iou(wh, clusters) > 0.9
    assert len(kmeans_anchors(np.array([[5.0, 5.0]] * 4), 9)) == 1  # one distinct shape, one cluster


def test_suggested_anchors_span_the_sizes_and_ratios_of_the_boxes():
    rng = np.random.default_rng(0)
    side = np.exp(rng.uniform(np.log(20), np.log(320), 2000))
    ratio = rng.choice([0.5, 1.0, 2.0], 2000)  # h / w
    wh = np.stack([side / np.sqrt(ratio), side * np.sqrt(ratio)], axis=1)
    sizes, ratios = suggest_anchors(wh, 5, 3)
    assert len(sizes) == 5 and list(sizes) == sorted(sizes)
    assert sizes[0] == pytest.approx(np.percentile(side, 5), rel=0.02) and sizes[-1] == pytest.approx(np.percentile(side, 95), rel=0.02)
    assert ratios == (0.5, 1.0, 2.0)
    assert best_possible_recall(wh, anchor_shapes(sizes, ratios)) == 1.0


def test_suggested_input_size_puts_the_small_objects_at_four_strides():
    sizes = sizes_of([(10.0, 10.0)] * 19 + [(100.0, 100.0)] * 81, (400, 600))  # p5: 10 px at the file's size
    suggested = suggest_input_size(sizes, 8, InputResize(min_size=200, max_size=300))  # 5 px at the input size
    assert suggested == InputResize(min_size=1280, max_size=1920)  # x 6.4: 32 px = 4 strides of 8
    assert suggest_input_size(sizes, 8, InputResize(fixed_size=100)) == InputResize(fixed_size=1568)  # 1.67 x 2.5 px (sqrt 2.04) -> 32: x 15.7
    assert suggest_input_size(sizes, 8, InputResize()) == InputResize(min_size=1280, max_size=1920)  # from the files' 400 x 600


def test_size_lines_give_sizes_at_the_input_size_warnings_and_a_suggestion():
    sizes = sizes_of([(10.0, 20.0)] * 50 + [(40.0, 80.0)] * 50, (400, 400))
    assert percentiles(sizes.wh[:, 0])[50] == pytest.approx(25.0)
    sizing = ModelSizing(resize=InputResize(min_size=200, max_size=200), strides=(16,), anchor_sizes=(32.0, 64.0), aspect_ratios=(1.0,))
    lines, warnings = size_lines(sizes, sizing)
    text = "\n".join(lines)
    assert "at the input size (min_size 200, max_size 200):" in text
    width_at_input = next(line for line in lines[lines.index("  at the input size (min_size 200, max_size 200):"):] if "width" in line)
    assert width_at_input.split()[1:] == ["5.0", "5.0", "12.5", "20.0", "20.0"]  # half the file's 10 / 40
    assert len(warnings) == 3  # below one stride-16 cell, below the smallest anchor, a low best possible recall
    assert "stride 16" in warnings[0] and "smallest anchor (32 px)" in warnings[1] and "50.0%" in warnings[2]
    assert "suggested input size: min_size 1824, max_size 1824" in text  # p5 7.07 px -> 4 x 16 = 64 px: x 9.05, up to 32s
    assert "suggested anchors at that size: anchor_sizes: [64, 258], aspect_ratios: [2.0]" in text  # x 4.56: 14.1 -> 64.5, 56.6 -> 258
    fitting = ModelSizing(resize=InputResize(min_size=400, max_size=400), strides=(4,), anchor_sizes=(16.0, 64.0), aspect_ratios=(2.0,))
    assert size_lines(sizes, fitting)[1] == []


def test_a_config_that_reaches_its_objects_keeps_its_size_and_anchors():
    """AutoAnchor's rule: no warning and the 5th-percentile object (14.1 px) spans 4 cells of stride 2
    -> the config's own values are suggested; the fitted ones are printed, not suggested."""
    sizes = sizes_of([(10.0, 20.0)] * 50 + [(40.0, 80.0)] * 50, (400, 400))
    fitting = ModelSizing(resize=InputResize(min_size=400, max_size=400), strides=(2,), anchor_sizes=(16.0, 64.0), aspect_ratios=(2.0,))
    lines, warnings = size_lines(sizes, fitting)
    assert warnings == []
    assert any(line.startswith("suggested input size: min_size 400, max_size 400, the config's") for line in lines)
    assert any(line.startswith("suggested anchors: anchor_sizes: [16, 64], aspect_ratios: [2.0], the config's") for line in lines)
    assert any(line.startswith("fitted to the boxes, not suggested") and "min_size 256, max_size 256, anchor_sizes" in line for line in lines)  # 14.1 -> 8 px: x 0.57, up to 32s
    small_anchor_missing = ModelSizing(resize=InputResize(min_size=400, max_size=400), strides=(2,), anchor_sizes=(64.0,), aspect_ratios=(2.0,))
    lines, warnings = size_lines(sizes, small_anchor_missing)  # size kept, anchors fitted at the config's size
    assert len(warnings) == 2 and "smallest anchor (64 px)" in warnings[0] and "50.0%" in warnings[1]
    assert any(line.startswith("suggested input size: min_size 400, max_size 400, the config's") for line in lines)
    assert "suggested anchors at that size: anchor_sizes: [14], aspect_ratios: [2.0]" in lines
    reaching_not = ModelSizing(resize=InputResize(min_size=400, max_size=400), strides=(8,), anchor_sizes=(16.0, 64.0), aspect_ratios=(2.0,))
    assert not any("the config's" in line or "not suggested" in line for line in size_lines(sizes, reaching_not)[0])  # 14.1 < 4 x 8


def test_a_grid_head_gets_a_grid_size_not_an_input_size():
    sizes = sizes_of([(20.0, 20.0)] * 10, (320, 320))  # at 320 x 320 with a 10 x 10 grid: 20 px objects, 32 px cells
    lines, warnings = size_lines(sizes, ModelSizing(InputResize(fixed_size=320), (32,), grid_size=10))
    assert lines[-1].startswith("suggested grid_size: 16 (cells no larger than the 5th-percentile object, 20.0 px")
    assert len(warnings) == 1 and "a finer grid (grid_size)" in warnings[0]


def test_sizes_without_a_config_or_without_boxes():
    lines, warnings = size_lines(sizes_of([(30.0, 30.0)] * 3, (100, 100)))
    assert warnings == [] and "k-means anchors (YOLOv2 clusters, k=1, w x h): 30x30" in "\n".join(lines)
    empty = BoxSizes()
    empty.add(np.zeros((0, 4)), (10, 10))
    assert size_lines(empty) == (["object sizes: no boxes in 1 images"], [])


def test_model_sizing_reads_resize_strides_and_anchors_from_configs():
    def sizing(name: str) -> ModelSizing | None:
        return model_sizing(yaml.safe_load((REPO / "configs" / name).read_text()))

    bccd = sizing("faster_rcnn/bccd_pretrained.yaml")
    assert bccd == ModelSizing(InputResize(min_size=360, max_size=480), (8, 16), (16.0, 32.0, 64.0, 128.0), (0.5, 1.0, 2.0))
    mnc = sizing("mnc/coco_person_pretrained.yaml")
    assert mnc.strides == (16,) and mnc.anchor_sizes == (32.0, 64.0, 128.0, 256.0, 512.0)
    yolo = sizing("yolo/bccd_pretrained.yaml")
    assert yolo.resize == InputResize(fixed_size=320) and yolo.strides == (32,) and yolo.anchor_sizes is None
    assert yolo.grid_size == 10 and bccd.grid_size is None
    localization = sizing("localization/shapes.yaml")  # regresses from the whole image: no stride, no anchors
    assert localization.resize == InputResize(fixed_size=128) and localization.strides == ()
    assert sizing("fcn/roboflow_tqb_pretrained.yaml") is None  # a semantic head: no boxes


def test_checker_reports_box_sizes_of_a_voc_split(tmp_path):
    root = write_voc(tmp_path / "voc", {"a": [("cat", (1, 1, 10, 20), 0)], "b": [("cat", (1, 1, 30, 40), 0), ("dog", (5, 5, 44, 14), 0)]})
    report = check_voc(root, "train", ["cat", "dog"])
    np.testing.assert_array_equal(report.box_sizes.wh, [[10, 20], [30, 40], [40, 10]])
    np.testing.assert_array_equal(report.box_sizes.image_hw, [[40, 60]] * 3)
    assert "object sizes: 3 boxes in 2 images, pixels" in report.summary()


def test_check_dataset_config_prints_sizes_warnings_and_suggestion(tmp_path, capsys):
    root = write_voc(tmp_path / "voc", {f"i{k}": [("cat", (1, 1, 4, 4), 0)] for k in range(4)}, size=(120, 160))
    config = yaml.safe_load((REPO / "configs" / "faster_rcnn" / "bccd_pretrained.yaml").read_text())
    config["data"]["init_args"] |= {"root": str(root), "train_split": "train"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    status = load_script("check_dataset").main(["--config", str(path), "--split", "train"])
    out = capsys.readouterr().out
    assert status == 0
    assert "at the input size (min_size 360, max_size 480):" in out  # 120 x 160 -> 360 x 480: x 3
    assert "    sqrt(wh)     12.0    12.0    12.0    12.0    12.0" in out  # 4 px boxes
    assert "warning: 5% of objects are under 12.0 px" in out and "smallest anchor (16 px)" in out
    assert "stride 8" not in out.split("suggested")[0]  # 12 px spans a stride-8 cell: no stride warning
    assert "suggested input size: min_size 960, max_size 1280" in out  # 12 -> 32 px (4 x stride 8): x 2.67


def test_bccd_sizes_and_suggestion(shared_data, capsys):
    """BCCD train at 640 x 480 with bccd_pretrained.yaml's 480 x 360 input, FPN on strides 8 and 16:
    the anchors already fit (no warning) and a platelet spans 4 stride-8 cells: the config's values
    are suggested; the fitted ones (measured to lower mAP) are printed beside them."""
    config = REPO / "configs" / "faster_rcnn" / "bccd_pretrained.yaml"
    assert (shared_data / "voc_bccd" / "BCCD").is_dir()
    load_script("check_dataset").main(["--config", str(config), "--split", "train"])
    out = capsys.readouterr().out
    section = out[out.index("object sizes:") : out.index("problems:")]
    assert "object sizes: 2804 boxes in 205 images, pixels" in section
    assert "    sqrt(wh)     42.9    94.5   103.0   111.9   165.5" in section  # 640 x 480
    assert "    sqrt(wh)     32.2    70.9    77.3    83.9   124.1" in section  # x 0.75
    assert "  best possible recall 1.000" in section and "warning" not in section
    assert "suggested input size: min_size 360, max_size 480, the config's" in section
    assert "suggested anchors: anchor_sizes: [16, 32, 64, 128], aspect_ratios: [0.5, 1.0, 2.0], the config's" in section
    assert "docs/own_dataset.md): min_size 384, max_size 512, anchor_sizes: [34, 54, 84, 132], aspect_ratios: [0.82, 0.96, 1.1]" in section  # fitted


def test_the_anchor_suggestion_benchmark_reads_the_checkers_lines():
    """benchmarks/anchor_suggestion.py parses what size_lines prints: the suggestion and the fitted values."""
    from benchmarks.anchor_suggestion import FITTED, SUGGESTED_ANCHORS, SUGGESTED_SIZE

    sizes = sizes_of([(10.0, 20.0)] * 50 + [(40.0, 80.0)] * 50, (400, 400))
    fitting = ModelSizing(resize=InputResize(min_size=400, max_size=400), strides=(2,), anchor_sizes=(16.0, 64.0), aspect_ratios=(2.0,))
    text = "\n".join(size_lines(sizes, fitting)[0])
    assert SUGGESTED_SIZE.search(text).groups() == ("400", "400")
    assert SUGGESTED_ANCHORS.search(text).groups() == ("[16, 64]", "[2.0]")
    assert FITTED.search(text).groups()[:2] == ("256", "256")
