"""Task environments: a lightweight component's `packages_to_install` (and the kfp runtime) are
installed into a virtual environment built for that package set, never into the server's.

The user packages are wheels (or a source project) these tests make themselves, found through
the server's pip configuration (PIP_FIND_LINKS in its environment) or a local index given as
`pip_index_urls`; kfp comes from a wheel downloaded once per session (`offline_pip`): no build
needs a network.

No `from __future__ import annotations`: the kfp SDK reads the inline components' annotations."""

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import kfp
import pytest
from kfp import dsl

from kfpgrpc.clock import VirtualClock
from kfpgrpc.executor.base import TaskUpdate
from kfpgrpc.executor.environments import MARKER, TaskEnvironmentError, TaskEnvironments
from kfpgrpc.executor.packages import PipInstall
from kfpgrpc.executor.process import TASK_DIR_ENV, TaskProcesses
from kfpgrpc.executor.task_log import LogVolume, TaskLog
from kfpgrpc.v1 import common_pb2, run_pb2
from tests.pipelines import BASE_IMAGE, compile_pipeline
from tests.support import ServerProcess, Stubs, alive, eventually, plain, run_of, task, tree, upload, wait_until, watch_to_end

# A package no interpreter here has: the tests build its wheel. (Not "kfp…": the SDK adds no kfp
# install to a component with a package whose name starts so.)
PROBE = "taskenv-probe"
DAY_US = 24 * 3600 * 1_000_000
SECRET = "the-servers-own-secret"


