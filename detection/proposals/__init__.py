"""Region proposals for Fast R-CNN: selective search (``selective_search.py``) and its disk cache (``cache.py``)."""

from detection.proposals.cache import ProposalCache
from detection.proposals.selective_search import image_to_uint8, selective_search

__all__ = ["ProposalCache", "image_to_uint8", "selective_search"]
