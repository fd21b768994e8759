"""Scale-out faces on an existing distributed engine (extra ``[ray]``): :class:`ShardedCollection`.

Importing this package does not import Ray; creating or opening a sharded collection does.
"""

from sigmavault.distributed.sharded import ShardedBatch, ShardedCollection, ShardedHits, shard_of

__all__ = ["ShardedBatch", "ShardedCollection", "ShardedHits", "shard_of"]
