"""Out-of-range values over gRPC: every one is INVALID_ARGUMENT naming its field (or NOT_FOUND for
an id that names nothing), never INTERNAL; no stored row can break a list; queued runs of one
spec share one decoded copy of it."""

from __future__ import annotations

import base64
import copy
import json
import math
import sqlite3
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2

from kfpgrpc.server import KfpGrpcServer
from kfpgrpc.v1 import common_pb2, experiment_pb2, pipeline_pb2, run_pb2
from kfpgrpc.v1 import recurring_run_pb2 as rpb
from tests.support import Stubs, field_violations, inline_run, run_of, running, struct, upload, watch_to_end

Spec = dict[str, Any]
MAX_SECONDS = 253402300799  # 9999-12-31T23:59:59Z


async def failure(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value


async def invalid(call: Awaitable[Any]) -> dict[str, str]:
    """The field violations of a call that must fail with INVALID_ARGUMENT."""
    error = await failure(call)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
    return field_violations(error)


@pytest.fixture
async def add_version(stubs: Stubs, compiled: dict[str, Spec]) -> pipeline_pb2.PipelineVersion:
    return await upload(stubs, "add", compiled["add-pipeline"])


def recurring(version: pipeline_pb2.PipelineVersion, **fields: Any) -> rpb.RecurringRun:
    return rpb.RecurringRun(
        display_name=fields.pop("display_name", "hourly"),
        mode=fields.pop("mode", rpb.RecurringRun.ENABLE),
        pipeline_version_reference=common_pb2.PipelineVersionReference(pipeline_id=version.pipeline_id),
        trigger=fields.pop("trigger", rpb.Trigger(periodic_schedule=rpb.PeriodicSchedule(interval_second=3600))),
        **fields,
    )


def create_recurring(stubs: Stubs, message: rpb.RecurringRun) -> Awaitable[rpb.RecurringRun]:
    return stubs.recurring_runs.CreateRecurringRun(rpb.CreateRecurringRunRequest(recurring_run=message))


# -- NaN and Infinity ----------------------------------------------------------------------------


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
async def test_nan_and_infinity_are_refused_naming_the_path_to_them(
    stubs: Stubs, add_version: pipeline_pb2.PipelineVersion, compiled: dict[str, Spec], number: float
) -> None:
    """JSON, our storage and KFP's spec format, has no NaN or Infinity."""
    run = run_of(add_version, tags=["a", 1.0])
    run.runtime_config.parameters["tags"].list_value.values[1].number_value = number
    violations = await invalid(stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=run)))
    assert list(violations) == ["run.runtime_config.parameters.tags[1]"]
    assert "must be a finite number" in violations["run.runtime_config.parameters.tags[1]"]

    spec = struct(compiled["add-pipeline"])
    spec["root"]["inputDefinitions"]["parameters"]["scale"]["defaultValue"] = number
    version = pipeline_pb2.PipelineVersion(pipeline_spec=spec)
    violations = await invalid(stubs.pipelines.CreatePipelineVersion(
        pipeline_pb2.CreatePipelineVersionRequest(pipeline_id=add_version.pipeline_id, pipeline_version=version)))
    assert list(violations) == ["pipeline_version.pipeline_spec.root.inputDefinitions.parameters.scale.defaultValue"]

    inline = run_pb2.Run(display_name="inline", pipeline_spec=spec)
    violations = await invalid(stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=inline)))
    assert list(violations) == ["run.pipeline_spec.root.inputDefinitions.parameters.scale.defaultValue"]

    message = recurring(add_version)
    message.runtime_config.parameters["options"].struct_value.update({"retries": 1})
    message.runtime_config.parameters["options"].struct_value["retries"] = number
    violations = await invalid(create_recurring(stubs, message))
    assert list(violations) == ["recurring_run.runtime_config.parameters.options.retries"]

    created = await create_recurring(stubs, recurring(add_version))
    update = rpb.RecurringRun(recurring_run_id=created.recurring_run_id)
    update.runtime_config.parameters["scale"].number_value = number
    violations = await invalid(stubs.recurring_runs.UpdateRecurringRun(rpb.UpdateRecurringRunRequest(
        recurring_run=update, update_mask=field_mask_pb2.FieldMask(paths=["runtime_config.parameters"]))))
    assert list(violations) == ["recurring_run.runtime_config.parameters.scale"]


