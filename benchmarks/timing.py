"""How the speed benchmarks time inference: seconds per image, images per second, best of rounds.

Every timing runs under ``torch.inference_mode`` after a warm-up (the first calls allocate and
pick kernels). On a shared machine other load only ever slows a run down, so the benchmarks
repeat a measure and keep its best (fastest) run; several measures are interleaved round by
round so that a burst of load hits them alike.
"""

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` for the block, the previous count restored after it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def seconds_per_image(fn: Callable[[Tensor], object], images: Sequence[Tensor], *, warmup: int = 1) -> float:
    """Mean seconds of ``fn(image)`` over ``images``, after ``fn`` on the first ``warmup`` images."""
    with torch.inference_mode():
        for image in images[:warmup]:
            fn(image)
        start = time.perf_counter()
        for image in images:
            fn(image)
    return (time.perf_counter() - start) / len(images)


def best_of_rounds(measures: dict[str, Callable[[Tensor], object]], images: Sequence[Tensor], rounds: int) -> dict[str, float]:
    """``seconds_per_image`` of every measure once per round, rounds interleaved; each measure's best round."""
    timings = [{name: seconds_per_image(fn, images) for name, fn in measures.items()} for _ in range(rounds)]
    return {name: min(t[name] for t in timings) for name in measures}


def images_per_second(model: nn.Module, images: Sequence[Tensor], *, batch_size: int, warmup: int, repeats: int) -> float:
    """``model(batch)`` over ``images`` in batches: images/s of the best of ``repeats`` passes (after
    ``warmup`` batches)."""
    batches = [list(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    with torch.inference_mode():
        for batch in batches[:warmup]:
            model(batch)
        best = float("inf")
        for _ in range(repeats):  # best of `repeats` passes over the images: least disturbed by other load
            start = time.perf_counter()
            for batch in batches:
                model(batch)
            best = min(best, time.perf_counter() - start)
    return len(images) / best


@contextlib.contextmanager
def seconds_in(parts: dict[str, tuple[object, str]]) -> Iterator[dict[str, float]]:
    """Wall seconds spent in named methods during the block, summed over their calls.

    ``parts`` maps a label to ``(owner, method name)``: e.g. ``(model.backbone, "forward")`` or
    ``(model, "_select")``. Each method is wrapped on its instance for the block and unwrapped
    after; a part called inside another is counted in both.
    """
    totals = dict.fromkeys(parts, 0.0)

    def timed(label: str, method: Callable) -> Callable:
        def call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                totals[label] += time.perf_counter() - start

        return call

    for label, (owner, name) in parts.items():
        object.__setattr__(owner, name, timed(label, getattr(owner, name)))
    try:
        yield totals
    finally:
        for owner, name in parts.values():
            object.__delattr__(owner, name)
