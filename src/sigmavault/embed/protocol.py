"""What an embedder is: any object with ``dim`` and ``embed(texts)``, or a plain callable."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from sigmavault.errors import DimensionMismatch, InvalidInput
from sigmavault.types import Vector

__all__ = ["CallableEmbedder", "Embedder", "as_embedder", "check_matrix"]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into an (n, dim) float32 matrix."""

    @property
    def dim(self) -> int | None: ...

    def embed(self, texts: Sequence[str]) -> Any: ...


class CallableEmbedder:
    """Adapts ``fn(list[str]) -> (n, d) array``; learns ``dim`` from its first answer."""

    def __init__(self, fn: Callable[[list[str]], Any], *, name: str | None = None, dim: int | None = None) -> None:
        self.fn = fn
        self.name = name or getattr(fn, "__qualname__", None) or type(fn).__name__
        self._dim = dim

    @property
    def dim(self) -> int | None:
        return self._dim

    def embed(self, texts: Sequence[str]) -> Vector:
        out = check_matrix(self.fn(list(texts)), rows=len(texts), dim=self._dim, what=f"embedder {self.name!r}")
        self._dim = out.shape[1]
        return out


def embedder_name(embedder: Any) -> str:
    """A stable label stored with a collection, so a reopen can tell embedders apart."""
    name = getattr(embedder, "name", None)
    if isinstance(name, str) and name:
        return name
    return type(embedder).__qualname__


def as_embedder(obj: Any) -> Embedder:
    """Accept an :class:`Embedder` as is, or wrap a plain callable."""
    if hasattr(obj, "embed") and hasattr(obj, "dim"):
        return obj  # type: ignore[no-any-return]
    if callable(obj):
        return CallableEmbedder(obj)
    raise InvalidInput(
        f"embedder must be a callable texts -> (n, d) array or an object with dim and embed(); got {type(obj).__name__}"
    )


def check_matrix(values: Any, *, rows: int | None = None, dim: int | None = None, what: str = "vectors") -> Vector:
    """Validate an (n, d) finite float matrix and return it as contiguous float32."""
    try:
        with np.errstate(over="ignore"):  # NOTE: a value beyond float32 becomes inf, refused below
            arr = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise InvalidInput(f"{what}: not a numeric matrix ({exc})") from None
    if arr.ndim == 1 and rows == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise InvalidInput(f"{what}: expected a 2-d (n, dim) array, got {arr.ndim}-d shape {arr.shape}")
    if rows is not None and arr.shape[0] != rows:
        raise InvalidInput(f"{what}: expected {rows} rows, got {arr.shape[0]}")
    if arr.shape[1] == 0:
        raise DimensionMismatch(f"{what}: vectors have zero length")
    if dim is not None and arr.shape[1] != dim:
        raise DimensionMismatch(f"{what}: expected {dim}-d vectors, got {arr.shape[1]}-d")
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise InvalidInput(f"{what}: row {bad} contains NaN or infinity")
    return np.ascontiguousarray(arr)
