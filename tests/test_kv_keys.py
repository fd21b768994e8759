"""KV prefix keys: chained SHA-256, identical across processes; fingerprints, token ids and kv_refs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import python_env

from sigmavault.errors import InvalidInput
from sigmavault.kv import Fingerprint, codec_from_spec, format_ref, parse_ref
from sigmavault.kv.keys import ROOT, chain, chunk_key, chunk_spans, leads, tokens_of

FP = Fingerprint(model="m", dtype="float16", layers=2, kv_heads=2, head_dim=16)


def keys_for(tokens: list[int], chunk: int = 4, codec: str = "native", fp: Fingerprint = FP) -> list[str]:
    arr = np.asarray(tokens, dtype=np.uint32)
    return [k.hex() for k in chain(fp.digest(codec), arr, list(chunk_spans(len(arr), chunk)))]


def test_known_answer_pins_the_key_format() -> None:
    # NOTE: if this changes, every stored KV cache becomes unreachable; bump DOMAIN deliberately.
    assert FP.digest("native").hex() == "4084e8f2fdb4097a0f2d6754d3096117c5581ca244ab3fd156894ffb27ebd689"
    assert keys_for(list(range(10)))[-1] == "96a9ebfb6dbf60a813a59f3942c6411c5b22a7c20a9a473c044fb49be1cd8f54"


def test_keys_are_identical_in_another_process_with_another_hash_seed() -> None:
    tokens = [int(x) for x in np.random.default_rng(1).integers(0, 50_000, 1000)]
    script = (
        "import json, sys; from test_kv_keys import keys_for; "
        "print(json.dumps(keys_for(json.loads(sys.stdin.read()), chunk=256)))"
    )
    env = {**python_env(), "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", script], input=json.dumps(tokens), capture_output=True, text=True, env=env, check=True
    )
    assert json.loads(out.stdout) == keys_for(tokens, chunk=256)


def test_each_key_names_the_whole_prefix_before_it() -> None:
    base = list(range(12))
    keys = keys_for(base)
    changed_late = keys_for([*base[:9], 99, *base[10:]])
    assert changed_late[:2] == keys[:2] and changed_late[2] != keys[2]
    changed_early = keys_for([99, *base[1:]])
    assert all(a != b for a, b in zip(changed_early, keys, strict=True))
    # the chain is SHA-256(domain, previous, fingerprint, tokens as <u4)
    digest = FP.digest("native")
    assert chunk_key(ROOT, digest, np.arange(4, dtype=np.uint32)).hex() == keys[0]


def test_fingerprint_folds_in_codec_dtype_geometry_and_model() -> None:
    tokens = list(range(8))
    base = keys_for(tokens)
    assert keys_for(tokens, codec="q8,key_group=256,value_group=128,tail=0") != base
    for other in (
        Fingerprint(model="m", dtype="float32", layers=2, kv_heads=2, head_dim=16),
        Fingerprint(model="m", dtype="float16", layers=3, kv_heads=2, head_dim=16),
        Fingerprint(model="m", dtype="float16", layers=2, kv_heads=4, head_dim=16),
        Fingerprint(model="m2", dtype="float16", layers=2, kv_heads=2, head_dim=16),
    ):
        assert keys_for(tokens, fp=other) != base


def test_codec_specs_are_canonical() -> None:
    assert codec_from_spec("q4").spec == codec_from_spec("Q4, key_group=128,value_group=64,tail=0").spec
    assert codec_from_spec("q8,tail=32").spec == "q8,key_group=256,value_group=128,tail=32"
    for bad in ("q3", "fp8", "q4,bits=2", "q4,tail=-1", "native,tail=4", ""):
        with pytest.raises(InvalidInput):
            codec_from_spec(bad)


def test_token_ids_are_validated() -> None:
    assert tokens_of([1, 2, 3]).tolist() == [1, 2, 3]
    assert tokens_of(np.array([[5, 6]])).tolist() == [5, 6]
    assert tokens_of([]).size == 0
    for bad in ([[1, 2], [3, 4]], [1.5, 2.0], [-1, 2], "abc"):
        with pytest.raises(InvalidInput):
            tokens_of(bad)


def test_leads_probe_the_first_tokens() -> None:
    digest = FP.digest("native")
    tokens = np.arange(20, dtype=np.uint32)
    probes = leads(digest, tokens)
    assert len(probes) == 8 and len(set(probes)) == 8
    assert leads(digest, tokens[:3]) == probes[:3]


def test_refs_round_trip_and_reject_garbage() -> None:
    key = bytes(range(32))
    assert parse_ref(format_ref(key, 300)) == (key, 300)
    for bad in ("", "abc:1", f"{key.hex()}", f"{key.hex()}:-3", f"{key.hex().upper()}:3"):
        with pytest.raises(InvalidInput):
            parse_ref(bad)


def test_fingerprint_rejects_nonsense() -> None:
    with pytest.raises(InvalidInput):
        Fingerprint(model="", dtype="float16", layers=1, kv_heads=1, head_dim=1)
    with pytest.raises(InvalidInput):
        Fingerprint(model="m", dtype="int8", layers=1, kv_heads=1, head_dim=1)
    with pytest.raises(InvalidInput):
        Fingerprint(model="m", dtype="float16", layers=0, kv_heads=1, head_dim=1)
