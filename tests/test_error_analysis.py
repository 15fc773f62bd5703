"""Hoiem-style error analysis on a hand-built case with one detection of each kind, and its galleries."""

from pathlib import Path

import numpy as np
import pytest

from detection.evaluation.error_analysis import CATEGORIES, analyse_errors, default_similar_groups
from detection.evaluation.galleries import crop_gallery, segmentation_gallery
from detection.evaluation.records import make_records

CLASSES = ["cat", "dog", "car"]
CAT, DOG, CAR = 1, 2, 3
FAR_CATS = [[100.0 + 20 * k, 100.0, 110.0 + 20 * k, 110.0] for k in range(5)]  # never detected


def _records(*, difficult_first: bool = False) -> list:
    target = {
        "image_id": 1,
        "boxes": np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], *FAR_CATS], dtype=np.float32),
        "labels": np.array([CAT, DOG, CAR] + [CAT] * 5),
        "difficult": np.array([difficult_first] + [False] * 7),
    }
    pred = {
        "boxes": np.array(
            [
                [0, 0, 10, 10],  # correct: the first cat
                [0, 0, 10, 9.5],  # duplicate: the same cat again
                [0, 0, 4, 10],  # localization: IoU 0.4 with the cat
                [20, 0, 30, 10],  # similar: on the dog
                [40, 0, 50, 10],  # other: on the car
                [200, 200, 210, 210],  # background
            ],
            dtype=np.float32,
        ),
        "labels": np.array([CAT] * 6),
        "scores": np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4]),
    }
    return make_records([pred], [target], num_classes=len(CLASSES))


def test_one_error_of_each_type() -> None:
    analysis = analyse_errors(_records(), CLASSES, similar_groups=[("cat", "dog")])
    assert [d.category for d in analysis.detections] == list(CATEGORIES)
    assert analysis.shares["cat"] == pytest.approx({c: 1 / 6 for c in CATEGORIES})
    assert analysis.shares["dog"] == dict.fromkeys(CATEGORIES, 0.0)  # no dog detections
    assert [d.gt_label for d in analysis.detections] == [CAT, CAT, CAT, DOG, CAR, None]
    assert [d.score for d in analysis.false_positives(2)] == [0.8, 0.7]
    # missed: the five far cats, the dog and the car (no detection of their class covers them)
    assert sorted((m.label, m.box[0]) for m in analysis.missed) == sorted(
        [(CAT, box[0]) for box in FAR_CATS] + [(DOG, 20.0), (CAR, 40.0)]
    )
    table = analysis.markdown()
    assert table[0].startswith("| class | correct | duplicate") and "| cat | 0.167 |" in table[2]


def test_without_similar_groups_the_dog_counts_as_other() -> None:
    analysis = analyse_errors(_records(), CLASSES, similar_groups=[])
    assert analysis.detections[3].category == "other"
    assert analysis.shares["cat"]["other"] == pytest.approx(2 / 6) and analysis.shares["cat"]["similar"] == 0.0


def test_detections_on_difficult_objects_are_ignored() -> None:
    analysis = analyse_errors(_records(difficult_first=True), CLASSES, similar_groups=[("cat", "dog")])
    # the correct and duplicate detections of the difficult cat are skipped; 5 non-difficult cats remain
    assert [d.category for d in analysis.detections] == ["localization", "similar", "other", "background"]


def test_voc_groups_apply_only_to_voc_class_names() -> None:
    assert default_similar_groups(["circle", "square"]) == []
    assert default_similar_groups(["cat", "dog", "car", "bus"]) == [("bird", "cat", "cow", "dog", "horse", "sheep"), ("aeroplane", "bicycle", "boat", "bus", "car", "motorbike", "train")]


def test_galleries_are_drawn(tmp_path: Path) -> None:
    analysis = analyse_errors(_records(), CLASSES, similar_groups=[("cat", "dog")])
    image = np.full((240, 240, 3), 90, dtype=np.uint8)
    path = crop_gallery(tmp_path / "fp.png", [*analysis.false_positives(5), *analysis.missed[:3]], lambda _: image, CLASSES, "errors")
    assert path.is_file() and path.stat().st_size > 0
    labels = np.zeros((20, 30), dtype=np.int64)
    path = segmentation_gallery(tmp_path / "worst.png", [(0, 0.1), (1, 0.5)], lambda _: image[:20, :30], lambda _: labels, lambda _: labels + 1)
    assert path.is_file()
