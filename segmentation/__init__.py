"""Semantic segmentation: FCN, its Lightning system, metrics and palette output."""
