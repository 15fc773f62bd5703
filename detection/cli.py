"""The LightningCLI shared by ``scripts/train.py`` (detection) and ``scripts/train_segmentation.py``.

Defaults added here (see ``configs/README.md``): ModelCheckpoint on ``val/<model.monitor>``
(mode max, ``best.ckpt``, configurable under ``checkpoint:``), ``last.ckpt`` after every epoch
(under ``last_checkpoint:``), LearningRateMonitor when a logger is on, TensorBoard + CSV loggers
sharing one run directory, checkpoints read with ``weights_only=True``.
"""

import re
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI

DEFAULT_RUN_NAME = "detseg"
DEFAULT_LOGGERS = [
    {"class_path": f"lightning.pytorch.loggers.{name}", "init_args": {"save_dir": "runs", "name": DEFAULT_RUN_NAME}}
    for name in ("TensorBoardLogger", "CSVLogger")
]


def _monitor_key(monitor: str) -> str:
    return f"val/{monitor}"


def _next_version(root: Path) -> int:
    """The first free ``version_N`` under ``root`` (what TensorBoardLogger would pick)."""
    taken = [int(m.group(1)) for p in root.glob("version_*") if (m := re.fullmatch(r"version_(\d+)", p.name))]
    return max(taken, default=-1) + 1


class DetectionCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.mode": "max", "checkpoint.filename": "best"})
        parser.link_arguments("model.monitor", "checkpoint.monitor", compute_fn=_monitor_key)
        # Lightning 2.6's `save_last=True` refreshes last.ckpt only when a top-k checkpoint is
        # saved; resuming needs the latest epoch, so a second, unmonitored callback keeps it.
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.set_defaults(
            {
                "last_checkpoint.filename": "last",
                "last_checkpoint.monitor": None,
                "last_checkpoint.save_top_k": 1,
                "last_checkpoint.enable_version_counter": False,
            }
        )

    def before_instantiate_classes(self) -> None:
        """Give the TensorBoard and CSV loggers one shared ``version_N`` so a run lives in one directory."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        loggers = config.trainer.get("logger")
        if not isinstance(loggers, list):
            return
        unversioned = [lg for lg in loggers if "init_args" in lg and lg.init_args.get("version", None) is None]
        roots = {
            Path(lg.init_args.save_dir) / (lg.init_args.get("name") or "")
            for lg in unversioned
            if "save_dir" in lg.init_args
        }
        if len(unversioned) < 2 or len(roots) != 1:
            return
        version = _next_version(roots.pop())
        for logger in unversioned:
            logger.init_args.version = version

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        has_lr_monitor = any(isinstance(cb, LearningRateMonitor) for cb in trainer.callbacks)
        if trainer.loggers and not has_lr_monitor:
            trainer.callbacks.append(LearningRateMonitor(logging_interval="step"))
        return trainer


def run_cli(system: type[L.LightningModule], args: ArgsType = None) -> DetectionCLI:
    """fit / validate / test ``system`` over any LightningDataModule from a YAML config."""
    # The CSV logger shares the run directory on purpose; it only replaces its own metrics.csv.
    warnings.filterwarnings("ignore", message="Experiment logs directory .* exists and is not empty")
    # Evaluator metrics are already gathered from every rank by compute(): no sync_dist wanted.
    warnings.filterwarnings("ignore", message=r"It is recommended to use `self.log\('(val|test)/")
    return DetectionCLI(
        system,
        L.LightningDataModule,
        subclass_mode_data=True,
        trainer_defaults={"logger": DEFAULT_LOGGERS},
        save_config_kwargs={"overwrite": True},
        args=args,
    )
