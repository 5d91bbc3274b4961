"""The local executor against real kfp-compiled pipelines, run as real subprocesses (no mocks).

No `from __future__ import annotations`: the kfp SDK reads the inline components' annotations."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kfp import dsl
from kfp.dsl import Model, Output

from kfpgrpc.executor import (
    LocalLauncher,
    Orchestrator,
    RunContext,
    RunOutcome,
    TaskResult,
    TaskState,
    TaskUpdate,
    unsupported_features,
)
from tests.pipelines import BASE_IMAGE, compile_pipeline
from tests.support import REPLACE_OWN_DIRECTORY, REPLACE_RUN_DIRECTORY, alive, assert_untouched, container_spec, victim_dir


class Recorder:
    """A RunObserver that records everything it is told."""

    def __init__(self) -> None:
        self.updates: list[TaskUpdate] = []
        self.logs: dict[str, list[str]] = {}
        self.changed = asyncio.Event()

    async def task_changed(self, update: TaskUpdate) -> None:
        self.updates.append(update)
        self.changed.set()

    async def log_lines(self, task_id: str, lines: list[str]) -> None:
        assert all("\n" not in line for line in lines)
        self.logs.setdefault(task_id, []).extend(lines)
        self.changed.set()

    def states(self, task_id: str) -> list[TaskState]:
        return [u.state for u in self.updates if u.task_id == task_id]

    def last(self, task_id: str) -> TaskUpdate:
        return [u for u in self.updates if u.task_id == task_id][-1]

    async def wait_for(self, condition, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            remaining = deadline - time.monotonic()
            assert remaining > 0, "timed out waiting"
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), timeout=remaining)
            except TimeoutError:
                pass


@pytest.fixture
async def executor(containment: str, tmp_path: Path) -> AsyncIterator[Orchestrator]:
    """A started orchestrator with a local launcher, with each way of containing task processes."""
    launcher = LocalLauncher(tmp_path / "artifacts", tmp_path / "work", max_parallel_tasks=4, containment=containment)
    async with started(Orchestrator(launcher)) as running:
        yield running


@contextlib.asynccontextmanager
async def started(executor: Orchestrator) -> AsyncIterator[Orchestrator]:
    await executor.start()
    try:
        yield executor
    finally:
        await executor.stop()


async def run(
    executor: Orchestrator,
    spec: dict[str, Any],
    parameters: dict[str, Any],
    previous: dict[str, TaskResult] | None = None,
    run_id: str = "run-1",
) -> tuple[RunOutcome, Recorder]:
    recorder = Recorder()
    outcome = await asyncio.wait_for(
        executor.execute(RunContext(run_id, spec, parameters, previous or {}), recorder), timeout=120
    )
    return outcome, recorder


# -- add_pipeline -------------------------------------------------------------------------------


async def test_add_pipeline_passes_parameters(executor, compiled):
    # Numbers as they arrive through google.protobuf.Struct: floats.
    outcome, rec = await run(executor, compiled["add-pipeline"], {"a": 1.0, "b": 2.0})
    assert outcome == RunOutcome(TaskState.SUCCEEDED, "")
    assert rec.states("add") == [TaskState.RUNNING, TaskState.SUCCEEDED]
    assert rec.states("add-2") == [TaskState.RUNNING, TaskState.SUCCEEDED]
    first, second = rec.last("add"), rec.last("add-2")
    assert first.result == TaskResult({"Output": 3}, {})
    assert isinstance(first.result.output_parameters["Output"], int)
    assert second.input_parameters == {"a": 3, "b": 2}
    assert second.result == TaskResult({"Output": 5}, {})
    assert first.image == BASE_IMAGE and first.parent_task_id == "" and first.display_name == "add"
    assert first.exit_code == 0
    times = [u.time_us for u in rec.updates]
    assert times == sorted(times) and abs(times[0] / 1e6 - time.time()) < 120


async def test_pip_install_preamble_is_skipped(executor, compiled, tmp_path):
    spec = compiled["add-pipeline"]
    command = spec["deploymentSpec"]["executors"]["exec-add"]["container"]["command"]
    assert "pip install" in command[2]  # the compiled spec does have the preamble
    outcome, rec = await run(executor, spec, {"a": 1, "b": 2})
    assert outcome.state == TaskState.SUCCEEDED
    for task_id in ("add", "add-2"):
        lines = [line.replace(str(tmp_path), "<tmp>") for line in rec.logs[task_id]]  # its name has "pip"
        assert lines[0].startswith("+ sh -ec "), lines[0]  # the argv actually run
        assert not any("pip" in line for line in lines)


# -- artifacts ----------------------------------------------------------------------------------


async def test_artifact_pipeline(executor, compiled, tmp_path):
    outcome, rec = await run(
        executor, compiled["artifact-pipeline"], {"text": "hello artifacts"}, run_id="run-a"
    )
    assert outcome.state == TaskState.SUCCEEDED, outcome.error
    written = rec.last("write-artifacts").result
    assert written is not None
    base = tmp_path / "artifacts" / "run-a" / "write-artifacts"
    dataset, = written.output_artifacts["dataset"]
    model, = written.output_artifacts["model"]
    assert dataset.uri == str(base / "dataset") and model.uri == str(base / "model")
    assert dataset.schema_title == "system.Dataset" and model.schema_title == "system.Model"
    assert dataset.metadata == {"pushed": 1} and model.metadata == {"pushed": 1}
    assert Path(dataset.uri).read_text() == "hello artifacts"
    assert Path(model.uri).read_text() == "model trained on 15 characters"
    assert rec.last("read-dataset").result == TaskResult({"Output": "hello artifacts"}, {})


# -- sub-pipelines ------------------------------------------------------------------------------


async def test_nested_pipeline(executor, compiled):
    outcome, rec = await run(executor, compiled["nested-pipeline"], {"x": 1.0, "y": 5.0})
    assert outcome.state == TaskState.SUCCEEDED, outcome.error
    assert rec.states("add-twice") == [TaskState.RUNNING, TaskState.SUCCEEDED]
    for inner, expected in (("add-twice.add", 6), ("add-twice.add-2", 11)):
        update = rec.last(inner)
        assert update.parent_task_id == "add-twice"
        assert update.display_name == inner.split(".")[1]
        assert update.result == TaskResult({"Output": expected}, {})
    assert rec.last("add-twice").result == TaskResult({"Output": 11}, {})
    assert rec.last("add").parent_task_id == ""
    assert rec.last("add").input_parameters == {"a": 11, "b": 10}
    assert rec.last("add").result == TaskResult({"Output": 21}, {})
    # The DAG task succeeds after its children and before its downstream task starts.
    order = [(u.task_id, u.state) for u in rec.updates]
    assert order.index(("add-twice", TaskState.SUCCEEDED)) > order.index(
        ("add-twice.add-2", TaskState.SUCCEEDED)
    )
    assert order.index(("add", TaskState.RUNNING)) > order.index(("add-twice", TaskState.SUCCEEDED))


# -- failures -----------------------------------------------------------------------------------


async def test_failing_pipeline(executor, compiled):
    outcome, rec = await run(executor, compiled["failing-pipeline"], {"message": "kaboom 42"})
    assert outcome.state == TaskState.FAILED
    assert "exit code 1" in outcome.error and "RuntimeError: kaboom 42" in outcome.error
    assert rec.states("fail") == [TaskState.RUNNING, TaskState.FAILED]
    failed = rec.last("fail")
    assert failed.exit_code == 1
    assert failed.error.startswith("exit code 1")
    assert "RuntimeError: kaboom 42" in failed.error
    assert len(failed.error.splitlines()) <= 21
    assert any("RuntimeError: kaboom 42" in line for line in rec.logs["fail"])


@dsl.component(base_image=BASE_IMAGE)
def fail_now(message: str) -> str:
    raise RuntimeError(message)


@dsl.component(base_image=BASE_IMAGE)
def slow_echo(message: str, seconds: float) -> str:
    import time

    time.sleep(seconds)
    return message


@dsl.pipeline(name="fail-fast")
def fail_fast_pipeline():
    fail_now(message="early")
    slow = slow_echo(message="sibling", seconds=1.0)
    slow_echo(message="never", seconds=0.0).after(slow)


async def test_failure_lets_running_siblings_finish_and_starts_nothing_new(executor, tmp_path):
    spec = compile_pipeline(fail_fast_pipeline, tmp_path / "fail-fast.yaml")
    outcome, rec = await run(executor, spec, {})
    assert outcome.state == TaskState.FAILED and "RuntimeError: early" in outcome.error
    assert rec.states("slow-echo") == [TaskState.RUNNING, TaskState.SUCCEEDED]
    assert rec.states("slow-echo-2") == []  # not started, nothing reported


# -- terminate ----------------------------------------------------------------------------------


@dsl.component(base_image=BASE_IMAGE)
def sleeper(seconds: int) -> str:
    import os
    import time

    print(f"sleeper pid {os.getpid()}", flush=True)
    time.sleep(seconds)
    return "woke up"


@dsl.pipeline(name="sleepy")
def sleepy_pipeline(seconds: int = 30):
    slept = sleeper(seconds=seconds)
    slow_echo(message=slept.output, seconds=0.0)


async def test_terminate_cancels_quickly_and_kills_processes(executor, tmp_path):
    spec = compile_pipeline(sleepy_pipeline, tmp_path / "sleepy.yaml")
    recorder = Recorder()
    running = asyncio.create_task(executor.execute(RunContext("run-t", spec, {"seconds": 30}), recorder))
    await recorder.wait_for(
        lambda: any(line.startswith("sleeper pid ") for line in recorder.logs.get("sleeper", []))
    )
    pid = int(next(l for l in recorder.logs["sleeper"] if l.startswith("sleeper pid ")).split()[-1])
    assert alive(pid)
    started = time.monotonic()
    await executor.terminate("run-t")
    outcome = await asyncio.wait_for(running, timeout=10)
    assert time.monotonic() - started < 10
    assert outcome.state == TaskState.CANCELED
    assert rec_states(recorder, "sleeper") == [TaskState.RUNNING, TaskState.CANCELED]
    assert rec_states(recorder, "slow-echo") == []
    for _ in range(50):
        if not alive(pid):
            break
        await asyncio.sleep(0.1)
    assert not alive(pid)
    await executor.terminate("run-t")  # finished runs: nothing to do


async def test_a_task_terminated_while_it_is_being_started_does_not_run(executor, tmp_path):
    """TerminateRun between a task's RUNNING report and its process start: the process that
    starts anyway is killed at once, not left to run for a minute."""
    spec = compile_pipeline(sleepy_pipeline, tmp_path / "sleepy.yaml")

    class TerminateOnRunning(Recorder):
        async def task_changed(self, update: TaskUpdate) -> None:
            await super().task_changed(update)
            if update.state == TaskState.RUNNING:
                await executor.terminate("run-s")

    recorder = TerminateOnRunning()
    outcome = await asyncio.wait_for(executor.execute(RunContext("run-s", spec, {"seconds": 60}), recorder), timeout=30)
    assert outcome.state == TaskState.CANCELED
    assert recorder.states("sleeper") == [TaskState.RUNNING, TaskState.CANCELED]


async def test_a_command_that_is_not_found_fails_the_task(executor, compiled, tmp_path):
    spec = compiled["instant-pipeline"]
    container = spec["deploymentSpec"]["executors"]["exec-noop"]["container"]
    broken = {**spec, "deploymentSpec": {"executors": {"exec-noop": {"container": {**container, "command": ["no-such-command"]}}}}}
    outcome, rec = await run(executor, broken, {"label": "x", "gate": ""})
    assert outcome.state == TaskState.FAILED
    assert rec.last("noop").error.startswith("could not start 'no-such-command': not found on the task's PATH ")


def rec_states(recorder: Recorder, task_id: str) -> list[TaskState]:
    return recorder.states(task_id)


# -- retry / resume -----------------------------------------------------------------------------


async def test_previous_results_are_reused(executor, compiled):
    previous = {"add": TaskResult({"Output": 100}, {})}
    outcome, rec = await run(executor, compiled["add-pipeline"], {"a": 1, "b": 2}, previous)
    assert outcome.state == TaskState.SUCCEEDED
    assert rec.states("add") == [TaskState.SUCCEEDED]  # not run again
    assert rec.last("add").result == previous["add"]
    assert "add" not in rec.logs
    assert rec.last("add-2").input_parameters == {"a": 100, "b": 2}
    assert rec.last("add-2").result == TaskResult({"Output": 102}, {})


async def test_previous_results_inside_sub_pipelines(executor, compiled):
    previous = {"add-twice.add": TaskResult({"Output": 50}, {})}
    outcome, rec = await run(executor, compiled["nested-pipeline"], {"x": 1, "y": 5}, previous)
    assert outcome.state == TaskState.SUCCEEDED
    assert rec.states("add-twice.add") == [TaskState.SUCCEEDED]
    assert "add-twice.add" not in rec.logs
    assert rec.last("add").result == TaskResult({"Output": 65}, {})


@dsl.component(base_image=BASE_IMAGE)
def flaky(marker: str) -> str:
    import os

    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("first attempt fails")
    return "second attempt"


@dsl.pipeline(name="flaky")
def flaky_pipeline(marker: str):
    flaky(marker=marker).set_retry(num_retries=2, backoff_duration="0s")


async def test_retry_policy(executor, tmp_path):
    spec = compile_pipeline(flaky_pipeline, tmp_path / "flaky.yaml")
    assert unsupported_features(spec) == []
    outcome, rec = await run(executor, spec, {"marker": str(tmp_path / "marker")})
    assert outcome.state == TaskState.SUCCEEDED, outcome.error
    assert rec.states("flaky") == [TaskState.RUNNING, TaskState.SUCCEEDED]
    assert rec.last("flaky").result == TaskResult({"Output": "second attempt"}, {})
    assert any("first attempt fails" in line for line in rec.logs["flaky"])


@dsl.component(base_image=BASE_IMAGE)
def fail_and_mark(marker: str):
    open(marker, "w").close()
    raise RuntimeError("fails every time")


@dsl.component(base_image=BASE_IMAGE)
def fail_after(marker: str, seconds: float = 0.0):
    import os
    import time

    while not os.path.exists(marker):
        time.sleep(0.05)
    time.sleep(seconds)
    raise RuntimeError("sibling failed")


@dsl.pipeline(name="dropped-retry")
def dropped_retry_pipeline(marker: str):
    # The backoff is the sibling's time to fail and be recorded: 8 s, so that a loaded CI machine
    # (two full runs failed it at 3 s) still sees the sibling fail first.
    fail_and_mark(marker=marker).set_retry(num_retries=3, backoff_duration="8s")
    fail_after(marker=marker)


@dsl.pipeline(name="retry-after-sibling-failed")
def retry_after_sibling_failed_pipeline(marker: str):
    # The sibling has failed 3 s before the first attempt fails: the retry is dropped at once.
    fail_after(marker=marker, seconds=3.0).set_retry(num_retries=3, backoff_duration="8s")
    fail_and_mark(marker=marker)


async def test_a_retry_dropped_by_fail_fast_is_not_counted(executor, tmp_path):
    """The first attempt fails; during its 8 s backoff a sibling fails, so no new task of the
    DAG starts (fail-fast), the retry included: the task had 0 retries and its log says why."""
    spec = compile_pipeline(dropped_retry_pipeline, tmp_path / "dropped.yaml")
    outcome, rec = await run(executor, spec, {"marker": str(tmp_path / "marker")})
    assert outcome.state == TaskState.FAILED
    assert rec.last("fail-and-mark").state == TaskState.FAILED and rec.last("fail-and-mark").retries == 0
    assert any("attempt 2 of 4 not started: another task of its DAG failed" in line for line in rec.logs["fail-and-mark"])


async def test_a_retry_after_a_sibling_failed_is_dropped_at_once(executor, tmp_path):
    """The sibling failed before the first attempt did: no backoff is waited, the log says why."""
    spec = compile_pipeline(retry_after_sibling_failed_pipeline, tmp_path / "after.yaml")
    outcome, rec = await run(executor, spec, {"marker": str(tmp_path / "marker")})
    assert outcome.state == TaskState.FAILED
    assert rec.last("fail-after").state == TaskState.FAILED and rec.last("fail-after").retries == 0
    logs = rec.logs["fail-after"]
    assert any("attempt 2 of 4 not started: another task of its DAG failed" in line for line in logs)
    assert not any("retrying in" in line for line in logs)


# -- what no launcher runs ---------------------------------------------------------------------


def test_unsupported_features(compiled):
    for name in ("add-pipeline", "artifact-pipeline", "nested-pipeline", "failing-pipeline", "control-flow-pipeline"):
        assert unsupported_features(compiled[name]) == [], name
    spec = compiled["add-pipeline"]
    vertex = {**spec, "deploymentSpec": {"executors": {**spec["deploymentSpec"]["executors"], "exec-resolve": {"resolver": {}}}}}
    assert unsupported_features(vertex) == ["executor 'exec-resolve' is a resolver, which only Vertex AI runs"]
    needs_data = {**spec, "root": {**spec["root"], "inputDefinitions": {"artifacts": {"data": {"artifactType": {"schemaTitle": "system.Dataset"}}}}}}
    assert unsupported_features(needs_data) == ["pipeline input artifact(s) 'data': a run can be given parameters only (as in KFP)"]


async def test_parallel_tasks(tmp_path):
    @dsl.pipeline(name="parallel")
    def parallel_pipeline():
        for index in range(3):
            slow_echo(message=str(index), seconds=1.0)

    spec = compile_pipeline(parallel_pipeline, tmp_path / "parallel.yaml")
    async with started(Orchestrator(LocalLauncher(tmp_path / "a", tmp_path / "work", max_parallel_tasks=3))) as executor:
        outcome, rec = await run(executor, spec, {})
    assert outcome.state == TaskState.SUCCEEDED
    running = {u.task_id: u.time_us for u in rec.updates if u.state == TaskState.RUNNING}
    done = {u.task_id: u.time_us for u in rec.updates if u.state == TaskState.SUCCEEDED}
    assert len(running) == 3
    # All three started before any finished.
    assert max(running.values()) < min(done.values())


# -- the run's directory: names, links and uris never take the server outside it ---------------


async def test_a_task_named_like_a_path_never_empties_that_directory(executor, tmp_path):
    """The issue's example, reaching the executor without upload validation (a spec stored before
    it): the task id must be one file name below the run's directory, or the task fails."""
    victim = victim_dir(tmp_path)
    task = "../" * 30 + str(victim).lstrip("/")
    outcome, rec = await run(executor, container_spec(task, ["sh", "-c", "echo ran"]), {})
    assert outcome.state == TaskState.FAILED
    assert "could not prepare the task's artifact directory" in outcome.error and "not one file name" in outcome.error
    assert_untouched(victim)
    assert "ran" not in rec.logs.get(task, [])


