"""Group-wise asymmetric integer quantization (KIVI style) and 4-bit packing, in numpy.

A group is a run of ``group`` elements along one axis (the last group of an axis may be shorter).
Each group stores its minimum and its step as float16 and each element as an unsigned
``bits``-bit integer ``q = round((x - min) / step)``; decoding is ``q * step + min``.

Error bound, per element of a group with minimum ``lo`` and maximum ``hi``::

    |x - decoded| <= (hi - lo) / (2 * (2**bits - 1)) + 2**-10 * (|lo| + |hi|) + 1e-6

The first term is rounding to the grid; the second covers storing ``min`` and ``step`` as
float16 (relative error 2**-11 each); the last covers float16 subnormals and float32 rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sigmavault.errors import InvalidInput

__all__ = ["Quantized", "dequantize", "pack4", "quantize", "unpack4"]

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]
_F16_MAX = 65504.0


@dataclass(frozen=True, slots=True)
class Quantized:
    """Codes (unpacked, one per element) with per-group ``step`` and ``low`` in float16."""

    codes: U8
    step: npt.NDArray[np.float16]
    low: npt.NDArray[np.float16]


def _starts(length: int, group: int) -> npt.NDArray[np.intp]:
    return np.arange(0, length, group, dtype=np.intp)


def _expand(params: F32, length: int, group: int, axis: int) -> F32:
    """Repeat per-group parameters back to one per element along ``axis``."""
    counts = np.diff(np.append(_starts(length, group), length))
    return np.repeat(params, counts, axis=axis)


def quantize(x: F32, *, axis: int, group: int, bits: int) -> Quantized:
    """Quantize ``x`` in groups of ``group`` elements along ``axis``."""
    if group < 1:
        raise InvalidInput(f"quantization group must be >= 1, got {group}")
    if not np.isfinite(x).all():
        raise InvalidInput("KV values contain NaN or infinity; store them with codec='native'")
    length = x.shape[axis]
    qmax = (1 << bits) - 1
    starts = _starts(length, group)
    low = np.minimum.reduceat(x, starts, axis=axis)
    high = np.maximum.reduceat(x, starts, axis=axis)
    if max(float(np.abs(low).max(initial=0.0)), float(np.abs(high).max(initial=0.0))) > _F16_MAX:
        raise InvalidInput("KV values exceed the float16 range of quantization scales; use codec='native'")
    # NOTE: quantize against the float16-rounded parameters actually stored, so that decoding
    # reproduces exactly the grid the codes were chosen on.
    low16 = low.astype(np.float16)
    step16 = ((high - low) / qmax).astype(np.float16)
    low32 = _expand(low16.astype(np.float32), length, group, axis)
    step32 = _expand(step16.astype(np.float32), length, group, axis)
    safe = np.where(step32 > 0, step32, np.float32(1.0))
    codes = np.clip(np.rint((x - low32) / safe), 0, qmax).astype(np.uint8)
    return Quantized(codes=codes, step=step16, low=low16)


def dequantize(q: Quantized, *, axis: int, group: int) -> F32:
    """Inverse of :func:`quantize` (up to the stated error bound)."""
    length = q.codes.shape[axis]
    step = _expand(q.step.astype(np.float32), length, group, axis)
    low = _expand(q.low.astype(np.float32), length, group, axis)
    out: F32 = q.codes.astype(np.float32) * step + low
    return out


def pack4(codes: U8) -> bytes:
    """Two 4-bit codes per byte, low nibble first (an odd count gets a zero high nibble)."""
    flat = codes.reshape(-1)
    if flat.size % 2:
        flat = np.append(flat, np.uint8(0))
    return ((flat[0::2] & 0x0F) | (flat[1::2] << 4)).astype(np.uint8).tobytes()


def unpack4(data: bytes | memoryview, count: int) -> U8:
    """``count`` codes from :func:`pack4` bytes."""
    raw = np.frombuffer(data, dtype=np.uint8)
    out = np.empty(raw.size * 2, dtype=np.uint8)
    out[0::2] = raw & 0x0F
    out[1::2] = raw >> 4
    return out[:count]
