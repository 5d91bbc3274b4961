"""Fixtures: a real kfpgrpc server on 127.0.0.1:0 with its own SQLite file, a real channel,
and pipelines compiled once per session by the kfp SDK (tests/pipelines_control_flow.py by each
kfp version of tests/kfp_sdks.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import kfp
import pytest

from kfpgrpc.clock import Clock
from kfpgrpc.config import ServerConfig
from kfpgrpc.executor.environments import wheel_of_installed
from kfpgrpc.server import KfpGrpcServer
from tests import kfp_sdks, pipelines, pipelines_control_flow
from tests.support import CONTAINMENTS, Stubs, skip_unless_containment

# The browser fixtures of the web UI's tests (chromium, browser, page).
pytest_plugins = ["tests.browser"]

# Every `kfpgrpc serve` a test starts inherits this: none takes KFP's REST port 8888, which
# another server on the machine may hold. Tests of the REST API ask for port 0 (ServerProcess).
os.environ["KFPGRPC_HTTP_LISTEN"] = "off"


@pytest.fixture(params=CONTAINMENTS)
async def containment(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each way of containing task processes (`--task-containment`) that this machine allows."""
    await skip_unless_containment(request.param, tmp_path / "probe")
    return request.param


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def clock() -> Clock | None:
    """The server's clock: the system's; a test module overrides it with a VirtualClock."""
    return None


@pytest.fixture
async def server(data_dir: Path, clock: Clock | None) -> AsyncIterator[KfpGrpcServer]:
    running = KfpGrpcServer(ServerConfig(listen="127.0.0.1:0", data_dir=data_dir), clock)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def channel(server: KfpGrpcServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(server.address) as opened:
        yield opened


@pytest.fixture
def stubs(channel: grpc.aio.Channel) -> Stubs:
    return Stubs.on(channel)


@pytest.fixture(scope="session")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a virtual environment with nothing installed (no kfp, no pip), as after a
    plain `pip install -e .` of the server without kfp."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    return venv / "bin" / "python"


@pytest.fixture(scope="session")
def kfp_wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A find-links directory with the wheel of this kfp SDK, made once per session from its
    installed files (no network)."""
    wheels = tmp_path_factory.mktemp("kfp-wheels")
    assert wheel_of_installed("kfp", kfp.__version__, wheels) is not None
    return wheels


@pytest.fixture(scope="session")
def offline_pip(kfp_wheels: Path) -> dict[str, str]:
    """A server's pip configuration (its environment) that builds task environments without a
    network: no index, the kfp wheel in find-links."""
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(kfp_wheels)}


@pytest.fixture(scope="session")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Each pipeline of tests/pipelines.py compiled by the kfp SDK, by pipeline name."""
    out = tmp_path_factory.mktemp("compiled")
    return {p.name: pipelines.compile_pipeline(p, out / f"{p.name}.yaml") for p in pipelines.ALL_PIPELINES}


@pytest.fixture(scope="session")
def compiled_cel(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The pipelines of tests/pipelines.py that cover the SDK's CEL (CEL_PIPELINES and the
    refused condition-quirks) compiled by the kfp SDK, by pipeline name."""
    out = tmp_path_factory.mktemp("compiled-cel")
    chosen = (*pipelines.CEL_PIPELINES, pipelines.condition_quirks_pipeline)
    return {p.name: pipelines.compile_pipeline(p, out / f"{p.name}.yaml") for p in chosen}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes `kfp_sdk` (directly or through `each_kfp`) runs once per kfp version."""
    if "kfp_sdk" in metafunc.fixturenames:
        metafunc.parametrize("kfp_sdk", kfp_sdks.sdk_params())


@pytest.fixture(scope="session")
def compiled_modules(tmp_path_factory: pytest.TempPathFactory) -> kfp_sdks.CompiledModules:
    return kfp_sdks.CompiledModules(tmp_path_factory.mktemp("compiled-by-sdk"))


@pytest.fixture
def each_kfp(kfp_sdk: kfp_sdks.KfpSdk, compiled_modules: kfp_sdks.CompiledModules) -> dict[str, dict[str, Any]]:
    """The pipelines of tests/pipelines_control_flow.py compiled by `kfp_sdk`, by pipeline name:
    the test runs once per kfp version."""
    return compiled_modules.get(pipelines_control_flow, kfp_sdk)


@pytest.fixture
def this_kfp(compiled_modules: kfp_sdks.CompiledModules) -> dict[str, dict[str, Any]]:
    """The same pipelines compiled by this environment's kfp only, for tests of what the IR does
    not change (caching, recovery)."""
    return compiled_modules.get(pipelines_control_flow, kfp_sdks.KfpSdk(kfp.__version__))
