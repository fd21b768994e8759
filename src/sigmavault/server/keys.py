"""API keys: a JSON file of hashed keys, each with a scope and a tenant.

The file never holds a key itself, only its SHA-256 (a key is 256 random bits, so a plain hash is
enough: nothing to brute-force). ``add_key`` returns the new key once; it cannot be shown again.
Scopes are ordered: ``read`` < ``write`` < ``admin``; a key may do what its scope and every
lower scope allow.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sigmavault.errors import InvalidInput

__all__ = ["SCOPES", "KeyRing", "Principal", "add_key", "check_tenant"]

SCOPES = ("read", "write", "admin")
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_PREFIX = "svk_"


def check_tenant(name: str) -> str:
    """A tenant name that is safe as a directory name: letters, digits, ``_ . -``; 1–64 characters."""
    if not isinstance(name, str) or not _TENANT.fullmatch(name) or set(name) == {"."}:
        raise InvalidInput(f"tenant {name!r}: use 1-64 letters, digits, '_', '.' or '-', starting with a letter/digit")
    return name


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for: the key's id, tenant and scope."""

    key_id: str
    tenant: str
    scope: str

    def allows(self, scope: str) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(scope)


def _load(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        keys = data["keys"]
        for k in keys:
            if k["scope"] not in SCOPES or not isinstance(k["hash"], str):
                raise ValueError(f"bad entry {k.get('id')!r}")
            check_tenant(k["tenant"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(
            f"keys file {path} is unreadable or malformed ({exc}); recreate it with 'keys add'"
        ) from None
    return list(keys)


def add_key(path: str | os.PathLike[str], *, tenant: str, scope: str) -> tuple[str, Principal]:
    """Append a new key to the file (created if missing, mode 0600); returns the key, shown only now."""
    if scope not in SCOPES:
        raise InvalidInput(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    file = Path(path)
    keys = _load(file)
    key = _PREFIX + secrets.token_urlsafe(32)
    key_id = "k_" + secrets.token_hex(4)
    keys.append(
        {"id": key_id, "hash": _digest(key), "tenant": check_tenant(tenant), "scope": scope, "created_at": time.time()}
    )
    tmp = file.with_name(file.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"version": 1, "keys": keys}, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, file)
    return key, Principal(key_id, tenant, scope)


class KeyRing:
    """The keys a server accepts, read from the keys file at start."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise InvalidInput(f"no keys file at {self.path}; create one with 'sigmavault keys add {self.path} ...'")
        self._by_hash = {k["hash"]: Principal(k["id"], k["tenant"], k["scope"]) for k in _load(self.path)}
        if not self._by_hash:
            raise InvalidInput(f"keys file {self.path} holds no keys; add one with 'sigmavault keys add'")

    def __len__(self) -> int:
        return len(self._by_hash)

    def verify(self, key: str) -> Principal | None:
        """The principal of a presented key, or None if it is not one of ours."""
        # NOTE: a dict lookup by digest is safe without constant-time compares: timing can at most
        # reveal a prefix of a SHA-256 of 256 random bits, which helps no one find the key.
        return self._by_hash.get(_digest(key))
