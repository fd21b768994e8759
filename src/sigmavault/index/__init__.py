"""Search mechanisms over vectors and integer row ids; nothing here knows about units."""

from sigmavault.index.exact import METRICS, exact_search, normalize, top_k
from sigmavault.index.simhash import BITS, hamming_similarity, hyperplanes, signatures

__all__ = ["BITS", "METRICS", "exact_search", "hamming_similarity", "hyperplanes", "normalize", "signatures", "top_k"]
