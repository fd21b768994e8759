"""Encryption at rest: no plain text in any file, clean errors for a wrong or missing key."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from conftest import HashingEmbedder, run_py

import sigmavault as sv
from sigmavault.crypto import KeyFile, Passphrase, generate_key, write_key_file
from sigmavault.errors import Corrupted, EncryptionError, InvalidInput
from sigmavault.kv import Fingerprint, KVArrays
from sigmavault.units import integrity

SECRETS = [f"zanzibar-secret-{i:02d} the launch code is orchid" for i in range(12)]
META = "meta-secret-quokka"
SESSION = "session-secret-pangolin"
POLICY = "policy-secret-axolotl"
WITNESS = "witness-secret-narwhal"


def _plain_hits(root: Path, needles: list[bytes]) -> list[str]:
    """Every (file, needle) where a needle appears in a file's bytes (SQLite, WAL, vectors, KV, ...)."""
    hits = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        hits += [f"{path.name}: {n!r}" for n in needles if n in data]
    return hits


def _needles() -> list[bytes]:
    words = [*SECRETS, META, SESSION, POLICY, WITNESS, "orchid", "zanzibar"]
    return [w.encode() for w in words] + [w.encode("utf-16-le") for w in ("orchid", "zanzibar")]


def _kv_pattern() -> np.ndarray:
    return np.full((2, 2, 16, 8), 1234.5678, dtype=np.float32)


def _fill(vault: sv.Vault) -> list[str]:
    docs = vault.collection("docs", embedder=HashingEmbedder(32))
    ids = docs.add(SECRETS, metadata=[{"note": META, "i": i} for i in range(len(SECRETS))])
    docs.update(ids[0], text=SECRETS[0] + " updated", metadata={"note": META + "-2"})
    docs.delete(ids[1])
    vault.sessions.open("s1", user_id="u1", metadata={"secret": SESSION})
    vault.policies.put("router", {"secret": POLICY}, policy_id="p1")
    vault.witness.record({"request_id": "r1", "model": "m", "error_message": WITNESS, "routing": {"why": WITNESS}})
    vault.witness.flush()
    fp = Fingerprint("test-model", "float32", 2, 2, 8)
    vault.kv.save_arrays(fp, list(range(16)), KVArrays(_kv_pattern(), _kv_pattern(), "float32"))
    return ids


def test_an_encrypted_vault_holds_no_plain_text_in_any_file(tmp_path: Path) -> None:
    key = generate_key()
    path = tmp_path / "vault"
    kv_bytes = _kv_pattern().tobytes()[:64]
    with sv.open(path, key=key) as vault:
        ids = _fill(vault)
        assert (path / "vault.db-wal").exists()
        assert _plain_hits(path, [*_needles(), kv_bytes]) == []  # while open: WAL included
    assert _plain_hits(path, [*_needles(), kv_bytes]) == []
    with sv.open(path, key=key) as vault:
        docs = vault.collection("docs", embedder=HashingEmbedder(32))
        assert docs.get(ids[0]).text == SECRETS[0] + " updated"
        assert docs.get(ids[2]).metadata == {"note": META, "i": 2}
        assert [u.id for u in docs.all(where={"i": {"$gte": 10}})] == ids[10:]
        assert docs.search(SECRETS[5], k=1)[0].id == ids[5]
        assert vault.sessions.get("s1").metadata == {"secret": SESSION}
        assert vault.policies.get("p1").params == {"secret": POLICY}
        assert vault.witness.get("r1").error_message == WITNESS
        assert vault.check().ok
        with pytest.raises(InvalidInput, match="encrypted"):
            docs.search("orchid", mode="text")


def test_a_wrong_or_missing_key_fails_cleanly_at_open(tmp_path: Path) -> None:
    key = generate_key()
    path = tmp_path / "vault"
    with sv.open(path, key=key) as vault:
        vault.collection("docs", embedder=None).add(["secret"], vectors=np.ones((1, 4)))
    with pytest.raises(EncryptionError, match="encrypted"):
        sv.open(path)
    with pytest.raises(EncryptionError, match="wrong key"):
        sv.open(path, key=generate_key())
    with pytest.raises(EncryptionError, match="wrong key"):
        sv.open(path, key=generate_key(), frozen=True)
    with pytest.raises(EncryptionError, match="raw key"):
        sv.open(path, key=Passphrase("guess"))
    with pytest.raises(InvalidInput, match="64 hex"):
        sv.open(path, key="too-short")
    plain = tmp_path / "plain"
    sv.open(plain).close()
    with pytest.raises(EncryptionError, match="without encryption"):
        sv.open(plain, key=key)
    with sv.open(path, key=bytes.fromhex(key), frozen=True) as vault:  # raw bytes work as well as hex
        assert [u.text for u in vault.collection("docs", embedder=None)] == ["secret"]


