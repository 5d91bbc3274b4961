"""The `pip install` preamble of lightweight components is never run: CreateRun (and
CreateRecurringRun) refuses a component whose `packages_to_install` (or the kfp the SDK adds) the
task interpreter lacks, a stored run that meets such a component fails it without running pip,
and the interpreter is never changed.

No `from __future__ import annotations`: the kfp SDK reads the inline components' annotations."""

import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import kfp
import pytest
from kfp import dsl

from kfpgrpc.v1 import common_pb2, recurring_run_pb2, run_pb2
from tests.pipelines import BASE_IMAGE, compile_pipeline
from tests.support import ServerProcess, Stubs, run_of, running, task, upload, wait_until, watch_to_end

SDK_KFP = f"kfp=={kfp.__version__}"


@dsl.component(base_image=BASE_IMAGE, packages_to_install=["numpy==1.0.0"])
def old_numpy() -> str:
    return "never runs"


@dsl.component(base_image=BASE_IMAGE, packages_to_install=["numpy==1.0.0", "PyYAML>=6"],
               pip_index_urls=["https://pypi.example/simple", "https://mirror.example/simple"])
def from_an_index() -> str:
    return "never runs"


@dsl.component(base_image=BASE_IMAGE, packages_to_install=["numpy==1.0.0"], use_venv=True)
def in_a_venv() -> str:
    return "never runs"


@dsl.component(base_image=BASE_IMAGE, packages_to_install=["numpy==1.0.0"], install_kfp_package=False)
def without_kfp() -> str:
    return "never runs"


@dsl.component(base_image=BASE_IMAGE, packages_to_install=["PyYAML>=6", 'nothing-at-all==1; python_version < "3"'])
def yaml_version() -> str:
    import yaml

    return yaml.__version__


def single(component: Any) -> Any:
    @dsl.pipeline(name=f"with-{component.name.replace('_', '-')}")
    def pipeline() -> str:
        return component().output

    return pipeline


@dsl.pipeline(name="yaml-and-old-numpy")
def yaml_and_old_numpy():
    yaml_version()
    old_numpy()


async def create(stubs: Stubs, run: run_pb2.Run) -> run_pb2.Run:
    return await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=run))


async def refusal(call: Any) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION, failure.value
    return failure.value.details() or ""


@pytest.mark.parametrize("component", [old_numpy, from_an_index, in_a_venv, without_kfp], ids=lambda c: c.name)
async def test_create_run_refuses_a_component_whose_packages_the_executor_cannot_provide(
    stubs: Stubs, tmp_path: Path, component: Any
) -> None:
    spec = compile_pipeline(single(component), tmp_path / "pipeline.yaml")
    version = await upload(stubs, "needs-numpy", spec)
    details = await refusal(create(stubs, run_of(version)))
    name = component.name.replace("_", "-")
    assert details.startswith(
        f"this server cannot run this pipeline: component 'comp-{name}' needs packages not available to the local launcher: numpy==1.0.0"
    ), details
    assert "PyYAML" not in details  # installed here
    recurring = recurring_run_pb2.RecurringRun(
        display_name="nightly", pipeline_version_reference=run_of(version).pipeline_version_reference,
        trigger=recurring_run_pb2.Trigger(cron_schedule=recurring_run_pb2.CronSchedule(cron="0 3 * * *")),
    )
    assert "numpy==1.0.0" in await refusal(stubs.recurring_runs.CreateRecurringRun(
        recurring_run_pb2.CreateRecurringRunRequest(recurring_run=recurring)))
    assert (await stubs.runs.ListRuns(run_pb2.ListRunsRequest())).total_size == 0


async def test_only_the_components_that_lack_packages_are_named(stubs: Stubs, tmp_path: Path) -> None:
    version = await upload(stubs, "mixed", compile_pipeline(yaml_and_old_numpy, tmp_path / "mixed.yaml"))
    details = await refusal(create(stubs, run_of(version)))
    assert "component 'comp-old-numpy' needs packages not available to the local launcher: numpy==1.0.0" in details
    assert "comp-yaml-version" not in details


