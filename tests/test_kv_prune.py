"""KV token pruning on a real (tiny, random-weight) Llama-style model: each policy keeps the tokens it claims,
positions stay right after pruning, ratio 1.0 is lossless, pruned and lossless prefixes are keyed apart, and the
max_kl gate refuses a pruning it measures above the limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_kv_model import prefill, prompt, tiny_model

import sigmavault as sv
from sigmavault.errors import InvalidInput
from sigmavault.kv import PRUNE_POLICIES, Pruning, pruning_from
from sigmavault.kv.prune import attention_scores, generate, prune_cache, tensor_cache

torch = pytest.importorskip("torch")

N = 96  # prefix tokens
NEW = 8


@pytest.fixture(scope="module")
def model() -> Any:
    eager = tiny_model()
    eager.set_attn_implementation("eager")  # h2o reads attention weights, which sdpa never computes
    return eager


def continue_greedy(model: Any, ids: Any, cache: Any, n: int) -> list[int]:
    with torch.no_grad():
        out = generate(model, ids, cache, n, max_new_tokens=NEW, do_sample=False, pad_token_id=0)
    assert torch.equal(out[:, : ids.shape[1]], ids)
    return [int(t) for t in out[0, ids.shape[1] :]]


def lossless_greedy(model: Any, ids: Any) -> list[int]:
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=NEW, do_sample=False, pad_token_id=0)
    return [int(t) for t in out[0, ids.shape[1] :]]


@pytest.mark.parametrize("policy", PRUNE_POLICIES)
def test_ratio_one_is_lossless(model: Any, policy: str) -> None:
    ids = prompt(N + 10)
    pruned = prune_cache(model, ids, prefill(model, ids[:, :N]), Pruning(policy, ratio=1.0))
    assert pruned.kept == N and torch.equal(pruned.positions[1, 1], torch.arange(N))
    assert continue_greedy(model, ids, tensor_cache(model, pruned.pairs), N) == lossless_greedy(model, ids)


def test_each_policy_keeps_the_tokens_it_claims(model: Any) -> None:
    ids = prompt(N)
    cache = prefill(model, ids)
    full = [(layer.keys, layer.values) for layer in cache.layers]
    results = {p: prune_cache(model, ids, cache, pruning_from(p, ratio=0.25)) for p in PRUNE_POLICIES}
    for pruned in results.values():
        assert pruned.kept == 24 and pruned.positions.shape == (2, 2, 24)
        for (keys, values), (k, v), pos in zip(full, pruned.pairs, pruned.positions, strict=True):
            for head in range(2):  # every slot holds the original key and value of the token it names
                assert torch.equal(k[0, head], keys[0, head, pos[head]])
                assert torch.equal(v[0, head], values[0, head, pos[head]])
    sink = results["sink_window"].positions
    assert sink[0, 0].tolist() == [0, 1, 2, 3, *range(N - 20, N)] and bool((sink == sink[0, 0]).all())
    norms = [k[0].norm(dim=-1) for k, _ in full]
    pos = results["key_norm"].positions
    for layer in range(2):
        for head in range(2):
            kept = set(pos[layer, head].tolist())
            dropped = [i for i in range(N) if i not in kept]
            assert norms[layer][head, list(kept)].max() <= norms[layer][head, dropped].min()
    # h2o: the 12 most recent tokens, plus the 12 older ones that received the most attention
    scores = attention_scores(model, ids, N, 2)
    pos = results["h2o"].positions
    for layer in range(2):
        for head in range(2):
            got = pos[layer, head].tolist()
            assert got[12:] == list(range(N - 12, N))
            older = scores[layer][head, : N - 12]
            assert older[got[:12]].min() >= older[[i for i in range(N - 12) if i not in got]].max()


def test_positions_after_pruning_match_a_masked_full_cache(model: Any) -> None:
    """A pruned cache continued at the original positions computes exactly what the full cache does with the
    dropped tokens masked out; continuing at the cache length (transformers' default) does not."""
    ids = prompt(N + 6)
    cache = prefill(model, ids[:, :N])
    pruned = prune_cache(model, ids, cache, Pruning("sink_window", ratio=0.5))
    new = ids[:, N:]
    mask = torch.zeros(1, N + new.shape[1], dtype=torch.long)
    mask[0, pruned.positions[0, 0]] = 1
    mask[0, N:] = 1
    at = torch.arange(N, N + new.shape[1])[None]
    with torch.no_grad():
        ref = model(
            new,
            cache=tensor_cache(model, [(lay.keys, lay.values) for lay in cache.layers]),
            attention_mask=mask,
            position_ids=at,
        ).logits
        got = model(new, cache=tensor_cache(model, pruned.pairs), position_ids=at).logits
        naive = model(new, cache=tensor_cache(model, pruned.pairs)).logits
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(naive, ref, rtol=1e-3, atol=1e-3)


def test_pruned_and_lossless_prefixes_are_keyed_apart(model: Any, vault_path: Path) -> None:
    ids = prompt(N + 10)
    cache = prefill(model, ids[:, :N])
    with sv.open(vault_path) as vault:
        vault.kv.configure(chunk_tokens=32)
        lossless = vault.kv.save(model, ids[:, :N], cache)
        half = vault.kv.save(model, ids[:, :N], cache, prune="sink_window", ratio=0.5)
        quarter = vault.kv.save(model, ids[:, :N], cache, prune="sink_window,ratio=0.25")
        again = vault.kv.save(model, ids[:, :N], cache, prune="sink_window", ratio=0.5)
        assert (lossless.new_chunks, lossless.prune) == (3, None)
        assert (half.prune, half.kept, half.new_chunks) == ("sink_window,ratio=0.5,sink=4", 48, 1)
        assert (quarter.kept, again.new_chunks) == (24, 0)
        assert len({lossless.ref, half.ref, quarter.ref}) == 3
        # lossless serves what it always did: all but the last token of the prompt it covers
        plain = vault.kv.load(model, ids)
        assert (plain.tokens, plain.kept, plain.prune) == (N, N, None)
        assert plain.cache.get_seq_length() == N
    # a vault holding only the pruned prefix serves it when asked, in a fresh open
    other = vault_path.parent / "other"
    with sv.open(other) as vault:
        vault.kv.save(model, ids[:, :N], cache, prune="sink_window", ratio=0.5)
        assert vault.kv.load(model, ids).tokens == 0  # not configured to prune: a miss, never a lossy hit
    with sv.open(other) as vault:
        vault.kv.configure(prune="sink_window", ratio=0.5)
        assert vault.kv.config.prune == "sink_window,ratio=0.5,sink=4"
        loaded = vault.kv.load(model, ids)
        assert (loaded.tokens, loaded.kept, loaded.prune, loaded.ratio) == (N, 48, "sink_window,ratio=0.5,sink=4", 0.5)
        cache_p, n = loaded  # still unpacks like before
        assert cache_p.get_seq_length() == 48 and n == N
        direct = prune_cache(model, ids, cache, Pruning("sink_window", ratio=0.5))
        assert continue_greedy(model, ids, cache_p, n) == continue_greedy(
            model, ids, tensor_cache(model, direct.pairs), N
        )
        pruned_ref = vault.kv.save(model, ids[:, :N], cache).ref  # the configured pruning: stored already
        restored = vault.kv.load_ref(model, pruned_ref)
        assert (restored.prune, restored.kept, restored.tokens) == ("sink_window,ratio=0.5,sink=4", 48, N)
        restored = vault.kv.load_ref(model, vault.kv.save(model, ids[:, :N], cache, prune=None).ref)
        assert (restored.prune, restored.kept, restored.tokens) == (None, N, N)
        assert vault.kv.load(model, ids).prune is None  # a lossless prefix as long wins over the pruned one
        vault.kv.gc(verify=True, grace=0.0)  # a pruned entry is a valid chunk: checked, kept
        assert vault.kv.load_ref(model, pruned_ref).kept == 48
        stats = vault.kv.stats()
        assert stats["pruned_hits"] == 1 and stats["disk"]["by_codec"]["native;prune=sink_window"]["tokens"] == N


def test_ratio_one_through_the_vault_and_q8(model: Any, vault_path: Path) -> None:
    ids = prompt(N + 10)
    cache = prefill(model, ids[:, :N])
    with sv.open(vault_path) as vault:
        vault.kv.configure(prune="key_norm", ratio=1.0)
        vault.kv.save(model, ids[:, :N], cache)
        loaded = vault.kv.load(model, ids)
        assert (loaded.kept, loaded.prune) == (N, "key_norm,ratio=1")
        assert continue_greedy(model, ids, loaded.cache, N) == lossless_greedy(model, ids)
        small = vault.kv.save(model, ids[:, :N], cache, ratio=0.5, codec="q8")
        assert small.kept == 48
        native = vault.kv.save(model, ids[:, :N], cache, ratio=0.5)
        assert small.new_bytes < native.new_bytes / 3
        q8 = vault.kv.load(model, ids, codec="q8", prune="key_norm,ratio=0.5")
        assert (q8.kept, q8.codec.split(",")[0]) == (48, "q8")


def test_the_gate_refuses_a_pruning_above_max_kl(model: Any, vault_path: Path) -> None:
    ids = prompt(N + 10)
    cache = prefill(model, ids[:, :N])
    with sv.open(vault_path) as vault:
        vault.kv.configure(max_kl=0.0, chunk_tokens=64)
        refused = vault.kv.save(model, ids[:, :N], cache, prune="h2o", ratio=0.25)
        assert refused.prune is None and refused.kl is not None and refused.kl > 0
        assert refused.refused is not None and "max_kl 0" in refused.refused
        assert refused.new_chunks == 2  # the lossless cache was stored instead
        loaded = vault.kv.load(model, ids, prune="h2o", ratio=0.25)
        assert (loaded.prune, loaded.kept) == (None, N)
        exact = vault.kv.save(model, ids[:, :N], cache, prune="sink_window", ratio=1.0)
        assert exact.kl == 0.0 and exact.refused is None and exact.kept == N
        vault.kv.configure(max_kl=10.0)
        passed = vault.kv.save(model, ids[:, :N], cache, prune="h2o", ratio=0.25)
        assert passed.refused is None and passed.kept == 24 and passed.kl == refused.kl
        assert vault.kv.stats()["prune_refused"] == 1


def test_evaluate_measures_against_the_full_cache(model: Any, vault_path: Path) -> None:
    ids = prompt(N + 24)
    with sv.open(vault_path) as vault:
        same = vault.kv.evaluate(model, ids, prune="sink_window", ratio=1.0, new_tokens=6, heldout=16)
        assert (same.top1, same.mean_kl, same.ppl_change, same.compared) == (1.0, 0.0, 0.0, 6)
        lossy = vault.kv.evaluate(model, ids, prune="key_norm", ratio=0.25, new_tokens=6, heldout=16)
        assert lossy.mean_kl > 0 and lossy.kept == round(0.25 * lossy.context_tokens)
        assert lossy.to_dict()["prune"] == "key_norm,ratio=0.25"
        q4 = vault.kv.evaluate(model, ids, prune=None, codec="q4", new_tokens=6, heldout=16)
        assert q4.prune is None and q4.codec.startswith("q4") and 0 < q4.mean_kl < lossy.mean_kl


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prune": "snapkv", "ratio": 0.5}, "unknown pruning policy"),
        ({"prune": "h2o", "ratio": 1.5}, "fraction of tokens kept"),
        ({"prune": "h2o"}, "exactly one of ratio"),
        ({"ratio": 0.5}, "need a pruning policy"),
        ({"max_kl": -1}, "max_kl"),
    ],
)
def test_bad_pruning_settings_are_clear_errors(vault: sv.Vault, kwargs: dict[str, Any], message: str) -> None:
    before = vault.kv.config
    with pytest.raises(InvalidInput, match=message):
        vault.kv.configure(**kwargs)
    assert vault.kv.config == before


