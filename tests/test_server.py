"""The server as users run it: `kfpgrpc serve` subprocesses, grpcurl, signals, auth, TLS."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kfpgrpc.config import ServerConfig
from kfpgrpc.server import KfpGrpcServer
from kfpgrpc.v1 import experiment_pb2 as pb
from kfpgrpc.v1 import pipeline_pb2
from kfpgrpc.v1 import run_pb2
from tests.support import ServerProcess, Stubs

SERVICES = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "kfpgrpc.v1.EventService",
    "kfpgrpc.v1.ExperimentService",
    "kfpgrpc.v1.PipelineService",
    "kfpgrpc.v1.RecurringRunService",
    "kfpgrpc.v1.RunService",
]
GRPCURL = str(Path(sys.executable).parent / "grpcurl")


def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GRPCURL, *args], capture_output=True, text=True, timeout=30)


def create_experiment(address: str, name: str) -> str:
    with grpc.insecure_channel(address) as channel:
        stub = Stubs.on(channel).experiments  # type: ignore[arg-type]
        return stub.CreateExperiment(pb.CreateExperimentRequest(experiment=pb.Experiment(display_name=name))).experiment_id


def experiment_names(address: str) -> set[str]:
    with grpc.insecure_channel(address) as channel:
        stub = Stubs.on(channel).experiments  # type: ignore[arg-type]
        return {e.display_name for e in stub.ListExperiments(pb.ListExperimentsRequest(page_size=200)).experiments}


def test_grpcurl_sees_all_services_health_and_reflection(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data")
    try:
        listed = grpcurl("-plaintext", server.address, "list")
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.split() == SERVICES
        described = grpcurl("-plaintext", server.address, "describe", "kfpgrpc.v1.RunService")
        assert "rpc WatchRun ( .kfpgrpc.v1.WatchRunRequest ) returns ( stream .kfpgrpc.v1.Run );" in described.stdout
        for service in ("", "kfpgrpc.v1.ExperimentService"):
            health = grpcurl("-plaintext", "-d", json.dumps({"service": service}), server.address, "grpc.health.v1.Health/Check")
            assert json.loads(health.stdout) == {"status": "SERVING"}
        created = grpcurl("-plaintext", "-d", '{"experiment": {"display_name": "from-grpcurl"}}', server.address,
                          "kfpgrpc.v1.ExperimentService/CreateExperiment")
        assert json.loads(created.stdout)["display_name"] == "from-grpcurl"
        bad = grpcurl("-plaintext", "-format-error", "-d", '{"experiment": {}}', server.address,
                      "kfpgrpc.v1.ExperimentService/CreateExperiment")
        assert bad.returncode != 0
        status = json.loads(bad.stderr)
        assert status["code"] == 3
        assert status["details"][0]["field_violations"] == [{"field": "experiment.display_name", "description": "is required"}]
    finally:
        code, _ = server.terminate()
    assert code == 0


def test_sigterm_stops_cleanly_and_data_survives_restart(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", "--log-format", "json", "--log-level", "debug")
    create_experiment(server.address, "kept")
    code, stderr = server.terminate()
    assert code == 0
    records = [json.loads(line) for line in stderr.splitlines()]
    assert {"rpc", "shutting down", "stopped"} <= {r["msg"] for r in records}
    rpc = next(r for r in records if r["msg"] == "rpc")
    assert rpc["method"] == "/kfpgrpc.v1.ExperimentService/CreateExperiment" and rpc["code"] == "OK"
    restarted = ServerProcess(tmp_path / "data")
    try:
        assert experiment_names(restarted.address) == {"Default", "kept"}
    finally:
        assert restarted.terminate()[0] == 0


def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data")
    names = {f"acked-{i}" for i in range(50)}
    for name in names:
        create_experiment(server.address, name)
    server.kill()
    restarted = ServerProcess(tmp_path / "data")
    try:
        assert experiment_names(restarted.address) == names | {"Default"}
    finally:
        restarted.terminate()


def test_default_address_and_data_dir(tmp_path: Path) -> None:
    """With no flags: ./.kfpgrpc/ in the working directory (the port is forced free here)."""
    env = {**os.environ, "KFPGRPC_LISTEN": "127.0.0.1:0"}
    process = subprocess.Popen([sys.executable, "-m", "kfpgrpc.cli", "serve"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().startswith("listening on 127.0.0.1:")
        assert (tmp_path / ".kfpgrpc" / "kfpgrpc.db").exists()
    finally:
        process.terminate()
        process.communicate(timeout=20)
    assert process.returncode == 0


def test_bad_command_lines_fail_with_one_clear_line(tmp_path: Path) -> None:
    def serve(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kfpgrpc.cli", "serve", "--data-dir", str(tmp_path), *args],
                              capture_output=True, text=True, timeout=30)

    unknown_zone = serve("--default-time-zone", "Mars/Olympus")
    assert unknown_zone.returncode == 2
    assert unknown_zone.stderr.strip() == "kfpgrpc: --default-time-zone: unknown IANA time zone 'Mars/Olympus'"
    no_tasks = serve("--max-parallel-tasks", "0")
    assert no_tasks.returncode == 2
    assert no_tasks.stderr.strip() == "kfpgrpc: --max-parallel-tasks must be at least 1"
    lonely_cert = serve("--tls-cert", "cert.pem")
    assert lonely_cert.returncode == 2
    assert lonely_cert.stderr.strip() == "kfpgrpc: --tls-cert and --tls-key go together"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        occupied = serve("--listen", f"127.0.0.1:{port}")
    assert occupied.returncode == 1
    assert occupied.stderr == f"kfpgrpc: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    assert list(tmp_path.iterdir()) == []  # the port is checked before anything is created
    first = ServerProcess(tmp_path / "first")  # a second server must not share a live server's port
    try:
        second = serve("--listen", first.address)
        assert second.returncode == 1
        assert second.stderr == f"kfpgrpc: cannot listen on {first.address}: Address already in use\n"
    finally:
        first.terminate()


def test_auth_token_file_keeps_the_token_off_the_command_line(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("file-s3cret\n")
    server = ServerProcess(tmp_path / "data", "--auth-token-file", str(token_file))
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = Stubs.on(channel).experiments  # type: ignore[arg-type]
            with pytest.raises(grpc.RpcError) as refused:
                stub.ListExperiments(pb.ListExperimentsRequest())
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            stub.ListExperiments(pb.ListExperimentsRequest(), metadata=(("authorization", "Bearer file-s3cret"),))
        assert b"file-s3cret" not in Path(f"/proc/{server.process.pid}/cmdline").read_bytes()
    finally:
        server.terminate()

    def serve(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kfpgrpc.cli", "serve", "--data-dir", str(tmp_path / "data"), *args],
                              capture_output=True, text=True, timeout=30, env={**os.environ, **env})

    both = serve("--auth-token-file", str(token_file), KFPGRPC_AUTH_TOKEN="other")
    assert (both.returncode, both.stderr) == (
        2, "kfpgrpc: give one of --auth-token (KFPGRPC_AUTH_TOKEN) and --auth-token-file (KFPGRPC_AUTH_TOKEN_FILE)\n")
    missing = serve(KFPGRPC_AUTH_TOKEN_FILE=str(tmp_path / "missing"))
    assert (missing.returncode, missing.stderr) == (2, f"kfpgrpc: --auth-token-file {tmp_path / 'missing'}: No such file or directory\n")
    (tmp_path / "empty").write_text("\n")
    empty = serve("--auth-token-file", str(tmp_path / "empty"))
    assert (empty.returncode, empty.stderr) == (2, f"kfpgrpc: --auth-token-file {tmp_path / 'empty'}: the file is empty\n")


async def test_shutdown_sets_health_not_serving_and_commits_acknowledged_writes(data_dir: Path) -> None:
    server = KfpGrpcServer(ServerConfig(listen="127.0.0.1:0", data_dir=data_dir))
    await server.start()
    async with grpc.aio.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await health.read()).status == health_pb2.HealthCheckResponse.SERVING
        stubs = Stubs.on(channel)

        async def create(name: str) -> str | grpc.StatusCode:
            try:
                await stubs.experiments.CreateExperiment(pb.CreateExperimentRequest(experiment=pb.Experiment(display_name=name)))
            except grpc.aio.AioRpcError as error:
                return error.code()
            return name

        writes = [asyncio.create_task(create(f"w{i}")) for i in range(300)]
        await asyncio.sleep(0.02)
        stopping = asyncio.create_task(server.stop())
        assert (await health.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        results = await asyncio.gather(*writes)
        await stopping
    acknowledged = {r for r in results if isinstance(r, str)}
    assert acknowledged, "some writes should have completed before the stop"
    # Calls that reach a stopping server are refused (UNAVAILABLE) or cut (CANCELLED): never half-done.
    assert {r for r in results if not isinstance(r, str)} <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}

    restarted = KfpGrpcServer(ServerConfig(listen="127.0.0.1:0", data_dir=data_dir))
    await restarted.start()
    try:
        async with grpc.aio.insecure_channel(restarted.address) as channel:
            listed = await Stubs.on(channel).experiments.ListExperiments(pb.ListExperimentsRequest(page_size=200, sort_by="name"))
            stored = {e.display_name for e in listed.experiments} - {"Default"}
            while listed.next_page_token:
                listed = await Stubs.on(channel).experiments.ListExperiments(pb.ListExperimentsRequest(page_size=200, page_token=listed.next_page_token))
                stored |= {e.display_name for e in listed.experiments}
    finally:
        await restarted.stop()
    assert acknowledged <= stored


async def test_bearer_token_guards_kfpgrpc_services_only(data_dir: Path) -> None:
    server = KfpGrpcServer(ServerConfig(listen="127.0.0.1:0", data_dir=data_dir, auth_token="s3cret"))
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stubs = Stubs.on(channel)
            request = pb.ListExperimentsRequest()
            for metadata in ((), (("authorization", "Bearer wrong"),), (("authorization", "s3cret"),)):
                with pytest.raises(grpc.aio.AioRpcError) as failure:
                    await stubs.experiments.ListExperiments(request, metadata=metadata)
                assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                async for _ in stubs.runs.WatchRun(run_pb2.WatchRunRequest(run_id="x")):
                    pass
            assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED
            listed = await stubs.experiments.ListExperiments(request, metadata=(("authorization", "Bearer s3cret"),))
            assert listed.total_size == 1
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert health.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl."""
    directory = tmp_path_factory.mktemp("tls")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
            "-keyout", "ca.key", "-out", "ca.pem")
    for name, extension in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.csr")
        (directory / f"{name}.ext").write_text(extension + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem")
    return directory


async def test_mutual_tls(data_dir: Path, certificates: Path) -> None:
    config = ServerConfig(listen="127.0.0.1:0", data_dir=data_dir, tls_cert=certificates / "server.pem",
                          tls_key=certificates / "server.key", tls_client_ca=certificates / "ca.pem")
    server = KfpGrpcServer(config)
    await server.start()
    ca = (certificates / "ca.pem").read_bytes()
    try:
        with_client_cert = grpc.ssl_channel_credentials(ca, (certificates / "client.key").read_bytes(),
                                                        (certificates / "client.pem").read_bytes())
        async with grpc.aio.secure_channel(server.address, with_client_cert) as channel:
            listed = await Stubs.on(channel).experiments.ListExperiments(pb.ListExperimentsRequest())
            assert listed.total_size == 1
        async with grpc.aio.secure_channel(server.address, grpc.ssl_channel_credentials(ca)) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                await Stubs.on(channel).experiments.ListExperiments(pb.ListExperimentsRequest(), timeout=5)
            assert failure.value.code() == grpc.StatusCode.UNAVAILABLE  # handshake refused without a client cert
    finally:
        await server.stop()


async def test_an_unexpected_failure_is_internal_and_the_server_keeps_serving(server: KfpGrpcServer, stubs: Stubs, data_dir: Path) -> None:
    def break_the_schema() -> None:  # an operator, in another process, breaking the schema underneath
        with sqlite3.connect(data_dir / "kfpgrpc.db") as outside:
            outside.execute("ALTER TABLE pipelines RENAME TO pipelines_moved")

    # In a thread: the server's event loop must go on (its writer may hold the lock a moment).
    await asyncio.to_thread(break_the_schema)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stubs.pipelines.ListPipelines(pipeline_pb2.ListPipelinesRequest())
    assert failure.value.code() == grpc.StatusCode.INTERNAL
    assert failure.value.details() == "internal error; see the server log"  # no SQL leaks to clients
    listed = await stubs.experiments.ListExperiments(pb.ListExperimentsRequest())
    assert listed.total_size == 1
