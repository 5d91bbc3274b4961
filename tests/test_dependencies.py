"""Exposed artifacts on real pipelines, recurring runs that depend on each other (parameters
from another's artifact or their own previous run, upstream and new-version triggers, cycles,
references that cannot dangle), and the run TTL, which keeps what a dependent resolves."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import grpc
import pytest

from kfpgrpc.clock import MICROS_PER_SECOND, VirtualClock
from kfpgrpc.v1 import common_pb2, pipeline_pb2, run_pb2
from kfpgrpc.v1 import event_pb2 as events
from kfpgrpc.v1 import recurring_run_pb2 as pb
from tests.support import (
    Stubs,
    eventually,
    field_violations,
    plain,
    read_events,
    run_of,
    running,
    struct,
    upload,
    watch_to_end,
)

Spec = dict[str, Any]
HOUR = 3600 * MICROS_PER_SECOND
PUSHED = common_pb2.ArtifactSelector(name="model", path="push-model:model[pushed == 1]")


def recurring(version: pipeline_pb2.PipelineVersion, name: str, **fields: Any) -> pb.RecurringRun:
    """An enabled recurring run of the pipeline's latest version, with no schedule unless set."""
    parameters = fields.pop("parameters", {})
    return pb.RecurringRun(
        display_name=name,
        mode=fields.pop("mode", pb.RecurringRun.ENABLE),
        pipeline_version_reference=common_pb2.PipelineVersionReference(pipeline_id=version.pipeline_id),
        runtime_config=common_pb2.RuntimeConfig(parameters=dict(struct(parameters).fields)),
        **fields,
    )


def hourly(version: pipeline_pb2.PipelineVersion, name: str, **fields: Any) -> pb.RecurringRun:
    message = recurring(version, name, **fields)
    message.trigger.periodic_schedule.interval_second = 3600
    return message


async def create(stubs: Stubs, message: pb.RecurringRun) -> pb.RecurringRun:
    return await stubs.recurring_runs.CreateRecurringRun(pb.CreateRecurringRunRequest(recurring_run=message))


async def failure(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value


async def runs_of(stubs: Stubs, recurring_run_id: str) -> list[run_pb2.Run]:
    only = json.dumps({"predicates": [{"key": "recurring_run_id", "operation": "EQUALS", "string_value": recurring_run_id}]})
    return list((await stubs.runs.ListRuns(run_pb2.ListRunsRequest(filter=only, sort_by="created_at"))).runs)


def exposed(run: run_pb2.Run) -> dict[str, tuple[str, dict[str, Any], str]]:
    return {a.name: (a.uri, dict(a.metadata), a.unmatched_reason) for a in run.output_artifacts}


async def test_selectors_expose_the_artifacts_a_real_pipeline_wrote(stubs: Stubs, compiled: dict[str, Spec]) -> None:
    version = await upload(stubs, "push", compiled["push-pipeline"])
    selectors = [PUSHED, common_pb2.ArtifactSelector(name="any", path="push-model:model:0"),
                 common_pb2.ArtifactSelector(name="metrics", path="push-model:metrics")]
    finished = {}
    for pushed in (1, 0):
        message = run_of(version, f"pushed-{pushed}", pushed=pushed)
        message.artifacts.extend(selectors)
        created = await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=message))
        finished[pushed] = (await watch_to_end(stubs.runs, created.run_id))[-1]

    matched = exposed(finished[1])
    uri, metadata, reason = matched["model"]
    assert (metadata, reason) == ({"pushed": 1, "accuracy": 0.93}, "")
    assert Path(uri.removeprefix("file://")).read_text() == "model weights"
    assert matched["any"] == matched["model"]
    assert matched["metrics"] == ("", {}, "task 'push-model' produced no artifact 'metrics' at index 0")

    unmatched = exposed(finished[0])
    assert unmatched["model"] == ("", {}, "filter `pushed == 1` matched none of 1 artifact")
    assert unmatched["any"][1] == {"pushed": 0, "accuracy": 0.93}
    (completion,) = await read_events(stubs, 1, run_id=finished[0].run_id, types=[events.RUN_COMPLETED])
    assert list(completion.run_completed.artifacts) == list(finished[0].output_artifacts)
    assert completion.run_completed.pipeline_name == "push"

    bad = run_of(version, "bad")
    bad.artifacts.append(common_pb2.ArtifactSelector(name="model", path="push-model:model[pushed = 1]"))
    error = await failure(stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=bad)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(error) == {"run.artifacts[0].path": "filter: at column 8: unexpected '='"}


