"""Ed25519 signatures on bundles: who exported a bundle, checkable by anyone holding their public key.

The manifest's witness (SHAKE-256 over every field, file hashes included) says *what* a bundle holds
but anyone can recompute it after editing a bundle. A signature over the witness digest, made with
a private key only the exporter holds, says *who* vouches for it: ``verify(..., trusted_keys=[...])``
accepts a bundle only when one of those public keys signed exactly this witness.

Keys (``sigmavault keygen --sign FILE``): the private key is a PKCS#8 PEM file (mode 0600); the public
key is 64 hex characters (32 raw bytes), also written to ``FILE.pub``. Needs ``cryptography``
(``pip install 'sigmavault[crypto]'``), imported only when a signature is made or checked.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from sigmavault.errors import BundleInvalid, EncryptionError, InvalidInput

__all__ = ["ALG", "check_trust", "generate", "public_hex", "sign", "signature_problem", "trusted_hexes"]

ALG = "ed25519"
_CONTEXT = b"sigmavault-bundle-signature-v1:"  # NOTE: domain separation: this key signs nothing else
_HEX32 = re.compile(r"^[0-9a-f]{64}$")
_HEX64 = re.compile(r"^[0-9a-f]{128}$")


def _ed25519() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise EncryptionError(
            "signed bundles need the cryptography package: pip install 'sigmavault[crypto]'"
        ) from None
    return ed25519


def generate(path: str | os.PathLike[str]) -> tuple[Path, str]:
    """Write a new private signing key at ``path`` (never overwritten) and its public key at ``path.pub``.

    Returns ``(path, public key hex)``.
    """
    from cryptography.hazmat.primitives import serialization

    target = Path(path)
    key = _ed25519().Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InvalidInput(f"{target} exists; a signing key is never overwritten") from None
    except OSError as exc:
        raise InvalidInput(f"cannot create {target}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public = public_hex(key)
    target.with_name(target.name + ".pub").write_text(public + "\n")
    return target, public


def _private(key: Any) -> Any:
    """An Ed25519 private key from a key object, 32 raw bytes, or a PEM file path."""
    ed = _ed25519()
    if isinstance(key, ed.Ed25519PrivateKey):
        return key
    if isinstance(key, bytes) and len(key) == 32:
        return ed.Ed25519PrivateKey.from_private_bytes(key)
    if isinstance(key, str | os.PathLike):
        from cryptography.hazmat.primitives import serialization

        try:
            loaded = serialization.load_pem_private_key(Path(key).read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise InvalidInput(f"signing_key {str(key)[:200]!r}: not a readable Ed25519 PEM key file ({exc})") from None
        if isinstance(loaded, ed.Ed25519PrivateKey):
            return loaded
    raise InvalidInput("signing_key must be an Ed25519 private key: a PEM file from `sigmavault keygen --sign`")


def public_hex(key: Any) -> str:
    """The public half of a private key (or of a public key object) as 64 hex characters."""
    from cryptography.hazmat.primitives import serialization

    ed = _ed25519()
    pub = key.public_key() if isinstance(key, ed.Ed25519PrivateKey) else key
    raw: bytes = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def sign(signing_key: Any, witness_digest: str) -> dict[str, str]:
    """The manifest's ``signature`` field: Ed25519 over the witness digest, with the signer's public key."""
    key = _private(signing_key)
    value: bytes = key.sign(_CONTEXT + witness_digest.encode("ascii"))
    return {"alg": ALG, "public_key": public_hex(key), "value": value.hex()}


def signature_problem(signature: Any, witness_digest: str) -> str | None:
    """Why a manifest's ``signature`` field does not sign ``witness_digest`` with its own key, or None."""
    if not isinstance(signature, dict) or set(signature) != {"alg", "public_key", "value"}:
        return "the signature field is malformed"
    if signature["alg"] != ALG:
        return f"signature algorithm {signature['alg']!r} is not {ALG}"
    pub, value = signature["public_key"], signature["value"]
    if not isinstance(pub, str) or not _HEX32.match(pub) or not isinstance(value, str) or not _HEX64.match(value):
        return "the signature's public key or value is not well-formed hex"
    from cryptography.exceptions import InvalidSignature

    try:
        _ed25519().Ed25519PublicKey.from_public_bytes(bytes.fromhex(pub)).verify(
            bytes.fromhex(value), _CONTEXT + witness_digest.encode("ascii")
        )
    except (InvalidSignature, ValueError):
        return "the signature does not match the manifest: it was changed after signing"
    return None


def trusted_hexes(keys: Any) -> set[str]:
    """Trusted public keys as hex: each one 64 hex characters, 32 raw bytes, a key object, or a path to a
    ``.pub`` file (hex) or a PEM private key (its public half)."""
    if isinstance(keys, str | bytes | os.PathLike):
        keys = [keys]
    out: set[str] = set()
    for key in keys:
        if isinstance(key, bytes) and len(key) == 32:
            out.add(key.hex())
        elif isinstance(key, str) and _HEX32.match(key.strip().lower()):
            out.add(key.strip().lower())
        elif isinstance(key, str | os.PathLike):
            path = Path(key)
            try:
                text = path.read_bytes()
            except OSError as exc:
                raise InvalidInput(
                    f"trusted key {str(key)[:200]!r}: not 64 hex characters nor a readable file ({exc})"
                ) from None
            word = text.decode("ascii", "replace").strip().lower()
            out.add(word if _HEX32.match(word) else public_hex(_private(path)))
        else:
            try:
                out.add(public_hex(key))
            except (AttributeError, TypeError):
                raise InvalidInput(f"trusted key of type {type(key).__name__} is not an Ed25519 public key") from None
    if not out:
        raise InvalidInput("trusted_keys is empty; pass None to accept unsigned bundles")
    return out


def check_trust(manifest: dict[str, Any], trusted: set[str] | None, where: Path) -> tuple[str | None, bool]:
    """``(signer's public key hex or None, trusted)``; raises BundleInvalid when ``trusted`` demands a signer."""
    signature = manifest.get("signature")
    signer = signature.get("public_key") if isinstance(signature, dict) else None
    if trusted is None:
        return signer, False
    if signer is None:
        raise BundleInvalid(f"{where}: the bundle is not signed, and trusted keys were given")
    if signer not in trusted:
        raise BundleInvalid(f"{where}: signed by {signer[:16]}…, which is not among the trusted keys")
    return signer, True