def write_wheel(directory: Path, name: str, version: str, files: dict[str, str]) -> Path:
    """A pure-Python wheel of `files` ({path in the wheel: text}), written by hand."""
    dist = f"{name.replace('-', '_')}-{version}"
    entries = {
        **files,
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: kfpgrpc-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    path = directory / f"{dist}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(path, "w") as wheel:
        for entry, text in entries.items():
            data = text.encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            wheel.writestr(entry, data)
            record.append(f"{entry},sha256={digest},{len(data)}")
        record.append(f"{dist}.dist-info/RECORD,,")
        wheel.writestr(f"{dist}.dist-info/RECORD", "\n".join(record) + "\n")
    return path


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A find-links directory with the probe package's wheel."""
    directory = tmp_path_factory.mktemp("wheelhouse")
    write_wheel(directory, PROBE, "1.0", {"taskenv_probe.py": "VALUE = 'probe 1.0'\n"})
    return directory


@pytest.fixture(scope="session")
def pip_env(offline_pip: dict[str, str], wheelhouse: Path) -> dict[str, str]:
    """The servers' pip configuration: no index; kfp and the probe package in find-links."""
    return {**offline_pip, "PIP_FIND_LINKS": f"{offline_pip['PIP_FIND_LINKS']} {wheelhouse}"}


@pytest.fixture(scope="session")
def local_index(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path, kfp_wheels: Path) -> str:
    """The file:// URL of a package index (PEP 503) with the probe package and this kfp SDK's
    wheel, for `pip_index_urls`."""
    root = tmp_path_factory.mktemp("index") / "simple"
    for project, wheel in (("kfp", next(kfp_wheels.glob("kfp-*.whl"))), (PROBE, next(wheelhouse.glob("*.whl")))):
        (root / project).mkdir(parents=True)
        (root / project / wheel.name).write_bytes(wheel.read_bytes())
        (root / project / "index.html").write_text(f'<html><body><a href="{wheel.name}">{wheel.name}</a></body></html>')
    return root.as_uri()


def gated_project(directory: Path) -> Path:
    """A source project whose build (a PEP 517 backend in its own tree, needing nothing from an
    index) writes its environment as JSON to the file `started` and then waits until the file
    `open` exists: a build as slow as a test needs. Its module `taskenv_gated` has VALUE
    'gated 1.0'."""
    project = directory / "gated"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "gated_backend"\nbackend-path = ["."]\n')
    (project / "gated_backend.py").write_text(textwrap.dedent(f"""
        import base64, hashlib, json, os, time, zipfile
        HERE = {str(project)!r}

        def get_requires_for_build_wheel(config_settings=None):
            return []

        def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
            with open(os.path.join(HERE, "started.partial"), "w") as started:
                json.dump(dict(os.environ), started)
            os.replace(os.path.join(HERE, "started.partial"), os.path.join(HERE, "started"))
            while not os.path.exists(os.path.join(HERE, "open")):
                time.sleep(0.05)
            name = "taskenv_gated-1.0-py3-none-any.whl"
            files = {{
                "taskenv_gated.py": "VALUE = 'gated 1.0'\\n",
                "taskenv_gated-1.0.dist-info/METADATA": "Metadata-Version: 2.1\\nName: taskenv-gated\\nVersion: 1.0\\n",
                "taskenv_gated-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\\nGenerator: t\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
            }}
            record = []
            with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as wheel:
                for entry, text in files.items():
                    digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
                    wheel.writestr(entry, text)
                    record.append(f"{{entry}},sha256={{digest}},{{len(text.encode())}}")
                record.append("taskenv_gated-1.0.dist-info/RECORD,,")
                wheel.writestr("taskenv_gated-1.0.dist-info/RECORD", "\\n".join(record) + "\\n")
            return name
    """))
    return project


def probe_value() -> str:
    """The component: what the probe package says, and where it runs."""
    import sys

    import taskenv_probe

    return f"{taskenv_probe.VALUE} in {sys.prefix}"


def gated_value() -> str:
    import sys

    import taskenv_gated

    return f"{taskenv_gated.VALUE} in {sys.prefix}"


def gated_environment() -> str:
    """The gated package's value, where the task runs and its whole environment, as JSON."""
    import json
    import os
    import sys

    import taskenv_gated

    return json.dumps({"value": taskenv_gated.VALUE, "prefix": sys.prefix, "environ": dict(os.environ)})


def one_task(component: Any, cache: bool = True) -> Any:
    @dsl.pipeline(name="one-task")
    def pipeline() -> str:
        return component().set_caching_options(cache).output

    return pipeline


def two_tasks(component: Any) -> Any:
    @dsl.pipeline(name="two-tasks")
    def pipeline():
        component().set_display_name("first")
        component().set_display_name("second")

    return pipeline


def probe_pipeline(path: Path, cache: bool = True, **options: Any) -> dict[str, Any]:
    """The probe component in a pipeline, compiled: by default from the servers' find-links."""
    component = dsl.component(base_image=BASE_IMAGE, **{"packages_to_install": [f"{PROBE}==1.0"], **options})(probe_value)
    return compile_pipeline(one_task(component, cache), path)


def gated_pipeline(project: Path, function: Any, path: Path, pipeline: Any = one_task) -> dict[str, Any]:
    return compile_pipeline(pipeline(dsl.component(base_image=BASE_IMAGE, packages_to_install=[str(project)])(function)), path)


@contextlib.asynccontextmanager
async def serve(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> AsyncIterator[Stubs]:
    """`kfpgrpc serve` in a subprocess with `args`, `env` added to its environment."""
    server = ServerProcess(data_dir, *args, env=env)
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            yield Stubs.on(channel)
    finally:
        server.terminate()


async def run_to_end(stubs: Stubs, spec: dict[str, Any], timeout: float = 300) -> run_pb2.Run:
    version = await upload(stubs, f"pipeline-{os.urandom(4).hex()}", spec)
    created = await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=run_of(version)))
    return (await watch_to_end(stubs.runs, created.run_id, timeout=timeout))[-1]


async def log_of(stubs: Stubs, run_id: str, task_id: str = "") -> list[str]:
    lines = []
    async for response in stubs.runs.StreamRunLogs(run_pb2.StreamRunLogsRequest(run_id=run_id, task_name=task_id)):
        lines += [line.text for line in response.lines]
    return lines


