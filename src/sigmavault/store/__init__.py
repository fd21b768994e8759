"""Everything that touches disk: the SQLite store, vector files and blob files."""

from sigmavault.store.blobs import read_blob, write_blob
from sigmavault.store.sqlite import Cipher, Database, Migration
from sigmavault.store.vectors import VectorFile, fsync_dir

__all__ = ["Cipher", "Database", "Migration", "VectorFile", "fsync_dir", "read_blob", "write_blob"]
