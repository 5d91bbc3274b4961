"""What a client costs the server: the message size limit, idle and surplus connections, the
open-file limit."""

from __future__ import annotations

import asyncio
import resource
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from kfpgrpc.config import ServerConfig
from kfpgrpc.server import KfpGrpcServer
from kfpgrpc.v1 import experiment_pb2, pipeline_pb2
from tests.support import ServerProcess, Stubs

MiB = 1024 * 1024


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

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    server = ServerProcess(tmp_path / "data", preexec_fn=lower)
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
    ]:
        refused = serve(*args)
        assert (refused.returncode, refused.stderr.strip()) == (2, f"kfpgrpc: {message}")
