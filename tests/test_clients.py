"""The example clients under clients/ work against a real `kfpgrpc serve`: the Node client's
own `npm test`, and the grpcurl and curl walkthroughs, each run twice on one server since they
must be repeatable."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support import ServerProcess, run_with_venv

CLIENTS = Path(__file__).resolve().parent.parent / "clients"
NODE_CLIENT = CLIENTS / "node"
TOKEN = "walkthrough-token"  # the curl walkthrough's server requires it


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("clients") / "data")
    yield server
    code, stderr = server.terminate()
    assert code == 0, stderr


def node_modules_match_lock() -> bool:
    """Whether clients/node/node_modules holds exactly what package-lock.json locks: npm
    records what it installed in node_modules/.package-lock.json."""
    installed = NODE_CLIENT / "node_modules" / ".package-lock.json"
    if not installed.exists():
        return False
    locked = json.loads((NODE_CLIENT / "package-lock.json").read_text())["packages"]
    return bool(json.loads(installed.read_text())["packages"] == {path: package for path, package in locked.items() if path})


@pytest.fixture(scope="session")
def node_modules() -> None:
    """The Node client's locked dependencies: `npm ci` (from npm's cache when it has them),
    unless they are installed already, so that a session never wipes node_modules under
    another one."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed: the Node client's test needs Node.js 20+ and npm")
    if not node_modules_match_lock():
        result = run_with_venv(["npm", "ci", "--prefer-offline", "--no-audit", "--no-fund"], NODE_CLIENT)
        assert result.returncode == 0, result.stdout
        assert node_modules_match_lock()


def test_node_client_npm_test(node_modules: None, live_server: ServerProcess) -> None:
    result = run_with_venv(["npm", "test"], NODE_CLIENT, KFPGRPC_SERVER=live_server.address)
    assert result.returncode == 0, result.stdout
    assert re.search(r"^# pass [1-9]", result.stdout, re.MULTILINE), result.stdout
    assert re.search(r"^# fail 0$", result.stdout, re.MULTILINE), result.stdout


def test_grpcurl_walkthrough_runs_twice(live_server: ServerProcess, tmp_path: Path) -> None:
    """The second time, the divide task comes from the cache: the first run's execution."""
    experiments = []
    for attempt in range(2):
        result = run_with_venv([str(CLIENTS / "grpcurl" / "walkthrough.sh")], tmp_path, KFPGRPC_SERVER=live_server.address)
        output = result.stdout
        assert result.returncode == 0, output
        if attempt == 0:  # the execution a second run reuses: this run's, or the one this run reused
            source = (re.findall(r"cached from run (\S+)", output) or re.findall(r"^run (\S+)$", output, re.MULTILINE))[0]
        for expected in (
            '"status": "SERVING"',  # the health check
            "run SUCCEEDED | divide SUCCEEDED",  # WatchRun's last snapshot
            "state_history: PENDING ",
            "divide SUCCEEDED {'Output': 2.5}",  # GetRun: 10 / 4
            # StreamRunLogs: the executor's lines, or (the node client may have run it first) the cache's
            "divide: [KFP Executor" if "divide: [KFP Executor" in output else "divide: outputs reused from the cache",
            f"cached from run {source}" if attempt else "SUCCEEDED.",  # GetRun / the closing line
        ):
            assert expected in output, f"{expected!r} not in the walkthrough's output:\n{output}"
        experiments += re.findall(r"^experiment (walkthrough-\S+): ", output, re.MULTILINE)
    assert len(set(experiments)) == 2, experiments
    assert not list(tmp_path.iterdir()), "the walkthrough left files behind"


def test_curl_walkthrough_runs_twice(tmp_path: Path) -> None:
    """The REST walkthrough, twice on one server that requires a token: each pass cleans up after
    itself, so the server is left as it started; without the token it stops at the first call."""
    server = ServerProcess(tmp_path / "data", "--auth-token", TOKEN, http=True)
    work = tmp_path / "work"
    work.mkdir()
    try:
        experiments = []
        for _ in range(2):
            result = run_with_venv([str(CLIENTS / "curl" / "walkthrough.sh")], work, KFPGRPC_HTTP=server.http_url, KFPGRPC_TOKEN=TOKEN)
            output = result.stdout
            assert result.returncode == 0, output
            for expected in (
                '{"multi_user":false}',  # healthz
                "state SUCCEEDED",
                "task divide SUCCEEDED {'Output': 2.5}",  # 10 / 4
                "runs: 1",  # the experiment's
                "updated: max_concurrency 2 cron 0 30 3 * * *",  # PATCH with update_mask
                "enabled: ENABLED next at 2100-01-01T03:30:00Z",
                "disabled: DISABLED",
                "now answers 404",  # the run, deleted
                "SUCCEEDED.",  # the closing line
            ):
                assert expected in output, f"{expected!r} not in the walkthrough's output:\n{output}"
            assert re.search(r"^recurring run \S+ DISABLED$", output, re.MULTILINE), output
            experiments += re.findall(r"^experiment (curl-walkthrough-\S+): ", output, re.MULTILINE)
        assert len(set(experiments)) == 2, experiments

        auth = {"Authorization": f"Bearer {TOKEN}"}
        left = httpx.get(f"{server.http_url}/apis/v2beta1/experiments", headers=auth).json()
        assert [e["display_name"] for e in left["experiments"]] == ["Default"]
        assert httpx.get(f"{server.http_url}/apis/v2beta1/pipelines", headers=auth).json().get("total_size", 0) == 0

        refused = run_with_venv([str(CLIENTS / "curl" / "walkthrough.sh")], work, KFPGRPC_HTTP=server.http_url)
        assert refused.returncode != 0 and "missing or invalid bearer token" in refused.stdout, refused.stdout
        assert "Traceback" not in refused.stdout
        assert not list(work.iterdir()), "the walkthrough left files behind"
    finally:
        code, stderr = server.terminate()
        assert code == 0, stderr


def without_kfp_version(spec_yaml: str) -> str:
    """A compiled spec as JSON with the kfp version the SDK writes into it (sdkVersion, its pip
    install line) blanked, so that a kfp patch release does not count as a change."""
    return re.sub(r"kfp(==|-)[0-9][0-9.]*", r"kfp\1VERSION", json.dumps(yaml.safe_load(spec_yaml)))


def test_node_test_pipeline_is_the_compiled_divide_pipeline(tmp_path: Path) -> None:
    compiled = tmp_path / "divide.yaml"
    subprocess.run([sys.executable, str(CLIENTS / "divide_pipeline.py"), str(compiled)], check=True, timeout=120)
    committed = NODE_CLIENT / "test" / "divide.yaml"
    assert without_kfp_version(compiled.read_text()) == without_kfp_version(committed.read_text()), (
        f"recompile it: python clients/divide_pipeline.py {committed.relative_to(CLIENTS.parent)}"
    )
