"""The transformers adapter: fingerprints of models, and caches to and from :class:`KVArrays`.

This is the only kv module that imports torch or transformers, and only inside its functions,
so ``import sigmavault`` and ``vault.kv`` stay light until a model or cache is actually converted.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sigmavault.errors import InvalidInput
from sigmavault.kv.arrays import KVArrays
from sigmavault.kv.fingerprint import Fingerprint, fingerprint_of

__all__ = ["build_cache", "cache_source", "cache_tensors", "fingerprint_of"]


def _layers(cache: Any) -> list[tuple[Any, Any]]:
    """(keys, values) per layer from a Cache (5.x ``layers`` or 4.x lists) or a legacy tuple."""
    if hasattr(cache, "layers"):
        for layer in cache.layers:
            if "Sliding" in type(layer).__name__ or "Quantized" in type(layer).__name__:
                raise InvalidInput(
                    f"{type(layer).__name__} caches are not supported; save a DynamicCache of full-attention layers"
                )
        return [(layer.keys, layer.values) for layer in cache.layers]
    if hasattr(cache, "key_cache") and hasattr(cache, "value_cache"):
        return list(zip(cache.key_cache, cache.value_cache, strict=True))
    if isinstance(cache, list | tuple):
        return [(pair[0], pair[1]) for pair in cache]
    raise InvalidInput(
        f"expected a transformers cache or a list of (keys, values) per layer, got {type(cache).__name__}"
    )


def cache_tensors(cache: Any) -> list[tuple[Any, Any]]:
    """``(keys, values)`` tensors per layer of a transformers cache or a list of pairs."""
    return _layers(cache)


def cache_source(cache: Any, fp: Fingerprint) -> tuple[int, Callable[[int, int], KVArrays]]:
    """The token length of ``cache`` and a function giving tokens ``[start, end)`` as KVArrays."""
    import torch

    pairs = _layers(cache)
    if len(pairs) != fp.layers:
        raise InvalidInput(f"the cache has {len(pairs)} layers but the model has {fp.layers}")
    lengths = set()
    for i, (keys, values) in enumerate(pairs):
        if not isinstance(keys, torch.Tensor) or not isinstance(values, torch.Tensor):
            raise InvalidInput(f"layer {i} of the cache holds no tensors (is the cache empty?)")
        want = (1, fp.kv_heads, keys.shape[-2] if keys.ndim == 4 else -1, fp.head_dim)
        if tuple(keys.shape) != want or tuple(values.shape) != want:
            raise InvalidInput(
                f"layer {i} keys/values have shapes {tuple(keys.shape)}/{tuple(values.shape)}; expected "
                f"[1, {fp.kv_heads}, tokens, {fp.head_dim}] (only a batch of one is stored)"
            )
        if str(keys.dtype).removeprefix("torch.") != fp.dtype:
            raise InvalidInput(f"layer {i} is {keys.dtype} but the model fingerprint says {fp.dtype}")
        lengths.add(int(keys.shape[-2]))
    if len(lengths) != 1:
        raise InvalidInput(f"cache layers hold different token counts {sorted(lengths)}; cannot store them")

    def span(start: int, end: int) -> KVArrays:
        keys = torch.stack([k[0, :, start:end] for k, _ in pairs]).to("cpu")
        values = torch.stack([v[0, :, start:end] for _, v in pairs]).to("cpu")
        return KVArrays(_to_numpy(keys, fp.dtype), _to_numpy(values, fp.dtype), fp.dtype)

    return lengths.pop(), span


def _to_numpy(tensor: Any, dtype: str) -> Any:
    import torch

    if dtype == "bfloat16":
        return tensor.contiguous().view(torch.int16).numpy().view(np.uint16)
    return tensor.contiguous().numpy()


def _to_torch(array: Any, dtype: str) -> Any:
    """A tensor viewing ``array`` (no copy). NOTE: read-only arrays (views of stored payloads) are
    only ever read here: every caller concatenates them into fresh tensors."""
    import torch

    if dtype == "bfloat16":
        array = array.view(np.int16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "the given NumPy array is not writable"
        tensor = torch.from_numpy(array)
    return tensor.view(torch.bfloat16) if dtype == "bfloat16" else tensor


def build_cache(model: Any, fp: Fingerprint, parts: Sequence[KVArrays], n: int) -> Any:
    """A ``DynamicCache`` of the first ``n`` tokens of ``parts`` (consecutive chunks), on the
    model's device and in its dtype; empty when ``n`` is 0."""
    import torch
    from transformers import DynamicCache

    config = None if isinstance(model, Fingerprint) else getattr(model, "config", None)
    if n <= 0:
        return DynamicCache(config=config) if config is not None else DynamicCache()
    device = getattr(model, "device", None) or torch.device("cpu")
    target = getattr(torch, fp.dtype)
    pieces = []
    left = n
    for part in parts:
        take = min(left, part.tokens)
        if take <= 0:
            break
        pieces.append((_to_torch(part.keys[:, :, :take], part.dtype), _to_torch(part.values[:, :, :take], part.dtype)))
        left -= take

    def layer(i: int, which: int) -> Any:
        joined = torch.cat([piece[which][i] for piece in pieces], dim=1)  # NOTE: the one copy out of the store
        return joined.to(device=device, dtype=target).unsqueeze(0)

    data = [(layer(i, 0), layer(i, 1)) for i in range(fp.layers)]
    if config is None:
        return DynamicCache(ddp_cache_data=data)
    cache: Any = DynamicCache(config=config)
    if len(cache.layers) != len(data):
        return DynamicCache(ddp_cache_data=data, config=config)
    for slot, (keys, values) in zip(cache.layers, data, strict=True):
        if type(slot).__name__ == "DynamicLayer":
            # NOTE: initialise the layer with an empty slice, then hand the fresh tensors over;
            # update() with the full tensors would copy the whole restored cache a second time.
            slot.update(keys[..., :0, :], values[..., :0, :])
            slot.keys, slot.values = keys, values
        else:
            slot.update(keys, values)
    return cache
