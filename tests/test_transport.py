"""What a client costs the server before it is trusted: the token before the body, request bytes
that are no message, the message size limit, idle and surplus connections, the open-file limit."""

from __future__ import annotations

import asyncio
import logging
import resource
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pool

from kfpgrpc.config import ServerConfig
from kfpgrpc.server import SERVICE_NAMES, KfpGrpcServer
from kfpgrpc.v1 import experiment_pb2, pipeline_pb2
from tests.support import ServerProcess, Stubs

MiB = 1024 * 1024


def _peak_rss_bytes(pid: int) -> int:
    """The process's peak resident set (VmHWM)."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


async def test_unauthenticated_calls_are_refused_before_their_body_is_read(tmp_path: Path) -> None:
    """Concurrent unauthenticated 30 MB calls: refused without the server ever holding their
    bodies (it used to buffer each in full, hundreds of MB, before refusing it)."""
    server = ServerProcess(tmp_path / "data", "--auth-token", "s3cret", "--max-message-bytes", str(64 * MiB))
    try:
        request = pipeline_pb2.CreatePipelineVersionRequest(pipeline_id="x" * (30 * MiB)).SerializeToString()
        before = _peak_rss_bytes(server.process.pid)
        options = [("grpc.max_send_message_length", 64 * MiB)]
        channels = [grpc.aio.insecure_channel(server.address, options=options) for _ in range(16)]
        try:

            async def call(channel: grpc.aio.Channel) -> grpc.StatusCode:
                send = channel.unary_unary("/kfpgrpc.v1.PipelineService/CreatePipelineVersion")
                with pytest.raises(grpc.aio.AioRpcError) as failure:
                    await send(request, timeout=120)
                return failure.value.code()

            codes = await asyncio.gather(*(call(channel) for channel in channels))
        finally:
            for channel in channels:
                await channel.close()
        grown = _peak_rss_bytes(server.process.pid) - before
    finally:
        server.kill()
    assert set(codes) == {grpc.StatusCode.UNAUTHENTICATED}
    assert grown < 150 * MiB, f"the server's peak memory grew by {grown / MiB:.0f} MiB"


def _own_methods() -> list[tuple[str, bool]]:
    """(path, server-streaming) of every method of kfpgrpc's services."""
    pool = descriptor_pool.Default()
    return [
        (f"/{name}/{method.name}", method.server_streaming)
        for name in SERVICE_NAMES
        for method in pool.FindServiceByName(name).methods
    ]


