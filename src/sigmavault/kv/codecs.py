"""KV codecs: how a span of keys and values becomes bytes, and back.

``native``  the model's own dtype, bit-exact (bfloat16 included).
``fp16``    half precision (lossy for float32 and bfloat16 models).
``q8/q4``   group-wise integer codes, keys per channel (groups run along tokens) and values
            per token (groups run along channels), as KIVI does; q4 packs two codes per byte.
            ``tail=N`` keeps the last N tokens of every chunk in the model's precision.

A codec turns :class:`KVArrays` into a list of byte sections and back; the chunk file records
the section lengths, and a codec checks them before it reads a byte (a mismatch is Corrupted).
Its ``spec`` is canonical (every parameter spelled out), and is folded into the chunk keys.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sigmavault import validate
from sigmavault.errors import Corrupted, InvalidInput
from sigmavault.kv.arrays import STORAGE, KVArrays, to_float32
from sigmavault.kv.quant import Quantized, dequantize, pack4, quantize, unpack4

__all__ = ["CODECS", "FP16", "Codec", "Native", "Quant", "codec_from_spec"]

Shape = tuple[int, int, int, int]
Sections = Sequence[bytes | memoryview]


class Codec(ABC):
    """Encodes KV spans to byte sections; stateless and thread-safe."""

    @property
    def name(self) -> str:
        """``native``, ``fp16``, ``q8`` or ``q4``."""
        return self.spec.split(",")[0]

    @property
    @abstractmethod
    def spec(self) -> str:
        """Canonical text of this codec and its parameters (part of every chunk key)."""

    @abstractmethod
    def encode(self, kv: KVArrays) -> list[bytes]: ...

    @abstractmethod
    def decode(self, shape: Shape, dtype: str, sections: Sections) -> KVArrays: ...

    def __str__(self) -> str:
        return self.spec


def _expect(sections: Sections, sizes: Sequence[int], spec: str) -> None:
    got = [len(s) for s in sections]
    if got != list(sizes):
        raise Corrupted(f"{spec} chunk has sections of {got} bytes, expected {list(sizes)}")


def _raw(data: bytes | memoryview, dtype: np.dtype[np.generic], shape: Shape) -> npt.NDArray[np.generic]:
    return np.frombuffer(data, dtype=dtype).reshape(shape)


@dataclass(frozen=True)
class Native(Codec):
    """The model's dtype, byte for byte."""

    @property
    def spec(self) -> str:
        return "native"

    def encode(self, kv: KVArrays) -> list[bytes]:
        return [np.ascontiguousarray(kv.keys).tobytes(), np.ascontiguousarray(kv.values).tobytes()]

    def decode(self, shape: Shape, dtype: str, sections: Sections) -> KVArrays:
        store = STORAGE[dtype]
        size = int(np.prod(shape)) * store.itemsize
        _expect(sections, [size, size], self.spec)
        return KVArrays(_raw(sections[0], store, shape), _raw(sections[1], store, shape), dtype)


@dataclass(frozen=True)
class FP16(Codec):
    """IEEE half precision: half the bytes of float32, same bytes as a float16 model."""

    @property
    def spec(self) -> str:
        return "fp16"

    def encode(self, kv: KVArrays) -> list[bytes]:
        out = []
        for arr in (kv.keys, kv.values):
            wide = to_float32(arr, kv.dtype)
            if np.isfinite(wide).all() and float(np.abs(wide).max(initial=0.0)) > 65504.0:
                raise InvalidInput("KV values exceed the float16 range; use codec='native'")
            out.append(wide.astype("<f2").tobytes())
        return out

    def decode(self, shape: Shape, dtype: str, sections: Sections) -> KVArrays:
        size = int(np.prod(shape)) * 2
        _expect(sections, [size, size], self.spec)
        half = np.dtype("<f2")
        return KVArrays(_raw(sections[0], half, shape), _raw(sections[1], half, shape), "float16")


