"""Box checks shared by every reader and the dataset checker.

Policy (see ``docs/bad_input.md``): a degenerate box (``x2 <= x1`` or ``y2 <= y1``) or a
box wholly outside the image is dropped and reported as an error; a box partly outside
the image is clipped to it and reported as a warning. Nothing is dropped silently: every
finding is returned as a :class:`~datasets.errors.Problem`, which readers keep in
``dataset.problems`` and also emit as a Python warning.
"""

import numpy as np

from datasets.errors import Problem


def check_boxes(
    path: str, boxes: np.ndarray, height: int, width: int, *, as_written: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, list[Problem]]:
    """``boxes [K, 4]`` xyxy -> (clipped boxes ``[K, 4]``, keep mask ``[K]`` bool, problems).

    ``as_written`` (``[K, 4]`` corners in the file's own convention) makes the degenerate test
    apply to the numbers as annotated: a VOC box with ``xmin == xmax`` is a zero-size click, not
    a one-pixel object, although VOC's inclusive convention would make it one pixel wide.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    written = boxes if as_written is None else np.asarray(as_written, dtype=np.float32).reshape(-1, 4)
    problems: list[Problem] = []
    clipped = boxes.copy()
    np.clip(clipped[:, 0::2], 0, width, out=clipped[:, 0::2])
    np.clip(clipped[:, 1::2], 0, height, out=clipped[:, 1::2])
    degenerate = (written[:, 2] <= written[:, 0]) | (written[:, 3] <= written[:, 1])
    outside = ~degenerate & ((clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1]))
    partly = ~degenerate & ~outside & np.any(clipped != boxes, axis=1)
    for i in np.flatnonzero(degenerate):
        problems.append(Problem(path, f"object {i}: degenerate box {written[i].tolist()} as written (x2 <= x1 or y2 <= y1), dropped"))
    for i in np.flatnonzero(outside):
        problems.append(Problem(path, f"object {i}: box {boxes[i].tolist()} lies outside the {width}x{height} image, dropped"))
    for i in np.flatnonzero(partly):
        problems.append(
            Problem(path, f"object {i}: box {boxes[i].tolist()} extends outside the {width}x{height} image, clipped", "warning")
        )
    return clipped, ~(degenerate | outside), problems