async def test_b_takes_its_parameter_from_a_and_fires_when_a_succeeds(stubs: Stubs, compiled: dict[str, Spec]) -> None:
    push = await upload(stubs, "push", compiled["push-pipeline"])
    consume = await upload(stubs, "consume", compiled["consume-pipeline"])
    a = await create(stubs, hourly(push, "A", artifacts=[PUSHED]))
    ref = common_pb2.ArtifactRef(recurring_run_id=a.recurring_run_id, output_artifact="model")
    b_message = recurring(consume, "B")
    b_message.trigger.upstream_recurring_run_ids.append(a.recurring_run_id)
    b_message.runtime_config.parameters_from["model_uri"].CopyFrom(ref)
    b = await create(stubs, b_message)
    assert b.runtime_config.parameters_from["model_uri"] == ref
    one_off = run_of(consume, "one-off")
    one_off.runtime_config.parameters_from["model_uri"].CopyFrom(ref)

    # Before A has succeeded: B's tick is skipped, and a one-off run cannot be created.
    error = await failure(stubs.recurring_runs.TriggerRecurringRun(pb.TriggerRecurringRunRequest(recurring_run_id=b.recurring_run_id)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"recurring run {a.recurring_run_id!r} has no succeeded run" in (error.details() or "")
    (skip,) = await read_events(stubs, 1, recurring_run_id=b.recurring_run_id, types=[events.TICK_SKIPPED])
    assert skip.tick_skipped.reason == "dependency unresolved"
    counters = (await stubs.recurring_runs.GetRecurringRun(pb.GetRecurringRunRequest(recurring_run_id=b.recurring_run_id))).counters
    assert dict(counters.ticks_skipped_by_reason) == {"dependency unresolved": 1}
    error = await failure(stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=one_off)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION

    a_run = await stubs.recurring_runs.TriggerRecurringRun(pb.TriggerRecurringRunRequest(recurring_run_id=a.recurring_run_id))
    model_uri = exposed((await watch_to_end(stubs.runs, a_run.run_id))[-1])["model"][0]
    b_runs = await eventually(lambda: runs_of(stubs, b.recurring_run_id), lambda found: len(found) == 1)
    b_run = (await watch_to_end(stubs.runs, b_runs[0].run_id))[-1]
    assert b_run.state == common_pb2.SUCCEEDED
    assert plain(b_run.runtime_config.parameters) == {"model_uri": model_uri}
    assert [plain(t.output_parameters) for t in b_run.run_details.task_details if t.display_name == "read-model"] == [
        {"Output": "model weights"}
    ]
    resolved = await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=one_off))
    assert plain(resolved.runtime_config.parameters) == {"model_uri": model_uri}


