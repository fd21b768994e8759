"""The witness part: an audit record per request, written in the background, searched later."""

from sigmavault.witness.archive import ArchiveResult
from sigmavault.witness.entry import FIELDS, LATENCY_FIELDS, NUMERIC_FIELDS, WitnessEntry, WitnessHit
from sigmavault.witness.part import Witness
from sigmavault.witness.schema import MIGRATIONS, PART
from sigmavault.witness.writer import WriterConfig

__all__ = [
    "FIELDS",
    "LATENCY_FIELDS",
    "MIGRATIONS",
    "NUMERIC_FIELDS",
    "PART",
    "ArchiveResult",
    "Witness",
    "WitnessEntry",
    "WitnessHit",
    "WriterConfig",
]
