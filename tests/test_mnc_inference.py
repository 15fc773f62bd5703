"""MNC's masks through batch inference: RLE in predictions.json that pycocotools decodes to the
drawn masks, and one VOC ``SegmentationObject``-style instance PNG per image."""

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from datasets.folder import ImageFolder
from datasets.safe_io import read_index_png
from detection import inference
from detection.backbones import SmallCNN
from detection.inference import INSTANCES_DIR, batch_predict, instance_map
from detection.mnc import MNC

CLASSES = ["circle", "square", "triangle", "cross"]


def test_instance_map_in_score_order_with_the_higher_score_on_top():
    masks = torch.zeros(3, 2, 4, dtype=torch.uint8)
    masks[0, :, :2] = 1  # score 0.3 -> rank 3
    masks[1, :, 1:3] = 1  # score 0.9 -> rank 1, wins column 1 and 2
    masks[2, 1, 3] = 1  # score 0.5 -> rank 2
    out = instance_map(masks, torch.tensor([0.3, 0.9, 0.5]))
    assert out.dtype == torch.uint8
    assert out.tolist() == [[3, 1, 1, 0], [3, 1, 1, 2]]
    soft = instance_map(torch.tensor([[[0.2, 0.6]]]), torch.tensor([0.7]))  # float masks: >= 0.5
    assert soft.tolist() == [[0, 1]]


def test_batch_inference_writes_rle_matching_the_drawn_masks_and_instance_pngs(shapes_root, tmp_path: Path, monkeypatch):
    folder = tmp_path / "images"
    folder.mkdir()
    for path in sorted((shapes_root.voc_root / "JPEGImages").glob("*.jpg"))[:2]:
        shutil.copy(path, folder / path.name)
    torch.manual_seed(0)
    model = MNC(
        backbone=SmallCNN(width=8), num_classes=4, feature="c3", min_size=96, max_size=96, anchor_sizes=(16, 32),
        rpn_post_nms_top_n=(30, 20), representation_size=16, mask_hidden=16, mask_size=7,
    ).eval()  # fmt: skip
    drawn: list[dict] = []
    draw = inference.draw_prediction

    def record(image, pred, classes, **options):
        drawn.append({k: v.clone() for k, v in pred.items()})
        return draw(image, pred, classes, **options)

    monkeypatch.setattr(inference, "draw_prediction", record)
    out = tmp_path / "out"
    summary = batch_predict(model, CLASSES, ImageFolder(folder), root=folder, out_dir=out, batch_size=1, score_threshold=0.2)
    assert summary.processed == 2 and len(drawn) == 2
    results = json.loads((out / "predictions.json").read_text())
    assert sum(len(p["boxes"]) for p in drawn) == len(results) > 0
    names = sorted(p.name for p in folder.iterdir())
    for image_id, (name, pred) in enumerate(zip(names, drawn), start=1):
        assert (pred["scores"] >= 0.2).all()
        mine = [r for r in results if r["image_id"] == image_id]
        assert len(mine) == len(pred["masks"])
        for result, mask in zip(mine, pred["masks"]):
            rle = {"size": result["segmentation"]["size"], "counts": result["segmentation"]["counts"].encode()}
            assert np.array_equal(mask_utils.decode(rle), mask.numpy())
        instances = read_index_png(out / INSTANCES_DIR / Path(name).with_suffix(".png"))
        assert Image.open(out / INSTANCES_DIR / Path(name).with_suffix(".png")).mode == "P"
        assert np.array_equal(instances, instance_map(pred["masks"], pred["scores"]).numpy())
        assert instances.max() <= len(pred["masks"])
        assert (out / "drawn" / f"{name}.png").is_file()