@pytest.mark.parametrize("payload", [b"\xff", b"\x0a\x05ab"], ids=["bad wire type", "truncated field"])
async def test_request_bytes_that_are_no_message_are_invalid_argument(
    channel: grpc.aio.Channel, payload: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Every RPC, unary and streaming: INVALID_ARGUMENT naming the request type, and no traceback
    in the server log (grpc.aio answers UNKNOWN and logs one per request)."""
    methods = _own_methods()
    assert len(methods) > 30
    caplog.set_level(logging.INFO)
    for path, streaming in methods:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            if streaming:
                async for _ in channel.unary_stream(path)(payload, timeout=30):
                    pass
            else:
                await channel.unary_unary(path)(payload, timeout=30)
        service, name = path.strip("/").split("/")
        message = descriptor_pool.Default().FindServiceByName(service).FindMethodByName(name).input_type.full_name
        assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (path, failure.value)
        assert failure.value.details() == f"the request is not a valid {message} message"
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING or record.exc_info]


@pytest.fixture
async def limited(data_dir: Path) -> AsyncIterator[KfpGrpcServer]:
    """A server with small transport limits: 4 MiB messages, 1 s idle, 2 connections."""
    config = ServerConfig(
        listen="127.0.0.1:0", data_dir=data_dir, max_message_bytes=4 * MiB, max_spec_bytes=4 * MiB,
        max_connection_idle_us=1_000_000, max_connections=2,
    )
    server = KfpGrpcServer(config)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_the_message_size_limit_is_a_setting(limited: KfpGrpcServer) -> None:
    options = [("grpc.max_send_message_length", 64 * MiB)]
    async with grpc.aio.insecure_channel(limited.address, options=options) as channel:
        pipelines = Stubs.on(channel).pipelines
        over = pipeline_pb2.CreatePipelineRequest(pipeline=pipeline_pb2.Pipeline(name="p", description="d" * (5 * MiB)))
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await pipelines.CreatePipeline(over, timeout=30)
        assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        under = pipeline_pb2.CreatePipelineRequest(pipeline=pipeline_pb2.Pipeline(name="p", description="d" * (3 * MiB)))
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await pipelines.CreatePipeline(under, timeout=30)
        assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # read, then refused by the rules


async def test_an_idle_connection_is_closed(limited: KfpGrpcServer) -> None:
    async with grpc.aio.insecure_channel(limited.address) as channel:
        await Stubs.on(channel).experiments.ListExperiments(experiment_pb2.ListExperimentsRequest(), timeout=30)
        assert channel.get_state() == grpc.ChannelConnectivity.READY
        # The server's GOAWAY after a second without calls turns the channel IDLE; the timeout
        # only turns "never closed" into a failure.
        await asyncio.wait_for(channel.wait_for_state_change(grpc.ChannelConnectivity.READY), 60)
        assert channel.get_state() == grpc.ChannelConnectivity.IDLE
        listed = await Stubs.on(channel).experiments.ListExperiments(experiment_pb2.ListExperimentsRequest(), timeout=30)
        assert listed.total_size == 1  # the client simply connects again


async def test_connections_beyond_the_limit_are_closed_as_they_arrive(limited: KfpGrpcServer) -> None:
    host, port = limited.address.rsplit(":", 1)
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # and empty SETTINGS
    connections = []
    try:
        for _ in range(3):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(preface)
            await writer.drain()
            connections.append((reader, writer))
        # The first two get the server's SETTINGS frame; the third is closed without a byte.
        answers = [await asyncio.wait_for(reader.read(9), 30) for reader, _ in connections]
    finally:
        for _, writer in connections:
            writer.close()
    assert [len(answer) for answer in answers] == [9, 9, 0]
    assert all(answer[3] == 0x4 for answer in answers[:2])  # frame type SETTINGS


def test_serve_raises_its_open_file_soft_limit(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 512:
        pytest.skip(f"the hard limit on open files ({hard}) leaves nothing to raise")

    # prlimit(1) lowers it and execs the server: a Python preexec_fn would run in a fork of this
    # multi-threaded test process (gRPC's threads), which a CI run saw die before its exec.
    server = ServerProcess(tmp_path / "data", prefix=["prlimit", f"--nofile=256:{hard}"])
    try:
        raised = resource.prlimit(server.process.pid, resource.RLIMIT_NOFILE)
    finally:
        code, log = server.terminate()
    assert raised == (hard, hard)
    assert f"msg=\"open-file limit\" was=256 now={hard}" in log


def test_transport_flags_are_checked(tmp_path: Path) -> None:
    def serve(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kfpgrpc.cli", "serve", "--data-dir", str(tmp_path), *args],
                              capture_output=True, text=True, timeout=30)

    for args, message in [
        (("--max-message-bytes", "1000"), "--max-message-bytes must be between 4194304 (4 MiB, gRPC's default) and 2147483647"),
        (("--max-spec-bytes", str(64 * MiB)), "--max-spec-bytes must be between 1 and --max-message-bytes"),
        (("--max-connections", "0"), "--max-connections must be between 1 and 2147483647"),
        (("--max-connection-idle", "soon"), "--max-connection-idle: 'soon' is not a Go duration such as 90s, 15m or 1h30m"),
        (("--http-request-timeout", "0"), "--http-request-timeout must be positive"),
        (("--http-request-timeout", "0s"), "--http-request-timeout must be positive"),
    ]:
        refused = serve(*args)
        assert (refused.returncode, refused.stderr.strip()) == (2, f"kfpgrpc: {message}")
