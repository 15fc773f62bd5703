"""Under DDP, compute() gathers every rank's records once and drops padded duplicates.

Two CPU processes (gloo) evaluate the shards a padded ``DistributedSampler`` gives them for
an odd number of images (so one image is evaluated on both ranks); every rank must get the
single-process numbers.
"""

import json
import os
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DistributedSampler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_eval_coco import CLASSES, random_batch  # noqa: E402

from detection.evaluation.coco_eval import COCOEvaluator  # noqa: E402
from detection.evaluation.voc_evaluator import VOCEvaluator  # noqa: E402
from segmentation.metrics import ConfusionMatrix  # noqa: E402

NUM_IMAGES = 9  # odd: the padded sampler repeats one image on the second rank
WORLD_SIZE = 2


def _evaluate(indices: list[int]) -> dict[str, float]:
    preds, targets = random_batch(12, num_images=NUM_IMAGES)  # image 0 (the padded one) has objects
    voc = VOCEvaluator(classes=CLASSES)
    coco = COCOEvaluator(classes=CLASSES)
    seg = ConfusionMatrix(classes=CLASSES)
    for i in indices:
        voc.update([preds[i]], [targets[i]])
        coco.update([preds[i]], [targets[i]])
        semantic_target = (targets[i]["masks"] * targets[i]["labels"][:, None, None]).amax(0, keepdim=True) if len(targets[i]["labels"]) else torch.zeros(1, 48, 48, dtype=torch.long)
        seg.update([{"semantic": torch.roll(semantic_target[0], 2, dims=-1)}], [{"semantic": semantic_target[0], "image_id": targets[i]["image_id"]}])
    out = {f"voc/{k}": v for k, v in voc.compute().items()}
    out.update({f"coco/{k}": v for k, v in coco.compute().items()})
    out.update({f"seg/{k}": v for k, v in seg.compute().items()})
    return out


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    try:
        torch.set_num_threads(1)
        sampler = DistributedSampler(range(NUM_IMAGES), num_replicas=WORLD_SIZE, rank=rank, shuffle=False)
        metrics = _evaluate(list(sampler))
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(metrics))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_ddp_gather_removes_padded_duplicates(tmp_path: Path) -> None:
    shards = [list(DistributedSampler(range(NUM_IMAGES), num_replicas=2, rank=r, shuffle=False)) for r in range(2)]
    assert len(shards[0]) + len(shards[1]) == NUM_IMAGES + 1  # one padded duplicate
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    expected = _evaluate(list(range(NUM_IMAGES)))
    with_duplicate = _evaluate(shards[0] + shards[1][:-1])  # sanity: order alone changes nothing
    assert with_duplicate == expected
    for rank in range(WORLD_SIZE):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, abs=1e-12), key
