"""What ``scripts/train.py`` prints is its own (``detection/quiet.py``): no Lightning advertisement,
no deprecation raised by Lightning's own code, while a warning about the user's run still shows."""

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

from detection.quiet import LIGHTNING_TIP, RANK_ZERO_LOGGERS, quiet_third_party

REPO = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 300
ADVERTISEMENT = "litlogger"
LEAFSPEC = "isinstance(treespec, LeafSpec)"
MAX_TIME_WARNING = "trainer.max_time (0:10:00 left) may stop the run"


def test_train_fit_prints_no_advertisement_nor_lightning_deprecation_but_the_users_warning(shapes_root, tmp_path) -> None:
    """A ``fast_dev_run`` fit as a user runs it (a subprocess: every line on stdout and stderr), with a
    ``max_time`` that may cut the cosine schedule: detseg's own warning about it must show."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "PYTHONWARNINGS": ""}
    command = [
        sys.executable, str(REPO / "scripts" / "train.py"), "fit", "--config", str(REPO / "configs" / "faster_rcnn" / "shapes.yaml"),
        "--trainer.fast_dev_run", "1", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(tmp_path), "--trainer.max_time", "00:00:10:00",
        "--data.init_args.root", str(shapes_root.root), "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "2",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=REPO)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "`Trainer.fit` stopped" in output  # the run's own progress still prints
    assert ADVERTISEMENT not in output and LIGHTNING_TIP not in output, output
    assert LEAFSPEC not in output, output
    assert MAX_TIME_WARNING in output, output


def test_the_filters_drop_only_their_own_messages(caplog) -> None:
    quiet_third_party()
    quiet_third_party()  # idempotent: one filter per logger
    logger = logging.getLogger(RANK_ZERO_LOGGERS[0])
    assert sum(type(f).__name__ == "DropLightningTips" for f in logger.filters) == 1
    with caplog.at_level(logging.INFO, logger=RANK_ZERO_LOGGERS[0]):
        logger.info(f"{LIGHTNING_TIP} logging, try installing [litlogger]")
        logger.info("GPU available: False, used: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        quiet_third_party()  # its filter goes in front of the "default" one
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning, stacklevel=1)
        warnings.warn("another deprecation", FutureWarning, stacklevel=1)
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, but a UserWarning", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["another deprecation", "`isinstance(treespec, LeafSpec)` is deprecated, but a UserWarning"]