# -- unknown enum numbers ------------------------------------------------------------------------


async def test_unknown_enum_numbers_are_refused_naming_the_field(stubs: Stubs, add_version: pipeline_pb2.PipelineVersion) -> None:
    """Proto3 enums are open: any int32 arrives, and must be checked like any other value."""
    violations = await invalid(create_recurring(stubs, recurring(add_version, overlap_policy=99)))
    assert list(violations) == ["recurring_run.overlap_policy"]
    assert "99 is not a value of OverlapPolicy" in violations["recurring_run.overlap_policy"]
    assert list(await invalid(create_recurring(stubs, recurring(add_version, mode=7)))) == ["recurring_run.mode"]

    created = await create_recurring(stubs, recurring(add_version))
    for field, value in (("mode", 9), ("overlap_policy", -3)):
        update = rpb.RecurringRun(recurring_run_id=created.recurring_run_id, **{field: value})
        violations = await invalid(stubs.recurring_runs.UpdateRecurringRun(rpb.UpdateRecurringRunRequest(
            recurring_run=update, update_mask=field_mask_pb2.FieldMask(paths=[field]))))
        assert list(violations) == [f"recurring_run.{field}"]

    listed = json.dumps({"predicates": [{"key": "display_name", "operation": 99, "string_value": "x"}]})
    violations = await invalid(stubs.runs.ListRuns(run_pb2.ListRunsRequest(filter=listed)))
    assert list(violations) == ["filter.predicates[0].operation"]
    assert (await stubs.recurring_runs.GetRecurringRun(
        rpb.GetRecurringRunRequest(recurring_run_id=created.recurring_run_id))).mode == rpb.RecurringRun.ENABLE


# -- times ---------------------------------------------------------------------------------------


def trigger_at(kind: str, bound: str, seconds: int, nanos: int = 0) -> rpb.Trigger:
    trigger = rpb.Trigger(cron_schedule=rpb.CronSchedule(cron="0 * * * *")) if kind == "cron" else rpb.Trigger(
        periodic_schedule=rpb.PeriodicSchedule(interval_second=3600))
    getattr(getattr(trigger, f"{kind}_schedule"), bound).CopyFrom(timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos))
    return trigger


@pytest.mark.parametrize(
    ("kind", "bound", "seconds", "nanos"),
    [
        ("periodic", "start_time", 2**62, 0),  # beyond datetime, and beyond int64 in microseconds
        ("periodic", "end_time", MAX_SECONDS + 1, 0),
        ("cron", "start_time", -62135596801, 0),  # a second before year 1
        ("cron", "end_time", 1_900_000_000, -1),
        ("cron", "start_time", 1_900_000_000, 1_000_000_000),
    ],
)
async def test_trigger_times_outside_the_timestamp_range_are_refused(
    stubs: Stubs, add_version: pipeline_pb2.PipelineVersion, kind: str, bound: str, seconds: int, nanos: int
) -> None:
    field = f"recurring_run.trigger.{kind}_schedule.{bound}"
    violations = await invalid(create_recurring(stubs, recurring(add_version, trigger=trigger_at(kind, bound, seconds, nanos))))
    assert list(violations) == [field]
    listed = await stubs.recurring_runs.ListRecurringRuns(rpb.ListRecurringRunsRequest())
    assert listed.total_size == 0


async def test_backfill_and_filter_times_outside_the_range_are_refused(stubs: Stubs, add_version: pipeline_pb2.PipelineVersion) -> None:
    created = await create_recurring(stubs, recurring(add_version))
    huge = timestamp_pb2.Timestamp(seconds=2**62)
    violations = await invalid(stubs.recurring_runs.BackfillRecurringRun(rpb.BackfillRecurringRunRequest(
        recurring_run_id=created.recurring_run_id, start_time=huge, end_time=timestamp_pb2.Timestamp(seconds=1))))
    assert list(violations) == ["start_time"]

    for value in ({"long_value": str(2**63 - 1)}, {"long_value": str(-(2**62))}, {"long_values": {"values": ["1", str(2**62)]}}):
        operation = "IN" if "long_values" in value else "GREATER_THAN"
        listed = json.dumps({"predicates": [{"key": "created_at", "operation": operation, **value}]})
        violations = await invalid(stubs.runs.ListRuns(run_pb2.ListRunsRequest(filter=listed)))
        assert list(violations) == ["filter.predicates[0].value"], value
    # The ends of the range are times like any other.
    for seconds in (-62135596800, MAX_SECONDS):
        listed = json.dumps({"predicates": [{"key": "finished_at", "operation": "LESS_THAN_EQUALS", "long_value": str(seconds)}]})
        await stubs.runs.ListRuns(run_pb2.ListRunsRequest(filter=listed))


