"""Collecting per-image records from all DDP ranks, once, without padded duplicates.

``DistributedSampler`` pads the dataset so that every rank gets the same number of samples:
the first few images are evaluated twice, on two ranks. Counting them twice would bias every
metric, so after gathering we keep one record per ``image_id``.

Records are returned sorted by ``image_id`` whatever the world size or batch order, so the
result (including how ties in score are broken) does not depend on how the data was split.
"""

from collections.abc import Callable, Sequence
from typing import TypeVar

import torch.distributed as dist

R = TypeVar("R")


def distributed_world() -> bool:
    """True inside an initialized ``torch.distributed`` process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def deduplicate(records: Sequence[R], *, key: Callable[[R], int], allow_duplicates: bool) -> list[R]:
    """Keep the first record per key, sorted by key.

    ``allow_duplicates=False`` (one process: nothing pads the data) raises on a repeated key,
    which means ``image_id`` is not unique or the same images were fed twice.
    """
    kept: dict[int, R] = {}
    for record in records:
        k = key(record)
        if k in kept:
            if not allow_duplicates:
                raise ValueError(
                    f"image_id {k} was given to the evaluator twice; image ids must be unique "
                    "(call reset() between evaluations)"
                )
            continue
        kept[k] = record
    return [kept[k] for k in sorted(kept)]


def gather_objects(local: list[R]) -> list[R]:
    """All ranks' lists concatenated in rank order (one ``all_gather_object``); local otherwise."""
    if not distributed_world():
        return list(local)
    per_rank: list[list[R] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(per_rank, local)
    return [item for rank_items in per_rank for item in (rank_items or [])]


def gather_records(local: list[R], *, key: Callable[[R], int] = lambda r: r.image_id) -> list[R]:
    """Gather from every rank (under DDP), drop padded duplicates, sort by ``image_id``.

    Every rank gets the full list, so ``compute()`` gives the same numbers on every rank.
    """
    distributed = distributed_world()
    return deduplicate(gather_objects(local), key=key, allow_duplicates=distributed)
