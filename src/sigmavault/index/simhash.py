"""SimHash signatures of embeddings: seeded random hyperplanes, one bit per plane.

Two vectors at angle θ agree on each bit with probability 1 - θ/π, so the Hamming similarity of
their signatures estimates their angular similarity. Signatures are 64-bit and compared with a
vectorised popcount over the whole collection at once.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["BITS", "hamming_similarity", "hyperplanes", "signatures"]

BITS = 64


def hyperplanes(dim: int, seed: int, bits: int = BITS) -> npt.NDArray[np.float32]:
    """The (dim, bits) projection; the same seed gives the same planes on every machine."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((dim, bits)).astype(np.float32)


def signatures(vectors: npt.NDArray[np.float32], planes: npt.NDArray[np.float32]) -> npt.NDArray[np.uint64]:
    """One unsigned 64-bit signature per row of ``vectors`` (bit i = sign of projection i)."""
    bits = (np.atleast_2d(vectors) @ planes) > 0
    packed = np.packbits(bits, axis=1, bitorder="little")
    return np.ascontiguousarray(packed).view("<u8").reshape(-1).astype(np.uint64)


def hamming_similarity(signatures_: npt.NDArray[np.uint64], probe: int, bits: int = BITS) -> npt.NDArray[np.float64]:
    """``1 - hamming(sig, probe) / bits`` for every signature, without a Python loop."""
    diff = np.bitwise_xor(signatures_, np.uint64(probe))
    return 1.0 - _popcount(diff).astype(np.float64) / bits


def _popcount(words: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint8]:
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(words)
    # NOTE: numpy 1.x fallback: count the bits of each byte through a 256-entry table.
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
    as_bytes = np.ascontiguousarray(words).view(np.uint8).reshape(-1, 8)
    counts: npt.NDArray[np.uint8] = table[as_bytes].sum(axis=1, dtype=np.uint8)
    return counts
