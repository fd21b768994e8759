"""Shared fixtures: vault directories, a fast deterministic embedder, the real MiniLM, and helpers
that run Python in a fresh process (to prove that what a vault promises survives a restart)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import sigmavault as sv
from sigmavault.embed import MiniLM

TESTS_DIR = Path(__file__).resolve().parent
SRC_DIR = Path(sv.__file__).resolve().parent.parent


class HashingEmbedder:
    """Bag of words hashed into ``dim`` signed buckets with SHA-256: the same vector for the same
    text in every process, no model, microseconds per text. Texts sharing words land near each other."""

    name = "hashing-test-embedder"

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                h = hashlib.sha256(word.encode()).digest()
                out[i, int.from_bytes(h[:4], "little") % self.dim] += 1.0 if h[4] & 1 else -1.0
            norm = float(np.linalg.norm(out[i]))
            if norm == 0.0:
                out[i, 0] = 1.0  # words that cancel out still get a valid (non-zero) vector
            else:
                out[i] /= norm
        return out


def unit_vectors(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """Random float32 rows of unit length (what a cosine collection stores)."""
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def id_vector(uid: str, version: int = 0, dim: int = 16) -> np.ndarray:
    """A vector that any process can recompute from ``(uid, version)``."""
    seed = int.from_bytes(hashlib.sha256(f"{uid}:{version}".encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)


def python_env() -> dict[str, str]:
    """The environment for child processes: this checkout's sources first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC_DIR), str(TESTS_DIR), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def run_py(code: str, *args: str, timeout: float = 120.0) -> Any:
    """Run ``code`` in a fresh interpreter (``sys.argv[1:] = args``); return the JSON it printed last."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=python_env(),
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"child process failed ({proc.returncode}):\n{proc.stderr}")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    return json.loads(lines[-1]) if lines else None


def spawn_py(code: str, *args: str, stdin: bool = False) -> subprocess.Popen[str]:
    """Start ``code`` in a fresh interpreter with piped, line-buffered text stdout (and stdin)."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        text=True,
        bufsize=1,
        env=python_env(),
    )


def snapshot(vault: sv.Vault) -> dict[str, Any]:
    """Everything a vault holds, read without touching access statistics: to compare before/after."""
    units: dict[str, Any] = {}
    for name in vault.collections():
        col = vault.collection(name, embedder=None)
        for u in col:
            full = col.get(u.id, touch=False)
            units[u.id] = {
                "collection": name,
                "text": u.text,
                "metadata": u.metadata,
                "kind": u.kind,
                "state": u.state.value,
                "created_at": u.created_at,
                "access_count": u.access_count,
                "conversation_id": u.conversation_id,
                "parent_id": u.parent_id,
                "semantic_hash": u.semantic_hash,
                "kv_ref": u.kv_ref,
                "vector": None if full.vector is None else full.vector.tolist(),
            }
    edges = sorted(
        (e.source, e.target, e.kind, e.weight) for uid in units for e in vault.neighbors(uid, direction="out")
    )
    return {"units": units, "edges": edges}


@pytest.fixture
def embedder() -> HashingEmbedder:
    return HashingEmbedder()


@pytest.fixture
def vault_path(tmp_path: Path) -> Path:
    return tmp_path / "vault"


@pytest.fixture
def vault(vault_path: Path) -> Iterator[sv.Vault]:
    v = sv.open(vault_path)
    try:
        yield v
    finally:
        v.close()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def minilm() -> MiniLM:
    """The real default embedder, loaded once per session (the same instance the default uses)."""
    from sigmavault.vault import _shared_default

    model = _shared_default()
    assert isinstance(model, MiniLM)
    model.embed(["warm up"])
    return model
