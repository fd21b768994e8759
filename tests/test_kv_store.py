"""The KV store without torch: prefix matching, kv_refs on units, housekeeping, check, read-only
vaults, encryption, the CLI, and that none of it imports torch."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_py

import sigmavault as sv
from sigmavault.cli.kv import parse_bytes
from sigmavault.cli.kv import register as register_cli
from sigmavault.errors import InvalidInput, NotFound, ReadOnly
from sigmavault.kv import Fingerprint, KVArrays

FP = Fingerprint(model="store-test", dtype="float32", layers=2, kv_heads=2, head_dim=8)


def kv_for(seed: int, tokens: int) -> KVArrays:
    keys, values = np.random.default_rng(seed).standard_normal((2, 2, 2, tokens, 8), dtype=np.float32)
    return KVArrays(keys, values, "float32")


def ids_for(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed + 1000).integers(0, 5000, n)


@pytest.fixture
def vault(vault_path: Path) -> sv.Vault:
    v = sv.open(vault_path)
    v.kv.configure(chunk_tokens=16)
    yield v  # type: ignore[misc]
    v.close()


def test_longest_prefix_is_served_and_one_token_is_always_left(vault: sv.Vault) -> None:
    ids, kv = ids_for(0, 40), kv_for(0, 40)
    saved = vault.kv.save_arrays(FP, ids, kv)
    assert (saved.tokens, saved.new_chunks) == (40, 3)  # 16 + 16 + a short chunk of 8
    got, n = vault.kv.load_arrays(FP, ids)
    assert n == 39 and got is not None and np.array_equal(got.keys, kv.keys[:, :, :39])
    longer = np.concatenate([ids, ids_for(9, 30)])
    got, n = vault.kv.load_arrays(FP, longer)  # full chunks, then the short tail chunk
    assert n == 40 and got is not None and np.array_equal(got.values, kv.values)
    _, n = vault.kv.load_arrays(FP, ids[:20])
    assert n == 16  # whole chunks only: the stored chunk [16, 32) is not a prefix of [16, 20)
    diverged = ids.copy()
    diverged[20] += 1
    assert vault.kv.lookup(FP, diverged) == 16
    assert vault.kv.load_arrays(FP, ids_for(5, 40)) == (None, 0)
    assert vault.kv.load_arrays(FP, ids[:1]) == (None, 0)
    again = vault.kv.save_arrays(FP, ids, kv)
    assert again.new_chunks == 0 and again.ref == saved.ref
    stats = vault.kv.stats()
    assert (stats["hits"], stats["misses"], stats["tokens_served"]) == (3, 2, 39 + 40 + 16)
    assert stats["hit_rate"] == pytest.approx(3 / 5)


def test_other_codecs_and_models_do_not_match(vault: sv.Vault) -> None:
    ids = ids_for(1, 32)
    vault.kv.save_arrays(FP, ids, kv_for(1, 32), codec="q8")
    assert vault.kv.lookup(FP, ids) == 0  # the default codec is native
    assert vault.kv.lookup(FP, ids, codec="q8") == 31
    other = Fingerprint(model="someone-else", dtype="float32", layers=2, kv_heads=2, head_dim=8)
    assert vault.kv.lookup(other, ids, codec="q8") == 0


def test_a_unit_carries_its_kv_prefix(vault: sv.Vault) -> None:
    ids, kv = ids_for(2, 50), kv_for(2, 50)
    saved = vault.kv.save_arrays(FP, ids, kv)
    docs = vault.collection("docs", embedder=None)
    (uid,) = docs.add(["the context"], vectors=np.ones((1, 4), dtype=np.float32), kv_ref=saved.ref)
    got, tokens, ref = vault.kv.load_ref_arrays(FP, docs.get(uid))
    assert ref == saved.ref and tokens == ids.tolist() and np.array_equal(got.keys, kv.keys)
    assert vault.kv.ref(FP, np.concatenate([ids, [1, 2, 3]])) == saved.ref
    with pytest.raises(InvalidInput):
        vault.kv.load_ref_arrays(Fingerprint(model="x", dtype="float32", layers=2, kv_heads=2, head_dim=8), saved.ref)
    with pytest.raises(InvalidInput):
        vault.kv.load_ref_arrays(FP, "not a ref")
    vault.kv.clear()
    with pytest.raises(NotFound):
        vault.kv.load_ref_arrays(FP, saved.ref)


def test_bad_input_is_rejected_before_anything_is_written(vault: sv.Vault) -> None:
    wrong = KVArrays(*np.zeros((2, 3, 2, 10, 8), dtype=np.float32), "float32")  # 3 layers
    with pytest.raises(InvalidInput):
        vault.kv.save_arrays(FP, ids_for(3, 10), wrong)
    for bad in ({"codec": "q5"}, {"chunk_tokens": 0}, {"ram_bytes": -1}, {"policy": "fifo"}):
        with pytest.raises(InvalidInput):
            vault.kv.configure(**bad)
    assert vault.kv.stats()["disk"]["chunks"] == 0 and not (vault.root / "kv").exists()


def test_settings_and_counters_persist_across_reopen(vault_path: Path) -> None:
    with sv.open(vault_path) as v:
        v.kv.configure(codec="q4,tail=4", chunk_tokens=8, ram_bytes=1 << 20, disk_bytes=1 << 30, policy="cost")
        v.kv.save_arrays(FP, ids_for(4, 20), kv_for(4, 20))
        v.kv.load_arrays(FP, ids_for(4, 20))
    with sv.open(vault_path) as v:
        cfg = v.kv.config
        assert (cfg.codec, cfg.chunk_tokens, cfg.disk_bytes, cfg.policy) == (
            "q4,key_group=128,value_group=64,tail=4",
            8,
            1 << 30,
            "cost",
        )
        stats = v.kv.stats()
        assert (stats["hits"], stats["saves"], stats["chunks_saved"]) == (1, 1, 3)
        assert v.kv.lookup(FP, ids_for(4, 20)) == 19


def corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))


def test_check_reports_damage_and_gc_repairs_it(vault_path: Path) -> None:
    with sv.open(vault_path) as v:
        v.kv.configure(chunk_tokens=16)
        ids = ids_for(6, 48)
        v.kv.save_arrays(FP, ids, kv_for(6, 48))
        assert v.check().ok
        files = sorted((vault_path / "kv").rglob("*.kvc"))
        assert len(files) == 3
        first = v.kv._path(v.kv._match(FP.digest("native"), ids)[0].key)
        corrupt(first)
        (vault_path / "kv" / "00").mkdir(exist_ok=True)
        (vault_path / "kv" / "00" / ("00" * 32 + ".kvc")).write_bytes(b"orphan")
        report = v.check()
        assert not report.ok and any("checksum" in p for p in report.problems)
        assert any("no index row" in n for n in report.notes)
        result = v.kv.gc(verify=True, grace=0)
        assert result["dropped_corrupt"] == 1 and result["dropped_unreachable"] == 2 and result["orphan_files"] == 1
        assert v.check().ok and v.kv.stats()["disk"]["chunks"] == 0


def test_frozen_vaults_read_but_never_write(vault_path: Path) -> None:
    with sv.open(vault_path) as v:
        v.collection("docs", embedder=None)  # a vault that never used kv
    with sv.open(vault_path, frozen=True) as frozen:
        assert frozen.kv.load_arrays(FP, ids_for(7, 20)) == (None, 0)
        assert frozen.check().ok
        with pytest.raises(ReadOnly):
            frozen.kv.save_arrays(FP, ids_for(7, 20), kv_for(7, 20))
    with sv.open(vault_path) as v:
        v.kv.save_arrays(FP, ids_for(7, 20), kv_for(7, 20))
    with sv.open(vault_path, frozen=True) as frozen:
        _, n = frozen.kv.load_arrays(FP, ids_for(7, 20))
        assert n == 19


class XorCipher:
    """A trivially reversible test cipher that binds the aad, like the real one must."""

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        pad = (aad * (len(plaintext) // max(1, len(aad)) + 1))[: len(plaintext)]
        return b"X1" + bytes(a ^ b for a, b in zip(plaintext, pad, strict=True))

    def open(self, aad: bytes, sealed: bytes) -> bytes:
        return self.seal(aad, sealed[2:])[2:]


def test_chunk_payloads_are_sealed_when_the_vault_has_a_cipher(vault_path: Path) -> None:
    ids = np.arange(1000, 1040)
    with sv.open(vault_path) as v:
        v._db.cipher = XorCipher()
        v.kv.save_arrays(FP, ids, kv_for(8, 40))
    raw = b"".join(p.read_bytes() for p in (vault_path / "kv").rglob("*.kvc"))
    assert np.arange(1000, 1016, dtype="<u4").tobytes() not in raw and b'"codec"' not in raw
    with sv.open(vault_path) as v:
        v._db.cipher = XorCipher()
        got, n = v.kv.load_arrays(FP, ids)
        assert n == 39 and got is not None and np.array_equal(got.keys, kv_for(8, 40).keys[:, :, :39])
        assert v.check().ok


def test_kv_never_imports_torch(vault_path: Path) -> None:
    out = run_py(
        """
        import json, sys
        import numpy as np
        import sigmavault as sv
        from sigmavault.kv import Fingerprint, KVArrays
        fp = Fingerprint(model="m", dtype="float32", layers=1, kv_heads=1, head_dim=4)
        with sv.open(sys.argv[1]) as v:
            v.kv.save_arrays(fp, list(range(10)), KVArrays(*np.zeros((2, 1, 1, 10, 4), np.float32), "float32"))
            _, n = v.kv.load_arrays(fp, list(range(10)))
            v.kv.stats(); v.check()
        print(json.dumps({"n": n, "torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules}))
        """,
        str(vault_path),
    )
    assert out == {"n": 9, "torch": False, "transformers": False}


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, object]:
    parser = argparse.ArgumentParser(prog="sigmavault")
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    code = args.handler(args)
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip().startswith(("{", "[")) else out


def test_cli_stats_gc_clear(vault_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with sv.open(vault_path) as v:
        v.kv.configure(chunk_tokens=16)
        v.kv.save_arrays(FP, ids_for(9, 40), kv_for(9, 40))
        v.kv.load_arrays(FP, ids_for(9, 40))
    code, stats = run_cli(capsys, "kv", "stats", str(vault_path), "--json")
    assert code == 0 and stats["hits"] == 1 and stats["disk"]["chunks"] == 3  # type: ignore[index]
    code, text = run_cli(capsys, "kv", "stats", str(vault_path))
    assert code == 0 and "hit rate" in str(text)
    code, report = run_cli(capsys, "kv", "gc", str(vault_path), "--disk-bytes", "1KiB", "--json")
    assert code == 0 and set(report) >= {"evicted", "orphan_files", "dropped_corrupt"}  # type: ignore[arg-type]
    _, stats = run_cli(capsys, "kv", "stats", str(vault_path), "--json")
    assert stats["disk"]["chunks"] == 0 and stats["disk_evictions"] == 3  # type: ignore[index]
    with sv.open(vault_path) as v:
        v.kv.configure(disk_bytes=None)
        v.kv.save_arrays(FP, ids_for(9, 40), kv_for(9, 40))
    code, out = run_cli(capsys, "kv", "clear", str(vault_path), "--json")
    assert code == 0 and out == {"removed": 3}
    assert parse_bytes("2GiB") == 2 * 2**30 and parse_bytes("1.5k") == 1536
    with pytest.raises(InvalidInput):
        parse_bytes("lots")


def test_damage_found_while_serving_is_reported_by_check_until_gc(vault_path: Path) -> None:
    ids = ids_for(8, 48)
    with sv.open(vault_path) as v:
        v.kv.configure(chunk_tokens=16, ram_bytes=0)  # NOTE: no RAM tier: the load reads the damaged file
        v.kv.save_arrays(FP, ids, kv_for(8, 48))
        corrupt(v.kv._path(v.kv._match(FP.digest("native"), ids)[1].key))
        got, n = v.kv.load_arrays(FP, ids)
        assert n == 16 and got is not None  # the damaged second chunk was dropped, the first served
        assert v.kv.stats()["corrupted"] == 1
        report = v.check()
        assert not report.ok and any("found damaged while serving" in p for p in report.problems)
    with sv.open(vault_path) as again:  # remembered across reopenings, until gc (or the chunk is saved again)
        assert any("found damaged while serving" in p for p in again.check().problems)
        assert again.kv.gc(verify=True, grace=0)["damage_acknowledged"] == 1
        assert again.check().ok
        again.kv.configure(ram_bytes=0)
        corrupt(again.kv._path(again.kv._match(FP.digest("native"), ids)[0].key))
        assert again.kv.load_arrays(FP, ids)[1] == 0 and not again.check().ok
        assert again.kv.save_arrays(FP, ids, kv_for(8, 48)).new_chunks >= 1  # saved again: repaired
        assert again.check().ok
    # a frozen vault cannot write the note; it still reports what it found itself
    with sv.open(vault_path) as v:
        v.kv.save_arrays(FP, ids, kv_for(8, 48))
        corrupt(v.kv._path(v.kv._match(FP.digest("native"), ids)[2].key))
    with sv.open(vault_path, frozen=True) as frozen:
        frozen.kv.configure(ram_bytes=0)
        assert frozen.kv.load_arrays(FP, ids)[1] == 32
        assert any("found damaged while serving" in p for p in frozen.check().problems)
