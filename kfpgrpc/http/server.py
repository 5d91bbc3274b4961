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
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from kfpgrpc.config import ServerConfig
from kfpgrpc.http.errors import RequestTimeout

log = logging.getLogger("kfpgrpc.http")

# The largest request head (request line and headers) h11 buffers; past it the request is
# uvicorn's 400. h11's default, said here so that it is one of our bounds: a bearer token and
# the UI's cookie take well under 1 KiB.
MAX_REQUEST_HEAD_BYTES = 16 * 1024

# uvicorn logs each start and stop at INFO ("Started server process", "Waiting for
# connections to close"); the server's own log says what it serves. Its warnings stay.
logging.getLogger("uvicorn.error").setLevel(logging.WARNING)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Leave SIGINT and SIGTERM to `kfpgrpc serve` (server.stop_signal_event): uvicorn's own
        handlers would replace them and raise the signal again once it stops."""
        yield


class _H11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head deadline: from the moment a connection opens,
    and again when each response is complete (keep-alive), the whole request head must arrive
    within `head_timeout` seconds, else the connection is closed. uvicorn's own keep-alive
    timer starts only after a response and stops at the first byte received, so a connection
    that sends nothing, or half a head, would otherwise be held for ever (and count against
    --max-connections). Once a head is in, the timer is off: the body's pace is bounded by
    _BodyProgress, a response (an SSE stream) may last as long as it does.

    A subclass per server sets `head_timeout` (_protocol_class): uvicorn makes each connection's
    protocol from the class."""

    head_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # h11 yielded a Request: the head is complete
            self._stop_head_timer()

    def on_response_complete(self) -> None:
        # Armed before uvicorn's own handling, which goes on to a pipelined request at once
        # (handle_events then stops the timer again).
        if not self.transport.is_closing():
            self._await_head()
        super().on_response_complete()

    def _await_head(self) -> None:
        self._stop_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            log.debug("closing a connection that sent no complete request head in %g s", self.head_timeout)
            self.transport.close()


def _protocol_class(head_timeout: float) -> type[H11Protocol]:
    """_H11Protocol with this server's request-head deadline, in seconds."""
    return type("H11Protocol", (_H11Protocol,), {"head_timeout": head_timeout})


# After the first --http-request-timeout, a body must come at least this fast on average, as
# Apache's mod_reqtimeout (body=20,MinRate=500): a body trickled a byte at a time, each within
# the timeout, would otherwise hold its connection for up to --max-message-bytes such waits.
MIN_BODY_BYTES_PER_SECOND = 500


class _BodyProgress:
    """ASGI middleware bounding how slowly a request body may come: each piece of it must arrive
    within `timeout` seconds of the last, and the whole of it by `timeout` seconds after the app
    first asks plus one second per MIN_BODY_BYTES_PER_SECOND bytes received; else receive()
    raises RequestTimeout, which the routes answer 408, closing the connection
    (kfpgrpc/http/errors.py). Once the body is complete (at once for a request without one),
    receive() waits as long as the app does: a streaming response waits on it for the client's
    disconnect."""

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self._app = app
        self._timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        body_read = False
        started = 0.0  # when the app first asked for the body
        received = 0  # body bytes so far

        async def timed_receive() -> Message:
            nonlocal body_read, started, received
            if body_read:
                return await receive()
            now = loop.time()
            started = started or now
            by_rate = started + self._timeout + received / MIN_BODY_BYTES_PER_SECOND - now
            try:
                async with asyncio.timeout(min(self._timeout, by_rate)):
                    message = await receive()
            except TimeoutError:
                why = (f"made no progress for {self._timeout:g} s" if self._timeout <= by_rate
                       else f"came slower than {MIN_BODY_BYTES_PER_SECOND} bytes per second")
                raise RequestTimeout(f"the request body {why} (--http-request-timeout)") from None
            received += len(message.get("body", b""))
            body_read = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self._app(scope, timed_receive, send)


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
        request_timeout = config.http_request_timeout_us / 1e6
        settings = uvicorn.Config(
            _BodyProgress(app, request_timeout), lifespan="off", log_config=None, access_log=False, server_header=False,
            # h11 always (uvicorn would take httptools when installed): _H11Protocol adds the
            # request-head deadline to it. No WebSocket routes, so no upgrades.
            http=_protocol_class(request_timeout), ws="none",
            h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
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
