"""The bundle manifest: what a bundle holds, the SHA-256 of every file, and a SHAKE-256 witness.

The witness is SHAKE-256 (512 bits) over the canonical JSON of every manifest field except the
witness itself, and those fields include each file's SHA-256 and size, so a change to any file or
any field is detected. The manifest file must also be byte-for-byte its own canonical form
(sorted keys, two-space indent, ASCII), so even an edit that keeps the JSON meaning (whitespace,
key order) fails verification.

The witness detects accidents and tampering by someone who does not recompute it; it is not a
signature (anyone can recompute a hash), so a bundle from an untrusted party needs its witness
digest compared with one received over a trusted channel (``verify`` reports it).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from sigmavault.errors import BundleInvalid

__all__ = [
    "DATA_DIR",
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "MAX_BYTES",
    "MAX_FILES",
    "FileEntry",
    "check_relpath",
    "dump_manifest",
    "load_manifest",
    "witness_of",
]

FORMAT = "sigmavault-bundle"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
DATA_DIR = "files"
WITNESS_BYTES = 64
MAX_MANIFEST_BYTES = 64 << 20
# Limits a reader enforces before hashing anything: a bundle beyond them is refused, not read.
MAX_FILES = 1_000_000
MAX_BYTES = 1 << 42  # 4 TiB
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_REQUIRED = (
    "format",
    "format_version",
    "generation",
    "lineage_id",
    "created_at",
    "pii_policy",
    "dimensions",
    "embedders",
    "files",
    "witness",
)


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a bundle: its path under ``files/``, size and SHA-256."""

    path: str
    bytes: int
    sha256: str


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def witness_of(manifest: dict[str, Any]) -> str:
    """SHAKE-256 hex digest over every field except ``witness`` and ``signature`` (file hashes included)."""
    body = {k: v for k, v in manifest.items() if k not in ("witness", "signature")}
    return hashlib.shake_256(_canonical(body)).hexdigest(WITNESS_BYTES)


def dump_manifest(
    fields: dict[str, Any], files: list[FileEntry], *, signing_key: Any = None
) -> tuple[dict[str, Any], bytes]:
    """The finished manifest (with its witness, and its Ed25519 signature when a key is given) and
    the exact bytes of manifest.json."""
    manifest = dict(fields)
    manifest["files"] = {f.path: {"bytes": f.bytes, "sha256": f.sha256} for f in sorted(files, key=lambda f: f.path)}
    manifest["witness"] = {"alg": "shake256", "bytes": WITNESS_BYTES, "digest": witness_of(manifest)}
    if signing_key is not None:
        from sigmavault.bundle.signing import sign

        manifest["signature"] = sign(signing_key, manifest["witness"]["digest"])
    return manifest, _pretty(manifest)


def _pretty(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=True, allow_nan=False) + "\n").encode()


def check_relpath(path: Any) -> str:
    """Return ``path`` if it is a safe relative POSIX path inside the bundle; else raise BundleInvalid.

    Refused: absolute paths, ``..`` or ``.`` components, empty components, backslashes, drive
    letters, control characters, and anything over 1000 characters.
    """
    if not isinstance(path, str) or not path or len(path) > 1000:
        raise BundleInvalid(f"bundle path {path!r} is empty, too long or not a string")
    if "\\" in path or ":" in path or any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise BundleInvalid(f"bundle path {path!r} holds a backslash, colon or control character; refused")
    pure = PurePosixPath(path)
    if pure.is_absolute() or path.startswith("/"):
        raise BundleInvalid(f"bundle path {path!r} is absolute; it would escape the target directory")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise BundleInvalid(f"bundle path {path!r} has an empty, '.' or '..' component; it could escape the target")
    return path


def load_manifest(data: bytes) -> tuple[dict[str, Any], list[FileEntry]]:
    """Parse and check manifest.json: canonical bytes, known format, witness, safe paths."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise BundleInvalid(f"manifest.json is {len(data)} bytes, over the {MAX_MANIFEST_BYTES} limit")
    try:
        manifest = json.loads(data.decode("ascii"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleInvalid(f"manifest.json is not valid JSON ({exc}); the bundle is damaged") from None
    if not isinstance(manifest, dict):
        raise BundleInvalid("manifest.json is not a JSON object")
    if manifest.get("format") != FORMAT:
        got = manifest.get("format")
        raise BundleInvalid(f"manifest.json: format is {got!r}, not {FORMAT!r}; not a sigmavault bundle")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BundleInvalid(f"manifest.json: format_version {version!r} is not a positive integer")
    if version > FORMAT_VERSION:
        raise BundleInvalid(
            f"bundle format_version {version} is newer than this sigmavault reads ({FORMAT_VERSION}); "
            "upgrade sigmavault to import it"
        )
    missing = [k for k in _REQUIRED if k not in manifest]
    if missing:
        raise BundleInvalid(f"manifest.json lacks the field(s) {', '.join(missing)}")
    try:
        canonical = _pretty(manifest)
    except ValueError as exc:
        raise BundleInvalid(f"manifest.json holds a value JSON cannot carry ({exc})") from None
    if canonical != data:
        raise BundleInvalid("manifest.json is not in canonical form: it was edited after export")
    wit = manifest["witness"]
    if not isinstance(wit, dict) or wit.get("alg") != "shake256" or wit.get("bytes") != WITNESS_BYTES:
        raise BundleInvalid("manifest.json: the witness is not a 64-byte SHAKE-256 digest")
    if wit.get("digest") != witness_of(manifest):
        raise BundleInvalid("manifest.json: witness mismatch: a manifest field or a file hash was changed")
    if "signature" in manifest:
        from sigmavault.bundle.signing import signature_problem

        problem = signature_problem(manifest["signature"], wit["digest"])
        if problem is not None:
            raise BundleInvalid(f"manifest.json: {problem}")
    files = manifest["files"]
    if not isinstance(files, dict):
        raise BundleInvalid("manifest.json: files is not an object")
    if len(files) > MAX_FILES:
        raise BundleInvalid(f"manifest.json lists {len(files)} files, over the limit of {MAX_FILES}")
    entries: list[FileEntry] = []
    for path, info in files.items():
        check_relpath(path)
        if (
            not isinstance(info, dict)
            or not isinstance(info.get("bytes"), int)
            or info["bytes"] < 0
            or not isinstance(info.get("sha256"), str)
            or not _HEX64.match(info["sha256"])
        ):
            raise BundleInvalid(f"manifest.json: the entry for {path!r} needs bytes and a sha256")
        entries.append(FileEntry(path, info["bytes"], info["sha256"]))
    total = sum(e.bytes for e in entries)
    if total > MAX_BYTES:
        raise BundleInvalid(f"manifest.json lists {total} bytes of files, over the limit of {MAX_BYTES}")
    lowered = {e.path.lower() for e in entries}
    if len(lowered) != len(entries):
        raise BundleInvalid("manifest.json lists two files whose names differ only in case")
    for e in entries:
        parent = e.path.lower().rsplit("/", 1)[0] if "/" in e.path else None
        while parent:
            if parent in lowered:
                raise BundleInvalid(f"manifest.json lists {parent!r} both as a file and as a folder")
            parent = parent.rsplit("/", 1)[0] if "/" in parent else None
    return manifest, entries
