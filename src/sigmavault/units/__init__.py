"""The units part: collections of semantic units with vectors, text, metadata and lifecycle."""

from sigmavault.units.catalog import Catalog, CollectionInfo, RowState
from sigmavault.units.filters import compile_where
from sigmavault.units.records import NewUnits, UnitStore, new_ids
from sigmavault.units.schema import MIGRATIONS, PART

__all__ = [
    "MIGRATIONS",
    "PART",
    "Catalog",
    "CollectionInfo",
    "NewUnits",
    "RowState",
    "UnitStore",
    "compile_where",
    "new_ids",
]
