"""The policies part: learned runtime parameters (quantization, routing, patterns) with embeddings."""

from sigmavault.policies.model import SOURCES, STATES, Policy, PolicySource, PolicyState
from sigmavault.policies.schema import MIGRATIONS, PART
from sigmavault.policies.store import Policies

__all__ = ["MIGRATIONS", "PART", "SOURCES", "STATES", "Policies", "Policy", "PolicySource", "PolicyState"]
