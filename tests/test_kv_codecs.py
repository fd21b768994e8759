"""KV codecs and the chunk file format: exactness, error bounds, real packed sizes, a fuzzed reader."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sigmavault.errors import Corrupted
from sigmavault.kv import KVArrays, codec_from_spec
from sigmavault.kv.arrays import STORAGE, to_float32
from sigmavault.kv.chunkfile import decode_chunk, encode_chunk, read_chunk, write_chunk
from sigmavault.kv.keys import ROOT
from sigmavault.kv.quant import pack4, unpack4


def kv_arrays(rng: np.random.Generator, shape: tuple[int, int, int, int], dtype: str = "float32") -> KVArrays:
    """Keys with per-channel offsets and outlier channels (as real keys have), values near zero."""
    layers, heads, _, dim = shape
    keys = rng.standard_normal(shape) + rng.normal(0, 3, (layers, heads, 1, dim))
    keys[..., :: max(1, dim // 4)] *= 8.0
    values = rng.standard_normal(shape) * 0.5
    if dtype == "bfloat16":

        def bf16(x: np.ndarray) -> np.ndarray:
            return (x.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)

        return KVArrays(bf16(keys), bf16(values), "bfloat16")
    return KVArrays(keys.astype(STORAGE[dtype]), values.astype(STORAGE[dtype]), dtype)


def roundtrip(spec: str, kv: KVArrays) -> KVArrays:
    codec = codec_from_spec(spec)
    return codec.decode(kv.keys.shape, kv.dtype, codec.encode(kv))  # type: ignore[arg-type]


def group_bound(x: np.ndarray, *, axis: int, group: int, bits: int) -> np.ndarray:
    """The bound stated in sigmavault.kv.quant, element by element."""
    starts = np.arange(0, x.shape[axis], group)
    counts = np.diff(np.append(starts, x.shape[axis]))
    lo = np.repeat(np.minimum.reduceat(x, starts, axis=axis), counts, axis=axis)
    hi = np.repeat(np.maximum.reduceat(x, starts, axis=axis), counts, axis=axis)
    return (hi - lo) / (2 * ((1 << bits) - 1)) + 2.0**-10 * (np.abs(lo) + np.abs(hi)) + 1e-6


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64"])
def test_native_is_bit_exact(dtype: str) -> None:
    kv = kv_arrays(np.random.default_rng(0), (2, 3, 37, 16), dtype)
    out = roundtrip("native", kv)
    assert out.dtype == dtype
    assert out.keys.tobytes() == kv.keys.tobytes() and out.values.tobytes() == kv.values.tobytes()


def test_fp16_error_is_half_precision_rounding() -> None:
    kv = kv_arrays(np.random.default_rng(1), (2, 2, 40, 16))
    out = roundtrip("fp16", kv)
    assert out.dtype == "float16"
    for a, b in ((kv.keys, out.keys), (kv.values, out.values)):
        assert np.all(np.abs(a - b.astype(np.float32)) <= np.abs(a) * 2.0**-11 + 2.0**-24)


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("shape", [(2, 2, 256, 64), (1, 3, 37, 24)])
def test_quantized_round_trip_stays_within_the_stated_bound(
    bits: int, dtype: str, shape: tuple[int, int, int, int]
) -> None:
    kv = kv_arrays(np.random.default_rng(bits), shape, dtype)
    spec = f"q{bits},key_group=32,value_group=16" if shape[2] < 64 else f"q{bits}"
    codec = codec_from_spec(spec)
    out = roundtrip(spec, kv)
    keys, values = to_float32(kv.keys, dtype), to_float32(kv.values, dtype)
    kg, vg = codec.key_group, codec.value_group  # type: ignore[attr-defined]
    assert np.all(np.abs(out.keys - keys) <= group_bound(keys, axis=2, group=kg, bits=bits))
    assert np.all(np.abs(out.values - values) <= group_bound(values, axis=3, group=vg, bits=bits))
    # and the bound is not vacuous: relative error of the whole tensor is small
    rel = np.linalg.norm(out.keys - keys) / np.linalg.norm(keys)
    assert rel < (0.01 if bits == 8 else 0.15)


def test_tail_tokens_are_kept_exactly() -> None:
    kv = kv_arrays(np.random.default_rng(2), (2, 2, 64, 16))
    out = roundtrip("q4,tail=16", kv)
    assert np.array_equal(out.keys[:, :, -16:], kv.keys[:, :, -16:])
    assert np.array_equal(out.values[:, :, -16:], kv.values[:, :, -16:])
    assert not np.array_equal(out.keys[:, :, :-16], kv.keys[:, :, :-16])
    short = kv.span(0, 10)  # a chunk shorter than the tail is all tail
    again = roundtrip("q4,tail=16", short)
    assert np.array_equal(again.keys, short.keys)


def test_packed_bytes_are_real_and_meet_the_compression_targets() -> None:
    kv = kv_arrays(np.random.default_rng(3), (8, 4, 256, 64), "float16")
    tokens = np.arange(256, dtype=np.uint32)
    size = {
        spec: len(encode_chunk(codec_from_spec(spec), kv, tokens=tokens, start=0, parent=ROOT, fingerprint=ROOT))
        for spec in ("fp16", "q8", "q4")
    }
    assert size["fp16"] / size["q8"] >= 1.9
    assert size["fp16"] / size["q4"] >= 3.5
    codes = np.random.default_rng(4).integers(0, 16, 1001).astype(np.uint8)
    packed = pack4(codes)
    assert len(packed) == 501 and np.array_equal(unpack4(packed, 1001), codes)


def test_chunk_payload_round_trip(tmp_path: Path) -> None:
    kv = kv_arrays(np.random.default_rng(5), (2, 2, 30, 8), "bfloat16")
    tokens = np.arange(100, 130, dtype=np.uint32)
    payload = encode_chunk(
        codec_from_spec("native"), kv, tokens=tokens, start=256, parent=b"\x01" * 32, fingerprint=b"\x02" * 32
    )
    path = tmp_path / "c.kvc"
    write_chunk(path, b"\x03" * 32, payload, None)
    chunk = decode_chunk(read_chunk(path, b"\x03" * 32, None))
    assert (chunk.start, chunk.parent, chunk.fingerprint, chunk.codec) == (256, b"\x01" * 32, b"\x02" * 32, "native")
    assert chunk.tokens.tolist() == tokens.tolist()
    assert chunk.kv.keys.tobytes() == kv.keys.tobytes()


_PAYLOAD = encode_chunk(
    codec_from_spec("q4,tail=2"),
    kv_arrays(np.random.default_rng(6), (1, 2, 9, 8)),
    tokens=np.arange(9, dtype=np.uint32),
    start=0,
    parent=ROOT,
    fingerprint=ROOT,
)


@settings(max_examples=300, deadline=None)
@given(
    cut=st.integers(0, len(_PAYLOAD)),
    flips=st.lists(st.tuples(st.integers(0, len(_PAYLOAD) - 1), st.integers(1, 255)), max_size=4),
)
def test_reader_fuzz_never_raises_anything_but_corrupted(cut: int, flips: list[tuple[int, int]]) -> None:
    data = bytearray(_PAYLOAD[:cut] if cut < len(_PAYLOAD) else _PAYLOAD)
    for pos, mask in flips:
        if pos < len(data):
            data[pos] ^= mask
    with contextlib.suppress(Corrupted):  # the property: nothing else ever escapes
        decode_chunk(bytes(data))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pos=st.integers(0, 10_000), mask=st.integers(1, 255))
def test_any_flipped_byte_in_a_chunk_file_is_detected(tmp_path: Path, pos: int, mask: int) -> None:
    path = tmp_path / "flip.kvc"
    write_chunk(path, ROOT, _PAYLOAD, None)
    data = bytearray(path.read_bytes())
    data[pos % len(data)] ^= mask
    path.write_bytes(bytes(data))
    with pytest.raises(Corrupted):
        read_chunk(path, ROOT, None)