def output(run: run_pb2.Run, task_id: str) -> str:
    return plain(task(run, task_id).output_parameters)["Output"]


def environments(data_dir: Path) -> list[Path]:
    """The environments on disk, ready or not (the kfp wheel directory aside)."""
    return sorted(path for path in (data_dir / "envs").iterdir() if path.name != "wheels")


def server_has(module: str) -> bool:
    """Whether the server's interpreter (this one: the test servers run with it) can import it."""
    found = subprocess.run([sys.executable, "-c", f"import importlib.util; print(importlib.util.find_spec({module!r}) is not None)"],
                           capture_output=True, text=True, check=True)
    return found.stdout.strip() == "True"


def pip_freeze() -> str:
    return subprocess.run([sys.executable, "-m", "pip", "freeze", "--all"], capture_output=True, text=True, check=True).stdout


async def test_a_package_is_installed_in_a_task_environment_never_in_the_server(
    data_dir: Path, pip_env: dict[str, str]
) -> None:
    """The task interpreter is the server's own (it has kfp, not the probe package): the probe
    package comes from the server's pip configuration into an environment built once, reused
    by the next run (caching off: the task runs again)."""
    assert not server_has("taskenv_probe")
    freeze = pip_freeze()
    spec = probe_pipeline(data_dir.parent / "probe.yaml", cache=False)
    async with serve(data_dir, env=pip_env) as stubs:
        first = await run_to_end(stubs, spec)
        assert first.state == common_pb2.SUCCEEDED, first.error
        value, prefix = output(first, "probe-value").split(" in ")
        assert value == "probe 1.0"
        env, = environments(data_dir)
        assert prefix == str(env) and (env / MARKER).exists()
        first_log = await log_of(stubs, first.run_id)
        assert first_log[0].startswith("+ sh -ec "), first_log[0]  # the command run comes first
        building = f"task environment {env.name}: building for {PROBE}==1.0, then kfp=={kfp.__version__} "
        assert sum(line.startswith(building) for line in first_log) == 1, first_log
        wheel = f"{data_dir.absolute()}/envs/wheels/kfp-{kfp.__version__}-py3-none-any.whl"
        assert f"installing kfp {kfp.__version__} from {wheel}" in first_log, first_log
        assert any(line.startswith(f"task environment {env.name}: ready in ") for line in first_log)

        second = await run_to_end(stubs, spec)
        assert second.state == common_pb2.SUCCEEDED, second.error
        assert task(second, "probe-value").cached_from_run_id == ""
        assert output(second, "probe-value") == output(first, "probe-value")
        second_log = await log_of(stubs, second.run_id)
        assert second_log[0].startswith("+ sh -ec "), second_log
        assert not any("task environment" in line or "pip" in line for line in second_log), second_log
    assert environments(data_dir) == [env]
    assert not server_has("taskenv_probe")
    assert pip_freeze() == freeze