async def test_an_output_named_like_a_path_is_never_read(executor, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("the server's secret")
    outputs = {"parameters": {str(secret): {"parameterType": "STRING"}}}
    outcome, rec = await run(executor, container_spec("x", ["true"], outputs), {})
    assert outcome.state == TaskState.FAILED and "could not prepare the task's outputs" in outcome.error
    assert all(update.result is None for update in rec.updates)
    assert "the server's secret" not in repr(rec.updates)


async def test_a_retried_task_that_made_its_directory_a_link_empties_only_the_link(executor, tmp_path):
    victim = victim_dir(tmp_path, "sub")
    command = ["sh", "-c", REPLACE_OWN_DIRECTORY, "sh", "{{$.outputs.artifacts['out'].path}}", str(victim), str(tmp_path / "marker")]
    outputs = {"artifacts": {"out": {"artifactType": {"schemaTitle": "system.Artifact"}}}}
    outcome, rec = await run(executor, container_spec("x", command, outputs, retries=1), {}, run_id="run-l")
    assert outcome == RunOutcome(TaskState.SUCCEEDED, "")
    assert_untouched(victim, "sub")
    task_dir = tmp_path / "artifacts" / "run-l" / "x"
    assert not task_dir.is_symlink() and (task_dir / "out").read_text() == "second attempt\n"
    assert rec.last("x").result.output_artifacts["out"][0].uri == str(task_dir / "out")


async def test_a_run_directory_made_a_link_is_never_followed(executor, tmp_path):
    """A task replaces the whole run directory with a link; the next task's directory would be
    `<victim>/<task>`: the server refuses to go through the link, and that task fails."""
    victim = victim_dir(tmp_path, "second")
    spec = container_spec("first", ["sh", "-c", REPLACE_RUN_DIRECTORY, "sh", "{{$.pipeline_root}}", str(victim)])
    spec["root"]["dag"]["tasks"]["second"] = {"componentRef": {"name": "comp-y"}, "dependentTasks": ["first"]}
    spec["components"]["comp-y"] = {"executorLabel": "exec-y"}
    spec["deploymentSpec"]["executors"]["exec-y"] = {"container": {"image": "busybox", "command": ["sh", "-c", "echo ran"]}}
    outcome, rec = await run(executor, spec, {}, run_id="run-r")
    assert outcome.state == TaskState.FAILED
    assert "is a symbolic link; the server does not follow links a task made" in rec.last("second").error
    assert rec.states("first") == [TaskState.RUNNING, TaskState.SUCCEEDED]
    assert_untouched(victim, "second")
    assert "ran" not in rec.logs.get("second", [])


@dsl.component(base_image=BASE_IMAGE)
def relocate(how: str, outside: str, model: Output[Model]):
    import os

    if how == "absolute":
        model.uri = outside
    elif how == "dotdot":
        model.uri = model.path + "/.." * 20 + outside
    elif how == "link":
        os.symlink(outside, model.path)
    elif how == "relative":
        model.uri = "model.bin"
    elif how == "remote":
        model.uri = "gs://bucket/model"
    elif how == "link-inside-the-run":
        with open(model.path + ".real", "w") as file:
            file.write("weights")
        os.symlink(model.path + ".real", model.path)


@dsl.pipeline(name="relocate")
def relocate_pipeline(how: str, outside: str):
    relocate(how=how, outside=outside)


@pytest.mark.parametrize("how", ["absolute", "dotdot", "link", "relative", "remote"])
async def test_an_artifact_uri_outside_the_run_fails_the_task(executor, tmp_path, how):
    outside = victim_dir(tmp_path)
    spec = compile_pipeline(relocate_pipeline, tmp_path / "relocate.yaml")
    outcome, rec = await run(executor, spec, {"how": how, "outside": str(outside)})
    assert outcome.state == TaskState.FAILED, how
    failed = rec.last("relocate")
    assert failed.state == TaskState.FAILED and failed.exit_code == 0 and failed.result is None
    assert failed.error.startswith("output artifact 'model' has uri ")
    assert "which is outside the run's artifact directory" in failed.error


async def test_a_link_between_files_of_the_run_is_the_tasks_business(executor, tmp_path):
    spec = compile_pipeline(relocate_pipeline, tmp_path / "relocate.yaml")
    outcome, rec = await run(executor, spec, {"how": "link-inside-the-run", "outside": ""}, run_id="run-i")
    assert outcome.state == TaskState.SUCCEEDED, outcome.error
    model, = rec.last("relocate").result.output_artifacts["model"]
    assert model.uri == str(tmp_path / "artifacts" / "run-i" / "relocate" / "model")
    assert Path(model.uri).read_text() == "weights"


@pytest.mark.parametrize("output", ["parameter file", "executor output file"])
@pytest.mark.parametrize(("link", "problem"), [("-s", "is a symbolic link"), ("", "has 2 hard links")], ids=["symbolic", "hard"])
async def test_an_output_file_made_a_link_to_a_secret_is_never_read(executor, tmp_path, output, link, problem):
    secret = tmp_path / "secret.json"
    secret.write_text('{"parameterValues": {"o": "the server\'s secret"}}')
    target = "{{$.outputs.parameters['o'].output_file}}" if output == "parameter file" else "{{$.outputs.output_file}}"
    command = ["sh", "-c", f'mkdir -p "$(dirname "$1")" && ln {link} "$2" "$1"', "sh", target, str(secret)]
    outcome, rec = await run(executor, container_spec("x", command, {"parameters": {"o": {"parameterType": "STRING"}}}), {})
    assert outcome.state == TaskState.FAILED
    failed = rec.last("x")
    assert failed.exit_code == 0 and failed.result is None and problem in failed.error, failed.error
    assert "secret'" not in repr(rec.updates) and "the server's secret" not in repr(rec.updates)


@pytest.mark.parametrize(
    ("executor_output", "problem"),
    [
        ("[1]", "the executor output file must be a JSON object, got list"),
        ('{"parameterValues": [1]}', "parameterValues in the executor output file must be a JSON object, got list"),
        ('{"artifacts": {"out": {"artifacts": "x"}}}', "artifacts['out'].artifacts in the executor output file must be a list of objects"),
        ('{"artifacts": {"out": {"artifacts": [{"metadata": 3}]}}}', "artifacts['out'] metadata must be a JSON object, got int"),
        ('{"artifacts": {"out": {"artifacts": [{"uri": 5}]}}}', "output artifact 'out' has uri 5, which is outside the run's artifact directory"),
    ],
    ids=["list", "parameter-values", "artifact-list", "metadata", "uri-type"],
)
async def test_a_malformed_executor_output_fails_the_task_saying_why(executor, executor_output, problem):
    command = ["sh", "-c", 'mkdir -p "$(dirname "$1")" && printf %s "$2" > "$1"', "sh", "{{$.outputs.output_file}}", executor_output]
    outputs = {"artifacts": {"out": {"artifactType": {"schemaTitle": "system.Artifact"}}}}
    outcome, rec = await run(executor, container_spec("x", command, outputs), {})
    assert outcome.state == TaskState.FAILED
    assert rec.last("x").error.startswith(problem), rec.last("x").error
