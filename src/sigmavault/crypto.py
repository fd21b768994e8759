"""Encryption at rest: AES-256-GCM sealing of record fields, keys from the environment, a file or a passphrase.

A vault is encrypted from birth: ``sigmavault.open(path, key=...)`` on a new directory writes a
key-check record into ``vault_meta``, and every later open must present the same key (a wrong or
missing key fails at open with :class:`EncryptionError`, before any record is read). Parts then
seal user content with ``db.cipher.seal(f"{table}/{record_id}/{field}".encode(), plaintext)``:
the associated data binds each ciphertext to its row and field, so a sealed value copied to
another row fails to open instead of being silently misread.

Where a key comes from (first match wins):

1. ``key=`` given to ``open()``: 32 raw bytes, a hex or base64 string of them, a path to a key
   file, :class:`KeyFile`, or :class:`Passphrase`; ``key=False`` means "no key, ignore the
   environment".
2. the environment: ``SIGMAVAULT_KEY`` (hex or base64), ``SIGMAVAULT_KEY_FILE``, ``SIGMAVAULT_PASSPHRASE``.

Passphrases are stretched with Argon2id (when the installed ``cryptography`` has it) or scrypt
(stdlib), with a random salt and the parameters stored in the key-check record.

This module imports only the standard library at import time; ``cryptography`` (the ``crypto``
extra) is imported when a key is actually used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sigmavault.errors import Corrupted, EncryptionError, InvalidInput
from sigmavault.store import Cipher, Database

__all__ = [
    "ENV_KEY",
    "ENV_KEY_FILE",
    "ENV_PASSPHRASE",
    "AesGcmCipher",
    "KeyFile",
    "KeySpec",
    "Passphrase",
    "configure",
    "generate_key",
    "is_encrypted",
    "write_key_file",
]

ENV_KEY = "SIGMAVAULT_KEY"
ENV_KEY_FILE = "SIGMAVAULT_KEY_FILE"
ENV_PASSPHRASE = "SIGMAVAULT_PASSPHRASE"

KEY_BYTES = 32
NONCE_BYTES = 12
SEAL_VERSION = 1
_META_KEY = "cipher"
_CHECK_AAD = b"vault_meta/cipher/check"
_CHECK_TEXT = b"sigmavault key check v1"
_INSTALL_HINT = "encryption needs the crypto extra: pip install 'sigmavault[crypto]'"
# NOTE: scrypt N=2^15, r=8 (32 MiB) and Argon2id t=3, 64 MiB, 4 lanes follow the OWASP and
# RFC 9106 recommendations; both take ~0.1-0.3 s once per open, never per record.
_SCRYPT = {"n": 2**15, "r": 8, "p": 1}
_ARGON2 = {"iterations": 3, "lanes": 4, "memory_cost": 65536}


@dataclass(frozen=True)
class Passphrase:
    """A human secret, stretched into the vault key with Argon2id or scrypt and the vault's salt."""

    secret: str = field(repr=False)


@dataclass(frozen=True)
class KeyFile:
    """A file holding the key: 32 raw bytes, or its hex or base64 text."""

    path: Path


KeySpec = bytes | str | os.PathLike[str] | Passphrase | KeyFile | bool | None


