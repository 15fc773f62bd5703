"""Precompute selective-search proposals into the proposal cache, one dataset split at a time.

The images are read exactly as the model receives them (no augmentation, ``round(x * 255)``),
so the cache keys match what ``FastRCNN`` looks up. ``--config`` takes the dataset and the
proposal settings from a Fast R-CNN config; any flag overrides it.

    python scripts/make_proposals.py --config configs/fast_rcnn/shapes.yaml
    python scripts/make_proposals.py --format voc --root data/VOCdevkit/VOC2007 --splits trainval test \\
        --mode fast --cache-dir data/proposals [--bundle voc07_fast.pt]

``--bundle`` also writes one ``dict[key, Tensor[R, 4]]`` file for ``FastRCNN(precomputed_proposals=...)``.
"""

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch  # noqa: E402
import yaml  # noqa: E402
from tqdm import tqdm  # noqa: E402

from datasets.datamodule import DetectionDataModule  # noqa: E402
from datasets.errors import DatasetError  # noqa: E402
from detection.proposals.cache import ProposalCache  # noqa: E402
from detection.proposals.selective_search import MAX_PROPOSALS, MIN_BOX_SIDE, image_to_uint8  # noqa: E402

DEFAULTS = {"format": "shapes", "root": "data/shapes", "splits": ["train", "val", "test"], "mode": "fast",
            "max_proposals": MAX_PROPOSALS, "min_size": MIN_BOX_SIDE, "cache_dir": "data/proposals"}


def settings_from_config(path: Path) -> dict:
    """Dataset and proposal settings of a ``FastRCNN`` config (what the flags would be)."""
    config = yaml.safe_load(path.read_text())
    model = config["model"]["model"]["init_args"]
    data = config["data"]["init_args"]
    splits = [data.get(f"{stage}_split", stage) for stage in ("train", "val", "test")]
    found = {
        "format": data.get("format"), "root": data.get("root"), "splits": list(dict.fromkeys(splits)),
        "mode": model.get("proposal_mode"), "max_proposals": model.get("max_proposals"),
        "min_size": model.get("proposal_min_size"), "cache_dir": model.get("cache_dir"),
    }
    return {key: value for key, value in found.items() if value is not None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="a configs/fast_rcnn/*.yaml to take the settings from")
    parser.add_argument("--format", choices=["shapes", "voc", "coco"])
    parser.add_argument("--root", nargs="+", help="dataset root(s); VOC07+12 takes two")
    parser.add_argument("--splits", nargs="+", help="split names (VOC ImageSets, COCO instances_<split>)")
    parser.add_argument("--mode", choices=["fast", "quality"])
    parser.add_argument("--max-proposals", type=int)
    parser.add_argument("--min-size", type=int)
    parser.add_argument("--cache-dir")
    parser.add_argument("--bundle", type=Path, help="also write every entry into one .pt file")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    settings = dict(DEFAULTS)
    if args.config is not None:
        settings.update(settings_from_config(args.config))
    settings.update({k: v for k, v in vars(args).items() if k in DEFAULTS and v is not None})
    roots = settings["root"] if isinstance(settings["root"], list) else [settings["root"]]
    cache = ProposalCache(settings["cache_dir"], mode=settings["mode"], max_proposals=settings["max_proposals"],
                          min_size=settings["min_size"])
    print(f"{cache}; {settings['format']} {roots} splits {settings['splits']}")
    bundle: dict[str, torch.Tensor] = {}
    for root in roots:
        for split in settings["splits"]:
            try:
                dataset = DetectionDataModule(format=settings["format"], root=root, test_split=split, augment=False).dataset("test")
            except (DatasetError, FileNotFoundError) as error:
                print(f"skip {root} {split}: {error}")
                continue
            computed, proposals, start = 0, 0, time.perf_counter()
            for index in tqdm(range(len(dataset)), desc=f"{Path(root).name}/{split}", unit="img", disable=args.no_progress):
                pixels = image_to_uint8(dataset[index][0])
                key = cache.key(pixels)
                computed += cache.root is None or not cache.path(key).is_file()  # no second read of the entry
                boxes = cache.entry(pixels)[1]
                proposals += len(boxes)
                if args.bundle is not None:
                    bundle[key] = boxes
            seconds = time.perf_counter() - start
            print(f"{root} {split}: {len(dataset)} images ({computed} computed, {len(dataset) - computed} cached), "
                  f"{proposals / max(len(dataset), 1):.0f} proposals/img, {seconds:.1f} s")
    if args.bundle is not None:
        args.bundle.parent.mkdir(parents=True, exist_ok=True)
        torch.save(bundle, args.bundle)
        print(f"bundle: {args.bundle} ({len(bundle)} images)")


if __name__ == "__main__":
    main()
