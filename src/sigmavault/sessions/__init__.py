"""The sessions part: per-conversation state a serving runtime recovers on every request."""

from sigmavault.sessions.model import STATES, Session, SessionState
from sigmavault.sessions.schema import MIGRATIONS, PART
from sigmavault.sessions.store import Sessions

__all__ = ["MIGRATIONS", "PART", "STATES", "Session", "SessionState", "Sessions"]
