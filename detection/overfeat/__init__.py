"""OverFeat (Sermanet et al. 2013): FC layers as convolutions, offset pooling, box regression,
multi-scale test and greedy merging."""

from detection.overfeat.merge import MERGE_THRESHOLD, greedy_merge, match_scores
from detection.overfeat.model import OverFeat
from detection.overfeat.network import OverFeatHeads, OverFeatNet, offset_pool_interleave
from detection.overfeat.targets import decode_edges, encode_edges, window_targets

__all__ = [
    "MERGE_THRESHOLD",
    "OverFeat",
    "OverFeatHeads",
    "OverFeatNet",
    "decode_edges",
    "encode_edges",
    "greedy_merge",
    "match_scores",
    "offset_pool_interleave",
    "window_targets",
]
