"""The `pip install` preamble of lightweight components: never run as is. A component whose
packages the task interpreter has runs with it, without pip; one whose preamble cannot be read is
refused at CreateRun (and CreateRecurringRun); everything else runs in a task environment
(tests/test_environments.py).

No `from __future__ import annotations`: the kfp SDK reads the inline components' annotations."""

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import kfp
import pytest
from kfp import dsl

from kfpgrpc.executor.packages import PipInstall, PreambleError, is_pip_preamble, preamble_installs, sdk_kfp_version
from kfpgrpc.v1 import common_pb2, recurring_run_pb2, run_pb2
from tests.pipelines import BASE_IMAGE, compile_pipeline
from tests.support import Stubs, run_of, running, task, tree, upload, wait_until, watch_to_end


@dsl.component(base_image=BASE_IMAGE, packages_to_install=["PyYAML>=6", 'nothing-at-all==1; python_version < "3"'])
def yaml_version() -> str:
    import yaml

    return yaml.__version__


@dsl.component(base_image=BASE_IMAGE, packages_to_install=["six==1.16.0", "numpy<3"],
               pip_index_urls=["https://pypi.example/simple", "https://user:secret@mirror.example/simple"])
def from_an_index() -> str:
    return "never runs"


@dsl.component(base_image=BASE_IMAGE, packages_to_install=["six==1.16.0", "numpy<3"], use_venv=True,
               pip_index_urls=["https://pypi.example/simple", "https://user:secret@mirror.example/simple"])
def in_a_venv() -> str:
    return "never runs"


def single(component: Any) -> Any:
    @dsl.pipeline(name=f"with-{component.name.replace('_', '-')}")
    def pipeline() -> str:
        return component().output

    return pipeline


async def create(stubs: Stubs, run: run_pb2.Run) -> run_pb2.Run:
    return await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=run))


async def refusal(call: Any) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION, failure.value
    return failure.value.details() or ""


def test_the_preamble_is_read_as_the_pip_installs_it_makes(tmp_path: Path) -> None:
    spec = compile_pipeline(single(from_an_index), tmp_path / "pipeline.yaml")
    command = spec["deploymentSpec"]["executors"]["exec-from-an-index"]["container"]["command"]
    assert is_pip_preamble(command)
    options = ("--index-url", "https://pypi.example/simple", "--extra-index-url", "https://user:secret@mirror.example/simple",
               "--trusted-host", "https://pypi.example/simple", "--trusted-host", "https://user:secret@mirror.example/simple")
    user, sdk = preamble_installs(command[2])
    assert user == PipInstall(("six==1.16.0", "numpy<3"), options, no_deps=False)
    assert sdk == PipInstall((f"kfp=={kfp.__version__}", 'typing-extensions>=3.7.4,<5; python_version<"3.9"'), options, no_deps=True)
    python311 = {"python_version": "3.11", "python_full_version": "3.11.7"}
    assert (sdk_kfp_version(sdk, python311), sdk_kfp_version(user, python311)) == (kfp.__version__, "")
    # Where the SDK's typing-extensions applies, the install is more than kfp: pip makes it.
    assert sdk_kfp_version(sdk, {"python_version": "3.8", "python_full_version": "3.8.10"}) == ""
    with pytest.raises(PreambleError, match="unknown pip option '--pre'"):
        preamble_installs(command[2].replace("--no-deps", "--pre"))
    # use_venv=True: the SDK's venv lines make no install; a task environment stands for them.
    in_venv = compile_pipeline(single(in_a_venv), tmp_path / "venv.yaml")["deploymentSpec"]["executors"]["exec-in-a-venv"]
    assert "python3 -m venv" in in_venv["container"]["command"][2]
    assert preamble_installs(in_venv["container"]["command"][2]) == (user, sdk)