async def test_parameters_from_checks_its_reference_and_honours_optional(stubs: Stubs, compiled: dict[str, Spec]) -> None:
    push = await upload(stubs, "push", compiled["push-pipeline"])
    instant = await upload(stubs, "instant", compiled["instant-pipeline"])
    never_ran = await create(stubs, hourly(push, "never-ran", artifacts=[PUSHED], mode=pb.RecurringRun.DISABLE))

    def run_with(**ref: Any) -> run_pb2.CreateRunRequest:
        message = run_of(instant, "from")
        message.runtime_config.parameters_from["label"].CopyFrom(common_pb2.ArtifactRef(**ref))
        return run_pb2.CreateRunRequest(run=message)

    optional = await stubs.runs.CreateRun(run_with(recurring_run_id=never_ran.recurring_run_id, output_artifact="model", optional=True))
    assert plain(optional.runtime_config.parameters) == {"label": "none", "gate": ""}  # left out: the default applies
    field = "run.runtime_config.parameters_from[label]"
    for ref, violation in [
        ({"recurring_run_id": never_ran.recurring_run_id, "output_artifact": "weights"},
         {f"{field}.output_artifact": f"recurring run {never_ran.recurring_run_id!r} exposes no artifact 'weights' (it exposes 'model')"}),
        ({"recurring_run_id": "missing", "output_artifact": "model"}, {f"{field}.recurring_run_id": "no recurring run 'missing'"}),
        ({"output_artifact": "model"}, {f"{field}.recurring_run_id": "is required"}),
    ]:
        error = await failure(stubs.runs.CreateRun(run_with(**ref)))
        assert (error.code(), field_violations(error)) == (grpc.StatusCode.INVALID_ARGUMENT, violation)


async def test_dependency_cycles_are_rejected_naming_the_cycle(stubs: Stubs, compiled: dict[str, Spec]) -> None:
    push = await upload(stubs, "push", compiled["push-pipeline"])
    consume = await upload(stubs, "consume", compiled["consume-pipeline"])
    a = await create(stubs, hourly(push, "A", artifacts=[PUSHED]))
    b_message = hourly(push, "B", artifacts=[PUSHED])
    b_message.trigger.upstream_recurring_run_ids.append(a.recurring_run_id)
    b = await create(stubs, b_message)
    c_message = hourly(consume, "C")
    c_message.runtime_config.parameters_from["model_uri"].CopyFrom(
        common_pb2.ArtifactRef(recurring_run_id=b.recurring_run_id, output_artifact="model")
    )
    c = await create(stubs, c_message)

    def trigger_update(target: pb.RecurringRun, upstream: str) -> pb.UpdateRecurringRunRequest:
        changed = pb.RecurringRun(recurring_run_id=target.recurring_run_id)
        changed.trigger.CopyFrom(target.trigger)
        changed.trigger.upstream_recurring_run_ids.append(upstream)
        request = pb.UpdateRecurringRunRequest(recurring_run=changed)
        request.update_mask.paths.append("trigger")
        return request

    ids = {a.recurring_run_id: "A", b.recurring_run_id: "B", c.recurring_run_id: "C"}
    error = await failure(stubs.recurring_runs.UpdateRecurringRun(trigger_update(a, c.recurring_run_id)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    ((field, description),) = field_violations(error).items()
    assert field == "recurring_run.trigger.upstream_recurring_run_ids"
    cycle = description.removeprefix("would make a dependency cycle: ").split(" -> ")
    assert [ids[node] for node in cycle] == ["A", "C", "B", "A"]
    error = await failure(stubs.recurring_runs.UpdateRecurringRun(trigger_update(b, b.recurring_run_id)))
    assert field_violations(error) == {"recurring_run.trigger.upstream_recurring_run_ids[1]": "a recurring run cannot trigger itself"}
    unknown = hourly(push, "D")
    unknown.trigger.upstream_recurring_run_ids.append("missing")
    error = await failure(create(stubs, unknown))
    assert (error.code(), field_violations(error)) == (
        grpc.StatusCode.INVALID_ARGUMENT, {"recurring_run.trigger.upstream_recurring_run_ids[0]": "no recurring run 'missing'"}
    )
    # The refused updates changed nothing.
    stored = await stubs.recurring_runs.GetRecurringRun(pb.GetRecurringRunRequest(recurring_run_id=a.recurring_run_id))
    assert list(stored.trigger.upstream_recurring_run_ids) == []


async def test_a_new_pipeline_version_fires_the_recurring_runs_that_follow_the_latest(stubs: Stubs, compiled: dict[str, Spec]) -> None:
    first = await upload(stubs, "instant", compiled["instant-pipeline"])
    follower = recurring(first, "follower")
    follower.trigger.on_new_pipeline_version = True
    created = await create(stubs, follower)
    pinned = recurring(first, "pinned")
    pinned.pipeline_version_reference.pipeline_version_id = first.pipeline_version_id
    pinned.trigger.on_new_pipeline_version = True
    error = await failure(create(stubs, pinned))
    assert list(field_violations(error)) == ["recurring_run.trigger.on_new_pipeline_version"]

    second = await stubs.pipelines.CreatePipelineVersion(pipeline_pb2.CreatePipelineVersionRequest(
        pipeline_id=first.pipeline_id, pipeline_version=pipeline_pb2.PipelineVersion(pipeline_spec=struct(compiled["instant-pipeline"]))
    ))
    (fired,) = await eventually(lambda: runs_of(stubs, created.recurring_run_id), lambda found: len(found) == 1)
    assert fired.pipeline_version_reference.pipeline_version_id == second.pipeline_version_id
    assert (await watch_to_end(stubs.runs, fired.run_id))[-1].state == common_pb2.SUCCEEDED


async def test_ttl_deletes_finished_runs_with_their_logs_and_artifacts(data_dir: Path, compiled: dict[str, Spec]) -> None:
    clock = VirtualClock(1_780_000_000 * MICROS_PER_SECOND)
    async with running(data_dir, clock, run_ttl_us=HOUR) as (_, stubs):
        version = await upload(stubs, "push", compiled["push-pipeline"])
        old = await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=run_of(version, "old")))
        artifact = (await watch_to_end(stubs.runs, old.run_id))[-1].run_details.task_details[0].output_artifacts[0].uri
        assert Path(artifact.removeprefix("file://")).exists()
        clock.advance(30 * 60)
        young = await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=run_of(version, "young")))
        await watch_to_end(stubs.runs, young.run_id)
        clock.advance(45 * 60)  # the old run finished 75 minutes ago, the young one 45
        (deleted,) = await read_events(stubs, 1, types=[events.RUN_DELETED])
        assert (deleted.run_id, deleted.run_deleted.reason) == (old.run_id, "ttl")
        error = await failure(stubs.runs.GetRun(run_pb2.GetRunRequest(run_id=old.run_id)))
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert not Path(artifact.removeprefix("file://")).exists()
        assert [r.run_id for r in (await stubs.runs.ListRuns(run_pb2.ListRunsRequest())).runs] == [young.run_id]
        logs = stubs.runs.StreamRunLogs(run_pb2.StreamRunLogsRequest(run_id=old.run_id))
        assert (await failure(logs.read())).code() == grpc.StatusCode.NOT_FOUND