async def test_components_without_packages_get_the_kfp_runtime_once(
    data_dir: Path, bare_python: Path, compiled: dict[str, Any]
) -> None:
    """The task interpreter has nothing (no kfp, no pip): both tasks of the add pipeline run in
    one kfp-only environment, built by the first; the interpreter is not changed. pip may use
    no index and no find-links: the kfp wheel is made from the server's own kfp."""
    bare = tree(bare_python)
    async with serve(data_dir, "--task-python", str(bare_python), env={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": ""}) as stubs:
        run = await run_to_end(stubs, compiled["add-pipeline"])
        assert run.state == common_pb2.SUCCEEDED, run.error
        assert plain(task(run, "add-2").output_parameters)["Output"] == 5  # 1 + 2 + 2 (the defaults)
        env, = environments(data_dir)
        lines = await log_of(stubs, run.run_id)
    assert sum(line.startswith(f"task environment {env.name}: building for kfp=={kfp.__version__} ") for line in lines) == 1
    assert sorted(path.name for path in (data_dir / "envs" / "wheels").iterdir()) == [f"kfp-{kfp.__version__}-py3-none-any.whl"]
    assert tree(bare_python) == bare


async def test_pip_index_urls_are_where_the_packages_come_from(data_dir: Path, local_index: str) -> None:
    """The server has the machine's pip configuration, where the probe package is not; the
    component's index has it: the install uses it, as the SDK's preamble would. The kfp runtime
    of the server's own kfp version is made from its install: nothing is downloaded for it."""
    spec = probe_pipeline(data_dir.parent / "indexed.yaml", pip_index_urls=[local_index])
    async with serve(data_dir) as stubs:
        run = await run_to_end(stubs, spec)
        assert run.state == common_pb2.SUCCEEDED, run.error
        assert output(run, "probe-value").startswith("probe 1.0 in ")
        lines = await log_of(stubs, run.run_id)
    assert any(line.startswith("+ ") and " install " in line and f"--index-url {local_index} " in line for line in lines), lines
    assert not any(line.startswith("+ ") and " download " in line for line in lines), lines
    assert any(line.startswith(f"installing kfp {kfp.__version__} from ") for line in lines), lines


async def test_a_build_failure_fails_the_task_with_pips_error(stubs: Stubs, data_dir: Path, local_index: str) -> None:
    component = dsl.component(base_image=BASE_IMAGE, packages_to_install=["taskenv-no-such-package==1.0"],
                              pip_index_urls=[local_index])(probe_value)
    run = await run_to_end(stubs, compile_pipeline(one_task(component), data_dir.parent / "missing.yaml"))
    assert run.state == common_pb2.FAILED
    error = task(run, "probe-value").error.message
    pips = "ERROR: Could not find a version that satisfies the requirement taskenv-no-such-package==1.0"
    assert error.startswith("could not build task environment ") and ": pip exited with code 1\n" in error, error
    assert any(line.startswith(pips) for line in error.splitlines()), error
    assert any(line.startswith(pips) for line in await log_of(stubs, run.run_id)), error
    assert environments(data_dir) == []  # the failed build is gone


async def test_the_servers_environment_reaches_neither_the_build_nor_the_task(
    data_dir: Path, tmp_path: Path, pip_env: dict[str, str]
) -> None:
    """The server has a secret, a PYTHONPATH with a module of the package's name and a
    PIP_TARGET: the build sees only what pip needs (its PIP_* settings, not PIP_TARGET), the
    task its own minimal environment; both install and import from the task environment."""
    project = gated_project(tmp_path)
    (project / "open").touch()
    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / "taskenv_gated.py").write_text("VALUE = 'planted by the server'\n")
    elsewhere = tmp_path / "elsewhere"
    spec = gated_pipeline(project, gated_environment, tmp_path / "environment.yaml")
    server_env = {**pip_env, "KFPGRPC_TEST_SECRET": SECRET, "AWS_SECRET_ACCESS_KEY": SECRET,
                  "PYTHONPATH": str(planted), "PIP_TARGET": str(elsewhere)}
    async with serve(data_dir, env=server_env) as stubs:
        run = await run_to_end(stubs, spec)
    assert run.state == common_pb2.SUCCEEDED, run.error
    seen = json.loads(output(run, "gated-environment"))
    env, = environments(data_dir)
    assert (seen["value"], seen["prefix"]) == ("gated 1.0", str(env))
    built = json.loads((project / "started").read_text())
    for name, environ in (("build", built), ("task", seen["environ"])):
        assert not {"KFPGRPC_TEST_SECRET", "AWS_SECRET_ACCESS_KEY", "PIP_TARGET"} & set(environ), (name, environ)
        assert not any(SECRET in value or str(planted) in value for value in environ.values()), (name, environ)
    assert (built["PIP_NO_INDEX"], built["PIP_FIND_LINKS"]) == (pip_env["PIP_NO_INDEX"], pip_env["PIP_FIND_LINKS"])
    assert "PYTHONPATH" not in seen["environ"]
    assert not elsewhere.exists()


async def test_concurrent_tasks_wait_for_one_build(data_dir: Path, tmp_path: Path, pip_env: dict[str, str]) -> None:
    """Two tasks that need one environment at once: one build; both run in it."""
    project = gated_project(tmp_path)
    spec = gated_pipeline(project, gated_value, tmp_path / "gated.yaml", two_tasks)
    async with serve(data_dir, env=pip_env) as stubs:
        version = await upload(stubs, "gated", spec)
        created = await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=run_of(version)))
        await wait_until(stubs.runs, created.run_id, lambda run: sum(
            t.state == common_pb2.RUNNING for t in run.run_details.task_details) == 2)
        await eventually(_async((project / "started").exists), bool)  # the build is inside pip

        async def waiting() -> list[str]:  # the second task has asked for the environment
            return [line for line in await log_of(stubs, created.run_id) if "waiting for its build" in line]

        waited = await eventually(waiting, bool)
        (project / "open").touch()
        run = (await watch_to_end(stubs.runs, created.run_id, timeout=300))[-1]
        lines = await log_of(stubs, run.run_id)
    assert run.state == common_pb2.SUCCEEDED, run.error
    env, = environments(data_dir)
    assert output(run, "gated-value") == output(run, "gated-value-2") == f"gated 1.0 in {env}"
    assert sum(f"task environment {env.name}: building for " in line for line in lines) == 1, lines
    assert waited == [f"task environment {env.name}: waiting for its build (started by another task)"]