def test_keys_from_environment_file_and_passphrase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = write_key_file(tmp_path / "vault.key")
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(InvalidInput, match="never overwritten"):
        write_key_file(key_file)
    with sv.open(tmp_path / "a", key=KeyFile(key_file)) as vault:
        vault.collection("c", embedder=None).add(["from a key file"], vectors=np.ones((1, 2)), ids=["x"])
    monkeypatch.setenv("SIGMAVAULT_KEY_FILE", str(key_file))
    with sv.open(tmp_path / "a") as vault:
        assert vault.get("x").text == "from a key file"
    monkeypatch.delenv("SIGMAVAULT_KEY_FILE")
    monkeypatch.setenv("SIGMAVAULT_KEY", key_file.read_text().strip())
    with sv.open(tmp_path / "a") as vault:
        assert vault.get("x").text == "from a key file"
    with sv.open(tmp_path / "plain", key=False) as vault:  # key=False ignores the environment
        vault.collection("c", embedder=None).add(["plain"], vectors=np.ones((1, 2)))
    monkeypatch.delenv("SIGMAVAULT_KEY")
    monkeypatch.setenv("SIGMAVAULT_PASSPHRASE", "correct horse battery staple")
    with sv.open(tmp_path / "p") as vault:
        vault.collection("c", embedder=None).add(["from a passphrase"], vectors=np.ones((1, 2)), ids=["y"])
    with sv.open(tmp_path / "p", key=Passphrase("correct horse battery staple")) as vault:
        assert vault.get("y").text == "from a passphrase"
    with pytest.raises(EncryptionError, match="wrong key"):
        sv.open(tmp_path / "p", key=Passphrase("correct horse battery stapler"))
    monkeypatch.delenv("SIGMAVAULT_PASSPHRASE")
    with pytest.raises(EncryptionError, match="encrypted"):
        sv.open(tmp_path / "p")


def test_a_sealed_value_moved_to_another_record_does_not_open(tmp_path: Path) -> None:
    key = generate_key()
    path = tmp_path / "vault"
    with sv.open(path, key=key) as vault:
        vault.collection("c", embedder=None).add(["alpha text", "beta text"], vectors=np.eye(2), ids=["a", "b"])
    conn = sqlite3.connect(path / "vault.db")
    integrity.register(conn)  # NOTE: the record checksum follows the move: the AEAD binding must refuse it
    with conn:
        conn.execute("UPDATE units SET text = (SELECT text FROM units WHERE uid = 'a') WHERE uid = 'b'")
    conn.close()
    with sv.open(path, key=key) as vault:
        assert vault.get("a").text == "alpha text"
        with pytest.raises(Corrupted, match="units/b/text"):
            vault.get("b")


def test_an_encrypted_bundle_stays_sealed(tmp_path: Path) -> None:
    key = generate_key()
    path = tmp_path / "vault"
    with sv.open(path, key=key) as vault:
        vault.collection("docs", embedder=HashingEmbedder(32)).add(SECRETS, ids=[f"u{i}" for i in range(12)])
    report = sv.bundle.export(path, tmp_path / "b.tar", key=key)
    assert report.encrypted
    assert not any(n in (tmp_path / "b.tar").read_bytes() for n in _needles())
    sv.bundle.export(path, tmp_path / "sub.tar", collections=["docs"], key=key)
    assert not any(n in (tmp_path / "sub.tar").read_bytes() for n in _needles())
    sv.bundle.import_bundle(tmp_path / "b.tar", tmp_path / "copy")  # files are copied sealed: no key needed
    with pytest.raises(EncryptionError):
        sv.open(tmp_path / "copy")
    with sv.open(tmp_path / "copy", key=key) as vault:
        assert vault.get("u3").text == SECRETS[3]


def test_import_sigmavault_does_not_load_cryptography(tmp_path: Path) -> None:
    out = run_py(
        """
        import json, sys
        import numpy as np
        import sigmavault as sv
        with sv.open(sys.argv[1]) as v:
            v.collection("c", embedder=None).add(vectors=np.ones((1, 2)))
        print(json.dumps("cryptography" in sys.modules))
        """,
        str(tmp_path / "v"),
    )
    assert out is False
    assert os.environ.get("SIGMAVAULT_KEY") is None
