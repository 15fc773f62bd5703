"""PASCAL VOC average precision: the devkit's IoU, greedy matching and AP, vectorized.

This is the algorithm of the VOC devkit's ``VOCevaldet.m`` (and of the widely used Python
transcription ``voc_eval.py``), reorganized to run on whole arrays instead of a Python loop
per detection. ``voc_devkit_loop.py`` is the literal loop transcription; the tests and
``python -m benchmarks run eval`` check that both give identical numbers.

Shape letters: ``D`` detections, ``G`` ground-truth boxes, ``P`` (detection, gt) candidate
pairs (same image, same class).

The devkit, per class:

1. Sort all detections of the class by descending confidence. MATLAB's ``sort`` is stable, so
   ties keep the order of the results file. We use a stable sort too, on records kept in
   ascending ``image_id`` order, detections within an image in the order the model gave
   them; ``results_io.write_voc_results`` writes the files in that same order, so the
   official devkit sees the same tie order.
2. For each detection (in that order) compute the IoU with *every* gt of the class in the
   same image (difficult and already matched ones included) and take the maximum ``ovmax``
   at ``jmax`` (strict ``>``: the first gt wins ties).
3. ``ovmax >= min_overlap``: if ``gt[jmax]`` is difficult the detection is ignored (neither
   TP nor FP); else if ``gt[jmax]`` is not yet detected it is a TP (and marked detected);
   else it is an FP (a duplicate). ``ovmax < min_overlap`` (or no gt): FP.
4. ``npos`` counts the non-difficult gts; ``recall = cumsum(tp) / npos``,
   ``precision = cumsum(tp) / (cumsum(tp) + cumsum(fp))``.

Because ``jmax`` depends only on the detection (not on which gts are already matched), step
3 is: a qualifying detection is a TP exactly when it is the *first* detection, in sorted
order, whose ``jmax`` is that gt. That is what :func:`greedy_match` computes with
``np.unique``.

IoU convention. The devkit works on VOC's 1-based *inclusive* pixel indices and adds 1 to
every width and height. detseg boxes are 0-based continuous (``docs/ARCHITECTURE.md``);
:func:`voc_pairwise_iou` first converts them with ``datasets.boxes.xyxy_to_voc``
(``xmin = x1 + 1``, ``xmax = x2``) and then applies the devkit formula, so that a box read
from a VOC XML and written back to a results file is scored exactly as the devkit scores it.
(For the converted boxes the ``+1`` terms cancel: the value equals the continuous IoU.)
"""

import numpy as np

from datasets.boxes import xyxy_to_voc
from detection.evaluation.pr_curve import UNDEFINED_AP, PRCurve

VOC_PIXEL_INCLUSIVE = 1.0  # the devkit's "+1" on widths and heights
# VOC2007 11-point AP at recall k * 0.1: the same doubles as the devkit's 0:0.1:1 and
# voc_eval.py's np.arange(0, 1.1, 0.1) (so 0.30000000000000004, not 0.3).
VOC07_RECALL_POINTS = np.arange(11) * 0.1


