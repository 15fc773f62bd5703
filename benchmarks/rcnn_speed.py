"""Test-time speed: R-CNN (the CNN on every warped region) vs Fast R-CNN (one conv pass per image).

Both models come from their configs (``configs/{rcnn,fast_rcnn}/shapes.yaml``: same backbone and
tap, same selective-search settings), untrained (timing does not depend on the weights; R-CNN's
stage buffers are marked fitted so that its full test path runs: SVM scoring, box regression,
NMS; both use ``score_thresh=0``).

The ratio the issue asks for compares *the same network*: Fast R-CNN is built with R-CNN's
pool5 grid (``pool_size``, what R-CNN's crop gives at the tap, as VGG-16's 7 x 7 pool5 is the
RoI pool size in the paper), so the two differ only in where the convolutions run. Fast R-CNN as
its own config builds it is timed too (shapes: a 7 x 7 RoI grid where R-CNN's pool5 is 4 x 4, so
a 3x wider fc6; voc07: the same network either way).

Proposal time is excluded: both models read the *same* proposals from one in-memory bundle
(``precomputed_proposals``), computed once before timing through the proposal cache
(``data/proposals``), so what is timed is a cache hit plus the network and the postprocess.
50 test images of the generated shapes (``data/shapes``, 128 px, ~110 proposals per image, 64-px
crops), batch 1, 2 torch threads, one warm-up image, then 3 interleaved rounds and the best of
each (fair under a loaded machine). The paper reports 47 s vs 0.32 s per VOC image with VGG-16
on a GPU (Fast R-CNN, table 4).

    OMP_NUM_THREADS=1 python -m benchmarks run rcnn_speed [--quick]

The paper's setting, the VOC07 configs (VGG-16 for both, 227-px crops, a 600-px shorter side for
Fast R-CNN, up to 2000 selective-search boxes), is not part of the run (untrained weights:
minutes per image for R-CNN on a CPU); time it on a VOC-layout root with ``measure``::

    from benchmarks.rcnn_speed import measure
    measure("voc07", "../shared/data/voc_bccd/BCCD", images=1, rounds=1)

Figures: ``rcnn_s_per_image``, ``fast_rcnn_s_per_image`` (R-CNN's pool5 grid: the same network),
``fast_rcnn_config_s_per_image`` (as the config builds it), ``ratio`` (R-CNN / Fast R-CNN, same
network), ``proposals_per_image``, ``rcnn_crop_size``, ``pool5``, ``images``, ``threads``.
"""

import tempfile
from pathlib import Path

import torch
import yaml
from torch import nn

from benchmarks.fast_vs_faster import split_images
from benchmarks.runs import REPO, shapes, tiny_shapes
from benchmarks.timing import best_of_rounds, torch_threads
from detection.checkpoint import build_model, load_detector
from detection.proposals.cache import ProposalCache
from detection.proposals.selective_search import image_to_uint8
from detection.rcnn import RCNN

THREADS = 2
ROUNDS = 3
IMAGES = 50
PROPOSAL_KEYS = ("proposal_mode", "max_proposals", "proposal_min_size")


def _with_bundle(model_config: dict, bundle: Path) -> dict:
    """A copy of ``class_path / init_args`` reading proposals from ``bundle`` only, keeping every detection."""
    init_args = {**model_config["init_args"], "cache_dir": None, "precomputed_proposals": str(bundle), "score_thresh": 0.0}
    return {**model_config, "init_args": init_args}


def _build(config: Path, checkpoint: str | None, bundle: Path, **overrides: int) -> nn.Module:
    """The config's model (or the checkpoint's, with its weights), ``overrides`` replacing init args."""
    if checkpoint is not None:
        loaded = load_detector(checkpoint)
        model = build_model(_with_bundle(loaded.model_config, bundle))
        model.load_state_dict(loaded.model.state_dict())
        return model.eval()
    model_config = _with_bundle(yaml.safe_load(config.read_text())["model"]["model"], bundle)
    model_config["init_args"].update(overrides)
    backbone_args = model_config["init_args"]["backbone"].setdefault("init_args", {})
    if "weights" in backbone_args:  # pretrained backbones (VGG-16): timing does not depend on the weights
        backbone_args["weights"] = None
    model = build_model(model_config).eval()
    if isinstance(model, RCNN):
        with torch.no_grad():
            model.svm_fitted.fill_(True)
            model.regressor_fitted.fill_(True)
    return model


