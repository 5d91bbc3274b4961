"""The REST server's bounds on slow and silent clients (--http-request-timeout, docs/api.md
"HTTP (KFP REST)"): a connection that sends nothing, half a request head or half a body is
closed, so that held sockets cannot keep others out past --max-connections; an event stream,
long-lived by design, is not cut. Raw sockets, since an HTTP client cannot send half a request."""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ServerProcess, serving
from tests.test_http_streams import EVENTS, opened, stream
from tests.test_server import certificates  # noqa: F401 - the CA and certificates fixture, reused

TIMEOUT = "1s"  # --http-request-timeout of these servers
BOUND = 15  # seconds a closed connection may take to read as closed: turns a hang into a failure
SLOTS = 20  # --max-connections


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with serving(tmp_path / "data", "--http-request-timeout", TIMEOUT, "--max-connections", str(SLOTS), http=True) as process:
        yield process


def connect(server: ServerProcess, sent: bytes = b"") -> socket.socket:
    host, _, port = server.http_url.removeprefix("http://").rpartition(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(sent)
    return sock


def until_closed(sock: socket.socket) -> bytes:
    """All the server sends until it closes the connection; fails if it is still open after BOUND."""
    sock.settimeout(BOUND)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        pytest.fail(f"still open after {BOUND} s, having received {received!r}")
    except ConnectionResetError:  # closed; what came before the reset has been read
        pass
    finally:
        sock.close()
    return received


HALF_HEAD = b"GET /apis/v2beta1/healthz HTTP/1.1\r\nHost: x\r\n"
HALF_BODY = b"POST /apis/v2beta1/experiments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"


def test_a_connection_that_sends_nothing_or_half_a_head_is_closed(server: ServerProcess) -> None:
    silent, half_head = connect(server), connect(server, HALF_HEAD)
    assert until_closed(silent) == b""
    assert until_closed(half_head) == b""  # no answer: there is no request to answer


def test_over_tls_the_deadline_starts_after_the_handshake(tmp_path: Path, certificates: Path) -> None:  # noqa: F811
    server = ServerProcess(tmp_path / "data", "--http-request-timeout", TIMEOUT, "--tls-cert", str(certificates / "server.pem"),
                           "--tls-key", str(certificates / "server.key"), http=True)
    try:
        host, _, port = server.http_url.removeprefix("https://").rpartition(":")
        context = ssl.create_default_context(cafile=str(certificates / "ca.pem"))
        sock = context.wrap_socket(socket.create_connection((host, int(port))), server_hostname=host)
        sock.sendall(HALF_HEAD)
        assert until_closed(sock) == b""
    finally:
        code, stderr = server.terminate()
    assert code == 0, stderr


def test_a_head_must_come_after_a_response_too(server: ServerProcess) -> None:
    """On a kept-alive connection the deadline starts again after each response. (uvicorn's own
    keep-alive timer stops at the first byte after a response: half a head sent then was held.)"""
    sock = connect(server, b"GET /apis/v2beta1/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.settimeout(BOUND)
    response = b""
    while not response.endswith(b"}"):  # healthz's JSON object, the whole response
        chunk = sock.recv(65536)
        assert chunk, response
        response += chunk
    assert response.startswith(b"HTTP/1.1 200 "), response
    sock.sendall(HALF_HEAD)
    assert until_closed(sock) == b""


def test_a_body_that_stops_is_408_and_the_connection_closed(server: ServerProcess) -> None:
    received = until_closed(connect(server, HALF_BODY))
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), received
    assert b"\r\nconnection: close" in head.lower(), received
    error: dict[str, Any] = json.loads(body)
    assert error["code"] == 4 and "--http-request-timeout" in error["message"], error  # DEADLINE_EXCEEDED
    # A whole body is read as before, on the same kind of connection.
    whole = httpx.post(server.http_url + "/apis/v2beta1/experiments", json={"display_name": "after"})
    assert whole.status_code == 200, whole.text


def test_a_body_trickled_under_the_minimum_rate_is_408(server: ServerProcess) -> None:
    """A byte at a time, each well within the timeout, but far under 500 bytes per second."""
    sock = connect(server, HALF_BODY.replace(b"Content-Length: 100", b"Content-Length: 100000"))
    sock.settimeout(0.2)  # the pace of the trickle
    received = b""
    deadline = time.monotonic() + BOUND
    while not received and time.monotonic() < deadline:
        try:
            sock.sendall(b" ")
            received = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:  # closed after the answer, before this read
            break
    received += until_closed(sock)
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), received
    assert "slower than 500 bytes per second" in json.loads(body)["message"], body


def test_held_connections_free_their_slots(server: ServerProcess) -> None:
    """--max-connections silent sockets kept every other client out (503, healthz too) for as
    long as they were held; now each is closed, and the server answers again."""
    held = [connect(server, (b"", HALF_HEAD, HALF_BODY)[index % 3]) for index in range(SLOTS)]
    for sock in held:
        until_closed(sock)
    response = httpx.get(server.http_url + "/apis/v2beta1/healthz", timeout=BOUND)
    assert response.status_code == 200, response.text


def test_an_event_stream_outlives_the_timeout(server: ServerProcess, compiled: dict[str, dict[str, Any]]) -> None:
    with stream(server.http_url + EVENTS) as response:
        received = opened(response)
        time.sleep(3)  # three times the timeout, with the stream idle (its keep-alive comment comes at 15 s)
        created = httpx.post(server.http_url + "/apis/v2beta1/pipelines/create", json={
            "pipeline": {"display_name": "late"}, "pipeline_version": {"pipeline_spec": compiled["add-pipeline"]}})
        assert created.status_code == 200, created.text
        event = next(received)
    assert event.data["type"] == "PIPELINE_VERSION_CREATED", event