def voc_box_iou(det_voc: np.ndarray, gt_voc: np.ndarray) -> np.ndarray:
    """The devkit's overlap of paired boxes already in VOC inclusive coordinates.

    ``det_voc [P, 4]``, ``gt_voc [P, 4]`` -> ``[P]`` float64; 0 where they don't intersect.
    """
    det = np.asarray(det_voc, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt_voc, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(det[:, 2], gt[:, 2]) - np.maximum(det[:, 0], gt[:, 0]) + VOC_PIXEL_INCLUSIVE
    ih = np.minimum(det[:, 3], gt[:, 3]) - np.maximum(det[:, 1], gt[:, 1]) + VOC_PIXEL_INCLUSIVE
    intersects = (iw > 0) & (ih > 0)
    inter = np.where(intersects, iw * ih, 0.0)
    det_area = (det[:, 2] - det[:, 0] + VOC_PIXEL_INCLUSIVE) * (det[:, 3] - det[:, 1] + VOC_PIXEL_INCLUSIVE)
    gt_area = (gt[:, 2] - gt[:, 0] + VOC_PIXEL_INCLUSIVE) * (gt[:, 3] - gt[:, 1] + VOC_PIXEL_INCLUSIVE)
    union = det_area + gt_area - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(intersects, inter / union, 0.0)
    return iou


def voc_pairwise_iou(det_xyxy: np.ndarray, gt_xyxy: np.ndarray) -> np.ndarray:
    """Devkit IoU of detseg xyxy boxes, all pairs: ``[D, 4]``, ``[G, 4]`` -> ``[D, G]`` float64."""
    det = xyxy_to_voc(det_xyxy)
    gt = xyxy_to_voc(gt_xyxy)
    d_idx, g_idx = np.meshgrid(np.arange(len(det)), np.arange(len(gt)), indexing="ij")
    return voc_box_iou(det[d_idx.ravel()], gt[g_idx.ravel()]).reshape(len(det), len(gt))


def best_box_overlaps(
    det_key: np.ndarray, det_voc: np.ndarray, gt_key: np.ndarray, gt_voc: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each detection, the devkit's ``ovmax`` and ``jmax`` over the gts with the same key.

    A key identifies one (image, class) group. Args: ``det_key [D]`` int64, ``det_voc [D, 4]``,
    ``gt_key [G]`` int64, ``gt_voc [G, 4]`` (boxes in VOC inclusive coordinates).
    Returns ``ovmax [D]`` float64 (``-inf`` when the group has no gt) and ``jmax [D]`` int64
    (an index into the gt arrays, ``-1`` when the group has no gt). Ties go to the lowest gt
    index, as the devkit's strict ``>`` does.
    """
    num_det = len(det_key)
    ovmax = np.full(num_det, -np.inf)
    jmax = np.full(num_det, -1, dtype=np.int64)
    if num_det == 0 or len(gt_key) == 0:
        return ovmax, jmax
    gt_order = np.argsort(gt_key, kind="stable")
    sorted_keys = gt_key[gt_order]
    start = np.searchsorted(sorted_keys, det_key, side="left")
    stop = np.searchsorted(sorted_keys, det_key, side="right")
    counts = stop - start
    # Expand to candidate pairs: detection d meets gts sorted_keys[start[d]:stop[d]].
    pair_det = np.repeat(np.arange(num_det), counts)  # [P]
    offsets = np.arange(len(pair_det)) - np.repeat(np.cumsum(counts) - counts, counts)
    pair_gt = gt_order[np.repeat(start, counts) + offsets]  # [P], indices into gt arrays
    if len(pair_det) == 0:
        return ovmax, jmax
    pair_iou = voc_box_iou(det_voc[pair_det], gt_voc[pair_gt])
    return _reduce_pairs(num_det, pair_det, pair_gt, pair_iou)


def _reduce_pairs(
    num_det: int, pair_det: np.ndarray, pair_gt: np.ndarray, pair_iou: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Max IoU per detection over its pairs, ties to the lowest gt index. ``[P] -> [D], [D]``."""
    ovmax = np.full(num_det, -np.inf)
    jmax = np.full(num_det, -1, dtype=np.int64)
    order = np.lexsort((pair_gt, -pair_iou, pair_det))  # by det, then IoU desc, then gt index
    first = np.ones(len(order), dtype=bool)
    first[1:] = pair_det[order][1:] != pair_det[order][:-1]
    winners = order[first]
    ovmax[pair_det[winners]] = pair_iou[winners]
    jmax[pair_det[winners]] = pair_gt[winners]
    return ovmax, jmax


def greedy_match(
    ovmax: np.ndarray, jmax: np.ndarray, gt_difficult: np.ndarray, *, iou_threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """The devkit's TP/FP assignment for detections already in sorted (descending score) order.

    Args: ``ovmax [D]``, ``jmax [D]`` from :func:`best_box_overlaps` (or a mask IoU),
    ``gt_difficult [G]`` bool. Returns ``tp [D]``, ``fp [D]`` bool; a detection whose best gt
    is difficult is neither.
    """
    qualifies = ovmax >= iou_threshold
    difficult = np.zeros(len(ovmax), dtype=bool)
    difficult[qualifies] = gt_difficult[jmax[qualifies]]
    candidate = qualifies & ~difficult
    tp = np.zeros(len(ovmax), dtype=bool)
    cand_idx = np.flatnonzero(candidate)
    _, first = np.unique(jmax[cand_idx], return_index=True)  # first detection per gt
    tp[cand_idx[first]] = True
    fp = ~qualifies | (candidate & ~tp)
    return tp, fp


def precision_recall(tp: np.ndarray, fp: np.ndarray, num_positives: int) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative ``precision [D]``, ``recall [D]`` over detections in sorted order.

    Ignored detections (neither TP nor FP) leave the curve unchanged at their position, as in
    the devkit. ``num_positives`` is the number of non-difficult gts (must be > 0).
    """
    ctp = np.cumsum(tp, dtype=np.float64)
    cfp = np.cumsum(fp, dtype=np.float64)
    recall = ctp / float(num_positives)
    # The first detections may all be ignored (tp + fp == 0): precision 0 there, as voc_eval.py.
    precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    return precision, recall


def average_precision(recall: np.ndarray, precision: np.ndarray, *, use_07_metric: bool) -> float:
    """VOC AP from a PR curve. ``recall [D]``, ``precision [D]`` in detection order.

    ``use_07_metric``: VOC2007's 11-point interpolated AP: the mean over ``t = 0, 0.1, ..., 1``
    of the best precision at recall ``>= t`` (0 when recall never reaches ``t``).
    Otherwise VOC2010+'s area under the interpolated curve: precision made monotonically
    decreasing from the right, summed over the recall steps.
    """
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    if use_07_metric:
        ap = 0.0
        for t in VOC07_RECALL_POINTS:
            reached = recall >= t
            ap += (precision[reached].max() if reached.any() else 0.0) / len(VOC07_RECALL_POINTS)
        return float(ap)
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # envelope: max precision to the right
    steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))


def detection_order(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Indices ``[D]`` sorting detections by class, then descending score, then input order.

    Within one class this is the devkit's stable descending sort by confidence.
    """
    return np.lexsort((np.arange(len(scores)), -np.asarray(scores, dtype=np.float64), labels))


def class_curves(
    sorted_labels: np.ndarray,
    tp: np.ndarray,
    fp: np.ndarray,
    gt_labels: np.ndarray,
    gt_difficult: np.ndarray,
    *,
    num_classes: int,
    use_07_metric: bool,
) -> list[PRCurve]:
    """Per-class PR curves and AP from matched detections (sorted by :func:`detection_order`).

    ``sorted_labels [D]``, ``tp [D]``, ``fp [D]``; ``gt_labels [G]``, ``gt_difficult [G]``.
    Returns ``num_classes`` curves, index ``label - 1``. A class without non-difficult gts
    has no defined AP (``UNDEFINED_AP``): the devkit would divide by zero there.
    """
    curves = []
    bounds = np.searchsorted(sorted_labels, np.arange(1, num_classes + 2), side="left")
    for label in range(1, num_classes + 1):
        lo, hi = bounds[label - 1], bounds[label]
        num_pos = int(np.count_nonzero((gt_labels == label) & ~gt_difficult))
        if num_pos == 0:
            empty = np.zeros(0)
            curves.append(PRCurve(precision=empty, recall=empty, ap=UNDEFINED_AP, num_gt=0, num_det=int(hi - lo)))
            continue
        precision, recall = precision_recall(tp[lo:hi], fp[lo:hi], num_pos)
        ap = average_precision(recall, precision, use_07_metric=use_07_metric)
        curves.append(PRCurve(precision=precision, recall=recall, ap=ap, num_gt=num_pos, num_det=int(hi - lo)))
    return curves
