"""Where and how a client connects: address, TLS, bearer token, channel options."""

from __future__ import annotations

import os
from os import PathLike
from pathlib import Path

import grpc

DEFAULT_SERVER = "127.0.0.1:8887"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # the server's limit: compiled pipelines can be large
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Notice a silently dead connection within a minute (the server allows pings every 10 s).
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    # gRPC's default backoff grows to 120 s between connection attempts; watches that resume
    # after a server restart should find it within a couple of seconds.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    # Each client connects by itself: gRPC otherwise shares connections process-wide, and a new
    # client would inherit the backoff of an older one that saw the server go away.
    ("grpc.use_local_subchannel_pool", 1),
]


def server_address(server: str | None) -> str:
    """`server`, else $KFPGRPC_SERVER, else 127.0.0.1:8887."""
    return server or os.environ.get("KFPGRPC_SERVER") or DEFAULT_SERVER


def call_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """The `authorization: Bearer` metadata of `token` (None: $KFPGRPC_TOKEN; empty: none)."""
    token = os.environ.get("KFPGRPC_TOKEN", "") if token is None else token
    return (("authorization", f"Bearer {token}"),) if token else ()


def channel_credentials(
    tls: bool, tls_ca: str | PathLike[str] | None, tls_cert: str | PathLike[str] | None, tls_key: str | PathLike[str] | None
) -> grpc.ChannelCredentials | None:
    """TLS credentials when `tls` or any file is given (None: plaintext). `tls_ca` verifies the
    server (default: the system's roots); `tls_cert` and `tls_key` are a client certificate."""
    if bool(tls_cert) != bool(tls_key):
        raise ValueError("tls_cert and tls_key go together")
    if not (tls or tls_ca or tls_cert):
        return None
    return grpc.ssl_channel_credentials(_read(tls_ca), _read(tls_key), _read(tls_cert))


def _read(path: str | PathLike[str] | None) -> bytes | None:
    return Path(path).read_bytes() if path else None
