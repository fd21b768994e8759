"""Hostile arguments to every part's public API (issue 10, defect 6), driven by hypothesis: any exception
is a VaultError subclass, and a rejected call leaves the stored data exactly as it was.

The figure (calls made, calls rejected) is printed; ``SIGMAVAULT_FUZZ_EXAMPLES`` raises the count.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import HashingEmbedder, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sigmavault as sv
from sigmavault.errors import VaultError
from sigmavault.kv import Fingerprint, KVArrays

EXAMPLES = int(os.environ.get("SIGMAVAULT_FUZZ_EXAMPLES", "2000"))
FP = Fingerprint(model="fuzz", dtype="float32", layers=1, kv_heads=1, head_dim=4)


def _deep(depth: int) -> Any:
    out: Any = 1
    for _ in range(depth):
        out = {"a": out}
    return out


def _deep_list(depth: int) -> Any:
    out: Any = []
    for _ in range(depth):
        out = [out]
    return out


BIG = [2**63, -(2**63) - 1, 2**64, 10**30, 2**31, -1, 0, -(2**31)]
ODD = [
    None,
    True,
    False,
    float("nan"),
    float("inf"),
    -float("inf"),
    1.5,
    -0.0,
    1e308,
    "",
    "\0",
    "x\0y",
    "a" * 5000,
    b"bytes",
    [],
    [{}],
    [None],
    {},
    {"x": None},
    {1: 2},
    {"k": float("nan")},
    {"k": {1, 2}},
    (1, 2),
    object(),
    _deep(2000),
    _deep_list(2000),
    np.zeros(8),
    np.zeros((2, 0)),
    np.array([np.nan] * 16),
    np.ones(16),
    np.ones((1, 16)),
    np.ones((3, 17)),
    np.array(["a"]),
    "all",
    "active",
    "open",
    "unknown-state",
    "/proc/x",
    "../../etc/passwd",
    "é" * 300,
    slice(1),
    type,
    Path("/"),
]
hostile = st.one_of(
    st.sampled_from(BIG + ODD),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.binary(max_size=20),
    st.lists(st.one_of(st.integers(), st.text(max_size=5), st.none()), max_size=4),
    st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), st.text(max_size=5), st.none()), max_size=3),
)


def _fill(vault: sv.Vault) -> list[str]:
    col = vault.collection("c", embedder=HashingEmbedder(16))
    ids = col.add(["alpha beta", "gamma delta", "beta gamma"], metadata=[{"x": 1}, {"x": 2}, {}])
    vault.link(ids[0], ids[1])
    vault.sessions.open("s1", user_id="u", metadata={"m": 1})
    vault.policies.put("rule", {"p": 1}, embedding=np.ones(8))
    vault.witness.record({"request_id": "r1", "total_ms": 1.0, "model": "m"})
    vault.witness.flush()
    vault.kv.save_arrays(FP, np.arange(8), _kv(8))
    return ids


def _kv(tokens: int) -> KVArrays:
    keys, values = np.random.default_rng(tokens).standard_normal((2, 1, 1, tokens, 4), dtype=np.float32)
    return KVArrays(keys, values, "float32")


def short(value: Any) -> str:
    """A bounded repr (hostile values nest 2,000 levels deep)."""
    try:
        return repr(value)[:60]
    except RecursionError:
        return f"<{type(value).__name__} nested too deep to print>"


def _state(vault: sv.Vault) -> Any:
    return (
        snapshot(vault),
        [s.to_dict() for s in vault.sessions.find(states="all")],
        sorted((p.id, p.kind, p.state) for p in vault.policies.list(states="all")),
        vault.witness.count(),
        vault.kv.stats()["disk"],
    )


def _targets(vault: sv.Vault, ids: list[str]) -> dict[str, tuple[Callable[..., Any], list[str], dict[str, Any]]]:
    """name -> (method, parameter names to fuzz, valid values for the others)."""
    col = vault.collection("c", embedder=HashingEmbedder(16))
    s, p, w, kv = vault.sessions, vault.policies, vault.witness, vault.kv
    q = np.ones(16, dtype=np.float32)
    return {
        "collection": (vault.collection, ["name", "dim", "metric", "index"], {"name": "c2"}),
        "get": (vault.get, ["unit_id"], {"unit_id": ids[0]}),
        "link": (vault.link, ["a", "b", "kind", "weight"], {"a": ids[0], "b": ids[2]}),
        "unlink": (vault.unlink, ["a", "b", "kind"], {"a": ids[0], "b": ids[1]}),
        "neighbors": (vault.neighbors, ["unit_id", "kind", "direction"], {"unit_id": ids[0]}),
        "path": (vault.path, ["a", "b", "max_depth", "kind", "directed"], {"a": ids[0], "b": ids[1]}),
        "chain": (vault.chain, ["unit_id"], {"unit_id": ids[0]}),
        "children": (vault.children, ["unit_id"], {"unit_id": ids[0]}),
        "conversation": (vault.conversation, ["conversation_id"], {"conversation_id": "c"}),
        "compact": (vault.compact, ["collection"], {}),
        "col.add": (
            col.add,
            ["texts", "vectors", "ids", "metadata", "kind", "conversation_id", "parent_id", "kv_ref", "batch_size"],
            {"texts": ["new text"]},
        ),
        "col.get": (col.get, ["unit_id", "touch"], {"unit_id": ids[0]}),
        "col.update": (col.update, ["unit_id", "text", "metadata", "state", "vector", "kv_ref"], {"unit_id": ids[1]}),
        "col.delete": (col.delete, ["unit_ids"], {"unit_ids": "nope"}),
        "col.search": (col.search, ["query", "k", "mode", "where", "states", "ef", "nprobe", "rerank"], {"query": q}),
        "col.search_batch": (col.search_batch, ["queries", "k", "where", "states", "touch"], {"queries": [q]}),
        "col.all": (lambda **kw: list(col.all(**kw)), ["where"], {}),
        "col.find_similar": (col.find_similar, ["id_or_vector", "threshold", "k"], {"id_or_vector": ids[0]}),
        "sessions.open": (
            s.open,
            ["session_id", "user_id", "metadata", "context", "active_adapter", "kv_ref", "now", "exist_ok"],
            {},
        ),
        "sessions.update": (
            s.update,
            ["session_id", "user_id", "metadata", "context", "turn_count", "last_active"],
            {"session_id": "s1"},
        ),
        "sessions.touch": (s.touch, ["session_id", "turns", "now"], {"session_id": "s1"}),
        "sessions.close": (s.close, ["session_id"], {"session_id": "nope"}),
        "sessions.delete": (s.delete, ["session_ids"], {"session_ids": "nope"}),
        "sessions.expire": (s.expire, ["ttl_seconds", "now", "delete"], {"ttl_seconds": 10**9}),
        "sessions.get": (s.get, ["session_id"], {"session_id": "s1"}),
        "sessions.find": (s.find, ["user_id", "context", "k", "states", "min_score"], {}),
        "sessions.count": (s.count, ["state"], {}),
        "policies.put": (
            p.put,
            ["kind", "params", "embedding", "confidence", "source", "fisher", "policy_id"],
            {"kind": "rule"},
        ),
        "policies.get": (p.get, ["policy_id", "touch"], {"policy_id": "nope"}),
        "policies.delete": (p.delete, ["policy_ids"], {"policy_ids": "nope"}),
        "policies.list": (p.list, ["kind", "states", "limit"], {}),
        "policies.kinds": (p.kinds, ["states"], {}),
        "policies.count": (p.count, ["kind", "states"], {}),
        "policies.search": (
            p.search,
            ["kind", "vector", "k", "min_score", "min_confidence", "source", "states"],
            {"kind": "rule"},
        ),
        "policies.prune_duplicates": (p.prune_duplicates, ["kind", "threshold"], {}),
        "witness.record": (w.record, ["entry"], {"entry": {"request_id": "ok"}}),
        "witness.query": (
            w.query,
            ["since", "until", "session_id", "model", "quality_below", "quality_above", "errors_only", "limit"],
            {},
        ),
        "witness.tail": (w.tail, ["n"], {}),
        "witness.get": (w.get, ["request_id"], {"request_id": "r1"}),
        "witness.count": (w.count, ["model", "since"], {}),
        "witness.similar": (w.similar, ["vector", "request_id", "on", "k"], {"request_id": "r1"}),
        "witness.stats": (w.stats, ["field", "by", "percentiles", "bucket"], {}),
        "witness.configure": (w.configure, ["batch_size", "flush_interval", "queue_size", "overflow"], {}),
        "witness.read_archive": (lambda **kw: list(w.read_archive(**kw)), ["name"], {"name": "x.jsonl.gz"}),
        "kv.configure": (kv.configure, ["codec", "chunk_tokens", "ram_bytes", "disk_bytes", "policy"], {}),
        "kv.load_arrays": (
            kv.load_arrays,
            ["fingerprint", "input_ids", "codec"],
            {"fingerprint": FP, "input_ids": np.arange(8)},
        ),
        "kv.lookup": (kv.lookup, ["model", "input_ids", "codec"], {"model": FP, "input_ids": np.arange(8)}),
        "kv.load_ref_arrays": (kv.load_ref_arrays, ["fingerprint", "ref"], {"fingerprint": FP, "ref": "x"}),
        "kv.save_arrays": (
            kv.save_arrays,
            ["fingerprint", "input_ids", "kv", "codec"],
            {"fingerprint": FP, "input_ids": np.arange(4), "kv": _kv(4)},
        ),
        "kv.clear": (kv.clear, ["model"], {}),
        "kv.gc": (kv.gc, ["verify", "grace"], {}),
    }


CALLS = {"made": 0, "rejected": 0}
ESCAPES: dict[str, str] = {}


@pytest.fixture(scope="module")
def fuzz_vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[sv.Vault, list[str]]]:
    vault = sv.open(tmp_path_factory.mktemp("fuzz") / "v")
    ids = _fill(vault)
    yield vault, ids
    vault.close()
    print(
        f"\nfuzzed calls: {CALLS['made']}, rejected with a VaultError: {CALLS['rejected']}, "
        f"non-VaultError escapes: {len(ESCAPES)}",
        file=sys.stderr,
    )


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_hostile_arguments_raise_vault_errors_and_change_nothing(
    fuzz_vault: tuple[sv.Vault, list[str]], data: st.DataObject
) -> None:
    vault, ids = fuzz_vault
    targets = _targets(vault, ids)
    name = data.draw(st.sampled_from(sorted(targets)), label="method")
    fn, params, valid = targets[name]
    chosen = data.draw(st.lists(st.sampled_from(params), min_size=1, max_size=min(3, len(params)), unique=True))
    kwargs = dict(valid)
    for param in chosen:
        kwargs[param] = data.draw(hostile, label=param)
    before = _state(vault)
    CALLS["made"] += 1
    try:
        fn(**kwargs)
    except VaultError:
        CALLS["rejected"] += 1
        vault.witness.flush()
        assert _state(vault) == before, f"{name}({kwargs!r}) was rejected but changed stored data"
    except Exception as exc:
        ESCAPES[name] = f"{type(exc).__name__}: {exc}"[:200]
        raise AssertionError(
            f"{name}({ {k: short(v) for k, v in kwargs.items()} }) raised {type(exc).__name__}: {str(exc)[:200]}"
        ) from exc


@pytest.mark.parametrize(
    "path",
    ["bad\0name", "x" * 300, "/proc/sigmavault-vault", "/proc/self/status", "", b"bytes-path", 12, None],
)
def test_open_refuses_unusable_paths_with_vault_errors(path: Any) -> None:
    with pytest.raises(VaultError) as info:
        sv.open(path)
    assert info.value.code in ("invalid_input", "storage_error", "not_found"), info.value


@pytest.mark.parametrize("bad", [12, None, "bad\0path", b"bytes", "x" * 300])
def test_tools_refuse_unusable_paths_with_vault_errors(bad: Any, tmp_path: Path) -> None:
    for call in (
        lambda: sv.bundle.verify(bad),
        lambda: sv.bundle.import_bundle(bad, tmp_path / "imp"),
        lambda: sv.bundle.export(tmp_path / "none", bad),
        lambda: sv.migrate.migrate(bad, tmp_path / "m"),
        lambda: sv.migrate.rollback(bad),
    ):
        with pytest.raises(VaultError):
            call()
