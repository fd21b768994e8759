"""``sigmavault serve``: one vault (or one per tenant) over HTTP and MCP, with keys and a dashboard.

Needs the ``server`` extra (``pip install 'sigmavault[server]'``).
"""

from sigmavault.server.app import create_app
from sigmavault.server.keys import KeyRing, Principal, add_key

__all__ = ["KeyRing", "Principal", "add_key", "create_app"]
