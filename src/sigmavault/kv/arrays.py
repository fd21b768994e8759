"""The torch-free form of a KV span: stacked key and value arrays plus the dtype they stand for.

Everything below the transformers adapter (codecs, chunk files, tiers) works on :class:`KVArrays`,
so the store is usable and testable without torch, and by runtimes that are not transformers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sigmavault.errors import InvalidInput

__all__ = ["STORAGE", "KVArrays", "concat", "to_float32"]

# How each model dtype is held in numpy. NOTE: numpy has no bfloat16, so bfloat16 tensors travel as
# their raw 16-bit patterns (uint16); that keeps the native codec bit-exact for bf16 models.
STORAGE: dict[str, np.dtype[np.generic]] = {
    "float32": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
    "bfloat16": np.dtype("<u2"),
    "float64": np.dtype("<f8"),
}


@dataclass(frozen=True, slots=True)
class KVArrays:
    """Keys and values for a span of tokens, each ``[layers, kv_heads, tokens, head_dim]``.

    ``dtype`` names the model dtype the arrays stand for; ``keys.dtype`` is ``STORAGE[dtype]``.
    """

    keys: npt.NDArray[np.generic]
    values: npt.NDArray[np.generic]
    dtype: str

    def __post_init__(self) -> None:
        want = STORAGE.get(self.dtype)
        if want is None:
            raise InvalidInput(f"unsupported KV dtype {self.dtype!r}; use one of {', '.join(STORAGE)}")
        if self.keys.ndim != 4 or self.keys.shape != self.values.shape:
            raise InvalidInput(
                f"keys and values must both be [layers, heads, tokens, head_dim]; got {self.keys.shape} "
                f"and {self.values.shape}"
            )
        if self.keys.dtype != want or self.values.dtype != want:
            raise InvalidInput(f"{self.dtype} KV arrays must be stored as {want}, got {self.keys.dtype}")

    @property
    def tokens(self) -> int:
        return int(self.keys.shape[2])

    @property
    def nbytes(self) -> int:
        return int(self.keys.nbytes + self.values.nbytes)

    def span(self, start: int, end: int) -> KVArrays:
        """Tokens ``[start, end)`` as views (no copy)."""
        return KVArrays(self.keys[:, :, start:end], self.values[:, :, start:end], self.dtype)


def to_float32(values: npt.NDArray[np.generic], dtype: str) -> npt.NDArray[np.float32]:
    """Exact widening to float32 (bfloat16 bit patterns become the same numbers)."""
    if dtype == "bfloat16":
        return (values.astype(np.uint32) << 16).view(np.float32)
    return values.astype(np.float32)


def concat(parts: Sequence[KVArrays]) -> KVArrays:
    """One span from consecutive spans of the same dtype (always a fresh, writable copy)."""
    if not parts:
        raise InvalidInput("nothing to concatenate")
    dtypes = {p.dtype for p in parts}
    if len(dtypes) != 1:
        raise InvalidInput(f"cannot join KV spans of different dtypes {sorted(dtypes)}")
    keys = np.concatenate([p.keys for p in parts], axis=2)
    values = np.concatenate([p.values for p in parts], axis=2)
    return KVArrays(keys, values, parts[0].dtype)
