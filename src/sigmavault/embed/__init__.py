"""Embedders: the protocol every embedder meets, and the offline default (all-MiniLM-L6-v2)."""

from sigmavault.embed.minilm import DEFAULT_NAME, MiniLM, available
from sigmavault.embed.protocol import CallableEmbedder, Embedder, as_embedder, check_matrix, embedder_name

__all__ = [
    "DEFAULT_NAME",
    "CallableEmbedder",
    "Embedder",
    "MiniLM",
    "as_embedder",
    "available",
    "check_matrix",
    "embedder_name",
]
