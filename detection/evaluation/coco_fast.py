"""COCOeval for boxes, vectorized with numpy: pycocotools' algorithm, step for step.

pycocotools (``cocoeval.py``) evaluates every (image, category) pair in Python; even the C++
drop-in ``faster_coco_eval`` spends most of its time on per-pair bookkeeping. Here all pairs
are processed at once: detections are ranked inside their (image, category) group and the
greedy matching runs one *rank* at a time over every group, every IoU threshold and every
area range together. ``tests/test_eval_coco.py`` checks the statistics and the full
precision/recall arrays against pycocotools on randomized data with crowd regions (1e-9;
they come out bit-identical), and ``python -m benchmarks run eval`` at 5,000 x 100 x 20.

Shape letters: ``T`` IoU thresholds (10), ``R`` recall points (101), ``K`` categories,
``A`` area ranges (all, small, medium, large), ``M`` max-detection settings (1, 10, 100),
``D`` detections, ``G`` gts, ``N`` groups active at one rank, ``Gm`` most gts in a group.

pycocotools' rules reproduced here:

- per (image, category): detections sorted by descending score (stable: results order),
  at most 100 kept; gts ordered non-ignored first (stable), where ignored = crowd or area
  outside the range;
- each detection, per threshold ``t``, takes among the still-unmatched (crowd: always
  available) non-ignored gts with IoU >= ``t`` the one of highest IoU (the *last* of equal
  ones, as ``<`` skips and ``==`` replaces); only if there is none, the same among the ignored
  gts; a detection matched to an ignored gt, or unmatched and outside the area range, is ignored;
- box IoU is ``maskApi.c``'s ``bbIou`` on ``[x, y, w, h]``: for a crowd gt the union is the
  detection's area;
- accumulate: per category, area and max-dets, the detections of all images (image order,
  then rank) are stably sorted by score; precision is made monotone and read at the 101
  recall points with ``searchsorted(..., side="left")``.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from datasets.boxes import xyxy_to_xywh
from detection.evaluation.records import ImageRecord

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)  # as pycocotools
RECALL_POINTS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETS = (1, 10, 100)
AREA_RANGES = ((0.0, 1e5**2), (0.0, 32.0**2), (32.0**2, 96.0**2), (96.0**2, 1e5**2))  # all, small, medium, large
MAX_IOU = 1 - 1e-10  # pycocotools caps the threshold it starts the search from


@dataclass
class Params:
    """The subset of ``COCOeval.params`` that readers of the results use."""

    catIds: list[int]  # noqa: N815 (pycocotools' name)
    iouThrs: np.ndarray = field(default_factory=lambda: IOU_THRESHOLDS.copy())  # noqa: N815
    recThrs: np.ndarray = field(default_factory=lambda: RECALL_POINTS.copy())  # noqa: N815
    maxDets: list[int] = field(default_factory=lambda: list(MAX_DETS))  # noqa: N815


@dataclass
class FastCOCOResult:
    """Looks like a finished ``COCOeval`` to its readers: ``stats [12]``,
    ``eval["precision"] [T, R, K, A, M]``, ``eval["recall"] [T, K, A, M]``, ``params``."""

    stats: np.ndarray
    eval: dict[str, np.ndarray]
    params: Params


def _boxes(records: Sequence[ImageRecord], kind: str) -> np.ndarray:
    """xywh float64 of the float32 values the results/gt JSON would hold. ``[D or G, 4]``."""
    parts = [getattr(r, f"{kind}_boxes") for r in records]
    boxes = np.concatenate(parts) if parts else np.zeros((0, 4), dtype=np.float32)
    return xyxy_to_xywh(boxes).astype(np.float64)  # elementwise: same values as per image


def box_iou_xywh(det: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """pycocotools' ``bbIou`` on paired boxes: ``det [..., 4]``, ``gt [..., 4]``, ``crowd [...]``."""
    w = np.minimum(det[..., 2] + det[..., 0], gt[..., 2] + gt[..., 0]) - np.maximum(det[..., 0], gt[..., 0])
    h = np.minimum(det[..., 3] + det[..., 1], gt[..., 3] + gt[..., 1]) - np.maximum(det[..., 1], gt[..., 1])
    inter = w * h
    det_area = det[..., 2] * det[..., 3]
    union = np.where(crowd, det_area, det_area + gt[..., 2] * gt[..., 3] - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((w > 0) & (h > 0), inter / union, 0.0)


def _last_best(qualifies: np.ndarray, iou: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Among qualifying gts (axis 1), the last one with the highest IoU.
    ``[N, Gm, A, T] -> found [N, A, T], slot [N, A, T]``."""
    masked = np.where(qualifies, iou, -np.inf)
    best = masked.max(axis=1, keepdims=True)  # [N, 1, T]
    is_best = qualifies & (masked == best)
    last = is_best.shape[1] - 1 - np.argmax(is_best[:, ::-1, :], axis=1)  # [N, T]
    return qualifies.any(axis=1), last


def evaluate_boxes(records: Sequence[ImageRecord], *, category_ids: Sequence[int], label_to_category: dict[int, int]) -> FastCOCOResult:
    """COCOeval ``bbox`` statistics over ``records``, with pycocotools' numbers."""
    cat_ids = sorted(int(c) for c in category_ids)
    column_of = {c: k for k, c in enumerate(cat_ids)}
    num_k, num_t = len(cat_ids), len(IOU_THRESHOLDS)
    label_column = np.zeros(max(label_to_category) + 1, dtype=np.int64)
    for label, cid in label_to_category.items():
        label_column[label] = column_of[cid]

    # ----------------------------------------------------------------- detections, ranked
    det_img = np.repeat(np.arange(len(records)), [len(r.dt_labels) for r in records])
    det_col = label_column[np.concatenate([r.dt_labels for r in records])] if len(det_img) else np.zeros(0, np.int64)
    det_score = np.concatenate([r.dt_scores for r in records]) if len(det_img) else np.zeros(0)
    det_box = _boxes(records, "dt")
    det_group = det_img * num_k + det_col
    order = np.lexsort((np.arange(len(det_group)), -det_score, det_group))
    det_group, det_score, det_box = det_group[order], det_score[order], det_box[order]
    group_start = np.searchsorted(det_group, det_group, side="left")
    det_rank = np.arange(len(det_group)) - group_start
    keep = det_rank < MAX_DETS[-1]
    det_group, det_score, det_box, det_rank = det_group[keep], det_score[keep], det_box[keep], det_rank[keep]
    det_area = det_box[:, 2] * det_box[:, 3]
    num_d = len(det_group)

    # ------------------------------------------------------------------ gts, by group
    gt_img = np.repeat(np.arange(len(records)), [len(r.gt_labels) for r in records])
    gt_col = label_column[np.concatenate([r.gt_labels for r in records])] if len(gt_img) else np.zeros(0, np.int64)
    gt_box = _boxes(records, "gt")
    gt_crowd = np.concatenate([r.gt_iscrowd for r in records]) if len(gt_img) else np.zeros(0, bool)
    box_area = gt_box[:, 2] * gt_box[:, 3]  # float32 w, h as float64, as coco_ground_truth
    gt_area = np.concatenate(
        [r.gt_area if r.gt_area is not None else np.full(len(r.gt_labels), np.nan) for r in records]
    ) if len(gt_img) else np.zeros(0)  # fmt: skip
    gt_area = np.where(np.isnan(gt_area), box_area, gt_area)
    gt_group = gt_img * num_k + gt_col
    gt_order = np.argsort(gt_group, kind="stable")
    gt_group, gt_box, gt_crowd, gt_area, gt_col = (
        gt_group[gt_order], gt_box[gt_order], gt_crowd[gt_order], gt_area[gt_order], gt_col[gt_order]
    )

    num_a = len(AREA_RANGES)
    lo = np.array([r[0] for r in AREA_RANGES])
    hi = np.array([r[1] for r in AREA_RANGES])
    gt_ignore = gt_crowd[:, None] | (gt_area[:, None] < lo) | (gt_area[:, None] > hi)  # [G, A]
    thresholds = np.minimum(IOU_THRESHOLDS, MAX_IOU)  # [T]
    # Matching state, by area range and threshold. pycocotools visits a group's gts with the
    # non-ignored ones first (stable); "the last best among the non-ignored, else the last best
    # among the ignored" only needs each block's own order, which is the original order.
    det_matched = np.zeros((num_a, num_t, num_d), dtype=bool)
    det_ignored = np.zeros((num_a, num_t, num_d), dtype=bool)
    taken = np.zeros((len(gt_group), num_a, num_t), dtype=bool)
    g_lo = np.searchsorted(gt_group, det_group, side="left")  # gts of each detection's group
    g_count = np.searchsorted(gt_group, det_group, side="right") - g_lo
    # Detections of the same rank never share gts' state within a step (one per group), so a
    # step handles one rank; it is split by group size so that no gt slot is padding.
    has_gt = np.flatnonzero(g_count > 0)
    buckets = has_gt[np.lexsort((g_count[has_gt], det_rank[has_gt]))]
    bucket_key = det_rank[buckets] * (int(g_count.max(initial=0)) + 1) + g_count[buckets]
    cuts = np.flatnonzero(np.diff(bucket_key)) + 1
    for dets in np.split(buckets, cuts) if len(buckets) else []:
        slot = np.arange(int(g_count[dets[0]]))
        cand = g_lo[dets, None] + slot[None, :]  # [N, Gm] gt indices
        iou = box_iou_xywh(det_box[dets, None, :], gt_box[cand], gt_crowd[cand])  # [N, Gm]
        free = ~taken[cand] | gt_crowd[cand][..., None, None]  # [N, Gm, A, T]
        qualifies = free & (iou[..., None, None] >= thresholds)
        ign = gt_ignore[cand][..., None]  # [N, Gm, A, 1]
        found_n, best_n = _last_best(qualifies & ~ign, iou[..., None, None])
        found_i, best_i = _last_best(qualifies & ign, iou[..., None, None])
        found = found_n | found_i  # [N, A, T]
        chosen = np.take_along_axis(cand, np.where(found_n, best_n, best_i).reshape(len(dets), -1), axis=1)
        chosen = chosen.reshape(found.shape)  # [N, A, T] gt indices
        n_idx, a_idx, t_idx = np.nonzero(found)
        taken[chosen[n_idx, a_idx, t_idx], a_idx, t_idx] = True
        det_matched[:, :, dets] = found.transpose(1, 2, 0)
        chosen_ignored = gt_ignore[chosen, np.arange(num_a)[None, :, None]]  # [N, A, T]
        det_ignored[:, :, dets] = (found & chosen_ignored).transpose(1, 2, 0)
    outside = (det_area[None, :] < lo[:, None]) | (det_area[None, :] > hi[:, None])  # [A, D]
    det_ignored |= ~det_matched & outside[:, None, :]

    # ---------------------------------------------------------------------- accumulate
    num_r, num_m = len(RECALL_POINTS), len(MAX_DETS)
    precision = -np.ones((num_t, num_r, num_k, num_a, num_m))
    recall = -np.ones((num_t, num_k, num_a, num_m))
    det_col_sorted = det_group % num_k if num_d else np.zeros(0, np.int64)
    counted = ~det_ignored  # [A, T, D]
    hits = det_matched & counted
    misses = ~det_matched & counted
    for k in range(num_k):
        in_k = np.flatnonzero(det_col_sorted == k)  # image order, then rank: pycocotools' concatenation
        num_pos = np.count_nonzero(~gt_ignore[gt_col == k], axis=0)  # [A]
        areas = np.flatnonzero(num_pos > 0)
        if len(areas) == 0:
            continue
        for m, max_det in enumerate(MAX_DETS):
            sel = in_k[det_rank[in_k] < max_det]
            sel = sel[np.argsort(-det_score[sel], kind="mergesort")]
            nd = len(sel)
            if nd == 0:
                recall[:, k, areas, m] = 0.0
                precision[:, :, k, areas, m] = 0.0
                continue
            tp = np.cumsum(hits[:, :, sel][areas], axis=2).astype(float)  # [A', T, D]
            fp = np.cumsum(misses[:, :, sel][areas], axis=2).astype(float)
            rc = tp / num_pos[areas, None, None]
            pr = tp / (fp + tp + np.spacing(1))
            pr = np.maximum.accumulate(pr[:, :, ::-1], axis=2)[:, :, ::-1]  # monotone envelope
            recall[:, k, areas, m] = rc[:, :, -1].T
            for i, a in enumerate(areas):
                for t in range(num_t):
                    idx = np.searchsorted(rc[i, t], RECALL_POINTS, side="left")
                    inside = idx < nd
                    q = np.zeros(num_r)
                    q[inside] = pr[i, t, idx[inside]]
                    precision[t, :, k, a, m] = q
    params = Params(catIds=cat_ids)
    return FastCOCOResult(stats=summarize(precision, recall), eval={"precision": precision, "recall": recall}, params=params)


def _mean_defined(values: np.ndarray) -> float:
    defined = values[values > -1]
    return float(np.mean(defined)) if defined.size else -1.0


def summarize(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """``COCOeval.summarize()``'s 12 numbers from ``precision [T, R, K, A, M]``, ``recall [T, K, A, M]``."""
    t50 = int(np.flatnonzero(IOU_THRESHOLDS == 0.5)[0])
    t75 = int(np.flatnonzero(IOU_THRESHOLDS == 0.75)[0])
    all_, small, medium, large = range(4)
    m100 = len(MAX_DETS) - 1
    return np.array(
        [
            _mean_defined(precision[:, :, :, all_, m100]),
            _mean_defined(precision[t50, :, :, all_, m100]),
            _mean_defined(precision[t75, :, :, all_, m100]),
            _mean_defined(precision[:, :, :, small, m100]),
            _mean_defined(precision[:, :, :, medium, m100]),
            _mean_defined(precision[:, :, :, large, m100]),
            _mean_defined(recall[:, :, all_, 0]),
            _mean_defined(recall[:, :, all_, 1]),
            _mean_defined(recall[:, :, all_, m100]),
            _mean_defined(recall[:, :, small, m100]),
            _mean_defined(recall[:, :, medium, m100]),
            _mean_defined(recall[:, :, large, m100]),
        ]
    )