# -- lists ---------------------------------------------------------------------------------------


def token_of(data: Any) -> str:
    return base64.urlsafe_b64encode(data if isinstance(data, bytes) else json.dumps(data).encode()).decode()


def runs_token(**changes: Any) -> dict[str, Any]:
    return {"list": "runs", "sort": "created_at", "desc": False, "filter": "", "scope": [], "after": [1, "x"], **changes}


@pytest.mark.parametrize(
    "token",
    [
        "%%%not base64%%%",
        token_of(b"\xff\xfe\x00garbage"),
        token_of([1, 2, 3]),
        token_of("a string"),
        token_of({"sort": "created_at"}),
        token_of(b"[" * 100_000),  # nesting deeper than the JSON decoder's recursion
        token_of(b'{"list": "runs", "sort": "created_at", "desc": false, "filter": "", "scope": [], "after": [NaN, "x"]}'),
        token_of(runs_token(after=[1e400, "x"])),
        token_of(runs_token(after=[10**30, "x"])),
        token_of(runs_token(after=[1.5, "x"])),
        token_of(runs_token(after=[True, "x"])),
        token_of(runs_token(after=[[1], {"a": 1}])),
        token_of(runs_token(after=[1, 2])),
        token_of(runs_token(after="ab")),
        token_of(runs_token(sort="display_name", after=[3, "x"])),  # a text key with a number
        token_of(runs_token(sort="description")),  # not sortable
        token_of(runs_token(sort="created_at; DROP TABLE runs")),
        token_of(runs_token(desc="yes")),
        token_of(runs_token(filter=7)),
        token_of(runs_token(list="experiments")),
        token_of({k: v for k, v in runs_token().items() if k != "list"}),
        token_of(runs_token(filter="x" * 150_000)),  # longer than any token a list returns
    ],
)
async def test_forged_page_tokens_are_invalid_argument(stubs: Stubs, token: str) -> None:
    violations = await invalid(stubs.runs.ListRuns(run_pb2.ListRunsRequest(page_token=token)))
    assert violations == {"page_token": "is not a page token returned by this list"}


async def test_a_token_of_another_list_is_refused(stubs: Stubs) -> None:
    for name in ("a", "b"):
        await stubs.experiments.CreateExperiment(experiment_pb2.CreateExperimentRequest(experiment=experiment_pb2.Experiment(display_name=name)))
    first = await stubs.experiments.ListExperiments(experiment_pb2.ListExperimentsRequest(page_size=1))
    violations = await invalid(stubs.runs.ListRuns(run_pb2.ListRunsRequest(page_token=first.next_page_token)))
    assert violations == {"page_token": "is not a page token returned by this list"}
    rest = await stubs.experiments.ListExperiments(experiment_pb2.ListExperimentsRequest(page_token=first.next_page_token))
    assert len(rest.experiments) == 2


async def test_filter_sizes_are_bounded(stubs: Stubs) -> None:
    """SQLite takes at most 32,766 values and expressions 1,000 deep: a filter stays far below."""
    many = {"predicates": [{"key": "display_name", "operation": "IN", "string_values": {"values": [str(i) for i in range(501)]}}]}
    violations = await invalid(stubs.runs.ListRuns(run_pb2.ListRunsRequest(filter=json.dumps(many))))
    assert violations == {"filter": "has 501 values in its predicates; at most 500 are allowed"}
    predicates = {"predicates": [{"key": "created_at", "operation": "GREATER_THAN", "long_value": str(i)} for i in range(101)]}
    violations = await invalid(stubs.runs.ListRuns(run_pb2.ListRunsRequest(filter=json.dumps(predicates))))
    assert violations == {"filter": "has 101 predicates; at most 100 are allowed"}
    huge = {"predicates": [{"key": "created_at", "operation": "IN", "long_values": {"values": [str(i) for i in range(40_000)]}}]}
    assert list(await invalid(stubs.runs.ListRuns(run_pb2.ListRunsRequest(filter=json.dumps(huge))))) == ["filter"]
    # At the bounds the query runs: a time key's IN list is an OR of ranges, two values each.
    at_bounds = [
        {"predicates": [{"key": "run_id", "operation": "IN", "string_values": {"values": [str(i) for i in range(500)]}}]},
        {"predicates": [
            {"key": "created_at", "operation": "IN", "long_values": {"values": [str(i) for i in range(401)]}},
            *({"key": "finished_at", "operation": "NOT_EQUALS", "int_value": i} for i in range(99)),
        ]},
    ]
    for request in at_bounds:
        response = await stubs.runs.ListRuns(run_pb2.ListRunsRequest(filter=json.dumps(request)))
        assert response.total_size == 0


