"""A real uvicorn server on a free loopback port, run in a thread of the test process."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from conftest import HashingEmbedder

from sigmavault.server import create_app


@contextmanager
def running(path: Path, **kwargs: Any) -> Iterator[str]:
    """Serve ``create_app(path, **kwargs)`` (hashing embedder unless given); yields the base URL.

    The socket is bound and listening before the server thread starts, so requests made at once
    wait in the backlog until uvicorn (after its lifespan startup) accepts them: no polling.
    """
    kwargs.setdefault("embedder", HashingEmbedder(32))
    app = create_app(path, **kwargs)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        assert not thread.is_alive(), "the server did not stop"