async def test_a_crash_mid_build_leaves_nothing_that_is_reused(data_dir: Path, tmp_path: Path, pip_env: dict[str, str]) -> None:
    """The server is killed while pip builds: the next start kills the build's processes and
    removes the partial environment; the resumed task builds it again."""
    project = gated_project(tmp_path)
    spec = gated_pipeline(project, gated_value, tmp_path / "gated.yaml")
    server = ServerProcess(data_dir, env=pip_env)
    async with grpc.aio.insecure_channel(server.address) as channel:
        stubs = Stubs.on(channel)
        version = await upload(stubs, "gated", spec)
        created = await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=run_of(version)))
        await eventually(_async((project / "started").exists), bool)
    builders = build_processes(data_dir)
    assert builders, "the build runs as task processes"
    server.kill()
    partial, = environments(data_dir)
    assert not (partial / MARKER).exists()
    (partial / "planted").touch()  # would survive if the partial environment were kept
    (project / "started").unlink()

    async with serve(data_dir, env=pip_env) as stubs:
        assert not any(alive(pid) for pid in builders)
        await eventually(_async((project / "started").exists), bool)  # built again
        assert not (partial / "planted").exists()
        (project / "open").touch()
        run = (await watch_to_end(stubs.runs, created.run_id, timeout=300))[-1]
        lines = await log_of(stubs, run.run_id)
    assert run.state == common_pb2.SUCCEEDED, run.error
    assert output(run, "gated-value") == f"gated 1.0 in {partial}"
    assert sum(f"task environment {partial.name}: building for " in line for line in lines) == 2, lines


async def test_terminating_the_task_that_builds_removes_the_build(data_dir: Path, tmp_path: Path, pip_env: dict[str, str]) -> None:
    """Terminated while pip builds: the task is CANCELED, the build's processes are killed and
    its partial environment is removed, with the server still running."""
    project = gated_project(tmp_path)
    spec = gated_pipeline(project, gated_value, tmp_path / "gated.yaml")
    async with serve(data_dir, env=pip_env) as stubs:
        version = await upload(stubs, "gated", spec)
        created = await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=run_of(version)))
        await eventually(_async((project / "started").exists), bool)
        builders = build_processes(data_dir)
        partial, = environments(data_dir)
        await stubs.runs.TerminateRun(run_pb2.TerminateRunRequest(run_id=created.run_id))
        run = (await watch_to_end(stubs.runs, created.run_id))[-1]
        assert (run.state, task(run, "gated-value").state) == (common_pb2.CANCELED, common_pb2.CANCELED)
        await eventually(_async(lambda: environments(data_dir)), lambda found: found == [])
        assert builders and not any(alive(pid) for pid in builders)
    assert not partial.exists()