# -- schedules near the end of time --------------------------------------------------------------


async def test_schedules_that_overflow_are_refused_and_the_last_ticks_stop_at_year_9999(
    stubs: Stubs, add_version: pipeline_pb2.PipelineVersion
) -> None:
    huge_interval = rpb.Trigger(periodic_schedule=rpb.PeriodicSchedule(interval_second=2**63 - 1))
    violations = await invalid(create_recurring(stubs, recurring(add_version, trigger=huge_interval)))
    assert "recurring_run.trigger.periodic_schedule.interval_second" in violations
    for cron in ("@every 9999999999999h", "@every " + "9" * 400 + "h"):  # beyond Go's int64 nanoseconds; beyond a float
        trigger = rpb.Trigger(cron_schedule=rpb.CronSchedule(cron=cron))
        violations = await invalid(create_recurring(stubs, recurring(add_version, trigger=trigger)))
        assert "Go's longest duration" in violations["recurring_run.trigger.cron_schedule.cron"]

    # Too long to parse on the event loop, or to be a zone's file name.
    long_cron = rpb.Trigger(cron_schedule=rpb.CronSchedule(cron=",".join(["1"] * 100_000) + " * * * *"))
    violations = await invalid(create_recurring(stubs, recurring(add_version, trigger=long_cron)))
    assert violations == {"recurring_run.trigger.cron_schedule.cron": "must be at most 1000 characters, got 200007"}
    long_zone = rpb.Trigger(cron_schedule=rpb.CronSchedule(cron="0 3 * * *", time_zone="x" * 8192))
    violations = await invalid(create_recurring(stubs, recurring(add_version, trigger=long_zone)))
    assert list(violations) == ["recurring_run.trigger.cron_schedule.time_zone"]

    # Valid schedules whose ticks run into the end of 9999: they stop there.
    near_end = MAX_SECONDS - 3 * 3600
    created = [
        await create_recurring(stubs, recurring(add_version, display_name=name, trigger=trigger_at(kind, "start_time", near_end)))
        for name, kind in (("periodic", "periodic"), ("cron", "cron"))
    ]
    daily = rpb.Trigger(cron_schedule=rpb.CronSchedule(cron="30 2 31 12 *", time_zone="Pacific/Kiritimati"))  # UTC+14
    daily.cron_schedule.start_time.seconds = near_end
    created.append(await create_recurring(stubs, recurring(add_version, display_name="kiritimati", trigger=daily)))
    listed = await stubs.recurring_runs.ListRecurringRuns(rpb.ListRecurringRunsRequest(sort_by="display_name"))
    times = {r.display_name: [t.seconds for t in r.next_scheduled_times] for r in listed.recurring_runs}
    assert times["periodic"] == [near_end + 3600, near_end + 7200, MAX_SECONDS]
    assert times["cron"] == [MAX_SECONDS + 1 - 3 * 3600, MAX_SECONDS + 1 - 2 * 3600, MAX_SECONDS + 1 - 3600]
    assert times["kiritimati"] == []  # its next tick, local 10000-12-31, is after the end of time
    assert all(not r.HasField("error") for r in listed.recurring_runs)
    for message in created:
        got = await stubs.recurring_runs.GetRecurringRun(rpb.GetRecurringRunRequest(recurring_run_id=message.recurring_run_id))
        assert all(t.seconds <= MAX_SECONDS for t in got.next_scheduled_times)