def from_recurring_run(message: pb.RecurringRun, parameter: str, upstream: pb.RecurringRun, output: str = "model", optional: bool = False) -> pb.RecurringRun:
    message.runtime_config.parameters_from[parameter].CopyFrom(
        common_pb2.ArtifactRef(recurring_run_id=upstream.recurring_run_id, output_artifact=output, optional=optional)
    )
    return message


def update(recurring_run: pb.RecurringRun, *paths: str) -> pb.UpdateRecurringRunRequest:
    request = pb.UpdateRecurringRunRequest(recurring_run=recurring_run)
    request.update_mask.paths.extend(paths)
    return request


async def test_a_referenced_recurring_run_cannot_be_deleted(stubs: Stubs, compiled: dict[str, Spec]) -> None:
    """Deleting it would leave its dependents' references dangling: refused, naming them."""
    push = await upload(stubs, "push", compiled["push-pipeline"])
    consume = await upload(stubs, "consume", compiled["consume-pipeline"])
    a = await create(stubs, hourly(push, "A", artifacts=[PUSHED]))
    triggered = recurring(consume, "by-trigger")
    triggered.trigger.upstream_recurring_run_ids.append(a.recurring_run_id)
    by_trigger = await create(stubs, from_recurring_run(triggered, "model_uri", a, optional=True))
    by_parameter = await create(stubs, from_recurring_run(hourly(consume, "by-parameter"), "model_uri", a))
    await create(stubs, hourly(push, "unrelated"))

    for delete_runs in (False, True):
        error = await failure(stubs.recurring_runs.DeleteRecurringRun(
            pb.DeleteRecurringRunRequest(recurring_run_id=a.recurring_run_id, delete_runs=delete_runs)))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error.details() == (
            f"recurring run {a.recurring_run_id!r} is referenced by 'by-parameter' ({by_parameter.recurring_run_id}),"
            f" 'by-trigger' ({by_trigger.recurring_run_id}) (upstream trigger or parameters_from): update or delete those first"
        )
    assert (await stubs.recurring_runs.GetRecurringRun(pb.GetRecurringRunRequest(recurring_run_id=a.recurring_run_id))).status == pb.RecurringRun.ENABLED

    # Once no reference is left, it goes.
    unlinked = pb.RecurringRun(recurring_run_id=by_parameter.recurring_run_id, runtime_config=common_pb2.RuntimeConfig(
        parameters=dict(struct({"model_uri": "file:///elsewhere"}).fields)))
    await stubs.recurring_runs.UpdateRecurringRun(update(unlinked, "runtime_config"))
    await stubs.recurring_runs.DeleteRecurringRun(pb.DeleteRecurringRunRequest(recurring_run_id=by_trigger.recurring_run_id))
    await stubs.recurring_runs.DeleteRecurringRun(pb.DeleteRecurringRunRequest(recurring_run_id=a.recurring_run_id))


