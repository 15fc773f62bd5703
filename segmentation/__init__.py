"""Semantic segmentation: FCN (the shared detector contract, with `semantic` maps) and the confusion-matrix evaluator."""