class AesGcmCipher:
    """AES-256-GCM with a fresh random 96-bit nonce per record.

    Sealed layout: version byte (1), nonce (12 bytes), ciphertext, GCM tag (16 bytes): 29 bytes of
    overhead per field. Random nonces are safe for well over 2^32 records under one key.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise InvalidInput(f"an AES-256 key is {KEY_BYTES} bytes, got {len(key)}")
        aead = _aesgcm()
        self._aead = aead(key)

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        sealed: bytes = self._aead.encrypt(nonce, plaintext, aad)
        return bytes((SEAL_VERSION,)) + nonce + sealed

    def open(self, aad: bytes, sealed: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag

        if len(sealed) < 1 + NONCE_BYTES + 16 or sealed[0] != SEAL_VERSION:
            raise Corrupted(f"sealed field {aad.decode(errors='replace')} is not a sigmavault ciphertext")
        try:
            return bytes(self._aead.decrypt(sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :], aad))
        except InvalidTag:
            raise Corrupted(
                f"sealed field {aad.decode(errors='replace')} failed authentication: it was modified or "
                "moved from another record; restore the vault from a bundle"
            ) from None


def _aesgcm() -> Any:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        raise EncryptionError(_INSTALL_HINT) from None
    return AESGCM


def generate_key() -> str:
    """A fresh random key as 64 hex characters (for ``SIGMAVAULT_KEY`` or a key file)."""
    return secrets.token_hex(KEY_BYTES)


def write_key_file(path: str | os.PathLike[str]) -> Path:
    """Write a new random key (hex) to ``path``, readable by its owner only; refuses to overwrite."""
    target = Path(path)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InvalidInput(f"{target} exists; a key file is never overwritten (it would orphan a vault)") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(generate_key() + "\n")
    return target


# -- key sources ------------------------------------------------------------------------------


def _decode_key_text(text: str, where: str) -> bytes:
    text = text.strip()
    if len(text) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) == KEY_BYTES:
        return raw
    raise InvalidInput(
        f"{where}: a key is {KEY_BYTES} bytes written as 64 hex characters or base64; "
        "for a passphrase use sigmavault.crypto.Passphrase(...) or SIGMAVAULT_PASSPHRASE"
    )


def _read_key_file(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EncryptionError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    if len(data) == KEY_BYTES:
        return data
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise InvalidInput(f"key file {path}: expected 32 raw bytes or hex/base64 text") from None
    return _decode_key_text(text, f"key file {path}")


def _resolve(spec: KeySpec) -> tuple[str, bytes | Passphrase] | None:
    """``(where it came from, raw key or passphrase)``, or ``None`` when no key is configured."""
    if spec is False:
        return None
    if spec is None or spec is True:
        env = os.environ
        if env.get(ENV_KEY):
            return ENV_KEY, _decode_key_text(env[ENV_KEY], ENV_KEY)
        if env.get(ENV_KEY_FILE):
            return ENV_KEY_FILE, _read_key_file(Path(env[ENV_KEY_FILE]))
        if env.get(ENV_PASSPHRASE):
            return ENV_PASSPHRASE, Passphrase(env[ENV_PASSPHRASE])
        if spec is True:
            raise EncryptionError(f"key=True but none of {ENV_KEY}, {ENV_KEY_FILE}, {ENV_PASSPHRASE} is set")
        return None
    if isinstance(spec, Passphrase):
        if not spec.secret:
            raise InvalidInput("the passphrase is empty")
        return "passphrase", spec
    if isinstance(spec, KeyFile):
        return f"key file {spec.path}", _read_key_file(Path(spec.path))
    if isinstance(spec, bytes | bytearray):
        if len(spec) != KEY_BYTES:
            raise InvalidInput(f"key bytes must be exactly {KEY_BYTES} long, got {len(spec)}")
        return "key bytes", bytes(spec)
    if isinstance(spec, str):
        return "key string", _decode_key_text(spec, "key")
    if isinstance(spec, os.PathLike):
        return f"key file {spec}", _read_key_file(Path(spec))
    raise InvalidInput(
        f"key must be bytes, a hex/base64 string, a path, KeyFile or Passphrase; got {type(spec).__name__}"
    )


def _derive(secret: str, kdf: dict[str, Any]) -> bytes:
    salt = bytes.fromhex(kdf["salt"])
    if kdf["name"] == "scrypt":
        n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
        return bytes(
            hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * r * n + (1 << 20), dklen=KEY_BYTES)
        )
    if kdf["name"] == "argon2id":
        try:
            from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
        except ImportError:
            raise EncryptionError(
                "this vault's passphrase uses Argon2id, which needs cryptography >= 44: "
                "pip install -U 'sigmavault[crypto]'"
            ) from None
        argon = Argon2id(
            salt=salt,
            length=KEY_BYTES,
            iterations=int(kdf["iterations"]),
            lanes=int(kdf["lanes"]),
            memory_cost=int(kdf["memory_cost"]),
        )
        return bytes(argon.derive(secret.encode()))
    raise EncryptionError(f"unknown key derivation {kdf['name']!r}; upgrade sigmavault")


def _new_kdf() -> dict[str, Any]:
    salt = secrets.token_hex(16)
    try:
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id  # noqa: F401
    except ImportError:
        return {"name": "scrypt", "salt": salt, **_SCRYPT}
    return {"name": "argon2id", "salt": salt, **_ARGON2}


# -- the vault's key-check record -------------------------------------------------------------


def _record(db: Database) -> dict[str, Any] | None:
    row = db.one("SELECT value FROM vault_meta WHERE key = ?", (_META_KEY,))
    if row is None:
        return None
    try:
        rec = json.loads(row[0])
    except json.JSONDecodeError:
        raise Corrupted(f"{db.path}: the key-check record in vault_meta is not JSON") from None
    if not isinstance(rec, dict) or rec.get("alg") != "AES-256-GCM":
        raise EncryptionError(f"{db.path}: vault is sealed with {rec.get('alg')!r}, which this sigmavault cannot open")
    return rec


def is_encrypted(db: Database) -> bool:
    """True when the vault in ``db`` was created with a key."""
    return _record(db) is not None


def configure(db: Database, spec: KeySpec, *, new: bool) -> Cipher | None:
    """Check (or, on a ``new`` vault, set up) the key; returns the cipher for ``db.cipher``.

    Raises :class:`EncryptionError` when an encrypted vault gets no key or the wrong one, and when
    a key is configured for an existing vault that was created without one (it would otherwise
    hold plain and sealed records side by side).
    """
    rec = _record(db)
    source = _resolve(spec)
    if rec is None:
        if source is None:
            return None
        if not new:
            raise EncryptionError(
                f"{db.path.parent} was created without encryption, but a key is configured ({source[0]}); "
                "encryption is chosen when a vault is created: open it with key=False (or unset the "
                "SIGMAVAULT_KEY* variables), or create a new vault with the key"
            )
        return _create(db, source[1])
    if source is None:
        raise EncryptionError(
            f"{db.path.parent} is encrypted: pass key=... to sigmavault.open(), or set "
            f"{ENV_KEY}, {ENV_KEY_FILE} or {ENV_PASSPHRASE}"
        )
    kdf = rec.get("kdf", {"name": "raw"})
    secret = source[1]
    if isinstance(secret, Passphrase):
        if kdf.get("name") == "raw":
            raise EncryptionError(
                f"{db.path.parent} was created with a raw key, not a passphrase; give the key ({ENV_KEY} or a key file)"
            )
        key = _derive(secret.secret, kdf)
    else:
        key = secret
    cipher = AesGcmCipher(key)
    try:
        opened = cipher.open(_CHECK_AAD, base64.b64decode(rec["check"]))
    except Corrupted:
        opened = b""
    if opened != _CHECK_TEXT:
        raise EncryptionError(f"wrong key for {db.path.parent} ({source[0]}): the key-check record does not open")
    return cipher


def _create(db: Database, secret: bytes | Passphrase) -> Cipher:
    if isinstance(secret, Passphrase):
        kdf = _new_kdf()
        key = _derive(secret.secret, kdf)
    else:
        kdf, key = {"name": "raw"}, secret
    cipher = AesGcmCipher(key)
    rec = {
        "alg": "AES-256-GCM",
        "version": SEAL_VERSION,
        "kdf": kdf,
        "check": base64.b64encode(cipher.seal(_CHECK_AAD, _CHECK_TEXT)).decode("ascii"),
    }
    with db.write() as conn:
        conn.execute("INSERT INTO vault_meta (key, value) VALUES (?, ?)", (_META_KEY, json.dumps(rec, sort_keys=True)))
    return cipher
