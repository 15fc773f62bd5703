"""Train, validate or test a detector from a YAML config (LightningCLI over DetectionSystem).

    python scripts/train.py fit      --config configs/example_shapes.yaml
    python scripts/train.py fit      --config configs/example_shapes.yaml --ckpt_path .../checkpoints/last.ckpt  # resume
    python scripts/train.py validate --config configs/example_shapes.yaml --ckpt_path .../checkpoints/best.ckpt
    python scripts/train.py test     --config configs/example_shapes.yaml --ckpt_path .../checkpoints/best.ckpt

The CLI's defaults (checkpointing, loggers) are described in ``detection/cli.py`` and
``configs/README.md``.
"""

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from lightning.pytorch.cli import ArgsType  # noqa: E402

from detection.cli import DetectionCLI, run_cli  # noqa: E402
from detection.system import DetectionSystem  # noqa: E402


def main(args: ArgsType = None) -> DetectionCLI:
    return run_cli(DetectionSystem, args)


if __name__ == "__main__":
    main()
