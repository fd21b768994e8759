"""The fast CPU backend of the default embedder: the packaged weights exported once to ONNX, run by onnxruntime.

The first use exports the model (torch + transformers + onnx, about a minute on a busy 2-core box),
fuses it for onnxruntime (attention, GELU, layer norms) and caches the result on disk, keyed by
the SHA-256 of the packaged weights and the onnxruntime version; later loads need only
onnxruntime, tokenizers and numpy (a few seconds, no torch import). The cache file is written
atomically next to a manifest holding its SHA-256; a file that does not match it (truncated,
damaged) is rebuilt. Vectors are the torch path's to cosine >= 0.999 (tests check it): the same
mean pooling over the same tokens, normalised; texts are tokenized at once, sorted by length and
padded per batch. No int8: dynamic quantization moved vectors to cosine 0.985 on the bundled corpus.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sigmavault.errors import EmbedderUnavailable
from sigmavault.types import Vector

__all__ = ["FORMAT", "OnnxEncoder", "Prepared", "available", "cache_dir", "is_cached", "prepare"]

FORMAT = 1  # NOTE: bump when the exported graph changes, so old cache files are not reused
_NAME = "all-MiniLM-L6-v2"


def available() -> bool:
    """True when onnxruntime and tokenizers can be imported (what running the cached model needs)."""
    try:
        return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "tokenizers"))
    except (ImportError, ValueError):  # NOTE: a blocked import (sys.modules[name] = None) raises ValueError
        return False


def cache_dir() -> Path:
    """Where exported models live: ``$SIGMAVAULT_CACHE_DIR``, else the user cache dir, then ``embed/``."""
    root = os.environ.get("SIGMAVAULT_CACHE_DIR")
    if root:
        return Path(root) / "embed"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sigmavault" / "embed"


@dataclass(frozen=True, slots=True)
class Prepared:
    """The cached model file, and whether this call built it (False: an existing, verified file)."""

    path: Path
    built: bool
    weights_sha256: str


def _weights_digest(model_dir: Path) -> str:
    h = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        with (model_dir / name).open("rb") as f:
            h.update(hashlib.file_digest(f, "sha256").digest())
    return h.hexdigest()


def _ort_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


def _paths(model_dir: Path, root: Path) -> tuple[Path, Path, str]:
    digest = _weights_digest(model_dir)
    stem = f"{_NAME}-{digest[:16]}-ort{_ort_version()}-v{FORMAT}"
    return root / f"{stem}.onnx", root / f"{stem}.json", digest


def _verified(model: Path, manifest: Path) -> bool:
    """True when both files exist and the model's SHA-256 is the one its manifest recorded."""
    try:
        expected = json.loads(manifest.read_text(encoding="utf-8"))["sha256"]
        with model.open("rb") as f:
            return bool(hashlib.file_digest(f, "sha256").hexdigest() == expected)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def is_cached(model_dir: Path, root: Path | None = None) -> bool:
    """Whether a verified export exists (so loading will not export; it hashes the weights to know)."""
    model, manifest, _ = _paths(model_dir, root or cache_dir())
    return _verified(model, manifest)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock across processes, so two first uses do not export at once."""
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # NOTE: mkstemp makes it 0600; the cache is readable like any cache file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def prepare(model_dir: Path, root: Path | None = None) -> Prepared:
    """The verified cached ONNX model for the weights in ``model_dir``, exported first if missing or damaged."""
    root = root or cache_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmbedderUnavailable(f"cannot create the embedding model cache {root}: {exc.strerror}") from None
    model, manifest, digest = _paths(model_dir, root)
    if _verified(model, manifest):
        return Prepared(model, False, digest)
    with _locked(root / f"{model.stem}.lock"):
        if _verified(model, manifest):  # another process built it while we waited
            return Prepared(model, False, digest)
        data = _export(model_dir)
        # NOTE: the model first, then the manifest naming its digest: a crash between the two
        # leaves a model without a matching manifest, which the next load rebuilds.
        _write_atomic(model, data)
        meta = {"sha256": hashlib.sha256(data).hexdigest(), "weights_sha256": digest, "format": FORMAT}
        _write_atomic(manifest, json.dumps(meta).encode())
    return Prepared(model, True, digest)


def _export(model_dir: Path) -> bytes:
    """Export BERT + mean pooling to ONNX with torch, then fuse it with onnxruntime's transformer optimizer."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    # NOTE: eager attention exports as plain MatMul/Softmax, which the optimizer fuses into one
    # Attention op; the SDPA export is not recognised and stays unfused (slower, same numbers).
    bert = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()

    class Pooled(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    sample = torch.ones((2, 8), dtype=torch.long)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {n: {0: "batch", 1: "tokens"} for n in names}
    with tempfile.TemporaryDirectory(prefix="sv-onnx-") as tmp:
        raw = Path(tmp) / "raw.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Pooled(bert),
                (sample, sample, torch.zeros_like(sample)),
                str(raw),
                dynamo=False,
                input_names=names,
                output_names=["embedding"],
                dynamic_axes={**axes, "embedding": {0: "batch"}},
                opset_version=17,
            )
        try:
            from onnxruntime.transformers import optimizer

            fused = Path(tmp) / "fused.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                opt = optimizer.optimize_model(
                    str(raw),
                    model_type="bert",
                    num_heads=int(config["num_attention_heads"]),
                    hidden_size=int(config["hidden_size"]),
                    opt_level=0,
                )
                opt.save_model_to_file(str(fused))
            return fused.read_bytes()
        except Exception:  # NOTE: the optimizer is a speed-up only; the plain export computes the same
            return raw.read_bytes()


class OnnxEncoder:
    """Runs the cached model: tokenize all, sort by length, pad per batch, mean-pooled and normalised."""

    backend = "onnx"

    def __init__(self, model_dir: Path, root: Path | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.prepared = prepare(model_dir, root)
        self.dim = int(json.loads((model_dir / "config.json").read_text(encoding="utf-8"))["hidden_size"])
        st_config = model_dir / "sentence_bert_config.json"
        max_len = int(json.loads(st_config.read_text(encoding="utf-8")).get("max_seq_length", 256))
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # NOTE: tokenizer.json ships truncation at 128 and fixed padding; sentence-transformers
        # truncates at max_seq_length (256) and pads each batch to its longest text: do the same.
        self.tokenizer.enable_truncation(max_len)
        self.tokenizer.no_padding()
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
        # NOTE: spinning threads burn the CPU that other work (or another request) needs, and on
        # a busy machine they wait on each other: measured faster with spinning off.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(self.prepared.path), opts, providers=["CPUExecutionProvider"])

    def encode(self, texts: Sequence[str], batch_size: int) -> Vector:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch(list(texts))
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        order = np.argsort(-lengths, kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = int(lengths[rows[0]])
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, j in enumerate(rows):
                tokens = encodings[j].ids
                ids[r, : len(tokens)] = tokens
                mask[r, : len(tokens)] = 1
            (pooled,) = self.session.run(
                ["embedding"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            )
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[rows] = pooled / np.maximum(norms, 1e-12)
        return out