@dataclass(frozen=True)
class Quant(Codec):
    """``bits``-bit group-wise codes; see :mod:`sigmavault.kv.quant` for the error bound."""

    bits: int = 8
    key_group: int = 256
    value_group: int = 128
    tail: int = 0

    def __post_init__(self) -> None:
        if self.bits not in (4, 8):
            raise InvalidInput(f"quantized codecs have 4 or 8 bits, got {self.bits}")
        for field in ("key_group", "value_group"):
            if getattr(self, field) < 1:
                raise InvalidInput(f"{field} must be >= 1, got {getattr(self, field)}")
        if self.tail < 0:
            raise InvalidInput(f"tail must be >= 0 tokens, got {self.tail}")

    @property
    def spec(self) -> str:
        return f"q{self.bits},key_group={self.key_group},value_group={self.value_group},tail={self.tail}"

    def _code_bytes(self, count: int) -> int:
        return count if self.bits == 8 else (count + 1) // 2

    def _pack(self, codes: npt.NDArray[np.uint8]) -> bytes:
        return codes.tobytes() if self.bits == 8 else pack4(codes)

    def encode(self, kv: KVArrays) -> list[bytes]:
        cut = kv.tokens - min(self.tail, kv.tokens)
        out: list[bytes] = []
        if cut:
            keys = quantize(to_float32(kv.keys[:, :, :cut], kv.dtype), axis=2, group=self.key_group, bits=self.bits)
            values = quantize(
                to_float32(kv.values[:, :, :cut], kv.dtype), axis=3, group=self.value_group, bits=self.bits
            )
            for q in (keys, values):
                out += [q.step.tobytes(), q.low.tobytes(), self._pack(q.codes)]
        else:
            out += [b""] * 6
        out.append(np.ascontiguousarray(kv.keys[:, :, cut:]).tobytes())
        out.append(np.ascontiguousarray(kv.values[:, :, cut:]).tobytes())
        return out

    def decode(self, shape: Shape, dtype: str, sections: Sections) -> KVArrays:
        layers, heads, tokens, dim = shape
        kept = min(self.tail, tokens)
        cut = tokens - kept
        key_params = layers * heads * -(-cut // self.key_group) * dim * 2
        value_params = layers * heads * cut * -(-dim // self.value_group) * 2
        codes = self._code_bytes(layers * heads * cut * dim)
        tail = layers * heads * kept * dim * STORAGE[dtype].itemsize
        sizes = [key_params, key_params, codes, value_params, value_params, codes, tail, tail]
        if not cut:
            sizes[:6] = [0] * 6
        _expect(sections, sizes, self.spec)
        parts_k: list[npt.NDArray[np.float32]] = []
        parts_v: list[npt.NDArray[np.float32]] = []
        if cut:
            qshape: Shape = (layers, heads, cut, dim)
            k_groups: Shape = (layers, heads, -(-cut // self.key_group), dim)
            v_groups: Shape = (layers, heads, cut, -(-dim // self.value_group))
            parts_k.append(dequantize(self._unpack(sections[0:3], k_groups, qshape), axis=2, group=self.key_group))
            parts_v.append(dequantize(self._unpack(sections[3:6], v_groups, qshape), axis=3, group=self.value_group))
        if kept:
            tshape: Shape = (layers, heads, kept, dim)
            parts_k.append(to_float32(_raw(sections[6], STORAGE[dtype], tshape), dtype))
            parts_v.append(to_float32(_raw(sections[7], STORAGE[dtype], tshape), dtype))
        keys = parts_k[0] if len(parts_k) == 1 else np.concatenate(parts_k, axis=2)
        values = parts_v[0] if len(parts_v) == 1 else np.concatenate(parts_v, axis=2)
        return KVArrays(keys, values, "float32")

    def _unpack(self, sections: Sections, groups: Shape, shape: Shape) -> Quantized:
        half = np.dtype("<f2")
        count = int(np.prod(shape))
        raw = np.frombuffer(sections[2], dtype=np.uint8) if self.bits == 8 else unpack4(sections[2], count)
        return Quantized(
            codes=raw.reshape(shape),
            step=np.frombuffer(sections[0], dtype=half).reshape(groups),
            low=np.frombuffer(sections[1], dtype=half).reshape(groups),
        )


CODECS = ("native", "fp16", "q8", "q4")
# Defaults chosen so that q8 stays >= 1.9x and q4 >= 3.5x smaller than fp16 at head_dim 64
# (float16 scales cost 32 bits per group).
_QUANT_DEFAULTS = {8: {"key_group": 256, "value_group": 128}, 4: {"key_group": 128, "value_group": 64}}


def codec_from_spec(spec: str | Codec) -> Codec:
    """A codec from ``"native"``, ``"fp16"``, ``"q8"``, ``"q4"`` or e.g. ``"q4,tail=32,key_group=64"``."""
    if isinstance(spec, Codec):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        names = ", ".join(CODECS)
        raise InvalidInput(f"codec must be one of {names} (optionally with options), got {validate.show(spec)}")
    name, *options = [part.strip() for part in spec.strip().lower().split(",")]
    if name == "native" and not options:
        return Native()
    if name == "fp16" and not options:
        return FP16()
    if name not in ("q8", "q4"):
        raise InvalidInput(
            f"unknown codec {spec!r}; use native, fp16, q8 or q4 (q8/q4 take options key_group=, value_group=, tail=)"
        )
    bits = int(name[1])
    params: dict[str, int] = dict(_QUANT_DEFAULTS[bits])
    for option in options:
        key, _, value = option.partition("=")
        if key not in ("key_group", "value_group", "tail") or not value.strip().isdigit():
            raise InvalidInput(f"bad codec option {option!r} in {spec!r}; use key_group=N, value_group=N or tail=N")
        params[key] = int(value)
    return Quant(bits=bits, **params)
