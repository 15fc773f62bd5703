"""What our commands print is theirs: no third-party advertisement, no deprecation we cannot fix.

``quiet_third_party()`` runs where a command starts (``detection.cli.run_cli`` for
``scripts/train.py``, and the ``main`` of ``scripts/evaluate.py``, ``predict.py``, ``export.py``).
It drops exactly two kinds of output, each matched by its own text:

- Lightning's advertisements, logged at INFO on rank 0 when a Trainer starts ("💡 Tip: For
  seamless cloud logging ... litlogger", and its "... cloud uploads ... litmodels" sibling).
  Lightning offers no switch for them, so a ``logging.Filter`` on its rank-zero loggers drops the
  records that start with ``LIGHTNING_TIP``; every other record of those loggers passes.
- torch's ``FutureWarning`` "`isinstance(treespec, LeafSpec)` is deprecated", raised by
  Lightning's own ``utilities/_pytree.py`` on this torch version whenever a batch is fetched;
  our code does not use ``LeafSpec``, so there is nothing for us to change, and the filter matches
  that message only.

Everything else shows: warnings about the user's own run (``detection/optim.py``: ``max_time``
cutting the schedule), and any other deprecation (``tests/test_quiet_commands.py``).
"""

import logging
import warnings

LIGHTNING_TIP = "💡 Tip: For seamless cloud"
LEAFSPEC_DEPRECATION = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
# rank_zero_info logs through whichever of these Lightning's packages imported last
RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class DropLightningTips(logging.Filter):
    """Drops the log records that start with ``LIGHTNING_TIP``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(LIGHTNING_TIP)


def quiet_third_party() -> None:
    """Install the advertisement filter and the ``LeafSpec`` warning filter (idempotent)."""
    for name in RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropLightningTips) for f in logger.filters):
            logger.addFilter(DropLightningTips())
    warnings.filterwarnings("ignore", message=LEAFSPEC_DEPRECATION, category=FutureWarning)