async def test_the_server_prunes_environments_by_its_settings(data_dir: Path, pip_env: dict[str, str]) -> None:
    """Over `--task-env-max-bytes`, an environment is kept while its task runs, removed once
    idle."""
    spec = probe_pipeline(data_dir.parent / "probe.yaml")
    async with serve(data_dir, "--task-env-max-age", "0", "--task-env-max-bytes", "1", env=pip_env) as stubs:
        run = await run_to_end(stubs, spec)
        assert run.state == common_pb2.SUCCEEDED, run.error
        assert output(run, "probe-value").startswith("probe 1.0 in ")
        await eventually(_async(lambda: environments(data_dir)), lambda found: found == [])


def _async(function: Any) -> Any:
    """`function` as a coroutine function, for `eventually`."""
    async def call() -> Any:
        return function()

    return call


def build_processes(data_dir: Path) -> list[int]:
    """Live processes started for builds and tasks under `data_dir` (marked by KFPGRPC_TASK_DIR)."""
    marker = f"{TASK_DIR_ENV}={data_dir.absolute() / 'work'}".encode()
    found = []
    for pid in (int(name) for name in os.listdir("/proc") if name.isdigit()):
        try:
            with open(f"/proc/{pid}/environ", "rb") as environ:
                if any(entry.startswith(marker) for entry in environ.read().split(b"\0")) and alive(pid):
                    found.append(pid)
        except OSError:
            continue
    return found


# -- pruning, with the environments on their own and a virtual clock ------------------------------


class Recorder:
    def __init__(self) -> None:
        self.lines: list[str] = []

    async def task_changed(self, update: TaskUpdate) -> None:
        pass

    async def log_lines(self, task_id: str, lines: list[str]) -> None:
        self.lines += lines


SPELLINGS = (f"{PROBE}==1.0", f"{PROBE}>=1.0", f"{PROBE}<2")  # each spelling is an environment


def probe_installs(requirement: str, wheelhouse: Path) -> tuple[PipInstall, ...]:
    """A preamble's installs of the probe package, offline."""
    return (PipInstall((requirement,), ("--no-index", "--find-links", str(wheelhouse))),)


@contextlib.asynccontextmanager
async def environments_at(root: Path, work: Path, **settings: Any) -> AsyncIterator[TaskEnvironments]:
    """Started TaskEnvironments of this interpreter at `root` (`settings`: its keyword arguments)."""
    processes = TaskProcesses(work)
    await processes.start()
    envs = TaskEnvironments(root, sys.executable, processes, **{"max_age_us": 0, "max_bytes": 0, **settings})
    await envs.start()
    try:
        yield envs
    finally:
        await envs.stop()
        await processes.stop()


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Path:
    """An environment root with the probe package's environments of SPELLINGS, built once per
    session; the pruning tests start on copies of it."""
    base = tmp_path_factory.mktemp("built")

    async def build_all() -> None:
        async with environments_at(base / "envs", base / "work") as envs:
            for spelling in SPELLINGS:
                async with envs.use(probe_installs(spelling, wheelhouse), TaskLog(Recorder(), "task", LogVolume(10**7))):
                    pass

    asyncio.run(build_all())
    return base / "envs"


@pytest.fixture
async def task_environments(tmp_path: Path, built: Path) -> AsyncIterator[tuple[TaskEnvironments, VirtualClock]]:
    """Environments loaded from a copy of `built`, on a virtual clock, no pruning limits."""
    shutil.copytree(built, tmp_path / "envs", symlinks=True)
    clock = VirtualClock(1_800_000_000 * 1_000_000)
    async with environments_at(tmp_path / "envs", tmp_path / "work", clock=clock) as envs:
        yield envs, clock


