"""Evaluation: VOC and COCO detection AP, ILSVRC classification + localization, region AP,
results files and reports. Every evaluator follows ``reset / update / compute``
(``docs/ARCHITECTURE.md``) and also offers ``pr_curves()`` and ``protocol_text()`` for reports.
"""

from detection.evaluation.cls_loc import ClsLocEvaluator
from detection.evaluation.coco_eval import COCOEvaluator
from detection.evaluation.pr_curve import UNDEFINED_AP, PRCurve
from detection.evaluation.region_ap import RegionAPEvaluator
from detection.evaluation.voc_evaluator import VOCEvaluator

__all__ = ["COCOEvaluator", "ClsLocEvaluator", "PRCurve", "RegionAPEvaluator", "UNDEFINED_AP", "VOCEvaluator"]