def test_cli_evaluate_reports_quality_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from sigmavault.cli import main
    from sigmavault.testing import tiny_llm

    tokenizer = tiny_llm.build_tokenizer()
    model_dir = tiny_llm.save(tiny_llm.build_model(tokenizer, hidden_size=32, layers=2), tokenizer, tmp_path / "m")
    text = tmp_path / "context.txt"
    text.write_text(" ".join(tiny_llm.corpus_texts()[:3]), encoding="utf-8")
    vault_dir = tmp_path / "vault"
    sv.open(vault_dir).close()
    argv = ["kv", "evaluate", str(vault_dir), "--model", str(model_dir), "--text", str(text), "--json"]
    assert main([*argv, "--prune", "sink_window", "--ratio", "0.5", "--new-tokens", "4", "--heldout", "8"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["prune"] == "sink_window,ratio=0.5,sink=4" and got["compared"] == 4 and 0 <= got["top1"] <= 1
    assert main([*argv, "--prune", "snapkv", "--ratio", "0.5"]) == 2
    assert "unknown pruning policy" in capsys.readouterr().err


def test_a_fingerprint_cannot_pass_a_gate_it_cannot_run(model: Any, vault_path: Path) -> None:
    from sigmavault.kv import Fingerprint

    ids = prompt(40)
    cache = prefill(model, ids)
    with sv.open(vault_path) as vault:
        fp = Fingerprint.of(model)
        assert vault.kv.save(fp, ids, cache, prune="key_norm", ratio=0.5).kept == 20  # no model needed
        with pytest.raises(InvalidInput, match="pass the transformers model"):
            vault.kv.save(fp, ids, cache, prune="key_norm", ratio=0.25, max_kl=0.1)
        with pytest.raises(InvalidInput, match="h2o policy needs the transformers model"):
            vault.kv.save(fp, ids, cache, prune="h2o", ratio=0.25)
        with pytest.raises(InvalidInput, match="attn_implementation='eager'"):
            vault.kv.save(tiny_model(), ids, cache, prune="h2o", ratio=0.25)  # sdpa: no attention weights
        assert vault.kv.stats()["pruned_saves"] == 1