# -- stored rows ---------------------------------------------------------------------------------


async def test_a_stored_recurring_run_whose_schedule_overflows_breaks_no_list(
    data_dir: Path, compiled: dict[str, Spec]
) -> None:
    """Rows an older server stored unchecked: they show with an `error`; every other row, Get,
    List and the server's start work as before."""
    async with running(data_dir) as (_, stubs):
        version = await upload(stubs, "add", compiled["add-pipeline"])
        good = await create_recurring(stubs, recurring(version, display_name="good"))
        bad = {
            name: (await create_recurring(stubs, recurring(version, display_name=name))).recurring_run_id
            for name in ("huge-start", "huge-interval", "huge-every", "cron-9999")
        }
    day = 86_400 * 1_000_000
    triggers = {
        "huge-start": {"schedule": "periodic", "interval_seconds": 3600, "start_time": 2**62 * 1_000_000},
        "huge-interval": {"schedule": "periodic", "interval_seconds": 2**63 - 1, "start_time": 0},
        "huge-every": {"schedule": "cron", "cron": "@every 99999999999999999999h", "time_zone": "UTC", "start_time": 0},
        "cron-9999": {"schedule": "cron", "cron": "0 * * * *", "time_zone": "UTC", "start_time": MAX_SECONDS * 1_000_000 - day},
    }
    with sqlite3.connect(data_dir / "kfpgrpc.db") as database:
        for name, changes in triggers.items():
            (stored,) = database.execute("SELECT trigger FROM recurring_runs WHERE recurring_run_id = ?", (bad[name],)).fetchone()
            database.execute("UPDATE recurring_runs SET trigger = ? WHERE recurring_run_id = ?",
                             (json.dumps({**json.loads(stored), **changes}), bad[name]))
    database.close()

    async with running(data_dir) as (_, stubs):
        listed = await stubs.recurring_runs.ListRecurringRuns(rpb.ListRecurringRunsRequest(sort_by="display_name"))
        shown = {r.display_name: r for r in listed.recurring_runs}
        assert set(shown) == {"good", *bad}
        assert len(shown["good"].next_scheduled_times) == 10 and not shown["good"].HasField("error")
        assert "periodic_schedule.start_time: must be in the years 1 to 9999" in shown["huge-start"].error.message
        assert shown["huge-start"].trigger.periodic_schedule.start_time.seconds == MAX_SECONDS  # shown at the end of the range
        assert "periodic_schedule.interval_second: must be at most" in shown["huge-interval"].error.message
        assert "Go's longest duration" in shown["huge-every"].error.message
        assert not shown["cron-9999"].HasField("error")
        assert all(t.seconds <= MAX_SECONDS for t in shown["cron-9999"].next_scheduled_times)
        for recurring_run_id in [good.recurring_run_id, *bad.values()]:
            await stubs.recurring_runs.GetRecurringRun(rpb.GetRecurringRunRequest(recurring_run_id=recurring_run_id))
        # They can be repaired by an update.
        update = rpb.RecurringRun(recurring_run_id=bad["huge-interval"],
                                  trigger=rpb.Trigger(periodic_schedule=rpb.PeriodicSchedule(interval_second=7200)))
        repaired = await stubs.recurring_runs.UpdateRecurringRun(
            rpb.UpdateRecurringRunRequest(recurring_run=update, update_mask=field_mask_pb2.FieldMask(paths=["trigger"])))
        assert not repaired.HasField("error") and len(repaired.next_scheduled_times) == 10


# -- selectors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "train:model[" + "(" * 5000 + "a == 1" + ")" * 5000 + "]",
        "train:model[" + "not " * 5000 + "a == 1]",
        "train:model[" + " and ".join(["a == 1"] * 5000) + "]",
        "train:model[" + " or ".join(["(not a == 1)"] * 101) + "]",
    ],
    ids=["parentheses", "not", "and-chain", "or-chain"],
)
async def test_deeply_nested_selectors_are_refused(stubs: Stubs, add_version: pipeline_pb2.PipelineVersion, path: str) -> None:
    run = run_of(add_version)
    run.artifacts.add(name="model", path=path)
    violations = await invalid(stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=run)))
    assert list(violations) == ["run.artifacts[0].path"]
    # As deep as allowed is fine.
    run.artifacts[0].path = "train:model[" + "(" * 16 + "not " * 16 + " and ".join(["a == 1"] * 100) + ")" * 16 + "]"
    await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=run))


