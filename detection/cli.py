"""The LightningCLI shared by ``scripts/train.py`` (detection) and ``scripts/train_segmentation.py``.

Defaults added here (see ``configs/README.md``): ModelCheckpoint on ``val/<model.monitor>``
(mode max, ``best.ckpt``, configurable under ``checkpoint:``), ``last.ckpt`` after every epoch
(under ``last_checkpoint:``, e.g. ``every_n_train_steps`` for a schedule in steps), LearningRateMonitor when a logger is on, TensorBoard + CSV loggers
sharing one run directory, checkpoints read with ``weights_only=True``.

``model.model.init_args.num_classes`` comes from the data: it is linked to the instantiated data
module's ``num_classes`` (its class names: from the annotations when the config leaves them out),
so a config may leave it out. A value written anyway must equal the data's; otherwise the run
stops with an error naming both and what to set.
"""

import json
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI

from detection.quiet import quiet_third_party

DEFAULT_RUN_NAME = "detseg"
NUM_CLASSES_KEY = "model.model.init_args.num_classes"
NULLS = ("null", "Null", "NULL", "~")
DEFAULT_LOGGERS = [
    {"class_path": f"lightning.pytorch.loggers.{name}", "init_args": {"save_dir": "runs", "name": DEFAULT_RUN_NAME}}
    for name in ("TensorBoardLogger", "CSVLogger")
]


def _monitor_key(monitor: str) -> str:
    return f"val/{monitor}"


def _data_num_classes(data: L.LightningDataModule) -> int:
    """The link source of ``model.model.init_args.num_classes``: the data module's foreground class count."""
    return data.num_classes


def nested_nulls_as_json(args: list[str]) -> list[str]:
    """``--a.init_args.b.init_args.c null`` -> ``--a.init_args.b {"init_args": {"c": null}}``.

    jsonargparse 4.53 re-parses an override two subclass levels down from its Python ``str()``:
    ``null`` arrives as the string ``'None'`` (e.g. ``--model.model.init_args.backbone.init_args.weights
    null`` gave "unknown weights 'None'"). The same override written one level up, as the
    ``init_args`` dict it merges into, keeps the ``None`` and the other init args.
    """
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if "=" in arg:  # --key=value
            (key, value), width = arg.split("=", 1), 1
        else:  # --key value
            key, value, width = arg, args[i + 1] if i + 1 < len(args) else None, 2
        prefix, _, leaf = key.rpartition(".init_args.")
        if key.startswith("--") and ".init_args." in prefix and "." not in leaf and value in NULLS:
            out += [prefix, json.dumps({"init_args": {leaf: None}})]
            i += width
        else:
            out.append(arg)
            i += 1
    return out


def _next_version(root: Path) -> int:
    """The first free ``version_N`` under ``root`` (what TensorBoardLogger would pick)."""
    taken = [int(m.group(1)) for p in root.glob("version_*") if (m := re.fullmatch(r"version_(\d+)", p.name))]
    return max(taken, default=-1) + 1


class DetectionCLI(LightningCLI):
    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        """Parse, with ``null`` overrides of nested subclass arguments meaning ``None`` (see :func:`nested_nulls_as_json`)."""
        if args is None:
            sys.argv[1:] = nested_nulls_as_json(sys.argv[1:])
        elif isinstance(args, list):
            args = nested_nulls_as_json(args)
        super().parse_arguments(parser, args)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.mode": "max", "checkpoint.filename": "best"})
        parser.link_arguments("model.monitor", "checkpoint.monitor", compute_fn=_monitor_key)
        parser.link_arguments("data", NUM_CLASSES_KEY, compute_fn=_data_num_classes, apply_on="instantiate")
        # Lightning 2.6's `save_last=True` refreshes last.ckpt only when a top-k checkpoint is
        # saved; resuming needs the latest epoch, so a second, unmonitored callback keeps it, at
        # the end of every training epoch (by default Lightning would wait for a validation, which
        # `check_val_every_n_epoch > 1` makes rare).
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.set_defaults(
            {
                "last_checkpoint.filename": "last",
                "last_checkpoint.monitor": None,
                "last_checkpoint.save_top_k": 1,
                "last_checkpoint.enable_version_counter": False,
                "last_checkpoint.save_on_train_epoch_end": True,
            }
        )

    def before_instantiate_classes(self) -> None:
        """Remember a ``num_classes`` the config gives (the link replaces it); share one logger ``version_N``."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        self._given_num_classes = config.get(NUM_CLASSES_KEY)
        self._share_logger_version(config)

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        given, data = getattr(self, "_given_num_classes", None), self.datamodule
        if given is not None and given != data.num_classes:
            names = getattr(data, "classes", None)  # a data module may know them only after setup
            raise ValueError(
                f"{NUM_CLASSES_KEY}={given} but the data has {data.num_classes} foreground classes"
                f"{f' {list(names)}' if names else ''}: remove num_classes from the config (it is taken "
                f"from the data) or set it to {data.num_classes}"
            )

    def _share_logger_version(self, config: Any) -> None:
        """Give the TensorBoard and CSV loggers one shared ``version_N`` so a run lives in one directory."""
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
    quiet_third_party()  # no Lightning advertisement, no deprecation from Lightning's own code (detection/quiet.py)
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
