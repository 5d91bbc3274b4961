"""Where and how a client connects: address, TLS, bearer token, channel options."""

from __future__ import annotations

import os
import re
from os import PathLike
from pathlib import Path
from urllib.parse import urlsplit

import grpc

from kfpgrpc.client.errors import KfpGrpcError

DEFAULT_PORT = 8887  # `kfpgrpc serve`'s; gRPC's own default for a bare host name would be 443
DEFAULT_SERVER = f"127.0.0.1:{DEFAULT_PORT}"
# Target names gRPC resolves itself (https://grpc.github.io/grpc/core/md_doc_naming.html).
_GRPC_SCHEMES = re.compile(r"(dns|unix|unix-abstract|ipv4|ipv6|vsock):", re.IGNORECASE)
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # the server's limit: compiled pipelines can be large
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Notice a silently dead connection within a minute (the server allows pings every 10 s).
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    # gRPC's default backoff grows to 120 s between connection attempts; watches that resume
    # after a server restart should find it within a couple of seconds. Not
    # grpc.min_reconnect_backoff_ms: it is also the time a connection attempt may take, and a
    # server more than 200 ms away (TLS over a long link) could never be reached.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    # Each client connects by itself: gRPC otherwise shares connections process-wide, and a new
    # client would inherit the backoff of an older one that saw the server go away.
    ("grpc.use_local_subchannel_pool", 1),
]


def server_address(server: str | None) -> tuple[str, bool | None]:
    """Where to connect, from `server`, else $KFPGRPC_SERVER, else 127.0.0.1:8887: the gRPC
    target (`HOST:PORT`) and what the address says about TLS (True for https://, False for
    http://, None when it has no scheme).

    `HOST` without a port means port 8887, also in `http://HOST` and `https://HOST`; an IPv6
    address may stand bare or in brackets. gRPC target names (`unix:PATH`, `dns:///HOST:PORT`)
    pass unchanged. Raises KfpGrpcError (INVALID_ARGUMENT, field `server`) for an address with
    a path, a query, a user, another scheme or a port that is no number from 1 to 65535."""
    text = (server or os.environ.get("KFPGRPC_SERVER") or DEFAULT_SERVER).strip()
    if _GRPC_SCHEMES.match(text):
        return text, None
    scheme, separator, _ = text.partition("://")
    if separator and scheme.lower() not in ("http", "https"):
        raise _bad_server(text, f"unknown scheme {scheme}://; give HOST:PORT, http://HOST:PORT (plaintext) or https://HOST:PORT (TLS)")
    url = urlsplit(text if separator else f"//{_bracket_ipv6(text)}")
    if url.path not in ("", "/") or url.query or url.fragment or url.username is not None:
        raise _bad_server(text, "give HOST:PORT, http://HOST:PORT or https://HOST:PORT, without a path, query or user")
    try:
        port = DEFAULT_PORT if url.port is None else url.port
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise _bad_server(text, "the port must be a number from 1 to 65535")
    if not url.hostname:
        raise _bad_server(text, "give a host, e.g. 127.0.0.1:8887")
    host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
    return f"{host}:{port}", (scheme.lower() == "https" if separator else None)


def _bracket_ipv6(text: str) -> str:
    """A bare IPv6 address (two colons or more, no brackets) in brackets, as URLs write it."""
    return f"[{text}]" if text.count(":") > 1 and not text.startswith("[") else text


def _bad_server(text: str, problem: str) -> KfpGrpcError:
    return KfpGrpcError.invalid_argument("server", f"{problem}; got {text!r}")


def call_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """The `authorization: Bearer` metadata of `token` (None: $KFPGRPC_TOKEN; empty: none)."""
    token = os.environ.get("KFPGRPC_TOKEN", "") if token is None else token
    return (("authorization", f"Bearer {token}"),) if token else ()


def channel_credentials(
    tls: bool | None,
    tls_ca: str | PathLike[str] | None,
    tls_cert: str | PathLike[str] | None,
    tls_key: str | PathLike[str] | None,
    scheme_tls: bool | None = None,
) -> grpc.ChannelCredentials | None:
    """TLS credentials when `tls`, any file or an https:// address (`scheme_tls`, see
    server_address) asks for TLS; None: plaintext. `tls_ca` verifies the server (default: the
    system's roots); `tls_cert` and `tls_key` are a client certificate. Raises KfpGrpcError
    (INVALID_ARGUMENT) when an http:// address asks for plaintext and TLS is asked for too."""
    if bool(tls_cert) != bool(tls_key):
        raise KfpGrpcError.invalid_argument("tls_cert", "tls_cert and tls_key go together")
    wants_tls = bool(tls or tls_ca or tls_cert)
    if scheme_tls is False and wants_tls:
        raise KfpGrpcError.invalid_argument("server", "an http:// address is plaintext: use https:// (or HOST:PORT) with TLS")
    if not (wants_tls or scheme_tls):
        return None
    return grpc.ssl_channel_credentials(_read(tls_ca), _read(tls_key), _read(tls_cert))


def _read(path: str | PathLike[str] | None) -> bytes | None:
    return Path(path).read_bytes() if path else None
