"""A literal, loop-per-detection transcription of the VOC devkit's ``VOCevaldet.m``.

Slow on purpose: it is the readable oracle that the vectorized ``voc_ap.py`` path is tested
against (``tests/test_eval_voc.py``) and benchmarked against (``python -m benchmarks run eval``).
Boxes here are already in VOC 1-based inclusive coordinates.
"""

from collections.abc import Sequence

import numpy as np


def devkit_ap(
    gt_boxes: Sequence[np.ndarray],
    gt_difficult: Sequence[np.ndarray],
    det_image: Sequence[int],
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    *,
    min_overlap: float,
    use_07_metric: bool,
) -> tuple[float, np.ndarray, np.ndarray]:
    """One class. ``gt_boxes[i] [G_i, 4]``, ``gt_difficult[i] [G_i]`` per image ``i``;
    detections ``det_image [D]``, ``det_boxes [D, 4]``, ``det_scores [D]``.
    Returns ``(ap, recall [D], precision [D])``; ``ap`` is nan when there is no positive."""
    detected = [np.zeros(len(g), dtype=bool) for g in gt_boxes]
    num_pos = sum(int(np.sum(~np.asarray(d, dtype=bool))) for d in gt_difficult)
    order = sorted(range(len(det_scores)), key=lambda d: -float(det_scores[d]))  # stable
    tp = np.zeros(len(order))
    fp = np.zeros(len(order))
    for rank, d in enumerate(order):
        i = int(det_image[d])
        bb = np.asarray(det_boxes[d], dtype=np.float64)
        ovmax, jmax = -np.inf, -1
        for j, bbgt in enumerate(np.asarray(gt_boxes[i], dtype=np.float64)):
            bi = [max(bb[0], bbgt[0]), max(bb[1], bbgt[1]), min(bb[2], bbgt[2]), min(bb[3], bbgt[3])]
            iw = bi[2] - bi[0] + 1
            ih = bi[3] - bi[1] + 1
            if iw > 0 and ih > 0:
                ua = (bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1) + (bbgt[2] - bbgt[0] + 1) * (bbgt[3] - bbgt[1] + 1) - iw * ih
                ov = iw * ih / ua
                if ov > ovmax:
                    ovmax, jmax = ov, j
        if ovmax >= min_overlap:
            if not gt_difficult[i][jmax]:
                if not detected[i][jmax]:
                    tp[rank] = 1
                    detected[i][jmax] = True
                else:
                    fp[rank] = 1
        else:
            fp[rank] = 1
    if num_pos == 0:
        return float("nan"), np.zeros(0), np.zeros(0)
    ctp, cfp = np.cumsum(tp), np.cumsum(fp)
    rec = ctp / num_pos
    prec = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = prec[rec >= t].max() if np.any(rec >= t) else 0.0
            ap += p / 11
        return float(ap), rec, prec
    mrec = [0.0, *rec.tolist(), 1.0]
    mpre = [0.0, *prec.tolist(), 0.0]
    for k in range(len(mpre) - 2, -1, -1):
        mpre[k] = max(mpre[k], mpre[k + 1])
    ap = 0.0
    for k in range(1, len(mrec)):
        if mrec[k] != mrec[k - 1]:
            ap += (mrec[k] - mrec[k - 1]) * mpre[k]
    return float(ap), rec, prec