async def test_create_run_refuses_a_pip_install_it_cannot_read(stubs: Stubs, tmp_path: Path) -> None:
    spec = compile_pipeline(single(yaml_version), tmp_path / "pipeline.yaml")
    unreadable = copy.deepcopy(spec)
    container = unreadable["deploymentSpec"]["executors"]["exec-yaml-version"]["container"]
    container["command"][2] = container["command"][2].replace("'PyYAML>=6'", "--pre 'PyYAML>=6'")
    version = await upload(stubs, "unreadable", unreadable)
    details = await refusal(create(stubs, run_of(version)))
    assert details == ("this server cannot run this pipeline: component 'comp-yaml-version' runs a pip install"
                       " the local launcher cannot read (unknown pip option '--pre')"), details
    recurring = recurring_run_pb2.RecurringRun(
        display_name="nightly", pipeline_version_reference=run_of(version).pipeline_version_reference,
        trigger=recurring_run_pb2.Trigger(cron_schedule=recurring_run_pb2.CronSchedule(cron="0 3 * * *")),
    )
    assert "unknown pip option '--pre'" in await refusal(stubs.recurring_runs.CreateRecurringRun(
        recurring_run_pb2.CreateRecurringRunRequest(recurring_run=recurring)))
    assert (await stubs.runs.ListRuns(run_pb2.ListRunsRequest())).total_size == 0


async def test_a_component_whose_packages_are_installed_runs_without_pip(stubs: Stubs, tmp_path: Path, data_dir: Path) -> None:
    version = await upload(stubs, "yaml", compile_pipeline(single(yaml_version), tmp_path / "yaml.yaml"))
    run = (await watch_to_end(stubs.runs, (await create(stubs, run_of(version))).run_id))[-1]
    assert run.state == common_pb2.SUCCEEDED, run.error
    lines = []
    async for response in stubs.runs.StreamRunLogs(run_pb2.StreamRunLogsRequest(run_id=run.run_id)):
        lines += [line.text for line in response.lines]
    assert lines[0].startswith("+ sh -ec ") and not any("pip install" in line or "task environment" in line for line in lines)
    assert sorted(path.name for path in (data_dir / "envs").iterdir()) == ["wheels"]  # nothing built


async def test_a_stored_run_whose_packages_went_away_runs_in_a_task_environment(
    bare_python: Path, data_dir: Path, compiled: dict[str, Any], tmp_path: Path, offline_pip: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run created while the interpreter had kfp, resumed by a server whose task interpreter
    has none (an upgrade): its task runs in a task environment with kfp; the interpreter is
    not changed."""
    for name, value in offline_pip.items():
        monkeypatch.setenv(name, value)  # the in-process server's pip configuration
    counter, gate = tmp_path / "count", tmp_path / "gate"
    async with running(data_dir) as (_, stubs):
        version = await upload(stubs, "gated", compiled["gated-pipeline"])
        created = await create(stubs, run_of(version, counter=str(counter), gate=str(gate)))
        await wait_until(stubs.runs, created.run_id, lambda run: any(
            t.task_id == "wait-for" and t.state == common_pb2.RUNNING for t in run.run_details.task_details))
    before = tree(bare_python)
    gate.touch()
    async with running(data_dir, task_python=str(bare_python)) as (_, stubs):
        run = (await watch_to_end(stubs.runs, created.run_id, timeout=300))[-1]
        lines = []
        async for response in stubs.runs.StreamRunLogs(run_pb2.StreamRunLogsRequest(run_id=run.run_id, task_name="wait-for")):
            lines += [line.text for line in response.lines]
    assert run.state == common_pb2.SUCCEEDED, run.error
    assert task(run, "wait-for").state == common_pb2.SUCCEEDED
    assert sum(": building for kfp==" in line for line in lines) == 1, lines
    assert tree(bare_python) == before


def test_a_task_python_that_cannot_run_is_a_bad_flag(tmp_path: Path) -> None:
    served = subprocess.run([sys.executable, "-m", "kfpgrpc.cli", "serve", "--data-dir", str(tmp_path), "--task-python", str(tmp_path)],
                            capture_output=True, text=True, timeout=30)
    assert (served.returncode, served.stderr) == (2, f"kfpgrpc: --task-python: {str(tmp_path)!r} is not an executable file\n")


def test_task_environment_limits_are_checked_flags(tmp_path: Path) -> None:
    for flag, value, message in (("--task-env-max-bytes", "-1", "--task-env-max-bytes must not be negative"),
                                 ("--task-env-max-age", "a while", "--task-env-max-age: ")):
        served = subprocess.run([sys.executable, "-m", "kfpgrpc.cli", "serve", "--data-dir", str(tmp_path), flag, value],
                                capture_output=True, text=True, timeout=30)
        assert served.returncode == 2 and served.stderr.startswith(f"kfpgrpc: {message}"), served.stderr
