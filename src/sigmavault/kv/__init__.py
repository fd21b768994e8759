"""KV cache store (``vault.kv``): transformer KV caches keyed by token prefix, in RAM and on disk.

>>> cache, n = vault.kv.load(model, input_ids)          # n tokens need no prefill
>>> out = model.generate(input_ids, cache=cache, max_new_tokens=64)
>>> saved = vault.kv.save(model, input_ids, cache)       # store what is new

Importing this package does not import torch; the transformers adapter (:mod:`.hf`) does, on use.
"""

from sigmavault.kv.arrays import KVArrays
from sigmavault.kv.codecs import CODECS, FP16, Codec, Native, Quant, codec_from_spec
from sigmavault.kv.keys import Fingerprint, format_ref, parse_ref
from sigmavault.kv.model import KVConfig, Restored, Saved
from sigmavault.kv.policies import POLICIES
from sigmavault.kv.prune import PRUNE_POLICIES, Pruning, pruning_from
from sigmavault.kv.quality import Quality
from sigmavault.kv.store import KVStore, Loaded

__all__ = [
    "CODECS",
    "FP16",
    "POLICIES",
    "PRUNE_POLICIES",
    "Codec",
    "Fingerprint",
    "KVArrays",
    "KVConfig",
    "KVStore",
    "Loaded",
    "Native",
    "Pruning",
    "Quality",
    "Quant",
    "Restored",
    "Saved",
    "codec_from_spec",
    "format_ref",
    "parse_ref",
    "pruning_from",
]
