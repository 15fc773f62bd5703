"""Train, validate or test a semantic segmentation model (LightningCLI over SegmentationSystem).

    python scripts/train_segmentation.py fit  --config configs/fcn/shapes.yaml
    python scripts/train_segmentation.py fit  --config configs/fcn/shapes.yaml --model.model.init_args.variant 16s \\
        --model.init_from runs/fcn_shapes/version_0/checkpoints/best.ckpt   # staged: 32s -> 16s
    python scripts/train_segmentation.py test --config configs/fcn/shapes.yaml --ckpt_path .../checkpoints/best.ckpt

Same CLI defaults as ``scripts/train.py`` (``detection/cli.py``).
"""

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from lightning.pytorch.cli import ArgsType  # noqa: E402

from detection.cli import DetectionCLI, run_cli  # noqa: E402
from segmentation.system import SegmentationSystem  # noqa: E402


def main(args: ArgsType = None) -> DetectionCLI:
    return run_cli(SegmentationSystem, args)


if __name__ == "__main__":
    main()