async def test_an_update_naming_a_missing_upstream_is_invalid_not_not_found(stubs: Stubs, compiled: dict[str, Spec]) -> None:
    """NOT_FOUND would read as if the recurring run being updated were missing."""
    push = await upload(stubs, "push", compiled["push-pipeline"])
    consume = await upload(stubs, "consume", compiled["consume-pipeline"])
    a = await create(stubs, hourly(push, "A", artifacts=[PUSHED]))
    b = await create(stubs, from_recurring_run(hourly(consume, "B"), "model_uri", a))
    changed = pb.RecurringRun(recurring_run_id=b.recurring_run_id)
    changed.trigger.CopyFrom(b.trigger)
    changed.trigger.upstream_recurring_run_ids.extend([a.recurring_run_id, "gone"])
    error = await failure(stubs.recurring_runs.UpdateRecurringRun(update(changed, "trigger")))
    assert (error.code(), field_violations(error)) == (
        grpc.StatusCode.INVALID_ARGUMENT, {"recurring_run.trigger.upstream_recurring_run_ids[1]": "no recurring run 'gone'"})
    moved = from_recurring_run(pb.RecurringRun(recurring_run_id=b.recurring_run_id), "model_uri", pb.RecurringRun(recurring_run_id="gone"))
    error = await failure(stubs.recurring_runs.UpdateRecurringRun(update(moved, "runtime_config.parameters_from")))
    assert (error.code(), field_violations(error)) == (
        grpc.StatusCode.INVALID_ARGUMENT, {"recurring_run.runtime_config.parameters_from[model_uri].recurring_run_id": "no recurring run 'gone'"})


async def test_a_recurring_run_may_take_an_optional_parameter_from_its_own_previous_run(stubs: Stubs, compiled: dict[str, Spec]) -> None:
    """Incremental training: each run starts from the model of the one before. Not a cycle."""
    train = await upload(stubs, "train", compiled["train-pipeline"])
    created = await create(stubs, hourly(train, "trainer", mode=pb.RecurringRun.DISABLE))
    rid = created.recurring_run_id
    own = pb.RecurringRun(recurring_run_id=rid, artifacts=[common_pb2.ArtifactSelector(name="model", path="train-model:model")])
    required = from_recurring_run(pb.RecurringRun(recurring_run_id=rid, artifacts=own.artifacts), "previous_model", created)
    error = await failure(stubs.recurring_runs.UpdateRecurringRun(update(required, "artifacts", "runtime_config.parameters_from")))
    assert field_violations(error) == {"recurring_run.runtime_config.parameters_from[previous_model].optional":
                                       "must be true for a parameter from this recurring run's own previous run: its first run has none"}
    # The selector and the reference to it arrive in one update.
    await stubs.recurring_runs.UpdateRecurringRun(update(
        from_recurring_run(own, "previous_model", created, optional=True), "artifacts", "runtime_config.parameters_from"))

    models = []
    for _ in range(2):
        run = await stubs.recurring_runs.TriggerRecurringRun(pb.TriggerRecurringRunRequest(recurring_run_id=rid))
        finished = (await watch_to_end(stubs.runs, run.run_id))[-1]
        assert finished.state == common_pb2.SUCCEEDED, finished.error
        models.append(exposed(finished)["model"][0])
    assert [Path(uri.removeprefix("file://")).read_text() for uri in models] == ["+", "++"]
    runs = await runs_of(stubs, rid)
    assert [plain(r.runtime_config.parameters)["previous_model"] for r in runs] == ["", models[0]]  # the default, then the URI
    await stubs.recurring_runs.DeleteRecurringRun(pb.DeleteRecurringRunRequest(recurring_run_id=rid))  # it references only itself


