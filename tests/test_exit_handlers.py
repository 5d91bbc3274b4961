"""dsl.ExitHandler with dsl.PipelineTaskFinalStatus, and `.ignore_upstream_failure()`, as on KFP
(kfp-semantics.md §5), with pipelines compiled by each kfp version (tests/kfp_sdks.py)."""

from __future__ import annotations

import json
from typing import Any

from kfpgrpc.v1 import common_pb2, run_pb2
from tests.support import Stubs, output, run_to_end, tasks_of

Spec = dict[str, Any]
SUCCEEDED, FAILED = common_pb2.SUCCEEDED, common_pb2.FAILED


def started_after(later: run_pb2.PipelineTaskDetail, earlier: run_pb2.PipelineTaskDetail) -> bool:
    """Whether `later` started once `earlier` had ended (an order, not a duration)."""
    return later.start_time.ToMicroseconds() >= earlier.end_time.ToMicroseconds() > 0


async def test_exit_task_runs_after_a_group_that_succeeded(stubs: Stubs, each_kfp: dict[str, Spec]) -> None:
    """KFP (§5.1, §5.2): the ExitHandler group is a DAG task "exit-handler-1" (`name=` is only its
    display name); the exit task sits beside it and runs once the group is done. Its
    PipelineTaskFinalStatus (design12.md: KFP backend's JSON) has state COMPLETE (the MLMD state
    name), pipelineTaskName = the group's task key, pipelineJobResourceName = the run id, and
    error {} — which the SDK turns into error_code/error_message None."""
    run = await run_to_end(stubs, each_kfp["cf-exit-handler"], "exit ok", should_fail=False)
    assert run.state == SUCCEEDED, run.error
    tasks = tasks_of(run)
    assert set(tasks) == {"exit-handler-1", "exit-handler-1.echo", "exit-handler-1.maybe-fail", "final-status"}
    group, exit_task = tasks["exit-handler-1"], tasks["final-status"]
    assert group.state == SUCCEEDED and group.display_name == "guarded"
    assert output(tasks["exit-handler-1.maybe-fail"]) == "fine"
    assert exit_task.state == SUCCEEDED and started_after(exit_task, group)
    assert json.loads(output(exit_task)) == {
        "state": "COMPLETE",
        "pipeline_job_resource_name": run.run_id,
        "pipeline_task_name": "exit-handler-1",
        "error_code": None,
        "error_message": None,
    }


async def test_exit_task_runs_after_a_group_that_failed_and_the_run_fails(stubs: Stubs, each_kfp: dict[str, Spec]) -> None:
    """KFP (§5.2, e2e `valid/failing/pipeline_with_exit_handler`): when a task of the group fails,
    the group fails, the exit task still runs (after it) and sees state FAILED, and the run is
    FAILED even though the exit task succeeded. design12.md: the error carries a code and a
    message (KFP's backend leaves it {}; kfp.local fills it)."""
    run = await run_to_end(stubs, each_kfp["cf-exit-handler"], "exit failed", should_fail=True)
    assert run.state == FAILED
    tasks = tasks_of(run)
    assert tasks["exit-handler-1.maybe-fail"].state == FAILED
    assert "boom: asked to fail" in tasks["exit-handler-1.maybe-fail"].error.message
    group, exit_task = tasks["exit-handler-1"], tasks["final-status"]
    assert group.state == FAILED
    assert exit_task.state == SUCCEEDED and started_after(exit_task, group)
    status = json.loads(output(exit_task))
    assert (status["state"], status["pipeline_job_resource_name"], status["pipeline_task_name"]) == (
        "FAILED", run.run_id, "exit-handler-1"
    )
    assert isinstance(status["error_code"], (int, float)) and status["error_code"] == int(status["error_code"])
    assert isinstance(status["error_message"], str) and status["error_message"].strip()


async def test_ignore_upstream_failure_runs_after_a_failed_upstream_with_the_default(stubs: Stubs, each_kfp: dict[str, Spec]) -> None:
    """KFP (§5.1, §5.4, §13.1): `.ignore_upstream_failure()` (trigger strategy
    ALL_UPSTREAM_TASKS_COMPLETED) runs a task once its upstream tasks are done, even failed; an
    input whose producer failed is left out so the component's default applies (what the SDK
    promised by requiring a default; design12.md), an input from a producer that succeeded keeps
    its value. An ordinary dependant of the failed task never starts and is not reported
    (fail-fast); the run is FAILED."""
    run = await run_to_end(stubs, each_kfp["cf-ignore-upstream"], "ignore upstream", message="kaboom-42")
    assert run.state == FAILED
    tasks = tasks_of(run)
    assert set(tasks) == {"make-str", "fail-with-output", "cleanup", "cleanup-2"}
    failed = tasks["fail-with-output"]
    assert failed.state == FAILED and "kaboom-42" in failed.error.message
    for key, expected in (("cleanup", "default-msg"), ("cleanup-2", "kaboom-42")):
        assert tasks[key].state == SUCCEEDED and output(tasks[key]) == expected
        assert started_after(tasks[key], failed)
