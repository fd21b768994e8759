"""Bundle containers: a directory, or one uncompressed ustar file, written and read strictly.

Layout (both forms): ``manifest.json`` at the top and every vault file under ``files/``. A tar
holds regular-file members only, with plain 512-byte ustar headers (no PAX or GNU extensions);
the reader refuses anything else (links, devices, folders, ``..`` or absolute names) and checks
that the padding between members and the end of the archive are all zeros, so that every byte
of a tar bundle is covered by a header checksum, a file SHA-256, or a zero check.
"""

from __future__ import annotations

import contextlib
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from sigmavault.bundle.manifest import (
    DATA_DIR,
    MANIFEST_NAME,
    MAX_FILES,
    MAX_MANIFEST_BYTES,
    FileEntry,
    check_relpath,
    load_manifest,
)
from sigmavault.errors import BundleInvalid, Corrupted
from sigmavault.store.files import atomic_write, publish
from sigmavault.store.tree import CHUNK, aside, copy_hashed, remove_tree
from sigmavault.store.vectors import fsync_dir

__all__ = ["DirWriter", "TarWriter", "Writer", "read_bundle"]

Progress = Callable[[int], None]
_BLOCK = tarfile.BLOCKSIZE


class Writer:
    """Where export puts files; ``finish`` adds the manifest and moves the result into place."""

    def add_stream(self, rel: str, src: BinaryIO, length: int) -> FileEntry:
        raise NotImplementedError

    def add_file(self, rel: str, path: Path, length: int | None = None) -> FileEntry:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size if length is None else length
            return self.add_stream(rel, fh, size)

    def scratch_path(self, rel: str) -> Path:
        """Where to build a file in place (the SQLite snapshot) before :meth:`commit_scratch`."""
        raise NotImplementedError

    def commit_scratch(self, rel: str, path: Path) -> FileEntry:
        raise NotImplementedError

    def finish(self, manifest: bytes | None) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


class DirWriter(Writer):
    """A bundle (or, with ``prefix=""`` and no manifest, a plain vault copy) built beside ``dest``."""

    def __init__(self, dest: Path, *, prefix: str = DATA_DIR, progress: Progress | None = None) -> None:
        self.dest = dest
        self.work = aside(dest, "export")
        self.work.mkdir()
        self.prefix = prefix
        self.progress = progress
        self._dirs: set[Path] = {self.work}

    def target(self, rel: str) -> Path:
        path = self.work / self.prefix / rel if self.prefix else self.work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        self._dirs.add(path.parent)
        return path

    def add_stream(self, rel: str, src: BinaryIO, length: int) -> FileEntry:
        path = self.target(check_relpath(rel))
        with path.open("wb") as out:
            size, digest = copy_hashed(src, out, length=length, progress=self.progress)
            out.flush()
            os.fsync(out.fileno())
        return FileEntry(rel, size, digest)

    def scratch_path(self, rel: str) -> Path:
        return self.target(check_relpath(rel))

    def commit_scratch(self, rel: str, path: Path) -> FileEntry:
        with path.open("rb") as fh:
            size, digest = copy_hashed(fh, None, progress=self.progress)
        return FileEntry(rel, size, digest)

    def finish(self, manifest: bytes | None) -> None:
        if manifest is not None:
            with atomic_write(self.work / MANIFEST_NAME) as fh:
                fh.write(manifest)
        for d in sorted(self._dirs, key=lambda p: len(p.parts), reverse=True):
            fsync_dir(d)
        # NOTE: the caller swaps self.work into place (it may keep the old tree for a rollback).

    def abort(self) -> None:
        remove_tree(self.work)


class _HashingReader:
    """Feeds tarfile.addfile while hashing, so a file is read once."""

    def __init__(self, src: BinaryIO, progress: Progress | None) -> None:
        import hashlib

        self.src = src
        self.hash = hashlib.sha256()
        self.done = 0
        self.progress = progress

    def read(self, n: int = -1) -> bytes:
        block = self.src.read(n)
        self.hash.update(block)
        self.done += len(block)
        if self.progress is not None:
            self.progress(len(block))
        return block