async def test_ttl_keeps_the_latest_succeeded_run_that_a_dependent_resolves(data_dir: Path, compiled: dict[str, Spec]) -> None:
    clock = VirtualClock(1_780_000_000 * MICROS_PER_SECOND)
    async with running(data_dir, clock, run_ttl_us=HOUR) as (_, stubs):
        push = await upload(stubs, "push", compiled["push-pipeline"])
        consume = await upload(stubs, "consume", compiled["consume-pipeline"])
        a = await create(stubs, hourly(push, "A", artifacts=[PUSHED], mode=pb.RecurringRun.DISABLE))
        b = await create(stubs, from_recurring_run(hourly(consume, "B", mode=pb.RecurringRun.DISABLE), "model_uri", a))
        finished = []
        for _ in range(2):
            run = await stubs.recurring_runs.TriggerRecurringRun(pb.TriggerRecurringRunRequest(recurring_run_id=a.recurring_run_id))
            finished.append((await watch_to_end(stubs.runs, run.run_id))[-1])
            clock.advance(60)
        one_off = await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=run_of(push, "one-off")))
        await watch_to_end(stubs.runs, one_off.run_id)
        clock.advance(2 * 3600)
        deleted = await read_events(stubs, 2, types=[events.RUN_DELETED])
        assert {e.run_id for e in deleted} == {finished[0].run_id, one_off.run_id}
        latest_uri = exposed(finished[1])["model"][0]
        assert (await stubs.runs.GetRun(run_pb2.GetRunRequest(run_id=finished[1].run_id))).state == common_pb2.SUCCEEDED
        assert Path(latest_uri.removeprefix("file://")).read_text() == "model weights"
        run = await stubs.recurring_runs.TriggerRecurringRun(pb.TriggerRecurringRunRequest(recurring_run_id=b.recurring_run_id))
        assert plain(run.runtime_config.parameters) == {"model_uri": latest_uri}
        assert (await watch_to_end(stubs.runs, run.run_id))[-1].state == common_pb2.SUCCEEDED


async def test_a_reference_created_while_its_target_is_deleted_never_dangles(stubs: Stubs, compiled: dict[str, Spec]) -> None:
    """Each side checks the other in its own transaction: one of the two calls loses."""
    push = await upload(stubs, "push", compiled["push-pipeline"])
    consume = await upload(stubs, "consume", compiled["consume-pipeline"])
    for attempt in range(8):
        a = await create(stubs, hourly(push, f"A{attempt}", artifacts=[PUSHED], mode=pb.RecurringRun.DISABLE))
        dependent, deleted = await asyncio.gather(
            create(stubs, from_recurring_run(hourly(consume, f"B{attempt}", mode=pb.RecurringRun.DISABLE), "model_uri", a)),
            stubs.recurring_runs.DeleteRecurringRun(pb.DeleteRecurringRunRequest(recurring_run_id=a.recurring_run_id)),
            return_exceptions=True,
        )
        assert isinstance(dependent, grpc.aio.AioRpcError) != isinstance(deleted, grpc.aio.AioRpcError), (dependent, deleted)
