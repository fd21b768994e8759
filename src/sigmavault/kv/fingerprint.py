"""The model fingerprint: what must match for a stored KV cache to serve a model.

One module owns it: the :class:`Fingerprint` record, and :func:`fingerprint_of`, which derives it
from a transformers model (torch is imported only inside it, when a model is actually hashed).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import weakref
from dataclasses import asdict, dataclass
from typing import Any

from sigmavault.errors import InvalidInput

__all__ = ["Fingerprint", "fingerprint_of"]

_DTYPES = ("float32", "float16", "bfloat16", "float64")


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What must match for a stored KV cache to be valid for a model.

    ``model`` identifies architecture and weights (``Fingerprint.of(model)`` hashes the config and
    a sample of every weight tensor; runtimes that are not transformers pass their own name, e.g.
    ``"llama-3-8b@rev2"``). The geometry is what each chunk's tensors must look like:
    ``layers`` x ``kv_heads`` x tokens x ``head_dim`` keys and values of ``dtype``.
    """

    model: str
    dtype: str
    layers: int
    kv_heads: int
    head_dim: int

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise InvalidInput("Fingerprint.model must be a non-empty string naming the model and its weights")
        if self.dtype not in _DTYPES:
            raise InvalidInput(f"Fingerprint.dtype {self.dtype!r} is not one of {', '.join(_DTYPES)}")
        for name in ("layers", "kv_heads", "head_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidInput(f"Fingerprint.{name} must be a positive integer, got {value!r}")

    @classmethod
    def of(cls, model: Any) -> Fingerprint:
        """The fingerprint of a transformers model (imports torch; cached per model object)."""
        return fingerprint_of(model)

    def digest(self, codec_spec: str) -> bytes:
        """32 bytes naming this model *and* the codec: caches stored with another codec never match."""
        doc = {**asdict(self), "codec": codec_spec}
        return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).digest()


# Config fields that describe how a model is run, not what it computes.
_VOLATILE = {
    "transformers_version",
    "torch_dtype",
    "dtype",
    "use_cache",
    "return_dict",
    "output_attentions",
    "output_hidden_states",
    "architectures",
    "name_or_path",
    "attn_implementation",
}
_SAMPLE = 4096  # elements hashed from each end of every weight tensor
_fingerprints: weakref.WeakKeyDictionary[Any, Fingerprint] = weakref.WeakKeyDictionary()


def fingerprint_of(model: Any) -> Fingerprint:
    """The :class:`Fingerprint` of a transformers model; a Fingerprint passes through.

    The model part hashes the config (minus run-time flags) and the first and last 4096 values
    of every parameter, so two checkpoints of one architecture never share KV. It is computed
    once per model object; call ``Fingerprint.of`` on a fresh object after changing weights.
    """
    if isinstance(model, Fingerprint):
        return model
    try:
        cached = _fingerprints.get(model)
    except TypeError:
        cached = None
    if cached is not None:
        return cached
    config = getattr(model, "config", None)
    if config is None or not hasattr(model, "named_parameters"):
        raise InvalidInput(f"expected a transformers model or a sigmavault.kv.Fingerprint, got {type(model).__name__}")
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    heads = int(text.num_attention_heads)
    kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(text, "head_dim", None) or text.hidden_size // heads)
    digest = hashlib.sha256()
    doc = {k: v for k, v in config.to_dict().items() if k not in _VOLATILE and not k.startswith("_")}
    digest.update(json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode())
    for name, param in model.named_parameters():
        flat = param.detach().reshape(-1)
        digest.update(f"{name}:{tuple(param.shape)}:{param.dtype}".encode())
        for piece in (flat[:_SAMPLE], flat[-_SAMPLE:]):
            digest.update(piece.to("cpu").contiguous().view(_byte_dtype()).numpy().tobytes())
    fp = Fingerprint(
        model=f"{getattr(config, 'model_type', 'model') or 'model'}-{digest.hexdigest()[:32]}",
        dtype=str(model.dtype).removeprefix("torch."),
        layers=int(text.num_hidden_layers),
        kv_heads=kv_heads,
        head_dim=head_dim,
    )
    # NOTE: an object that cannot be weakly referenced is simply fingerprinted each time.
    with contextlib.suppress(TypeError):
        _fingerprints[model] = fp
    return fp


def _byte_dtype() -> Any:
    import torch

    return torch.uint8
