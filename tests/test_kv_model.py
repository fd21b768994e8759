"""Warm starts on a real (tiny, random-weight) Llama-style transformers model: identical greedy
output from a restored cache, in this process and after a restart, quantized caches within their
bounds, and a corrupted chunk dropped and recomputed instead of fed to the model."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import run_py

import sigmavault as sv
from sigmavault.kv import Fingerprint, codec_from_spec

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

NEW_TOKENS = 12


def tiny_model(seed: int = 0, dtype: Any = None) -> Any:
    """2 layers, hidden 64, 4 heads, 2 KV heads, vocab 128: random weights, no download."""
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    model = transformers.LlamaForCausalLM(config).eval()
    return model.to(dtype) if dtype is not None else model


def prompt(n: int, seed: int = 1) -> Any:
    return torch.from_numpy(np.random.default_rng(seed).integers(3, 128, (1, n))).long()


def greedy(model: Any, ids: Any, **kwargs: Any) -> list[int]:
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=0, **kwargs)
    return [int(t) for t in out[0, ids.shape[1] :]]


def prefill(model: Any, ids: Any) -> Any:
    with torch.no_grad():
        return model(ids, use_cache=True).cache


@pytest.fixture(scope="module")
def model() -> Any:
    return tiny_model()


def test_restored_cache_generates_exactly_what_recomputing_does(model: Any, vault_path: Path) -> None:
    ids = prompt(100)
    reference = greedy(model, ids)
    with sv.open(vault_path) as vault:
        vault.kv.configure(chunk_tokens=32)
        saved = vault.kv.save(model, ids, prefill(model, ids))
        assert (saved.tokens, saved.new_chunks) == (100, 4)
        cache, n = vault.kv.load(model, ids)
        assert n == 99 and cache.get_seq_length() == 99
        assert greedy(model, ids, cache=cache) == reference
        # the older keyword, while transformers still accepts it
        cache, _ = vault.kv.load(model, ids)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert greedy(model, ids, past_key_values=cache) == reference
        # a second turn reuses the first turn's prompt, answer and all
        with torch.no_grad():
            out = model.generate(
                ids, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=0, return_dict_in_generate=True
            )
        vault.kv.save(model, out.sequences, out.cache)
        turn2 = torch.cat([out.sequences, prompt(20, seed=2)], dim=1)
        cache, n = vault.kv.load(model, turn2)
        assert n == out.sequences.shape[1] - 1  # the last answer token was never fed back
        assert greedy(model, turn2, cache=cache) == greedy(model, turn2)
        miss_cache, n = vault.kv.load(model, prompt(50, seed=3))
        assert n == 0 and miss_cache.get_seq_length() == 0


RESTART = """
import json, sys
import torch
import sigmavault as sv
from test_kv_model import greedy, prompt, tiny_model
model = tiny_model()
ids = prompt(int(sys.argv[2]))
with sv.open(sys.argv[1]) as vault:
    cache, n = vault.kv.load(model, ids)
    tokens = greedy(model, ids, cache=cache)
    stats = vault.kv.stats()
