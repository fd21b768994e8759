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
    InvalidFilter,
    InvalidInput,
    NotFound,
    ReadOnly,
    VaultClosed,
    VaultError,
    VaultLocked,
)
from sigmavault.types import CheckReport, Edge, Hit, State, Unit
from sigmavault.vault import Collection, Vault, open

__version__ = "0.1.0"

__all__ = [
    "BundleInvalid",
    "CheckReport",
    "Collection",
    "Corrupted",
    "DimensionMismatch",
    "Edge",
    "EmbedderUnavailable",
    "EmptyText",
    "Hit",
    "InvalidFilter",
    "InvalidInput",
    "NotFound",
    "ReadOnly",
    "State",
    "Unit",
    "Vault",
    "VaultClosed",
    "VaultError",
    "VaultLocked",
    "__version__",
    "open",
]