# -- ids and the size of errors ------------------------------------------------------------------

BIG_ID = "x" * 8192
MODULES = {"runs": run_pb2, "experiments": experiment_pb2, "pipelines": pipeline_pb2, "recurring_runs": rpb}
# RPC: (stub, the id field of its request), or the request itself where the id is nested.
ID_CALLS: dict[str, tuple[str, Any]] = {
    **{name: ("runs", "run_id") for name in (
        "GetRun", "DeleteRun", "ArchiveRun", "UnarchiveRun", "TerminateRun", "RetryRun", "WatchRun", "StreamRunLogs")},
    **{name: ("experiments", "experiment_id") for name in (
        "GetExperiment", "ArchiveExperiment", "UnarchiveExperiment", "DeleteExperiment")},
    **{name: ("pipelines", "pipeline_id") for name in ("GetPipeline", "DeletePipeline", "ListPipelineVersions")},
    **{name: ("pipelines", "pipeline_version_id") for name in ("GetPipelineVersion", "DeletePipelineVersion")},
    **{name: ("recurring_runs", "recurring_run_id") for name in (
        "GetRecurringRun", "EnableRecurringRun", "DisableRecurringRun", "DeleteRecurringRun", "TriggerRecurringRun",
        "WatchRecurringRun")},
    "CreateRun": ("runs", run_pb2.CreateRunRequest(run=run_pb2.Run(
        display_name="r", pipeline_version_reference=common_pb2.PipelineVersionReference(pipeline_id=BIG_ID)))),
    "UpdateRecurringRun": ("recurring_runs", rpb.UpdateRecurringRunRequest(
        recurring_run=rpb.RecurringRun(recurring_run_id=BIG_ID), update_mask=field_mask_pb2.FieldMask(paths=["description"]))),
}


@pytest.mark.parametrize("call", list(ID_CALLS))
async def test_ids_of_8_kb_answer_not_found_with_a_short_message(stubs: Stubs, call: str) -> None:
    """Echoing the id in full made the status trailer too big for the client (RESOURCE_EXHAUSTED)."""
    stub, request = ID_CALLS[call]
    if isinstance(request, str):
        request = getattr(MODULES[stub], f"{call}Request")(**{request: BIG_ID})
    answer = getattr(getattr(stubs, stub), call)(request)
    error = await failure(answer.read() if call.startswith(("Watch", "Stream")) else answer)
    assert error.code() == grpc.StatusCode.NOT_FOUND, (error.code(), error.details()[:200])
    assert len(error.details()) < 300 and "… (8192 characters)" in error.details()


async def test_many_long_bad_fields_still_fit_the_status_trailer(stubs: Stubs, add_version: pipeline_pb2.PipelineVersion) -> None:
    """Violations echo field names; 3-byte characters made the details three times as long."""
    run = run_of(add_version)
    for index in range(50):
        run.runtime_config.parameters[f"{index:02}" + "€" * 2000].string_value = "x"
    error = await failure(stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=run)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details()[:200])
    shown = field_violations(error)
    assert 1 <= len(shown) <= 20 and all(field.startswith("run.runtime_config.parameters.") for field in shown)
    assert error.details() == f"50 invalid fields; the first {len(shown)} are in the details"


# -- shared spec snapshots -----------------------------------------------------------------------


def with_big_default(spec: Spec, size: int) -> Spec:
    """`spec` with one more pipeline input, unused by its tasks, whose default is `size` characters."""
    bigger = copy.deepcopy(spec)
    bigger["root"]["inputDefinitions"]["parameters"]["big"] = {
        "parameterType": "STRING", "defaultValue": "x" * size, "isOptional": True}
    return bigger