async def use(envs: TaskEnvironments, requirement: str, wheelhouse: Path) -> Path:
    """Use the environment of `requirement` once; it must be there already (nothing built)."""
    recorder = Recorder()
    async with envs.use(probe_installs(requirement, wheelhouse), TaskLog(recorder, "task", LogVolume(10**7))) as python:
        assert python is not None
    assert recorder.lines == [], recorder.lines
    return Path(python).parent.parent


def disk_usage(path: Path) -> int:
    return sum(entry.lstat().st_blocks * 512 for entry in path.rglob("*"))


async def test_pruning_by_age_spares_environments_in_use(
    task_environments: tuple[TaskEnvironments, VirtualClock], wheelhouse: Path
) -> None:
    envs, clock = task_environments
    old = await use(envs, f"{PROBE}==1.0", wheelhouse)
    clock.advance(2 * 24 * 3600)
    recent = await use(envs, f"{PROBE}>=1.0", wheelhouse)
    clock.advance(2 * 24 * 3600)
    async with envs.use(probe_installs(f"{PROBE}<2", wheelhouse), TaskLog(Recorder(), "task", LogVolume(10**7))) as python:
        busy = Path(python).parent.parent
        clock.advance(10 * 24 * 3600)
        envs.max_age_us = 7 * DAY_US
        assert sorted(await envs.prune()) == sorted([old.name, recent.name])
        assert (not old.exists(), not recent.exists(), busy.exists()) == (True, True, True)
    assert busy.exists() and await envs.prune() == []  # used until now
    clock.advance(8 * 24 * 3600)
    assert await envs.prune() == [busy.name] and not busy.exists()


async def test_pruning_by_size_removes_the_least_recently_used_idle_ones(
    task_environments: tuple[TaskEnvironments, VirtualClock], wheelhouse: Path
) -> None:
    envs, clock = task_environments
    first = await use(envs, f"{PROBE}==1.0", wheelhouse)
    clock.advance(60)
    second = await use(envs, f"{PROBE}>=1.0", wheelhouse)
    clock.advance(60)
    third = await use(envs, f"{PROBE}<2", wheelhouse)
    clock.advance(60)
    assert await use(envs, f"{PROBE}==1.0", wheelhouse) == first  # used again: now the most recent
    sizes = {path: disk_usage(path) for path in (first, second, third)}
    envs.max_bytes = sizes[first] + sizes[third] + sizes[second] // 2
    assert await envs.prune() == [second.name]
    assert (first.exists(), second.exists(), third.exists()) == (True, False, True)
    async with envs.use(probe_installs(f"{PROBE}<2", wheelhouse), TaskLog(Recorder(), "task", LogVolume(10**7))):
        envs.max_bytes = 1
        assert await envs.prune() == [first.name]  # the one in use stays, over the limit
    assert third.exists()

    # A restart knows what is left, and when it was last used.
    async with environments_at(envs.root, envs.root.parent / "work-2", max_age_us=DAY_US, clock=clock) as restarted:
        assert await use(restarted, f"{PROBE}<2", wheelhouse) == third
        clock.advance(2 * 24 * 3600)
        assert await restarted.prune() == [third.name]


async def test_a_failed_build_raises_pips_error_and_leaves_nothing(
    task_environments: tuple[TaskEnvironments, VirtualClock], wheelhouse: Path
) -> None:
    envs, _ = task_environments
    before = sorted(envs.root.iterdir())
    with pytest.raises(TaskEnvironmentError) as failure:
        await use(envs, "taskenv-no-such-package==1.0", wheelhouse)
    assert "ERROR: No matching distribution found for taskenv-no-such-package==1.0" in str(failure.value)
    assert sorted(envs.root.iterdir()) == before
