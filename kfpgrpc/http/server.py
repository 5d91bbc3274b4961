"""uvicorn serving the REST app in the gRPC server's event loop, on a socket bound up front.

The socket is bound (and listening) when the server starts, before the data directory is
touched, as gRPC's port is: a taken port fails the start with nothing created, and port 0's
pick is known at once. Requests that arrive before uvicorn runs wait in the listen backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

from kfpgrpc.config import ServerConfig

log = logging.getLogger("kfpgrpc.http")

# uvicorn logs each start and stop at INFO ("Started server process", "Waiting for
# connections to close"); the server's own log says what it serves. Its warnings stay.
logging.getLogger("uvicorn.error").setLevel(logging.WARNING)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Leave SIGINT and SIGTERM to `kfpgrpc serve` (server.stop_signal_event): uvicorn's own
        handlers would replace them and raise the signal again once it stops."""
        yield


def bind(listen: str) -> socket.socket:
    """A listening TCP socket on HOST:PORT ("[::1]:8888" for IPv6). Raises OSError."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    family, kind, proto, _, address = socket.getaddrinfo(host or None, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        # Like gRPC's: a restarted server may bind while old connections linger in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


class HttpServer:
    """`start(app)` once the core is ready, `stop()` when the server stops."""

    def __init__(self, config: ServerConfig, sock: socket.socket) -> None:
        self.config = config
        self._socket = sock
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        """http(s)://HOST:PORT, HOST as --http-listen gives it."""
        host = self.config.http_listen.rpartition(":")[0]
        scheme = "https" if self.config.tls_cert else "http"
        return f"{scheme}://{host}:{self.port}"

    def start(self, app: ASGIApp) -> None:
        """Serve `app` in this event loop. uvicorn's configuration is loaded here, so that a
        failure (TLS files) fails the start."""
        config = self.config
        settings = uvicorn.Config(
            app, lifespan="off", log_config=None, access_log=False, server_header=False,
            # The transport bounds of gRPC (docs/api.md "Transport"): connections at once
            # (uvicorn answers 503 past them) and the graceful-stop wait.
            limit_concurrency=config.max_connections,
            timeout_graceful_shutdown=max(1, round(config.shutdown_grace_seconds)),
            ssl_certfile=config.tls_cert, ssl_keyfile=config.tls_key,
            ssl_ca_certs=config.tls_client_ca,
            ssl_cert_reqs=ssl.CERT_REQUIRED if config.tls_client_ca else ssl.CERT_NONE,
        )
        settings.load()
        self._server = _Server(settings)
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[self._socket]))

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish (up to the shutdown grace), close."""
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            try:
                await self._task
            except Exception:  # the store must still be closed after it
                log.exception("the HTTP server failed")
        self._socket.close()