async def test_queued_runs_of_one_spec_share_one_decoded_copy(data_dir: Path, compiled: dict[str, Spec], tmp_path: Path) -> None:
    """Each queued run held its own copy of the spec and of its default values (300 runs of a
    spec with a 1 MB default took 411 MB, and 947 MB after a restart)."""
    spec = with_big_default(compiled["instant-pipeline"], 100_000)
    gate = str(tmp_path / "never")

    def held(server: KfpGrpcServer, run_ids: list[str]) -> tuple[set[int], set[int]]:
        executions = [server._runs._active[run_id] for run_id in run_ids]  # noqa: SLF001 - what memory holds
        return {id(e.document) for e in executions}, {id(e.run.parameters["big"]) for e in executions}

    async with running(data_dir, max_parallel_tasks=1) as (server, stubs):
        version = await upload(stubs, "big", spec)
        run_ids = [(await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=inline_run(spec, f"inline-{i}", gate=gate)))).run_id
                   for i in range(4)]
        run_ids += [(await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=run_of(version, f"version-{i}", gate=gate)))).run_id
                    for i in range(4)]
        assert [len(ids) for ids in held(server, run_ids)] == [1, 1]
        assert sum(server._runs._active[i].run.state == "PENDING" for i in run_ids) >= 6  # noqa: SLF001
    async with running(data_dir, max_parallel_tasks=1) as (server, stubs):
        assert [len(ids) for ids in held(server, run_ids)] == [1, 1]
        got = await stubs.runs.GetRun(run_pb2.GetRunRequest(run_id=run_ids[1]))
        assert len(got.runtime_config.parameters["big"].string_value) == 100_000
        assert got.pipeline_spec["root"]["inputDefinitions"]["parameters"]["big"]["defaultValue"] == "x" * 100_000


# -- task outputs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("huge-integer", "output parameter 'Output' holds an integer beyond the range of a double"),
        ("nan-metadata", "the metadata of output artifact 'model' holds NaN, which JSON cannot represent"),
        ("deep-metadata", "the metadata of output artifact 'model' nests lists and objects deeper than 32 levels"),
    ],
)
async def test_task_outputs_no_value_can_hold_fail_the_task_and_leave_the_run_readable(
    stubs: Stubs, compiled: dict[str, Spec], kind: str, error: str
) -> None:
    """A 401-digit number made every GetRun, ListRuns and WatchRun of its run INTERNAL; metadata
    nested 60 deep made them unreadable for the client."""
    version = await upload(stubs, "emit", compiled["emit-pipeline"])
    run = await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=run_of(version, kind=kind)))
    final = (await watch_to_end(stubs.runs, run.run_id))[-1]
    assert final.state == common_pb2.FAILED
    assert final.error.message.startswith(f"task 'emit' failed: {error}"), final.error.message[:300]
    await stubs.runs.GetRun(run_pb2.GetRunRequest(run_id=run.run_id))
    assert (await stubs.runs.ListRuns(run_pb2.ListRunsRequest())).total_size == 1


async def test_parameters_nest_at_most_32_levels(stubs: Stubs, add_version: pipeline_pb2.PipelineVersion) -> None:
    """A task's copy of a parameter sits deeper in a response than the request's: protobuf's
    100 levels would be exceeded by lists of runs before the request's own."""
    def nested(levels: int) -> run_pb2.Run:
        run = run_of(add_version)
        value = run.runtime_config.parameters["tags"]
        for _ in range(levels):
            value = value.list_value.values.add()
        value.string_value = "x"
        return run

    violations = await invalid(stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=nested(33))))
    assert violations == {"run.runtime_config.parameters.tags" + "[0]" * 32: "must not nest lists and objects deeper than 32 levels"}
    await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=nested(32)))


async def test_a_stored_output_beyond_a_double_breaks_no_read(data_dir: Path, compiled: dict[str, Spec]) -> None:
    """A run an older server stored with a 401-digit output: it reads with the number as Infinity."""
    async with running(data_dir) as (_, stubs):
        version = await upload(stubs, "add", compiled["add-pipeline"])
        run = await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=run_of(version)))
        await watch_to_end(stubs.runs, run.run_id)
    with sqlite3.connect(data_dir / "kfpgrpc.db") as database:
        database.execute("UPDATE tasks SET output_parameters = ? WHERE run_id = ?", ('{"Output": 1' + "0" * 400 + "}", run.run_id))
    database.close()
    async with running(data_dir) as (_, stubs):
        got = await stubs.runs.GetRun(run_pb2.GetRunRequest(run_id=run.run_id))
        assert {t.output_parameters["Output"].number_value for t in got.run_details.task_details} == {math.inf}
        assert (await stubs.runs.ListRuns(run_pb2.ListRunsRequest())).total_size == 1