print(json.dumps({"n": n, "tokens": tokens, "disk_hits": stats["disk_hits"], "ram_hits": stats["ram_hits"]}))
"""


def test_a_new_process_warm_starts_from_disk(model: Any, vault_path: Path) -> None:
    ids = prompt(150)
    with sv.open(vault_path) as vault:
        vault.kv.configure(chunk_tokens=64)
        vault.kv.save(model, ids, prefill(model, ids))
    out = run_py(RESTART, str(vault_path), "150")
    assert out["n"] == 149 and out["disk_hits"] == 3 and out["ram_hits"] == 0
    assert out["tokens"] == greedy(model, ids)


def test_corrupted_chunk_is_dropped_and_recomputed_never_used(model: Any, vault_path: Path) -> None:
    ids = prompt(100)
    reference = greedy(model, ids)
    with sv.open(vault_path) as vault:
        vault.kv.configure(chunk_tokens=32)
        vault.kv.save(model, ids, prefill(model, ids))
        (row,) = [r for r in vault.kv._index.iter_rows() if r.start == 32]
        second = vault.kv._path(row.key)
    data = bytearray(second.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit in the KV payload of tokens 32..63
    second.write_bytes(bytes(data))
    with sv.open(vault_path) as vault:  # a fresh process view: the RAM tier is cold
        cache, n = vault.kv.load(model, ids)
        assert n == 32 and cache.get_seq_length() == 32
        assert vault.kv.stats()["corrupted"] == 1 and not second.exists()
        assert greedy(model, ids, cache=cache) == reference
        again = vault.kv.save(model, ids, prefill(model, ids))
        assert again.new_chunks == 1  # only the dropped chunk is written back
        cache, n = vault.kv.load(model, ids)
        assert n == 99 and greedy(model, ids, cache=cache) == reference
        assert vault.check().ok


@pytest.mark.parametrize("spec", ["q8", "q4", "q4,tail=8"])
def test_quantized_caches_stay_within_their_bounds_on_real_kv(model: Any, vault_path: Path, spec: str) -> None:
    ids = prompt(96)
    cache = prefill(model, ids)
    exact_k = torch.stack([layer.keys[0] for layer in cache.layers]).numpy()
    exact_v = torch.stack([layer.values[0] for layer in cache.layers]).numpy()
    codec = codec_from_spec(spec)
    with sv.open(vault_path) as vault:
        vault.kv.configure(chunk_tokens=32, codec=spec)
        vault.kv.save(model, ids, cache)
        restored, n = vault.kv.load(model, ids)
    got_k = torch.stack([layer.keys[0] for layer in restored.layers]).numpy()
    got_v = torch.stack([layer.values[0] for layer in restored.layers]).numpy()
    bits = 8 if spec.startswith("q8") else 4
    for start in range(0, n, 32):  # the bound holds group by group within each chunk
        end = min(n, start + 32)
        k, v = exact_k[:, :, start:end], exact_v[:, :, start:end]
        k_range = k.max(axis=2, keepdims=True) - k.min(axis=2, keepdims=True)
        v_range = v.max(axis=3, keepdims=True) - v.min(axis=3, keepdims=True)
        k_abs = np.abs(k).max(axis=2, keepdims=True)
        v_abs = np.abs(v).max(axis=3, keepdims=True)
        assert codec.key_group >= 32 and codec.value_group >= 16  # type: ignore[attr-defined]
        qmax = (1 << bits) - 1
        assert np.all(np.abs(got_k[:, :, start:end] - k) <= k_range / (2 * qmax) + 2**-9 * k_abs + 1e-6)
        assert np.all(np.abs(got_v[:, :, start:end] - v) <= v_range / (2 * qmax) + 2**-9 * v_abs + 1e-6)
    if spec.endswith("tail=8"):
        assert np.array_equal(got_k[:, :, 24:32], exact_k[:, :, 24:32])
    assert len(greedy(model, ids, cache=restored)) == NEW_TOKENS


def test_bfloat16_native_caches_are_bit_exact(vault_path: Path) -> None:
    model = tiny_model(dtype=torch.bfloat16)
    ids = prompt(40)
    cache = prefill(model, ids)
    with sv.open(vault_path) as vault:
        vault.kv.save(model, ids, cache)
        restored, n = vault.kv.load(model, ids)
    assert n == 39
    for a, b in zip(cache.layers, restored.layers, strict=True):
        assert b.keys.dtype == torch.bfloat16 and torch.equal(a.keys[:, :, :39], b.keys)
        assert torch.equal(a.values[:, :, :39], b.values)


def test_a_unit_brings_back_its_context_and_kv_in_one_call(model: Any, vault_path: Path) -> None:
    context = prompt(70)
    question = prompt(5, seed=9)
    with sv.open(vault_path) as vault:
        saved = vault.kv.save(model, context, prefill(model, context))
        docs = vault.collection("docs", embedder=None)
        (uid,) = docs.add(["a long document"], vectors=np.ones((1, 4), dtype=np.float32), kv_ref=saved.ref)
        restored = vault.kv.load_ref(model, docs.get(uid))
        assert restored.input_ids == context[0].tolist() and restored.tokens == 70
        full = torch.cat([torch.tensor([restored.input_ids]), question], dim=1)
        assert greedy(model, full, cache=restored.cache) == greedy(model, full)


def test_fingerprints_identify_weights_not_just_architecture() -> None:
    a, b, c = tiny_model(0), tiny_model(0), tiny_model(1)
    assert Fingerprint.of(a) == Fingerprint.of(b) != Fingerprint.of(c)
    fp = Fingerprint.of(a)
    assert (fp.layers, fp.kv_heads, fp.head_dim, fp.dtype) == (2, 2, 16, "float32")
