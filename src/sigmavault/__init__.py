"""sigmavault (ΣVAULT): the embedded memory engine for LLM runtimes.

>>> import sigmavault as sv
>>> vault = sv.open("./memory")
>>> docs = vault.collection("docs")
"""

from sigmavault.errors import (
    BundleInvalid,
    Corrupted,
    DimensionMismatch,
    EmbedderUnavailable,
    EmptyText,
    EncryptionError,
    InvalidFilter,
    InvalidInput,
    NotFound,
    ReadOnly,
    ShardUnavailable,
    StorageError,
    StorageFull,
    VaultClosed,
    VaultError,
    VaultLocked,
)
from sigmavault.index.ann import get_threads, set_threads
from sigmavault.types import CheckReport, Edge, Hit, State, Unit
from sigmavault.vault import Collection, Vault, open
from sigmavault.witness.entry import WitnessEntry

__version__ = "0.1.0"

# NOTE: tool modules load on first attribute access (sv.bundle, sv.migrate, sv.crypto), so that
# `import sigmavault` stays light and never imports cryptography unless a key is used.
_LAZY_MODULES = ("aio", "bundle", "crypto", "migrate", "runtime")
# Names served from a lazily imported module (the runtime imports nothing heavy itself, but keeps it that way).
_LAZY_NAMES = {"Runtime": "runtime", "Reply": "runtime", "aopen": "aio"}


def __getattr__(name: str) -> object:
    import importlib

    if name in _LAZY_MODULES:
        return importlib.import_module(f"sigmavault.{name}")
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(f"sigmavault.{_LAZY_NAMES[name]}"), name)
    raise AttributeError(f"module 'sigmavault' has no attribute {name!r}")


__all__ = [
    "BundleInvalid",
    "CheckReport",
    "Collection",
    "Corrupted",
    "DimensionMismatch",
    "Edge",
    "EmbedderUnavailable",
    "EmptyText",
    "EncryptionError",
    "Hit",
    "InvalidFilter",
    "InvalidInput",
    "NotFound",
    "ReadOnly",
    "Reply",
    "Runtime",
    "ShardUnavailable",
    "State",
    "StorageError",
    "StorageFull",
    "Unit",
    "Vault",
    "VaultClosed",
    "VaultError",
    "VaultLocked",
    "WitnessEntry",
    "__version__",
    "aopen",
    "get_threads",
    "open",
    "set_threads",
]
