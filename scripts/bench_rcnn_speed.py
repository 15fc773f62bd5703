"""Test-time speed: R-CNN (the CNN on every warped region) vs Fast R-CNN (one conv pass per image).

Both models come from their configs (same backbone and tap, same selective-search
settings), untrained unless ``--rcnn-ckpt`` / ``--fast-rcnn-ckpt`` give trained weights (timing
does not depend on the weights; untrained, R-CNN's stage buffers are marked fitted so that its
full test path runs: SVM scoring, box regression, NMS; both use ``score_thresh=0``).

The ratio the issue asks for compares *the same network*: Fast R-CNN is built with R-CNN's
pool5 grid (``pool_size``, what R-CNN's crop gives at the tap, as VGG-16's 7 x 7 pool5 is the
RoI pool size in the paper), so the two differ only in where the convolutions run. Fast R-CNN as
its own config builds it is timed too and printed beside it (shapes: a 7 x 7 RoI grid where
R-CNN's pool5 is 4 x 4, so a 3x wider fc6; voc07: the same network either way).

Proposal time is excluded: both models read the *same* proposals from one in-memory bundle
(``precomputed_proposals``), computed once before timing, so what is timed is a cache hit plus
the network and the postprocess. Batch 1, ``--threads`` torch threads, one warm-up image, then
``--rounds`` interleaved rounds and the best of each (fair under a loaded machine). The paper
reports 47 s vs 0.32 s per VOC image with VGG-16 on a GPU (Fast R-CNN, table 4).

    python scripts/bench_rcnn_speed.py [--images 50] [--root data/shapes] [--split test] [--cache-dir data/proposals]
    python scripts/bench_rcnn_speed.py --configs voc07 --root ../shared/data/voc_bccd/BCCD --images 1 --rounds 1

``--configs shapes`` (default) times the shapes configs (SmallCNN, 128-px images, ~110 proposals
per image, 64-px crops) on the generated shapes; ``--configs voc07`` times the VOC07 configs, the
paper's setting (VGG-16 for both, 227-px crops, a 600-px shorter side for Fast R-CNN, up to 2000
selective-search boxes) on the images of a VOC-layout ``--root`` (untrained weights unless a
checkpoint is given: minutes per image for R-CNN on a CPU).
"""

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch  # noqa: E402
import yaml  # noqa: E402
from torch import nn  # noqa: E402

from bench_fast_vs_faster import seconds_per_image  # noqa: E402 (scripts/ is on the path when this runs)
from datasets.datamodule import DetectionDataModule  # noqa: E402
from detection.checkpoint import build_model, load_detector  # noqa: E402
from detection.proposals.cache import ProposalCache  # noqa: E402
from detection.proposals.selective_search import image_to_uint8  # noqa: E402
from detection.rcnn import RCNN  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
THREADS = 2
ROUNDS = 3


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
    model_config["init_args"]["backbone"]["init_args"]["weights"] = None  # timing does not depend on the weights
    model = build_model(model_config).eval()
    if isinstance(model, RCNN):
        with torch.no_grad():
            model.svm_fitted.fill_(True)
            model.regressor_fitted.fill_(True)
    return model


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="shapes", choices=["shapes", "voc07"], help="configs/{rcnn,fast_rcnn}/<this>.yaml")
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--root", default="data/shapes", help="shapes root, or a VOC-layout root for --configs voc07")
    parser.add_argument("--split", default="test")
    parser.add_argument("--cache-dir", default="data/proposals", help="proposal cache to read (and fill)")
    parser.add_argument("--rcnn-ckpt", default=None)
    parser.add_argument("--fast-rcnn-ckpt", default=None)
    parser.add_argument("--threads", type=int, default=THREADS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data_format = "shapes" if args.configs == "shapes" else "voc"
    dataset = DetectionDataModule(format=data_format, root=args.root, test_split=args.split, augment=False).dataset("test")
    images = [dataset[i][0] for i in range(min(args.images, len(dataset)))]
    rcnn_config = REPO / "configs" / "rcnn" / f"{args.configs}.yaml"
    fast_rcnn_config = REPO / "configs" / "fast_rcnn" / f"{args.configs}.yaml"

    settings = yaml.safe_load(rcnn_config.read_text())["model"]["model"]["init_args"]
    fast_settings = yaml.safe_load(fast_rcnn_config.read_text())["model"]["model"]["init_args"]
    if any(settings[k] != fast_settings[k] for k in PROPOSAL_KEYS):
        raise SystemExit(f"the two configs' selective-search settings differ: {[(k, settings[k], fast_settings[k]) for k in PROPOSAL_KEYS]}")
    cache = ProposalCache(args.cache_dir, mode=settings["proposal_mode"], max_proposals=settings["max_proposals"],
                          min_size=settings["proposal_min_size"])
    with tempfile.TemporaryDirectory() as tmp:
        bundle = dict(cache.entry(image_to_uint8(image)) for image in images)  # canonical orientation
        path = Path(tmp) / "proposals.pt"
        torch.save(bundle, path)
        rcnn = _build(rcnn_config, args.rcnn_ckpt, path)
        pool5 = rcnn.region_net.pool.output_size  # R-CNN's pool5 grid and fc width, given to Fast R-CNN
        models = {
            "rcnn": rcnn,
            "fast_rcnn": _build(fast_rcnn_config, None, path, pool_size=pool5, representation_size=rcnn.region_net.fc7.out_features),
            "fast_rcnn_config": _build(fast_rcnn_config, args.fast_rcnn_ckpt, path),
        }
        for model in models.values():
            model.proposals.precomputed()  # loaded before timing
        measures = {name: (lambda im, m=model: m([im])) for name, model in models.items()}
        rounds = [{name: seconds_per_image(fn, images) for name, fn in measures.items()} for _ in range(args.rounds)]
    best = {name: min(r[name] for r in rounds) for name in measures}
    boxes = sum(len(b) for b in bundle.values()) / max(1, len(bundle))
    ratio = best["rcnn"] / best["fast_rcnn"]

    print(f"{len(images)} {args.root} {args.split} images ({args.configs} configs), {boxes:.0f} cached proposals/img (proposal time excluded), "
          f"batch 1, {torch.get_num_threads()} torch threads, best of {args.rounds} rounds")
    print(f"{'model':12s} {'s/image':>9s}")
    print(f"{'R-CNN':12s} {best['rcnn']:9.4f}   ({models['rcnn'].crop_size}-px crops, one CNN pass per region)")
    print(f"{'Fast R-CNN':12s} {best['fast_rcnn']:9.4f}   (one CNN pass per image, RoI pooling to R-CNN's {pool5}x{pool5} pool5: the same network)")
    print(f"{'':12s} {best['fast_rcnn_config']:9.4f}   (as configs/fast_rcnn/{args.configs}.yaml builds it: {models['fast_rcnn_config'].roi_heads.box_roi_pool.output_size} RoI grid)")
    print(f"R-CNN / Fast R-CNN: {ratio:.1f}x slower (paper, VGG-16 on VOC: 47 s / 0.32 s = 147x)")
    return {"rcnn_s_per_image": best["rcnn"], "fast_rcnn_s_per_image": best["fast_rcnn"], "ratio": ratio,
            "fast_rcnn_config_s_per_image": best["fast_rcnn_config"]}


if __name__ == "__main__":
    main()
