"""The runtime face: ``sv.Runtime`` runs chat turns on a transformers model with the vault as its memory.

>>> rt = sv.Runtime(vault, model, tokenizer, collection="docs", system_prompt="You answer from the context.")
>>> reply = rt.chat("session-1", "How do readers avoid blocking?", user_id="alice")

Importing this package does not import torch or transformers; a turn does.
"""

from sigmavault.runtime.reply import LATENCY_KEYS, Reply
from sigmavault.runtime.runtime import QualityFn, Runtime, Stream

__all__ = ["LATENCY_KEYS", "QualityFn", "Reply", "Runtime", "Stream"]
