"""Runtime placeholders, pipeline workspaces and dsl.get_uri (kfp-semantics.md §7), with the values
of design12.md, and pipelines compiled by each kfp version (tests/kfp_sdks.py)."""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path
from typing import Any

from google.protobuf import timestamp_pb2

from kfpgrpc.v1 import common_pb2, recurring_run_pb2, run_pb2
from tests.support import Stubs, eventually, finished, output, run_to_end, tasks_of, upload

Spec = dict[str, Any]
SUCCEEDED = common_pb2.SUCCEEDED


def rfc3339(moment: timestamp_pb2.Timestamp) -> str:
    """KFP's form of the time placeholders: RFC 3339, UTC, whole seconds ("2026-07-08T12:34:56Z")."""
    return moment.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_runtime_placeholders_passed_as_arguments_are_substituted(stubs: Stubs, each_kfp: dict[str, Spec], data_dir: Path) -> None:
    """KFP (§7.1, §7.2), values per design12.md: PIPELINE_JOB_NAME = the run's display name;
    PIPELINE_JOB_RESOURCE_NAME and PIPELINE_JOB_ID = the run id; PIPELINE_TASK_NAME = the task key
    (not the display name set with set_display_name; inside a loop, without the index);
    PIPELINE_TASK_ID = the task_id; the create and schedule times = created_at and scheduled_at
    (= created_at for a one-off run) in RFC 3339 UTC. Substituted in input constants, also inside
    a longer string (kfp.local does; KFP's backend only substitutes a whole constant), and in a
    container component's args (that component writes a dsl.OutputPath, whose directory exists
    as KFP's launcher makes it: launcher_v2.go prepareOutputFolders). dsl.get_uri() (§7.5: the
    directory of the executor output file) gives a URI under the task's artifact directory."""
    run = await run_to_end(stubs, each_kfp["cf-placeholders"], "placeholders run")
    assert run.state == SUCCEEDED, run.error
    tasks = tasks_of(run)
    assert tasks["show"].display_name == "shown"
    created = rfc3339(run.created_at)
    assert json.loads(output(tasks["show"])) == {
        "job_name": "placeholders run",
        "job_resource_name": run.run_id,
        "job_id": run.run_id,
        "task_name": "show",
        "task_id": "show",
        "create_time": created,
        "schedule_time": created,
    }
    assert output(tasks["echo"]) == f"job-{run.run_id}"
    assert [output(tasks[f"for-loop-2[{i}].where"]) for i in range(2)] == [
        "where|for-loop-2[0].where", "where|for-loop-2[1].where"
    ]
    assert output(tasks["args-placeholders"], "out") == "placeholders run|args-placeholders"
    assert any("busybox" in note for note in tasks["args-placeholders"].notes)  # its image was not pulled

    (made,) = tasks["made-with-get-uri"].output_artifacts
    assert made.name == "Output" and dict(made.metadata) == {"made": "get_uri"}
    run_directory = data_dir / "artifacts" / run.run_id
    assert Path(made.uri).is_relative_to(run_directory) and Path(made.uri).name == "data", made.uri
    assert Path(made.uri).read_text() == "written at get_uri"
    assert output(tasks["read-text"]) == "written at get_uri"


async def test_workspace_is_a_directory_of_the_run_shared_by_its_tasks(stubs: Stubs, each_kfp: dict[str, Spec], data_dir: Path) -> None:
    """KFP (§7.4): `PipelineConfig(workspace=...)` gives the run one workspace (a PVC mounted at
    /kfp-workspace on KFP) that its tasks share; WORKSPACE_PATH is its path. design12.md: the
    directory <artifact root>/<run_id>/workspace. The workspace's PVC settings are not a refused
    Kubernetes feature."""
    run = await run_to_end(stubs, each_kfp["cf-workspace"], "workspace")
    assert run.state == SUCCEEDED, run.error
    tasks = tasks_of(run)
    workspace = data_dir / "artifacts" / run.run_id / "workspace"
    assert output(tasks["write-workspace"]) == str(workspace)
    assert output(tasks["read-workspace"]) == "left in the workspace"
    assert (workspace / "shared.txt").read_text() == "left in the workspace"


async def test_schedule_time_of_a_recurring_run_is_its_tick(stubs: Stubs, this_kfp: dict[str, Spec]) -> None:
    """KFP (§7.2): PIPELINE_JOB_SCHEDULE_TIME_UTC of a run made by a recurring run is its tick
    (scheduled_at), not its creation time; PIPELINE_JOB_NAME is the run's generated name. A
    backfilled tick of 2020 makes the two differ. (The IR does not change this: this kfp only.)"""
    version = await upload(stubs, "placeholders", this_kfp["cf-placeholders"])
    message = recurring_run_pb2.RecurringRun(
        display_name="yearly",
        mode=recurring_run_pb2.RecurringRun.ENABLE,
        pipeline_version_reference=common_pb2.PipelineVersionReference(pipeline_id=version.pipeline_id),
    )
    message.trigger.cron_schedule.cron = "0 0 1 1 *"
    created = await stubs.recurring_runs.CreateRecurringRun(recurring_run_pb2.CreateRecurringRunRequest(recurring_run=message))
    tick = timestamp_pb2.Timestamp()
    tick.FromJsonString("2020-01-01T00:00:00Z")
    await stubs.recurring_runs.BackfillRecurringRun(recurring_run_pb2.BackfillRecurringRunRequest(
        recurring_run_id=created.recurring_run_id, start_time=tick, end_time=tick
    ))
    listed = await eventually(lambda: stubs.runs.ListRuns(run_pb2.ListRunsRequest()), lambda page: page.total_size == 1)
    run = await finished(stubs, listed.runs[0])
    assert run.state == SUCCEEDED, run.error
    assert run.scheduled_at == tick and run.created_at.ToMicroseconds() > tick.ToMicroseconds()
    shown = json.loads(output(tasks_of(run)["show"]))
    assert (shown["job_name"], shown["schedule_time"], shown["create_time"]) == (
        run.display_name, "2020-01-01T00:00:00Z", rfc3339(run.created_at)
    )
