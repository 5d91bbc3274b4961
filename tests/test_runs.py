"""RunService through a real server: kfp-compiled pipelines executed as real subprocesses."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from kfpgrpc.config import ServerConfig
from kfpgrpc.server import KfpGrpcServer
from kfpgrpc.v1 import common_pb2, experiment_pb2, pipeline_pb2, run_pb2
from tests.support import (
    ServerProcess,
    Stubs,
    create,
    field_violations,
    finished,
    is_running,
    rpc_error,
    inline_run,
    plain,
    run_of,
    running,
    state_names,
    struct,
    task,
    task_processes,
    upload,
    wait_until,
    alive,
    eventually,
)

Spec = dict[str, Any]


async def test_run_of_a_version_passes_parameters_between_tasks(stubs: Stubs, compiled: dict[str, Spec]) -> None:
    version = await upload(stubs, "add", compiled["add-pipeline"])
    created = await create(stubs, run_of(version, "add 1 and 2", a=1, b=2))
    assert created.state == common_pb2.PENDING
    assert created.pipeline_version_reference.pipeline_version_id == version.pipeline_version_id

    run = await finished(stubs, created)
    assert run.state == common_pb2.SUCCEEDED, run.error
    assert state_names(run.state_history) == ["PENDING", "RUNNING", "SUCCEEDED"]
    assert run.finished_at.ToMicroseconds() >= run.created_at.ToMicroseconds()
    first, second = task(run, "add"), task(run, "add-2")
    assert plain(first.input_parameters) == {"a": 1, "b": 2} and plain(first.output_parameters)["Output"] == 3
    assert plain(second.input_parameters) == {"a": 3, "b": 2} and plain(second.output_parameters)["Output"] == 5
    for detail in (first, second):
        assert state_names(detail.state_history) == ["RUNNING", "SUCCEEDED"]
        assert detail.image == "python:3.11" and detail.exit_code == 0 and not detail.error.message
        assert detail.start_time.ToMicroseconds() <= detail.end_time.ToMicroseconds()
    # Defaults are applied and reported with the given values.
    parameters = json_format.MessageToDict(run.runtime_config)["parameters"]
    assert parameters == {"a": 1, "b": 2, "label": "sum", "verbose": False, "tags": ["demo"], "options": {"retries": 1}}
    assert run.experiment_id  # the Default experiment
    got = await stubs.runs.GetRun(run_pb2.GetRunRequest(run_id=run.run_id))
    assert got == run


async def test_run_by_pipeline_id_uses_the_latest_version(stubs: Stubs, compiled: dict[str, Spec]) -> None:
    first = await upload(stubs, "add", compiled["add-pipeline"])
    second = await stubs.pipelines.CreatePipelineVersion(
        pipeline_pb2.CreatePipelineVersionRequest(
            pipeline_id=first.pipeline_id,
            pipeline_version=pipeline_pb2.PipelineVersion(pipeline_spec=struct(compiled["add-pipeline"])),
        )
    )
    run = run_pb2.Run(
        display_name="latest", pipeline_version_reference=common_pb2.PipelineVersionReference(pipeline_id=first.pipeline_id)
    )
    created = await create(stubs, run)
    assert created.pipeline_version_reference.pipeline_version_id == second.pipeline_version_id
    assert (await finished(stubs, created)).state == common_pb2.SUCCEEDED


async def test_inline_spec_run_returns_its_spec_from_get_only(stubs: Stubs, compiled: dict[str, Spec]) -> None:
    spec = compiled["add-pipeline"]
    created = await create(stubs, inline_run(spec, "inline", a=2))
    assert json_format.MessageToDict(created.pipeline_spec) == spec
    run = await finished(stubs, created)
    assert run.state == common_pb2.SUCCEEDED and plain(task(run, "add-2").output_parameters)["Output"] == 6
    got = await stubs.runs.GetRun(run_pb2.GetRunRequest(run_id=run.run_id))
    assert json_format.MessageToDict(got.pipeline_spec) == spec
    listed = await stubs.runs.ListRuns(run_pb2.ListRunsRequest())
    (item,) = listed.runs
    assert item.WhichOneof("pipeline_source") == "pipeline_spec" and not item.pipeline_spec.fields


async def test_artifacts_pass_between_tasks_with_their_metadata(stubs: Stubs, compiled: dict[str, Spec], data_dir: Path) -> None:
    version = await upload(stubs, "artifacts", compiled["artifact-pipeline"])
    run = await finished(stubs, await create(stubs, run_of(version, text="some text")))
    assert run.state == common_pb2.SUCCEEDED, run.error
    written = task(run, "write-artifacts")
    artifacts = {a.name: a for a in written.output_artifacts}
    assert set(artifacts) == {"dataset", "model"}
    assert artifacts["dataset"].schema_title == "system.Dataset" and artifacts["model"].schema_title == "system.Model"
    for artifact in artifacts.values():
        assert json_format.MessageToDict(artifact.metadata) == {"pushed": 1}
        assert Path(artifact.uri).is_relative_to(data_dir / "artifacts" / run.run_id / "write-artifacts")
    assert Path(artifacts["dataset"].uri).read_text() == "some text"
    assert plain(task(run, "read-dataset").output_parameters)["Output"] == "some text"


async def test_pipeline_root_puts_artifacts_there(compiled: dict[str, Spec], data_dir: Path, tmp_path: Path) -> None:
    async with running(data_dir, allowed_pipeline_roots=(tmp_path,)) as (_, stubs):  # see tests/test_run_directory.py
        run = inline_run(compiled["artifact-pipeline"], text="rooted")
        run.runtime_config.pipeline_root = f"file://{tmp_path}/root"
        done = await finished(stubs, await create(stubs, run))
    assert done.runtime_config.pipeline_root == f"{tmp_path}/root"
    dataset = next(a for a in task(done, "write-artifacts").output_artifacts if a.name == "dataset")
    assert dataset.uri.startswith(f"{tmp_path}/root/{done.run_id}/") and Path(dataset.uri).read_text() == "rooted"


async def test_sub_pipeline_tasks_nest_under_their_dag_task(stubs: Stubs, compiled: dict[str, Spec]) -> None:
    version = await upload(stubs, "nested", compiled["nested-pipeline"])
    run = await finished(stubs, await create(stubs, run_of(version, x=1)))
    assert run.state == common_pb2.SUCCEEDED, run.error
    dag = task(run, "add-twice")
    assert [c.task_id for c in dag.child_tasks] == ["add-twice.add", "add-twice.add-2"]
    assert plain(dag.output_parameters)["Output"] == 11 and not dag.image
    assert task(run, "add-twice.add-2").parent_task_id == "add-twice"
    assert plain(task(run, "add").output_parameters)["Output"] == 21 and task(run, "add").parent_task_id == ""


async def test_failing_task_fails_the_run_with_its_error_and_log_tail(stubs: Stubs, compiled: dict[str, Spec]) -> None:
    version = await upload(stubs, "failing", compiled["failing-pipeline"])
    run = await finished(stubs, await create(stubs, run_of(version)))
    assert run.state == common_pb2.FAILED
    assert state_names(run.state_history) == ["PENDING", "RUNNING", "FAILED"]
    assert run.error.code == grpc.StatusCode.UNKNOWN.value[0] and "this task always fails" in run.error.message
    failed = task(run, "fail")
    assert failed.state == common_pb2.FAILED and failed.exit_code == 1
    assert "exit code 1" in failed.error.message and "RuntimeError: this task always fails" in failed.error.message
    # The lines kept start at the traceback, not in the executor input the kfp executor logs.
    assert failed.error.message.splitlines()[1] == "Traceback (most recent call last):", failed.error.message
    assert run.finished_at.seconds


async def test_create_run_rejects_bad_input_naming_each_field(stubs: Stubs, compiled: dict[str, Spec]) -> None:
    version = await upload(stubs, "nested", compiled["nested-pipeline"])
    bad = run_of(version, "", y="five", z=1)
    bad.runtime_config.pipeline_root = "gs://bucket/root"
    bad.artifacts.add(name="", path="")
    error = await rpc_error(create(stubs, bad))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(error)) == {
        "run.display_name",
        "run.runtime_config.pipeline_root",
        "run.artifacts[0].name",
        "run.artifacts[0].path",
    }
    wrong_parameters = run_of(version, y="five", z=1)
    error = await rpc_error(create(stubs, wrong_parameters))
    assert set(field_violations(error)) == {
        "run.runtime_config.parameters.x",  # required, no default
        "run.runtime_config.parameters.y",  # not an integer
        "run.runtime_config.parameters.z",  # not an input
    }
    error = await rpc_error(create(stubs, run_pb2.Run(display_name="no source")))
    assert "run.pipeline_version_reference.pipeline_id" in field_violations(error)
    error = await rpc_error(create(stubs, inline_run({"root": {}}, x=1)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert all(name.startswith("run.pipeline_spec") for name in field_violations(error))


async def test_create_run_of_missing_things_is_not_found_or_failed_precondition(stubs: Stubs, compiled: dict[str, Spec]) -> None:
    version = await upload(stubs, "add", compiled["add-pipeline"])
    ghost_pipeline = run_pb2.Run(display_name="r", pipeline_version_reference=common_pb2.PipelineVersionReference(pipeline_id="nope"))
    assert (await rpc_error(create(stubs, ghost_pipeline))).code() == grpc.StatusCode.NOT_FOUND
    ghost_version = run_of(version)
    ghost_version.pipeline_version_reference.pipeline_version_id = "nope"
    assert (await rpc_error(create(stubs, ghost_version))).code() == grpc.StatusCode.NOT_FOUND
    other = await upload(stubs, "other", compiled["add-pipeline"])
    mixed = run_of(version)
    mixed.pipeline_version_reference.pipeline_version_id = other.pipeline_version_id
    error = await rpc_error(create(stubs, mixed))
    assert "run.pipeline_version_reference.pipeline_version_id" in field_violations(error)
    empty = await stubs.pipelines.CreatePipeline(pipeline_pb2.CreatePipelineRequest(pipeline=pipeline_pb2.Pipeline(name="empty")))
    no_versions = run_pb2.Run(display_name="r", pipeline_version_reference=common_pb2.PipelineVersionReference(pipeline_id=empty.pipeline_id))
    error = await rpc_error(create(stubs, no_versions))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "no versions" in error.details()
    in_ghost_experiment = run_of(version)
    in_ghost_experiment.experiment_id = "nope"
    assert (await rpc_error(create(stubs, in_ghost_experiment))).code() == grpc.StatusCode.NOT_FOUND


async def test_control_flow_runs_to_its_values(stubs: Stubs, compiled: dict[str, Spec]) -> None:
    """ParallelFor with Collected, If/Elif/Else with OneOf, an ExitHandler with its final
    status: the pipeline that used to be refused runs (test_conditions, test_loops and
    test_exit_handlers have the rest, compiled by each kfp version)."""
    version = await upload(stubs, "control-flow", compiled["control-flow-pipeline"])
    run = await finished(stubs, await create(stubs, run_of(version, n=3)))
    assert run.state == common_pb2.SUCCEEDED, run.error.message
    tasks = {t.task_id: t for t in run.run_details.task_details}
    loop = next(t for t in tasks.values() if t.HasField("iteration_count"))
    assert loop.iteration_count == 3
    doubled = [t for t in tasks.values() if t.display_name == "add"]
    assert sorted(int(t.output_parameters["Output"].number_value) for t in doubled) == [2, 4, 6]
    assert {t.parent_task_id for t in doubled} == {f"{loop.task_id}[{i}]" for i in range(3)}
    assert [tasks[f"{loop.task_id}[{i}]"].iteration_index for i in range(3)] == [0, 1, 2]
    total = next(t for t in tasks.values() if t.display_name == "total")
    assert total.output_parameters["Output"].number_value == 12
    skipped = sorted(t.task_id for t in tasks.values() if t.state == common_pb2.SKIPPED)
    assert len(skipped) == 2 and all(task_id.startswith("condition-branches-") for task_id in skipped)
    echoed = [t for t in tasks.values() if t.display_name.startswith("echo")]
    assert [t.output_parameters["Output"].string_value for t in echoed] == ["odd"]
    status = next(t for t in tasks.values() if t.display_name == "report-status")
    assert status.input_parameters["status"].struct_value["state"] == "COMPLETE"


async def test_terminate_mid_run_cancels_the_running_task(stubs: Stubs, compiled: dict[str, Spec], tmp_path: Path) -> None:
    version = await upload(stubs, "gated", compiled["gated-pipeline"])
    created = await create(stubs, run_of(version, counter=str(tmp_path / "count"), gate=str(tmp_path / "never")))
    await wait_until(stubs.runs, created.run_id, is_running("wait-for"))
    await stubs.runs.TerminateRun(run_pb2.TerminateRunRequest(run_id=created.run_id))
    await stubs.runs.TerminateRun(run_pb2.TerminateRunRequest(run_id=created.run_id))  # again: no effect
    run = await finished(stubs, created)
    assert run.state == common_pb2.CANCELED
    assert state_names(run.state_history) == ["PENDING", "RUNNING", "CANCELING", "CANCELED"]
    assert run.error.code == grpc.StatusCode.CANCELLED.value[0]
    assert task(run, "record").state == common_pb2.SUCCEEDED
    assert task(run, "wait-for").state == common_pb2.CANCELED
    assert not task_processes(run.run_id)
    error = await rpc_error(stubs.runs.TerminateRun(run_pb2.TerminateRunRequest(run_id=run.run_id)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "CANCELED" in error.details()


async def test_retry_reruns_only_the_tasks_that_did_not_succeed(stubs: Stubs, compiled: dict[str, Spec], tmp_path: Path) -> None:
    counter, gate = tmp_path / "count", tmp_path / "gate"
    version = await upload(stubs, "retryable", compiled["retryable-pipeline"])
    failed = await finished(stubs, await create(stubs, run_of(version, counter=str(counter), gate=str(gate))))
    assert failed.state == common_pb2.FAILED and task(failed, "require").state == common_pb2.FAILED
    error = await rpc_error(stubs.runs.RetryRun(run_pb2.RetryRunRequest(run_id="nope")))
    assert error.code() == grpc.StatusCode.NOT_FOUND

    gate.touch()
    await stubs.runs.RetryRun(run_pb2.RetryRunRequest(run_id=failed.run_id))
    run = await finished(stubs, failed)
    assert run.state == common_pb2.SUCCEEDED and not run.error.message
    assert state_names(run.state_history) == ["PENDING", "RUNNING", "FAILED", "PENDING", "RUNNING", "SUCCEEDED"]
    assert counter.read_text() == "ran\n"  # `record` ran once: its result was reused
    assert state_names(task(run, "record").state_history) == ["RUNNING", "SUCCEEDED"]
    assert state_names(task(run, "require").state_history) == ["RUNNING", "FAILED", "RUNNING", "SUCCEEDED"]
    assert plain(task(run, "require").output_parameters)["Output"] == 2
    error = await rpc_error(stubs.runs.RetryRun(run_pb2.RetryRunRequest(run_id=run.run_id)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "SUCCEEDED" in error.details()


def alternating(version: Any, index: int, experiment_id: str) -> run_pb2.Run:
    """Run "run-<index>" of `version`, in the experiment `experiment_id` when index is odd."""
    run = run_of(version, f"run-{index}")
    if index % 2:
        run.experiment_id = experiment_id
    return run


async def test_list_runs_filters_sorts_and_pages(stubs: Stubs, compiled: dict[str, Spec]) -> None:
    version = await upload(stubs, "add", compiled["add-pipeline"])
    experiment = await stubs.experiments.CreateExperiment(
        experiment_pb2.CreateExperimentRequest(experiment=experiment_pb2.Experiment(display_name="exp"))
    )
    created = [await create(stubs, alternating(version, index, experiment.experiment_id)) for index in range(5)]
    failing = await create(stubs, inline_run(compiled["failing-pipeline"], "run-failing"))
    for run in [*created, failing]:
        await finished(stubs, run)

    in_experiment = await stubs.runs.ListRuns(run_pb2.ListRunsRequest(experiment_id=experiment.experiment_id))
    assert [r.display_name for r in in_experiment.runs] == ["run-1", "run-3"] and in_experiment.total_size == 2
    by_state = await stubs.runs.ListRuns(
        run_pb2.ListRunsRequest(filter=json.dumps({"predicates": [{"key": "state", "operation": "EQUALS", "string_value": "FAILED"}]}))
    )
    assert [r.display_name for r in by_state.runs] == ["run-failing"]
    assert by_state.runs[0].run_details.task_details[0].state == common_pb2.FAILED  # lists carry tasks
    since_third = json.dumps(
        {"predicates": [
            {"key": "created_at", "operation": "GREATER_THAN_EQUALS", "timestamp_value": created[3].created_at.ToJsonString()},
            {"key": "finished_at", "operation": "GREATER_THAN", "long_value": 0},
        ]}
    )
    recent = await stubs.runs.ListRuns(run_pb2.ListRunsRequest(filter=since_third, sort_by="created_at desc"))
    assert [r.display_name for r in recent.runs] == ["run-failing", "run-4", "run-3"]
    seen, token = [], ""
    while True:
        page = await stubs.runs.ListRuns(run_pb2.ListRunsRequest(page_size=2, sort_by="display_name desc", page_token=token))
        seen += [r.display_name for r in page.runs]
        assert page.total_size == 6
        if not (token := page.next_page_token):
            break
    assert seen == ["run-failing", "run-4", "run-3", "run-2", "run-1", "run-0"]
    error = await rpc_error(stubs.runs.ListRuns(run_pb2.ListRunsRequest(sort_by="state")))
    assert "sort_by" in field_violations(error)


async def test_archive_unarchive_and_archived_experiments(stubs: Stubs, compiled: dict[str, Spec]) -> None:
    version = await upload(stubs, "add", compiled["add-pipeline"])
    run = await finished(stubs, await create(stubs, run_of(version)))
    await stubs.runs.ArchiveRun(run_pb2.ArchiveRunRequest(run_id=run.run_id))
    assert (await stubs.runs.GetRun(run_pb2.GetRunRequest(run_id=run.run_id))).storage_state == run_pb2.Run.ARCHIVED
    archived_filter = json.dumps({"predicates": [{"key": "storage_state", "operation": "EQUALS", "string_value": "ARCHIVED"}]})
    assert (await stubs.runs.ListRuns(run_pb2.ListRunsRequest(filter=archived_filter))).total_size == 1
    await stubs.runs.UnarchiveRun(run_pb2.UnarchiveRunRequest(run_id=run.run_id))
    assert (await stubs.runs.GetRun(run_pb2.GetRunRequest(run_id=run.run_id))).storage_state == run_pb2.Run.AVAILABLE
    error = await rpc_error(stubs.runs.ArchiveRun(run_pb2.ArchiveRunRequest(run_id="nope")))
    assert error.code() == grpc.StatusCode.NOT_FOUND

    experiment = await stubs.experiments.CreateExperiment(
        experiment_pb2.CreateExperimentRequest(experiment=experiment_pb2.Experiment(display_name="exp"))
    )
    in_experiment = run_of(version)
    in_experiment.experiment_id = experiment.experiment_id
    kept = await finished(stubs, await create(stubs, in_experiment))
    error = await rpc_error(stubs.experiments.DeleteExperiment(experiment_pb2.DeleteExperimentRequest(experiment_id=experiment.experiment_id)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "1 run" in error.details()
    await stubs.experiments.ArchiveExperiment(experiment_pb2.ArchiveExperimentRequest(experiment_id=experiment.experiment_id))
    assert (await stubs.runs.GetRun(run_pb2.GetRunRequest(run_id=kept.run_id))).storage_state == run_pb2.Run.ARCHIVED
    error = await rpc_error(create(stubs, in_experiment))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "archived" in error.details()
    got = await stubs.experiments.GetExperiment(experiment_pb2.GetExperimentRequest(experiment_id=experiment.experiment_id))
    assert got.last_run_created_at == kept.created_at


async def test_total_size_stays_exact_through_runs_states_archives_and_deletes(stubs: Stubs, compiled: dict[str, Spec]) -> None:
    """total_size is summed from counts kept by triggers (store/listing.py Counts) for filters
    on experiment, storage state and state, and counted for others: either way it equals the
    runs the list holds, in all runs and in one experiment, as runs start, end, are archived,
    unarchived and deleted, and as their experiment is archived."""
    version = await upload(stubs, "add", compiled["add-pipeline"])
    experiment = await stubs.experiments.CreateExperiment(
        experiment_pb2.CreateExperimentRequest(experiment=experiment_pb2.Experiment(display_name="counted"))
    )

    def where(*predicates: dict[str, Any]) -> str:
        return json.dumps({"predicates": list(predicates)})

    available = {"key": "storage_state", "operation": "EQUALS", "string_value": "AVAILABLE"}
    filters = [
        "", where(available), where({"key": "storage_state", "operation": "EQUALS", "string_value": "ARCHIVED"}),
        where(available, {"key": "state", "operation": "EQUALS", "string_value": "FAILED"}),
        where({"key": "state", "operation": "NOT_EQUALS", "string_value": "SUCCEEDED"}),
        where({"key": "state", "operation": "IN", "string_values": {"values": ["PENDING", "RUNNING", "SUCCEEDED"]}}),
        where({"key": "experiment_id", "operation": "EQUALS", "string_value": experiment.experiment_id}),
        where(available, {"key": "display_name", "operation": "IS_SUBSTRING", "string_value": "run-1"}),  # counted
    ]

    async def totals() -> list[int]:
        found = []
        for experiment_id in ("", experiment.experiment_id):
            for text in filters:
                page = await stubs.runs.ListRuns(run_pb2.ListRunsRequest(page_size=200, filter=text, experiment_id=experiment_id))
                assert page.total_size == len(page.runs) and not page.next_page_token, (experiment_id, text)
                found.append(page.total_size)
        return found

    runs = []
    for index in range(4):
        runs.append(await create(stubs, alternating(version, index, experiment.experiment_id)))
        await totals()  # while earlier runs execute
    runs.append(await create(stubs, inline_run(compiled["failing-pipeline"], "run-failing")))
    for run in runs:
        await finished(stubs, run)
    assert (await totals())[:4] == [5, 5, 0, 1]
    await stubs.runs.ArchiveRun(run_pb2.ArchiveRunRequest(run_id=runs[1].run_id))
    assert (await totals())[:4] == [5, 4, 1, 1]
    await stubs.runs.DeleteRun(run_pb2.DeleteRunRequest(run_id=runs[4].run_id))
    assert (await totals())[:4] == [4, 3, 1, 0]
    await stubs.runs.UnarchiveRun(run_pb2.UnarchiveRunRequest(run_id=runs[1].run_id))
    await stubs.experiments.ArchiveExperiment(experiment_pb2.ArchiveExperimentRequest(experiment_id=experiment.experiment_id))
    assert (await totals())[:4] == [4, 2, 2, 0]
    await stubs.runs.DeleteRun(run_pb2.DeleteRunRequest(run_id=runs[1].run_id))
    assert (await totals())[8:12] == [1, 0, 1, 0]  # the experiment's


async def test_delete_run_removes_it_with_its_logs_and_artifacts(stubs: Stubs, compiled: dict[str, Spec], data_dir: Path, tmp_path: Path) -> None:
    version = await upload(stubs, "artifacts", compiled["artifact-pipeline"])
    run = await finished(stubs, await create(stubs, run_of(version)))
    assert (data_dir / "artifacts" / run.run_id).is_dir()
    await stubs.runs.DeleteRun(run_pb2.DeleteRunRequest(run_id=run.run_id))
    assert not (data_dir / "artifacts" / run.run_id).exists()
    assert (await rpc_error(stubs.runs.GetRun(run_pb2.GetRunRequest(run_id=run.run_id)))).code() == grpc.StatusCode.NOT_FOUND
    logs = stubs.runs.StreamRunLogs(run_pb2.StreamRunLogsRequest(run_id=run.run_id))
    assert (await rpc_error(logs.read())).code() == grpc.StatusCode.NOT_FOUND
    assert (await rpc_error(stubs.runs.DeleteRun(run_pb2.DeleteRunRequest(run_id=run.run_id)))).code() == grpc.StatusCode.NOT_FOUND

    # A run still executing is terminated first.
    gated = await upload(stubs, "gated", compiled["gated-pipeline"])
    running = await create(stubs, run_of(gated, counter=str(tmp_path / "count"), gate=str(tmp_path / "never")))
    await wait_until(stubs.runs, running.run_id, is_running("wait-for"))
    await stubs.runs.DeleteRun(run_pb2.DeleteRunRequest(run_id=running.run_id))
    assert not task_processes(running.run_id)
    assert (await stubs.runs.ListRuns(run_pb2.ListRunsRequest())).total_size == 0


async def test_empty_run_ids_are_invalid(stubs: Stubs) -> None:
    calls = [
        stubs.runs.GetRun(run_pb2.GetRunRequest()),
        stubs.runs.ArchiveRun(run_pb2.ArchiveRunRequest()),
        stubs.runs.DeleteRun(run_pb2.DeleteRunRequest()),
        stubs.runs.TerminateRun(run_pb2.TerminateRunRequest()),
        stubs.runs.RetryRun(run_pb2.RetryRunRequest()),
    ]
    for call in calls:
        error = await rpc_error(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "run_id" in field_violations(error)


async def test_run_resumes_after_the_server_is_killed(containment: str, data_dir: Path, compiled: dict[str, Spec], tmp_path: Path) -> None:
    """SIGKILL mid-run: the orphaned task process is killed (in a cgroup: on restart; under a
    subreaper init: at once, with the server), the succeeded task is not executed again, the
    interrupted one runs again, and the run ends SUCCEEDED."""
    counter, gate = tmp_path / "count", tmp_path / "gate"
    server = ServerProcess(data_dir, "--task-containment", containment)
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stubs = Stubs.on(channel)
            version = await upload(stubs, "gated", compiled["gated-pipeline"])
            created = await create(stubs, run_of(version, counter=str(counter), gate=str(gate)))
            await wait_until(stubs.runs, created.run_id, is_running("wait-for"))
            orphans = await eventually(lambda: asyncio.sleep(0, task_processes(created.run_id)), bool)
    finally:
        server.kill()
    if containment == "cgroup":
        assert all(alive(pid) for pid in orphans)  # the task outlived the server
    else:
        await eventually(lambda: asyncio.sleep(0, [pid for pid in orphans if alive(pid)]), lambda left: not left)

    restarted = ServerProcess(data_dir)
    try:
        async with grpc.aio.insecure_channel(restarted.address) as channel:
            stubs = Stubs.on(channel)
            resumed = await wait_until(stubs.runs, created.run_id, is_running("wait-for"))
            assert resumed.state == common_pb2.RUNNING
            assert not set(orphans) & set(task_processes(created.run_id))
            gate.touch()
            run = await finished(stubs, created)
    finally:
        restarted.terminate()
    assert run.state == common_pb2.SUCCEEDED, run.error
    assert counter.read_text() == "ran\n"
    assert state_names(task(run, "record").state_history) == ["RUNNING", "SUCCEEDED"]
    assert state_names(task(run, "wait-for").state_history) == ["RUNNING", "RUNNING", "SUCCEEDED"]
    assert plain(task(run, "wait-for").output_parameters)["Output"] == 2
    assert state_names(run.state_history) == ["PENDING", "RUNNING", "SUCCEEDED"]


async def test_concurrent_runs_all_finish(stubs: Stubs, compiled: dict[str, Spec]) -> None:
    version = await upload(stubs, "add", compiled["add-pipeline"])
    created = await asyncio.gather(*(create(stubs, run_of(version, f"r{i}", a=i)) for i in range(8)))
    runs = await asyncio.gather(*(finished(stubs, run) for run in created))
    assert [plain(task(r, "add-2").output_parameters)["Output"] for r in runs] == [i + 4 for i in range(8)]


async def test_runs_beyond_the_executors_capacity_wait_pending(data_dir: Path, compiled: dict[str, Spec], tmp_path: Path) -> None:
    """With one task slot, two runs are in the executor's hands and the rest wait, PENDING and
    without tasks, in creation order; a waiting run can be terminated at once."""
    server = KfpGrpcServer(ServerConfig(listen="127.0.0.1:0", data_dir=data_dir, max_parallel_tasks=1))
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stubs = Stubs.on(channel)
            version = await upload(stubs, "gated", compiled["gated-pipeline"])
            gates = [tmp_path / f"gate-{i}" for i in range(4)]
            runs = [await create(stubs, run_of(version, f"r{i}", counter=str(tmp_path / f"count-{i}"), gate=str(gate)))
                    for i, gate in enumerate(gates)]
            await wait_until(stubs.runs, runs[0].run_id, is_running("wait-for"))
            waiting = await stubs.runs.GetRun(run_pb2.GetRunRequest(run_id=runs[3].run_id))
            assert waiting.state == common_pb2.PENDING and not waiting.run_details.task_details
            await stubs.runs.TerminateRun(run_pb2.TerminateRunRequest(run_id=runs[3].run_id))
            assert (await finished(stubs, runs[3])).state == common_pb2.CANCELED
            for gate in gates[:3]:
                gate.touch()
            assert [(await finished(stubs, run)).state for run in runs[:3]] == [common_pb2.SUCCEEDED] * 3
    finally:
        await server.stop()


async def test_concurrent_creates_a_bad_one_fails_alone_and_each_run_exists_once(stubs: Stubs, compiled: dict[str, Spec]) -> None:
    """Creates that arrive together share write batches: a run in an archived experiment
    (FAILED_PRECONDITION) or a missing one (NOT_FOUND) fails only its own request, and every
    acknowledged run exists exactly once and runs."""
    version = await upload(stubs, "instant", compiled["instant-pipeline"])
    archived = await stubs.experiments.CreateExperiment(
        experiment_pb2.CreateExperimentRequest(experiment=experiment_pb2.Experiment(display_name="archived"))
    )
    await stubs.experiments.ArchiveExperiment(experiment_pb2.ArchiveExperimentRequest(experiment_id=archived.experiment_id))
    requests = [run_of(version, f"r{i}") for i in range(60)]
    requests[17].experiment_id = archived.experiment_id
    requests[41].experiment_id = "nope"
    results = await asyncio.gather(*(create(stubs, request) for request in requests), return_exceptions=True)
    codes = {i: r.code() for i, r in enumerate(results) if isinstance(r, grpc.aio.AioRpcError)}
    assert codes == {17: grpc.StatusCode.FAILED_PRECONDITION, 41: grpc.StatusCode.NOT_FOUND}
    created = [r for r in results if isinstance(r, run_pb2.Run)]
    listed = await stubs.runs.ListRuns(run_pb2.ListRunsRequest(page_size=100))
    assert listed.total_size == len(listed.runs) == 58
    assert sorted(r.run_id for r in listed.runs) == sorted(r.run_id for r in created)
    assert sorted(r.display_name for r in listed.runs) == sorted(f"r{i}" for i in range(60) if i not in (17, 41))
    assert {(await finished(stubs, run)).state for run in created} == {common_pb2.SUCCEEDED}


async def test_runs_of_a_deleted_version_or_pipeline_are_refused(stubs: Stubs, compiled: dict[str, Spec]) -> None:
    """The server keeps the versions it ran (they never change) but forgets one once deleted."""
    version = await upload(stubs, "instant", compiled["instant-pipeline"])
    await create(stubs, run_of(version))  # the version is now cached
    await stubs.pipelines.DeletePipelineVersion(pipeline_pb2.DeletePipelineVersionRequest(
        pipeline_id=version.pipeline_id, pipeline_version_id=version.pipeline_version_id))
    error = await rpc_error(create(stubs, run_of(version)))
    assert error.code() == grpc.StatusCode.NOT_FOUND and version.pipeline_version_id in error.details()
    other = await upload(stubs, "other", compiled["instant-pipeline"])
    await create(stubs, run_of(other))
    await stubs.pipelines.DeletePipeline(pipeline_pb2.DeletePipelineRequest(pipeline_id=other.pipeline_id, cascade=True))
    error = await rpc_error(create(stubs, run_of(other)))
    assert error.code() == grpc.StatusCode.NOT_FOUND