def measure(
    configs: str, root: str | Path, *, images: int = IMAGES, split: str = "test", cache_dir: str | Path | None = None,
    threads: int = THREADS, rounds: int = ROUNDS, rcnn_ckpt: str | None = None, fast_rcnn_ckpt: str | None = None,
) -> dict:
    """R-CNN vs Fast R-CNN seconds per image with ``configs/{rcnn,fast_rcnn}/<configs>.yaml`` on ``split``
    of ``root`` (shapes for ``shapes``, else a VOC-layout root); the module's figures."""
    torch.manual_seed(0)
    data_format = "shapes" if configs == "shapes" else "voc"
    pictures = split_images(Path(root), images, split=split, data_format=data_format)
    rcnn_config = REPO / "configs" / "rcnn" / f"{configs}.yaml"
    fast_rcnn_config = REPO / "configs" / "fast_rcnn" / f"{configs}.yaml"
    settings = yaml.safe_load(rcnn_config.read_text())["model"]["model"]["init_args"]
    fast_settings = yaml.safe_load(fast_rcnn_config.read_text())["model"]["model"]["init_args"]
    if any(settings[k] != fast_settings[k] for k in PROPOSAL_KEYS):
        raise ValueError(f"the two configs' selective-search settings differ: {[(k, settings[k], fast_settings[k]) for k in PROPOSAL_KEYS]}")
    cache = ProposalCache(cache_dir, mode=settings["proposal_mode"], max_proposals=settings["max_proposals"],
                          min_size=settings["proposal_min_size"])  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench_rcnn_speed_") as tmp, torch_threads(threads):
        bundle = dict(cache.entry(image_to_uint8(image)) for image in pictures)  # canonical orientation
        path = Path(tmp) / "proposals.pt"
        torch.save(bundle, path)
        rcnn = _build(rcnn_config, rcnn_ckpt, path)
        pool5 = rcnn.region_net.pool.output_size  # R-CNN's pool5 grid and fc width, given to Fast R-CNN
        models = {
            "rcnn": rcnn,
            "fast_rcnn": _build(fast_rcnn_config, None, path, pool_size=pool5, representation_size=rcnn.region_net.fc7.out_features),
            "fast_rcnn_config": _build(fast_rcnn_config, fast_rcnn_ckpt, path),
        }
        for model in models.values():
            model.proposals.precomputed()  # loaded before timing
        best = best_of_rounds({name: (lambda im, m=model: m([im])) for name, model in models.items()}, pictures, rounds)
    return {
        "rcnn_s_per_image": round(best["rcnn"], 4),
        "fast_rcnn_s_per_image": round(best["fast_rcnn"], 4),
        "fast_rcnn_config_s_per_image": round(best["fast_rcnn_config"], 4),
        "ratio": round(best["rcnn"] / best["fast_rcnn"], 2),
        "proposals_per_image": round(sum(len(b) for b in bundle.values()) / max(1, len(bundle)), 1),
        "rcnn_crop_size": rcnn.crop_size,
        "pool5": pool5,
        "images": len(pictures),
        "threads": threads,
    }


def run(quick: bool) -> dict:
    if not quick:
        return measure("shapes", shapes(), cache_dir=REPO / "data" / "proposals")
    with tempfile.TemporaryDirectory(prefix="bench_rcnn_speed_quick_") as tmp:
        root = tiny_shapes(Path(tmp) / "shapes")
        return measure("shapes", root, images=1, cache_dir=Path(tmp) / "proposals", threads=1, rounds=1)