class TarWriter(Writer):
    """A single uncompressed ustar file, written under a temp name and renamed into place."""

    def __init__(self, dest: Path, *, progress: Progress | None = None, mtime: int = 0) -> None:
        self.dest = dest
        self.tmp = aside(dest, "tar")
        self.scratch = aside(dest, "scratch")
        self.scratch.mkdir()
        self.progress = progress
        self.mtime = mtime
        self._fh = self.tmp.open("wb")
        self._tar = tarfile.open(fileobj=self._fh, mode="w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115

    def _info(self, name: str, size: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = 0o644
        info.mtime = self.mtime
        info.type = tarfile.REGTYPE
        return info

    def add_stream(self, rel: str, src: BinaryIO, length: int) -> FileEntry:
        reader = _HashingReader(src, self.progress)
        try:
            self._tar.addfile(self._info(f"{DATA_DIR}/{check_relpath(rel)}", length), reader)
        except (OSError, ValueError) as exc:
            if "end of data" in str(exc) or isinstance(exc, ValueError):
                raise BundleInvalid(f"cannot add {rel} to the tar bundle: {exc}") from exc
            raise
        if reader.done != length:
            raise Corrupted(f"{rel}: expected {length} bytes, read {reader.done}")
        return FileEntry(rel, length, reader.hash.hexdigest())

    def scratch_path(self, rel: str) -> Path:
        path = self.scratch / check_relpath(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def commit_scratch(self, rel: str, path: Path) -> FileEntry:
        entry = self.add_file(rel, path)
        path.unlink()
        return entry

    def finish(self, manifest: bytes | None) -> None:
        import io

        if manifest is not None:
            self._tar.addfile(self._info(MANIFEST_NAME, len(manifest)), io.BytesIO(manifest))
        self._tar.close()
        self._fh.close()
        publish(self.tmp, self.dest)
        remove_tree(self.scratch)

    def abort(self) -> None:
        with contextlib.suppress(Exception):  # already failing; the temp file is removed below
            self._tar.close()
        self._fh.close()
        self.tmp.unlink(missing_ok=True)
        remove_tree(self.scratch)


# -- reading ----------------------------------------------------------------------------------


def _sink_path(sink: Path, rel: str) -> Path:
    target = sink / rel
    # NOTE: check_relpath already refused '..' and absolute names; this is the belt to its braces.
    if not target.resolve().is_relative_to(sink.resolve()):
        raise BundleInvalid(f"bundle path {rel!r} escapes the target directory; refused")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _first_mismatch(entries: list[FileEntry], got: dict[str, tuple[int, str]]) -> None:
    for e in sorted(entries, key=lambda e: e.path):
        have = got.get(e.path)
        if have is None:
            raise BundleInvalid(f"{DATA_DIR}/{e.path} is missing from the bundle")
        if have[0] != e.bytes:
            raise BundleInvalid(f"{DATA_DIR}/{e.path}: {have[0]} bytes, the manifest says {e.bytes}")
        if have[1] != e.sha256:
            raise BundleInvalid(f"{DATA_DIR}/{e.path}: SHA-256 mismatch (the file was changed or damaged)")


def _copy_one(src: BinaryIO, rel: str, length: int, sink: Path | None, progress: Progress | None) -> tuple[int, str]:
    if sink is None:
        return copy_hashed(src, None, length=length, progress=progress)
    with _sink_path(sink, rel).open("wb") as out:
        got = copy_hashed(src, out, length=length, progress=progress)
        out.flush()
        os.fsync(out.fileno())
    return got


def read_bundle(
    path: Path, *, sink: Path | None = None, progress: Progress | None = None
) -> tuple[dict[str, Any], list[FileEntry]]:
    """Verify the bundle at ``path`` completely; with ``sink``, also copy its files there.

    Raises :class:`BundleInvalid` naming the first problem. Files are hashed while they are
    copied, so an import reads the bundle once; the caller discards ``sink`` on failure.
    """
    if path.is_dir():
        return _read_dir(path, sink, progress)
    if path.is_file():
        return _read_tar(path, sink, progress)
    raise BundleInvalid(f"no bundle at {path}: not a directory or a file")


def _read_dir(root: Path, sink: Path | None, progress: Progress | None) -> tuple[dict[str, Any], list[FileEntry]]:
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file() or manifest_path.is_symlink():
        raise BundleInvalid(f"{root}: no {MANIFEST_NAME}; not a sigmavault bundle")
    if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleInvalid(f"{root}: {MANIFEST_NAME} is over the {MAX_MANIFEST_BYTES}-byte limit")
    manifest, entries = load_manifest(manifest_path.read_bytes())
    expected = {MANIFEST_NAME} | {f"{DATA_DIR}/{e.path}" for e in entries}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for name in dirnames + filenames:
            p = here / name
            if p.is_symlink():
                raise BundleInvalid(f"{p.relative_to(root)} is a symbolic link; bundles hold regular files only")
            if name in filenames and not p.is_file():
                raise BundleInvalid(f"{p.relative_to(root)} is not a regular file")
        for f in filenames:
            # NOTE: refused at the first unlisted file: a bundle padded with junk costs one lookup, not a walk
            rel = (here / f).relative_to(root).as_posix()
            if rel not in expected:
                raise BundleInvalid(f"{rel} is in the bundle but not in its manifest")
    got: dict[str, tuple[int, str]] = {}
    for e in sorted(entries, key=lambda e: e.path):
        file = root / DATA_DIR / e.path
        if not file.is_file():
            raise BundleInvalid(f"{DATA_DIR}/{e.path} is missing from the bundle")
        size = file.stat().st_size
        if size != e.bytes:
            raise BundleInvalid(f"{DATA_DIR}/{e.path}: {size} bytes, the manifest says {e.bytes}")
        with file.open("rb") as fh:
            got[e.path] = _copy_one(fh, e.path, e.bytes, sink, progress)
        _first_mismatch([e], got)
    return manifest, entries


def _read_tar(path: Path, sink: Path | None, progress: Progress | None) -> tuple[dict[str, Any], list[FileEntry]]:
    try:
        with path.open("rb") as raw, tarfile.open(fileobj=raw, mode="r:") as tar:
            members = _members(tar, path)
            _check_layout(raw, members, path)
            by_name = {m.name: m for m in members}
            man = by_name.get(MANIFEST_NAME)
            if man is None:
                raise BundleInvalid(f"{path}: no {MANIFEST_NAME} in the tar; not a sigmavault bundle")
            fh = tar.extractfile(man)
            assert fh is not None
            manifest, entries = load_manifest(fh.read())
            known = {f"{DATA_DIR}/{e.path}" for e in entries} | {MANIFEST_NAME}
            for m in members:
                if m.name not in known:
                    raise BundleInvalid(f"{m.name} is in the bundle but not in its manifest")
            got: dict[str, tuple[int, str]] = {}
            for e in sorted(entries, key=lambda e: e.path):
                member = by_name.get(f"{DATA_DIR}/{e.path}")
                if member is None:
                    raise BundleInvalid(f"{DATA_DIR}/{e.path} is missing from the bundle")
                if member.size != e.bytes:
                    raise BundleInvalid(f"{DATA_DIR}/{e.path}: {member.size} bytes, the manifest says {e.bytes}")
                data = tar.extractfile(member)
                assert data is not None
                got[e.path] = _copy_one(data, e.path, e.bytes, sink, progress)  # type: ignore[arg-type]
                _first_mismatch([e], got)
            return manifest, entries
    except tarfile.TarError as exc:
        raise BundleInvalid(f"{path}: not a readable tar bundle ({exc})") from None
    except Corrupted as exc:
        raise BundleInvalid(f"{path}: truncated tar bundle ({exc})") from None


def _members(tar: tarfile.TarFile, path: Path) -> list[tarfile.TarInfo]:
    """The tar's headers, read one by one and refused past the file-count limit (no 20,000-junk-file walk)."""
    members: list[tarfile.TarInfo] = []
    while (member := tar.next()) is not None:
        members.append(member)
        if len(members) > MAX_FILES + 1:
            raise BundleInvalid(f"{path}: the tar holds more than {MAX_FILES} files, over the limit")
    return members


def _check_layout(raw: BinaryIO, members: list[tarfile.TarInfo], path: Path) -> None:
    """Regular files with single ustar headers, unique safe names, zero padding and zero tail."""
    seen: set[str] = set()
    end = 0
    for m in members:
        if not m.isreg():
            kind = "symbolic link" if m.issym() else "hard link" if m.islnk() else "folder" if m.isdir() else "device"
            raise BundleInvalid(f"{m.name!r} is a {kind}; bundles hold regular files only")
        if m.pax_headers or m.offset_data - m.offset != _BLOCK or m.offset != end:
            raise BundleInvalid(f"{m.name!r}: extended or misplaced tar header at offset {m.offset}; refused")
        if m.name != MANIFEST_NAME:
            if not m.name.startswith(f"{DATA_DIR}/"):
                check_relpath(m.name)
                raise BundleInvalid(f"{m.name!r} is outside {DATA_DIR}/ in the bundle")
            check_relpath(m.name[len(DATA_DIR) + 1 :])
        if m.name in seen:
            raise BundleInvalid(f"{m.name!r} appears twice in the tar bundle")
        seen.add(m.name)
        data_end = m.offset_data + m.size
        end = m.offset_data + -(-m.size // _BLOCK) * _BLOCK
        _expect_zeros(raw, data_end, end, path)
    raw.seek(0, os.SEEK_END)
    _expect_zeros(raw, end, raw.tell(), path)


def _expect_zeros(raw: BinaryIO, start: int, stop: int, path: Path) -> None:
    raw.seek(start)
    left = stop - start
    while left > 0:
        block = raw.read(min(CHUNK, left))
        if not block:
            return
        if block.count(0) != len(block):
            raise BundleInvalid(f"{path}: non-zero bytes at offset {start} where the tar holds only padding")
        left -= len(block)
        start += len(block)
