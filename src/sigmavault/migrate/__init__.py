"""Migration from the legacy JSON stores (JSON knowledge directories, RSU manifests) into a vault.

>>> import sigmavault as sv
>>> report = sv.migrate.migrate("./knowledge", "./memory", dry_run=True)
>>> report.ok, report.counts
>>> sv.migrate.migrate("./knowledge", "./memory")    # switched in only when it validates
>>> sv.migrate.rollback("./memory")                  # back to the vault as it was before
"""

from sigmavault.migrate.run import migrate, previous_path, rollback
from sigmavault.migrate.sources import Source, hash_vector, read_source
from sigmavault.migrate.validate import MigrationReport, checksum

__all__ = [
    "MigrationReport",
    "Source",
    "checksum",
    "hash_vector",
    "migrate",
    "previous_path",
    "read_source",
    "rollback",
]