async def test_a_component_whose_packages_are_installed_runs_without_pip(stubs: Stubs, tmp_path: Path) -> None:
    version = await upload(stubs, "yaml", compile_pipeline(single(yaml_version), tmp_path / "yaml.yaml"))
    run = (await watch_to_end(stubs.runs, (await create(stubs, run_of(version))).run_id))[-1]
    assert run.state == common_pb2.SUCCEEDED, run.error
    lines = []
    async for response in stubs.runs.StreamRunLogs(run_pb2.StreamRunLogsRequest(run_id=run.run_id)):
        lines += [line.text for line in response.lines]
    assert lines[0].startswith("+ sh -ec ") and not any("pip install" in line for line in lines)


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a virtual environment with nothing installed (no kfp, no pip), as after a
    plain `pip install -e .` of the server without kfp."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    return venv / "bin" / "python"


def tree(python: Path) -> dict[str, tuple[int, int]]:
    """Every file of the python's virtual environment, with its size and modification time."""
    root = python.parent.parent
    return {
        str(path.relative_to(root)): (path.lstat().st_size, path.lstat().st_mtime_ns)
        for path in root.rglob("*")
    }


async def test_without_kfp_in_the_task_interpreter_lightweight_components_are_refused(
    bare_python: Path, data_dir: Path, compiled: dict[str, Any]
) -> None:
    before = tree(bare_python)
    server = ServerProcess(data_dir, "--task-python", str(bare_python))
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stubs = Stubs.on(channel)
            version = await upload(stubs, "add", compiled["add-pipeline"])
            details = await refusal(create(stubs, run_of(version)))
            assert f"component 'comp-add' needs packages not available to the local launcher: {SDK_KFP}" in details
            # Container components need no package: they run, with the bare `python3`.
            printer = await upload(stubs, "environment", compiled["environment-pipeline"])
            run = (await watch_to_end(stubs.runs, (await create(stubs, run_of(printer))).run_id))[-1]
            assert run.state == common_pb2.SUCCEEDED, run.error
    finally:
        server.terminate()
    assert tree(bare_python) == before


async def test_a_stored_run_whose_packages_went_away_fails_without_running_pip(
    bare_python: Path, data_dir: Path, compiled: dict[str, Any], tmp_path: Path
) -> None:
    """A run created while the interpreter had kfp, resumed by a server whose task interpreter
    has none (an upgrade): its task fails saying so; pip never runs."""
    counter, gate = tmp_path / "count", tmp_path / "gate"
    async with running(data_dir) as (_, stubs):
        version = await upload(stubs, "gated", compiled["gated-pipeline"])
        created = await create(stubs, run_of(version, counter=str(counter), gate=str(gate)))
        await wait_until(stubs.runs, created.run_id, lambda run: any(
            t.task_id == "wait-for" and t.state == common_pb2.RUNNING for t in run.run_details.task_details))
    before = tree(bare_python)
    async with running(data_dir, task_python=str(bare_python)) as (_, stubs):
        run = (await watch_to_end(stubs.runs, created.run_id))[-1]
        lines = []
        async for response in stubs.runs.StreamRunLogs(run_pb2.StreamRunLogsRequest(run_id=run.run_id, task_name="wait-for")):
            lines += [line.text for line in response.lines]
    assert run.state == common_pb2.FAILED
    error = task(run, "wait-for").error.message
    assert error == f"needs packages not available to the local launcher: {SDK_KFP}; pip is never run", error
    assert not any("pip install" in line for line in lines)
    assert tree(bare_python) == before


def test_a_task_python_that_cannot_run_is_a_bad_flag(tmp_path: Path) -> None:
    served = subprocess.run([sys.executable, "-m", "kfpgrpc.cli", "serve", "--data-dir", str(tmp_path), "--task-python", str(tmp_path)],
                            capture_output=True, text=True, timeout=30)
    assert (served.returncode, served.stderr) == (2, f"kfpgrpc: --task-python: {str(tmp_path)!r} is not an executable file\n")
