"""RecurringRunService on a virtual clock: hours of schedule in milliseconds, with real runs of
kfp-compiled pipelines (instant-pipeline: one container task that exits at once, or once the
file named by its `gate` parameter exists, which is how a test keeps runs active)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, json_format, timestamp_pb2

from kfpgrpc.clock import VirtualClock
from kfpgrpc.config import ServerConfig
from kfpgrpc.server import KfpGrpcServer
from kfpgrpc.v1 import common_pb2, event_pb2, experiment_pb2, pipeline_pb2, run_pb2
from kfpgrpc.v1 import recurring_run_pb2 as pb
from tests.support import Stubs, eventually, field_violations, read_events, running, struct, upload

START = "2026-05-04T10:07:00+00:00"  # a Monday
Spec = dict[str, Any]


def us(text: str) -> int:
    moment = datetime.fromisoformat(text)
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def stamp(text: str) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromMicroseconds(us(text))
    return message


def iso(message: timestamp_pb2.Timestamp) -> str:
    return message.ToJsonString()


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> VirtualClock:
    """Starts at START, or at the time of the test's `clock_start` mark."""
    marker = request.node.get_closest_marker("clock_start")
    return VirtualClock(us(marker.args[0] if marker else START))


@pytest.fixture
async def version(stubs: Stubs, compiled: dict[str, Spec]) -> Any:
    return await upload(stubs, "instant", compiled["instant-pipeline"])


def recurring(version: Any, name: str = "nightly", cron: str = "", **fields: Any) -> pb.RecurringRun:
    parameters = fields.pop("parameters", {})
    message = pb.RecurringRun(
        display_name=name,
        mode=fields.pop("mode", pb.RecurringRun.ENABLE),
        pipeline_version_reference=common_pb2.PipelineVersionReference(pipeline_id=version.pipeline_id),
        **fields,
    )
    if cron:
        message.trigger.cron_schedule.cron = cron
    for key, value in parameters.items():
        message.runtime_config.parameters[key].string_value = value
    return message


class Harness:
    def __init__(self, stubs: Stubs, clock: VirtualClock) -> None:
        self.stubs = stubs
        self.clock = clock

    async def create(self, message: pb.RecurringRun) -> pb.RecurringRun:
        return await self.stubs.recurring_runs.CreateRecurringRun(pb.CreateRecurringRunRequest(recurring_run=message))

    async def get(self, recurring_run_id: str) -> pb.RecurringRun:
        return await self.stubs.recurring_runs.GetRecurringRun(pb.GetRecurringRunRequest(recurring_run_id=recurring_run_id))

    async def runs(self, recurring_run_id: str = "") -> list[run_pb2.Run]:
        found: list[run_pb2.Run] = []
        token = ""
        while True:
            page = await self.stubs.runs.ListRuns(run_pb2.ListRunsRequest(page_size=200, sort_by="scheduled_at", page_token=token))
            found += [r for r in page.runs if not recurring_run_id or r.recurring_run_id == recurring_run_id]
            if not (token := page.next_page_token):
                return found

    async def ticks(self, recurring_run_id: str, count: int) -> list[str]:
        """The scheduled times of its runs, once there are `count` of them, all finished."""
        runs = await eventually(
            lambda: self.runs(recurring_run_id),
            lambda found: len(found) >= count and all(r.state == common_pb2.SUCCEEDED for r in found),
        )
        assert len(runs) == count, [iso(r.scheduled_at) for r in runs]
        return [iso(r.scheduled_at) for r in runs]

    async def advance_to(self, text: str, recurring_run_id: str) -> pb.RecurringRun:
        """Move the clock; return the recurring run once its actor has handled every due tick."""
        self.clock.set(us(text))
        return await eventually(
            lambda: self.get(recurring_run_id),
            lambda got: not got.next_scheduled_times or got.next_scheduled_times[0].ToMicroseconds() > us(text),
        )

    async def error(self, call: Awaitable[Any]) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await call
        return failure.value


@pytest.fixture
def harness(stubs: Stubs, clock: VirtualClock) -> Harness:
    return Harness(stubs, clock)


@contextlib.asynccontextmanager
async def served(data_dir: Path, clock: VirtualClock) -> AsyncIterator[Harness]:
    """A server of its own on `data_dir` (a test that restarts one), with a harness on it;
    stopped on the way out."""
    server = KfpGrpcServer(ServerConfig(listen="127.0.0.1:0", data_dir=data_dir), clock)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            yield Harness(Stubs.on(channel), clock)
    finally:
        await server.stop()


async def test_cron_ticks_fire_at_their_times_with_named_runs(harness: Harness, version: Any) -> None:
    created = await harness.create(recurring(version, "every15", "*/15 * * * *"))
    assert created.status == pb.RecurringRun.ENABLED and created.max_concurrency == 1
    assert [iso(t) for t in created.next_scheduled_times[:3]] == [
        "2026-05-04T10:15:00Z", "2026-05-04T10:30:00Z", "2026-05-04T10:45:00Z"]
    assert len(created.next_scheduled_times) == 10 and not created.HasField("last_scheduled_time")
    await harness.advance_to("2026-05-04T10:14:59+00:00", created.recurring_run_id)
    assert await harness.runs() == []
    got = await harness.advance_to("2026-05-04T10:15:00+00:00", created.recurring_run_id)
    assert await harness.ticks(created.recurring_run_id, 1) == ["2026-05-04T10:15:00Z"]
    assert iso(got.last_scheduled_time) == "2026-05-04T10:15:00Z"
    (run,) = await harness.runs()
    assert run.display_name == "every15-20260504101500" and run.recurring_run_id == created.recurring_run_id
    assert run.created_at.ToMicroseconds() == us("2026-05-04T10:15:00+00:00")  # the (virtual) real time


async def test_periodic_ticks_follow_the_anchor(harness: Harness, version: Any) -> None:
    message = recurring(version, "hourly")
    message.trigger.periodic_schedule.interval_second = 3600
    message.trigger.periodic_schedule.start_time.CopyFrom(stamp("2026-05-04T09:30:00+00:00"))
    created = await harness.create(message)
    assert [iso(t) for t in created.next_scheduled_times[:2]] == ["2026-05-04T10:30:00Z", "2026-05-04T11:30:00Z"]
    await harness.advance_to("2026-05-04T11:30:00+00:00", created.recurring_run_id)
    assert await harness.ticks(created.recurring_run_id, 2) == ["2026-05-04T10:30:00Z", "2026-05-04T11:30:00Z"]


@pytest.mark.clock_start("2026-03-07T12:00:00-05:00")
async def test_time_zone_and_both_dst_days(harness: Harness, version: Any) -> None:
    spring = recurring(version, "spring", "30 2 * * *")
    spring.trigger.cron_schedule.time_zone = "America/New_York"
    created = await harness.create(spring)
    # 02:30 does not exist on 2026-03-08: it fires at 03:00 EDT; the day after, at 02:30 EDT.
    assert [iso(t) for t in created.next_scheduled_times[:2]] == ["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"]
    await harness.advance_to("2026-03-09T12:00:00+00:00", created.recurring_run_id)
    assert await harness.ticks(created.recurring_run_id, 2) == ["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"]
    await harness.stubs.recurring_runs.DeleteRecurringRun(pb.DeleteRecurringRunRequest(recurring_run_id=created.recurring_run_id))

    harness.clock.set(us("2026-10-31T12:00:00-04:00"))
    fall = recurring(version, "fall", "30 1 * * *")
    fall.trigger.cron_schedule.time_zone = "America/New_York"
    created = await harness.create(fall)
    # 01:30 happens twice on 2026-11-01: it fires once, at its first occurrence (EDT).
    await harness.advance_to("2026-11-02T12:00:00+00:00", created.recurring_run_id)
    assert await harness.ticks(created.recurring_run_id, 2) == ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]


async def test_start_and_end_times_bound_the_ticks(harness: Harness, version: Any) -> None:
    message = recurring(version, "bounded", "0 * * * *")
    message.trigger.cron_schedule.start_time.CopyFrom(stamp("2026-05-04T12:00:00+00:00"))
    message.trigger.cron_schedule.end_time.CopyFrom(stamp("2026-05-04T13:00:00+00:00"))
    created = await harness.create(message)
    assert [iso(t) for t in created.next_scheduled_times] == ["2026-05-04T12:00:00Z", "2026-05-04T13:00:00Z"]
    got = await harness.advance_to("2026-05-04T18:00:00+00:00", created.recurring_run_id)
    assert await harness.ticks(created.recurring_run_id, 2) == ["2026-05-04T12:00:00Z", "2026-05-04T13:00:00Z"]
    assert not got.next_scheduled_times and got.status == pb.RecurringRun.ENABLED


async def test_max_concurrency_holds_under_a_burst(harness: Harness, version: Any, tmp_path: Path) -> None:
    gate = str(tmp_path / "gate-[[Index]]")
    created = await harness.create(recurring(version, "burst", "* * * * *", max_concurrency=2, parameters={"gate": gate}))
    rid = created.recurring_run_id
    got = await harness.advance_to("2026-05-04T10:17:00+00:00", rid)  # 10 ticks at once
    assert got.counters.runs_active == 2 and got.counters.ticks_queued == 8
    for index in range(1, 11):
        unfinished = [r for r in await harness.runs(rid) if r.state not in (common_pb2.SUCCEEDED,)]
        assert len(unfinished) <= 2
        (tmp_path / f"gate-{index}").touch()
        await eventually(lambda: harness.runs(rid), lambda runs, i=index: sum(r.state == common_pb2.SUCCEEDED for r in runs) >= i)
    ticks = await harness.ticks(rid, 10)
    assert ticks == [f"2026-05-04T10:{minute:02d}:00Z" for minute in range(8, 18)]  # oldest first
    got = await harness.get(rid)
    assert got.counters.runs_created == 10 and got.counters.ticks_queued == 0 and got.counters.runs_active == 0


@pytest.mark.parametrize(
    ("policy", "active_after", "queued_after", "skipped"),
    [
        ("BUFFER_ALL", 1, 3, {}),
        ("BUFFER_ONE", 1, 1, {"overlap_buffer_one": "2"}),
        ("SKIP", 1, 0, {"overlap_skip": "3"}),
        ("REPLACE", 1, 0, {}),
    ],
)
async def test_overlap_policies(harness: Harness, version: Any, tmp_path: Path, policy: str, active_after: int,
                                queued_after: int, skipped: dict[str, str]) -> None:
    gate = str(tmp_path / "gate-[[Index]]")
    created = await harness.create(
        recurring(version, policy, "* * * * *", overlap_policy=pb.OverlapPolicy.Value(policy), parameters={"gate": gate})
    )
    rid = created.recurring_run_id
    for minute in range(8, 12):  # one tick at a time: each is on time, the first run blocks the slot
        await harness.advance_to(f"2026-05-04T10:{minute:02d}:00+00:00", rid)
    got = await eventually(lambda: harness.get(rid), lambda g: g.counters.runs_active == active_after)
    assert got.counters.ticks_queued == queued_after
    assert json_format.MessageToDict(got.counters).get("ticksSkippedByReason", {}) == skipped
    runs = await harness.runs(rid)
    if policy == "REPLACE":  # each new tick terminated the run before it
        assert len(runs) == 4
        await eventually(lambda: harness.runs(rid), lambda rs: [r.state for r in rs][:3] == [common_pb2.CANCELED] * 3)
    for index in range(1, 5):
        (tmp_path / f"gate-{index}").touch()


async def test_catch_up_after_downtime_runs_missed_ticks_in_order(data_dir: Path, compiled: dict[str, Spec]) -> None:
    clock = VirtualClock(us(START))
    async with served(data_dir, clock) as harness:
        version = await upload(harness.stubs, "instant", compiled["instant-pipeline"])
        created = await harness.create(recurring(version, "quarterly", "*/15 * * * *"))
        await harness.advance_to("2026-05-04T10:15:00+00:00", created.recurring_run_id)
        await harness.ticks(created.recurring_run_id, 1)
    clock.set(us("2026-05-04T11:20:00+00:00"))  # down for an hour: four ticks missed
    async with served(data_dir, clock) as harness:
        ticks = await harness.ticks(created.recurring_run_id, 5)
    assert ticks == ["2026-05-04T10:15:00Z", "2026-05-04T10:30:00Z", "2026-05-04T10:45:00Z",
                     "2026-05-04T11:00:00Z", "2026-05-04T11:15:00Z"]


@pytest.mark.parametrize("no_catchup", [False, True])
async def test_re_enable_catches_up_the_gap_unless_no_catchup(harness: Harness, version: Any, no_catchup: bool) -> None:
    created = await harness.create(recurring(version, "minutely", "* * * * *", no_catchup=no_catchup))
    rid = created.recurring_run_id
    await harness.stubs.recurring_runs.DisableRecurringRun(pb.DisableRecurringRunRequest(recurring_run_id=rid))
    disabled = await harness.get(rid)
    assert disabled.status == pb.RecurringRun.DISABLED and not disabled.next_scheduled_times
    harness.clock.set(us("2026-05-04T10:12:30+00:00"))  # 10:08 ... 10:12 missed while disabled
    await asyncio.sleep(0.05)
    assert await harness.runs(rid) == []
    await harness.stubs.recurring_runs.EnableRecurringRun(pb.EnableRecurringRunRequest(recurring_run_id=rid))
    if no_catchup:
        assert await harness.ticks(rid, 1) == ["2026-05-04T10:12:00Z"]
        got = await harness.get(rid)
        assert dict(got.counters.ticks_skipped_by_reason) == {"no_catchup": 4} and got.counters.ticks_skipped == 4
    else:
        assert await harness.ticks(rid, 5) == [f"2026-05-04T10:{m:02d}:00Z" for m in range(8, 13)]


async def test_update_changes_the_schedule_without_replaying_ticks(harness: Harness, version: Any) -> None:
    created = await harness.create(recurring(version, "minutely", "* * * * *"))
    rid = created.recurring_run_id
    await harness.advance_to("2026-05-04T10:09:00+00:00", rid)
    harness.clock.set(us("2026-05-04T10:09:30+00:00"))
    change = pb.RecurringRun(recurring_run_id=rid)
    change.trigger.cron_schedule.cron = "0 * * * *"
    updated = await harness.stubs.recurring_runs.UpdateRecurringRun(pb.UpdateRecurringRunRequest(
        recurring_run=change, update_mask=field_mask_pb2.FieldMask(paths=["trigger.cron_schedule.cron"])))
    assert updated.trigger.cron_schedule.cron == "0 * * * *" and updated.display_name == "minutely"
    assert iso(updated.next_scheduled_times[0]) == "2026-05-04T11:00:00Z"
    assert updated.updated_at.ToMicroseconds() == us("2026-05-04T10:09:30+00:00")
    await harness.advance_to("2026-05-04T11:00:00+00:00", rid)
    assert await harness.ticks(rid, 3) == ["2026-05-04T10:08:00Z", "2026-05-04T10:09:00Z", "2026-05-04T11:00:00Z"]

    renamed = pb.RecurringRun(recurring_run_id=rid, display_name="hourly", max_concurrency=3)
    updated = await harness.stubs.recurring_runs.UpdateRecurringRun(pb.UpdateRecurringRunRequest(
        recurring_run=renamed, update_mask=field_mask_pb2.FieldMask(paths=["display_name", "max_concurrency"])))
    assert (updated.display_name, updated.max_concurrency, updated.trigger.cron_schedule.cron) == ("hourly", 3, "0 * * * *")
    for paths, field in ((["created_at"], "update_mask.paths[0]"), ([], "update_mask"), (["nope"], "update_mask")):
        error = await harness.error(harness.stubs.recurring_runs.UpdateRecurringRun(pb.UpdateRecurringRunRequest(
            recurring_run=renamed, update_mask=field_mask_pb2.FieldMask(paths=paths))))
        assert field in field_violations(error), paths
    bad = pb.RecurringRun(recurring_run_id=rid, max_concurrency=500)
    error = await harness.error(harness.stubs.recurring_runs.UpdateRecurringRun(pb.UpdateRecurringRunRequest(
        recurring_run=bad, update_mask=field_mask_pb2.FieldMask(paths=["max_concurrency"]))))
    assert "recurring_run.max_concurrency" in field_violations(error)


async def test_backfill_queues_only_ticks_without_runs(harness: Harness, version: Any) -> None:
    created = await harness.create(recurring(version, "quarterly", "*/15 * * * *"))
    rid = created.recurring_run_id
    await harness.advance_to("2026-05-04T10:45:00+00:00", rid)
    await harness.ticks(rid, 3)  # 10:15, 10:30, 10:45
    response = await harness.stubs.recurring_runs.BackfillRecurringRun(pb.BackfillRecurringRunRequest(
        recurring_run_id=rid, start_time=stamp("2026-05-04T09:30:00+00:00"), end_time=stamp("2026-05-04T10:30:00+00:00")))
    assert (response.ticks_queued, response.ticks_already_present) == (3, 2)  # 09:30, 09:45, 10:00 are new
    ticks = await harness.ticks(rid, 6)
    assert ticks == [f"2026-05-04T{t}:00Z" for t in ("09:30", "09:45", "10:00", "10:15", "10:30", "10:45")]
    again = await harness.stubs.recurring_runs.BackfillRecurringRun(pb.BackfillRecurringRunRequest(
        recurring_run_id=rid, start_time=stamp("2026-05-04T09:30:00+00:00"), end_time=stamp("2026-05-04T10:30:00+00:00")))
    assert (again.ticks_queued, again.ticks_already_present) == (0, 5)
    error = await harness.error(harness.stubs.recurring_runs.BackfillRecurringRun(pb.BackfillRecurringRunRequest(
        recurring_run_id=rid, start_time=stamp("2026-05-04T09:30:00+00:00"), end_time=stamp("2026-05-05T10:30:00+00:00"))))
    assert field_violations(error) == {"end_time": "must not be in the future"}


async def test_trigger_starts_a_run_now_within_the_slots(harness: Harness, version: Any, tmp_path: Path) -> None:
    message = recurring(version, "manual", "0 0 1 1 *", parameters={"gate": str(tmp_path / "gate")})
    message.mode = pb.RecurringRun.DISABLE  # triggering works on a disabled recurring run too
    created = await harness.create(message)
    run = await harness.stubs.recurring_runs.TriggerRecurringRun(pb.TriggerRecurringRunRequest(recurring_run_id=created.recurring_run_id))
    assert run.scheduled_at.ToMicroseconds() == us(START) and run.display_name == "manual-20260504100700"
    error = await harness.error(harness.stubs.recurring_runs.TriggerRecurringRun(
        pb.TriggerRecurringRunRequest(recurring_run_id=created.recurring_run_id)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "slots" in error.details()
    (tmp_path / "gate").touch()
    await harness.ticks(created.recurring_run_id, 1)
    assert (await harness.get(created.recurring_run_id)).counters.runs_created == 1


async def test_macros_are_expanded_for_every_run(harness: Harness, version: Any) -> None:
    label = "[[ScheduledTime]] [[Index]] [[ScheduledTime.2006-01-02]] {{$.scheduledTime.strftime('%H:%M')}} [[CurrentTime]]"
    created = await harness.create(recurring(version, "macros", "*/15 * * * *", parameters={"label": label}))
    harness.clock.set(us("2026-05-04T10:31:00+00:00"))  # 10:15 missed, 10:30 on time
    await harness.ticks(created.recurring_run_id, 2)
    runs = await harness.runs(created.recurring_run_id)
    labels = [r.runtime_config.parameters["label"].string_value for r in runs]
    assert labels == [
        "20260504101500 1 2026-05-04 10:15 20260504103100",
        "20260504103000 2 2026-05-04 10:30 20260504103100",
    ]
    error = await harness.error(harness.create(recurring(version, "typo", "* * * * *", parameters={"label": "[[Scheduledtime]]"})))
    assert "recurring_run.runtime_config.parameters.label" in field_violations(error)


async def test_disable_leaves_runs_in_flight_alone(harness: Harness, version: Any, tmp_path: Path) -> None:
    created = await harness.create(recurring(version, "slow", "* * * * *", parameters={"gate": str(tmp_path / "gate")}))
    rid = created.recurring_run_id
    await harness.advance_to("2026-05-04T10:08:00+00:00", rid)
    await eventually(lambda: harness.runs(rid), lambda runs: len(runs) == 1 and runs[0].state == common_pb2.RUNNING)
    await harness.stubs.recurring_runs.DisableRecurringRun(pb.DisableRecurringRunRequest(recurring_run_id=rid))
    harness.clock.set(us("2026-05-04T10:20:00+00:00"))
    (tmp_path / "gate").touch()
    assert await harness.ticks(rid, 1) == ["2026-05-04T10:08:00Z"]  # it finished; no new tick


async def test_bad_definitions_name_each_field(harness: Harness, version: Any) -> None:
    message = recurring(version, "", "61 * * * *", max_concurrency=101)
    message.trigger.cron_schedule.time_zone = "Mars/Olympus"
    error = await harness.error(harness.create(message))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(error)) == {"recurring_run.max_concurrency", "recurring_run.trigger.cron_schedule.time_zone"}
    cases = [
        (recurring(version, "x", "61 * * * *"), "recurring_run.trigger.cron_schedule.cron"),
        (recurring(version, "x"), "recurring_run.trigger"),
        (recurring(version, ""  , "* * * * *"), "recurring_run.display_name"),
    ]
    periodic = recurring(version, "x")
    periodic.trigger.periodic_schedule.interval_second = 30
    cases.append((periodic, "recurring_run.trigger.periodic_schedule.interval_second"))
    for bad, field in cases:
        error = await harness.error(harness.create(bad))
        assert field in field_violations(error), (field, field_violations(error))
    assert (await harness.stubs.recurring_runs.ListRecurringRuns(pb.ListRecurringRunsRequest())).total_size == 0


async def test_watch_sends_a_snapshot_per_change_and_ends_on_delete(harness: Harness, version: Any) -> None:
    created = await harness.create(recurring(version, "watched", "*/15 * * * *"))
    rid = created.recurring_run_id
    seen: list[pb.RecurringRun] = []

    async def watch() -> None:
        async for snapshot in harness.stubs.recurring_runs.WatchRecurringRun(pb.WatchRecurringRunRequest(recurring_run_id=rid)):
            seen.append(snapshot)

    watcher = asyncio.create_task(watch())
    await eventually(lambda: asyncio.sleep(0, len(seen)), lambda count: count == 1)
    await harness.advance_to("2026-05-04T10:15:00+00:00", rid)
    await eventually(lambda: asyncio.sleep(0, seen[-1]), lambda last: last.counters.runs_created == 1 and last.counters.runs_active == 0)
    await harness.stubs.recurring_runs.DisableRecurringRun(pb.DisableRecurringRunRequest(recurring_run_id=rid))
    await eventually(lambda: asyncio.sleep(0, seen[-1]), lambda last: last.status == pb.RecurringRun.DISABLED)
    await harness.stubs.recurring_runs.DeleteRecurringRun(pb.DeleteRecurringRunRequest(recurring_run_id=rid, delete_runs=True))
    await asyncio.wait_for(watcher, 10)  # the stream ended by itself
    assert seen[0].counters.runs_created == 0
    assert [s.counters.runs_created for s in seen] == sorted(s.counters.runs_created for s in seen)
    assert await harness.runs(rid) == []
    error = await harness.error(harness.get(rid))
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_archiving_the_experiment_disables_its_recurring_runs(harness: Harness, version: Any) -> None:
    experiments = harness.stubs.experiments
    experiment = await experiments.CreateExperiment(
        experiment_pb2.CreateExperimentRequest(experiment=experiment_pb2.Experiment(display_name="team"))
    )
    created = await harness.create(recurring(version, "in-team", "* * * * *", experiment_id=experiment.experiment_id))
    error = await harness.error(experiments.DeleteExperiment(experiment_pb2.DeleteExperimentRequest(experiment_id=experiment.experiment_id)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "1 recurring run" in error.details()
    await experiments.ArchiveExperiment(experiment_pb2.ArchiveExperimentRequest(experiment_id=experiment.experiment_id))
    assert (await harness.get(created.recurring_run_id)).status == pb.RecurringRun.DISABLED
    harness.clock.set(us("2026-05-04T10:30:00+00:00"))
    await asyncio.sleep(0.05)
    assert await harness.runs(created.recurring_run_id) == []
    listed = await harness.stubs.recurring_runs.ListRecurringRuns(pb.ListRecurringRunsRequest(
        experiment_id=experiment.experiment_id,
        filter='{"predicates": [{"key": "status", "operation": "EQUALS", "string_value": "DISABLED"}]}'))
    assert [r.display_name for r in listed.recurring_runs] == ["in-team"]
    error = await harness.error(harness.create(recurring(version, "late", "* * * * *", experiment_id=experiment.experiment_id)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION


def starting(message: pb.RecurringRun, text: str) -> pb.RecurringRun:
    """The message with its schedule's start_time set."""
    schedule = message.trigger.cron_schedule if message.trigger.HasField("cron_schedule") else message.trigger.periodic_schedule
    schedule.start_time.CopyFrom(stamp(text))
    return message


def hourly_periodic(version: Any, name: str, **fields: Any) -> pb.RecurringRun:
    message = recurring(version, name, **fields)
    message.trigger.periodic_schedule.interval_second = 3600
    return message


async def test_a_past_start_time_catches_up_every_tick_from_it_oldest_first(harness: Harness, version: Any) -> None:
    """As KFP's scheduler does: the ticks from start_time to now are missed ticks."""
    created = await harness.create(starting(recurring(version, "since-eight", "*/15 * * * *", parameters={"label": "[[Index]]"}),
                                            "2026-05-04T08:00:00+00:00"))
    expected = [f"2026-05-04T{h:02d}:{m:02d}:00Z" for h in (8, 9) for m in (0, 15, 30, 45)] + ["2026-05-04T10:00:00Z"]
    assert await harness.ticks(created.recurring_run_id, 9) == expected
    runs = await harness.runs(created.recurring_run_id)
    assert [r.runtime_config.parameters["label"].string_value for r in runs] == [str(i) for i in range(1, 10)]  # oldest first
    got = await harness.get(created.recurring_run_id)
    assert iso(got.last_scheduled_time) == "2026-05-04T10:00:00Z" and got.counters.ticks_skipped == 0

    periodic = await harness.create(starting(hourly_periodic(version, "hourly-since"), "2026-05-04T05:30:00+00:00"))
    assert await harness.ticks(periodic.recurring_run_id, 4) == [f"2026-05-04T0{h}:30:00Z" for h in (6, 7, 8, 9)]


async def test_no_catchup_with_a_past_start_time_runs_only_the_latest_tick(harness: Harness, version: Any) -> None:
    created = await harness.create(starting(recurring(version, "latest", "*/15 * * * *", no_catchup=True), "2026-05-04T08:00:00+00:00"))
    assert await harness.ticks(created.recurring_run_id, 1) == ["2026-05-04T10:00:00Z"]
    await harness.advance_to("2026-05-04T10:15:00+00:00", created.recurring_run_id)
    assert await harness.ticks(created.recurring_run_id, 2) == ["2026-05-04T10:00:00Z", "2026-05-04T10:15:00Z"]
    # Ten years of minutes: only the latest runs, found without walking them.
    decade = await asyncio.wait_for(harness.create(starting(
        recurring(version, "decade", "@every 1m", no_catchup=True), "2016-05-04T10:16:00+00:00")), 30)
    assert await harness.ticks(decade.recurring_run_id, 1) == ["2026-05-04T10:15:00Z"]
    assert (await harness.get(decade.recurring_run_id)).counters.ticks_skipped == 0  # they predate it


async def test_more_than_100000_past_ticks_are_refused_naming_the_start_time(harness: Harness, version: Any) -> None:
    too_many = "is more than 100000 ticks ago, too many to catch up: set no_catchup to run only the latest of them, or a later start_time"
    for message, field in [
        (starting(recurring(version, "minutely", "* * * * *"), "2025-01-01T00:00:00+00:00"), "cron_schedule"),
        (starting(recurring(version, "every", "@every 1m"), "2016-01-01T00:00:00+00:00"), "cron_schedule"),
        (starting(recurring(version, "daily", "0 0 * * *"), "1700-01-01T00:00:00+00:00"), "cron_schedule"),
        (starting(hourly_periodic(version, "hourly"), "1990-01-01T00:00:00+00:00"), "periodic_schedule"),
    ]:
        error = await asyncio.wait_for(harness.error(harness.create(message)), 30)
        assert field_violations(error) == {f"recurring_run.trigger.{field}.start_time": too_many}
    # Exactly 100,000 ticks (10:07 back to the start, inclusive) are caught up.
    boundary = starting(recurring(version, "boundary", "* * * * *", mode=pb.RecurringRun.DISABLE), "2026-02-23T23:28:00+00:00")
    await harness.create(boundary)
    boundary.trigger.cron_schedule.start_time.CopyFrom(stamp("2026-02-23T23:27:00+00:00"))
    assert field_violations(await harness.error(harness.create(boundary))) == {"recurring_run.trigger.cron_schedule.start_time": too_many}
    assert (await harness.stubs.recurring_runs.ListRecurringRuns(pb.ListRecurringRunsRequest())).total_size == 1


async def test_backfill_reaches_before_the_creation_of_a_periodic_schedule(harness: Harness, version: Any) -> None:
    """Without start_time the anchor is the creation: the grid extends back before it."""
    for message in (hourly_periodic(version, "hourly"), recurring(version, "every-hour", "@every 1h")):
        created = await harness.create(message)
        response = await harness.stubs.recurring_runs.BackfillRecurringRun(pb.BackfillRecurringRunRequest(
            recurring_run_id=created.recurring_run_id, start_time=stamp("2026-05-04T05:00:00+00:00"), end_time=stamp("2026-05-04T10:00:00+00:00")))
        assert (response.ticks_queued, response.ticks_already_present) == (5, 0)
        assert await harness.ticks(created.recurring_run_id, 5) == [f"2026-05-04T0{h}:07:00Z" for h in range(5, 10)]


async def test_a_backfill_never_queues_nothing_silently(harness: Harness, version: Any) -> None:
    yearly = await harness.create(recurring(version, "new-year", "0 0 1 1 *"))
    error = await harness.error(harness.stubs.recurring_runs.BackfillRecurringRun(pb.BackfillRecurringRunRequest(
        recurring_run_id=yearly.recurring_run_id, start_time=stamp("2026-02-01T00:00:00+00:00"), end_time=stamp("2026-05-01T00:00:00+00:00"))))
    assert field_violations(error) == {"start_time": "no tick of the schedule falls in the range; the first after start_time is at 2027-01-01T00:00:00Z"}
    bounded = await harness.create(starting(recurring(version, "bounded", "0 * * * *"), "2026-05-04T12:00:00+00:00"))
    error = await harness.error(harness.stubs.recurring_runs.BackfillRecurringRun(pb.BackfillRecurringRunRequest(
        recurring_run_id=bounded.recurring_run_id, start_time=stamp("2026-05-04T08:00:00+00:00"), end_time=stamp("2026-05-04T10:00:00+00:00"))))
    assert field_violations(error) == {"start_time": "no tick of the schedule falls in the range; the first after start_time is at 2026-05-04T12:00:00Z"}
    # A disabled recurring run has not handled its ticks since: enabling runs them, not a backfill.
    disabled = await harness.create(recurring(version, "paused", "*/15 * * * *", mode=pb.RecurringRun.DISABLE))
    harness.clock.set(us("2026-05-04T11:00:00+00:00"))
    error = await harness.error(harness.stubs.recurring_runs.BackfillRecurringRun(pb.BackfillRecurringRunRequest(
        recurring_run_id=disabled.recurring_run_id, start_time=stamp("2026-05-04T10:10:00+00:00"), end_time=stamp("2026-05-04T10:50:00+00:00"))))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "has not reached these ticks yet (its last handled tick is 2026-05-04T10:07:00Z)" in (error.details() or "")
    assert await harness.runs() == []


async def test_cron_errors_name_the_problem_in_the_users_terms(harness: Harness, version: Any) -> None:
    field = "recurring_run.trigger.cron_schedule.cron"
    for cron, problem in [
        ("CRON_TZ=Europe/Berlin 0 3 * * *", "put the time zone in trigger.cron_schedule.time_zone (an IANA name such as Europe/Berlin), not in the expression"),
        ("61 3 * * *", "minute must be 0-59, got 61"),
        ("0 0 30 2 *", "never fires: day-of-month 30 does not occur in February (at most 29 days)"),
        ("* * * * * *", "fires 1s apart (at 00:00:00 and 00:00:01); ticks must be at least 60s apart"),
    ]:
        error = await harness.error(harness.create(recurring(version, "x", cron)))
        assert field_violations(error) == {field: problem}


async def test_the_minimum_interval_flag_allows_seconds_cron(data_dir: Path, compiled: dict[str, Spec]) -> None:
    clock = VirtualClock(us(START))
    async with running(data_dir, clock, min_interval_seconds=5) as (_, stubs):
        harness = Harness(stubs, clock)
        version = await upload(stubs, "instant", compiled["instant-pipeline"])
        error = await harness.error(harness.create(recurring(version, "x", "*/2 * * * * *")))
        assert field_violations(error) == {
            "recurring_run.trigger.cron_schedule.cron": "fires 2s apart (at 00:00:00 and 00:00:02); ticks must be at least 5s apart"}
        created = await harness.create(recurring(version, "five", "*/5 * * * * *"))
        await harness.advance_to("2026-05-04T10:07:15+00:00", created.recurring_run_id)
        assert await harness.ticks(created.recurring_run_id, 3) == ["2026-05-04T10:07:05Z", "2026-05-04T10:07:10Z", "2026-05-04T10:07:15Z"]
        # A start ten years back at 5 s is far over the catch-up bound, and counted at once.
        error = await asyncio.wait_for(harness.error(harness.create(starting(recurring(version, "y", "@every 5s"), "2016-05-04T10:07:00+00:00"))), 30)
        assert list(field_violations(error)) == ["recurring_run.trigger.cron_schedule.start_time"]


async def test_an_archived_experiment_holds_no_active_work(harness: Harness, version: Any, tmp_path: Path) -> None:
    recurring_runs, experiments = harness.stubs.recurring_runs, harness.stubs.experiments
    team = await experiments.CreateExperiment(experiment_pb2.CreateExperimentRequest(experiment=experiment_pb2.Experiment(display_name="team")))
    created = await harness.create(recurring(version, "in-team", "*/15 * * * *", experiment_id=team.experiment_id,
                                             parameters={"gate": str(tmp_path / "gate")}))
    rid = created.recurring_run_id
    await recurring_runs.BackfillRecurringRun(pb.BackfillRecurringRunRequest(
        recurring_run_id=rid, start_time=stamp("2026-05-04T09:00:00+00:00"), end_time=stamp("2026-05-04T10:00:00+00:00")))
    got = await eventually(lambda: harness.get(rid), lambda g: g.counters.runs_active == 1)
    assert got.counters.ticks_queued == 4  # the gate holds the first run: the others wait
    await experiments.ArchiveExperiment(experiment_pb2.ArchiveExperimentRequest(experiment_id=team.experiment_id))
    assert (await harness.get(rid)).status == pb.RecurringRun.DISABLED
    (active,) = await harness.runs(rid)

    archived = f"experiment {team.experiment_id!r} is archived: unarchive it before"
    enable_by_update = pb.UpdateRecurringRunRequest(
        recurring_run=pb.RecurringRun(recurring_run_id=rid, mode=pb.RecurringRun.ENABLE), update_mask=field_mask_pb2.FieldMask(paths=["mode"]))
    for call, refused in [
        (recurring_runs.EnableRecurringRun(pb.EnableRecurringRunRequest(recurring_run_id=rid)), f"enabling recurring run {rid!r}"),
        (recurring_runs.TriggerRecurringRun(pb.TriggerRecurringRunRequest(recurring_run_id=rid)), f"triggering recurring run {rid!r}"),
        (recurring_runs.BackfillRecurringRun(pb.BackfillRecurringRunRequest(
            recurring_run_id=rid, start_time=stamp("2026-05-04T08:00:00+00:00"), end_time=stamp("2026-05-04T08:30:00+00:00"))),
         f"backfilling recurring run {rid!r}"),
        (recurring_runs.UpdateRecurringRun(enable_by_update), "is archived"),
        (harness.stubs.runs.UnarchiveRun(run_pb2.UnarchiveRunRequest(run_id=active.run_id)), f"unarchiving run {active.run_id!r}"),
    ]:
        error = await harness.error(call)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and refused in (error.details() or ""), error.details()
        if refused != "is archived":
            assert (error.details() or "").startswith(archived)

    # Unarchiving restores the experiment only: the recurring run stays disabled, its queue waits.
    await experiments.UnarchiveExperiment(experiment_pb2.UnarchiveExperimentRequest(experiment_id=team.experiment_id))
    (tmp_path / "gate").touch()
    await harness.advance_to("2026-05-04T10:45:00+00:00", rid)
    await eventually(lambda: harness.runs(rid), lambda runs: [r.state for r in runs] == [common_pb2.SUCCEEDED])
    got = await harness.get(rid)
    assert (got.status, got.counters.ticks_queued, got.counters.runs_created) == (pb.RecurringRun.DISABLED, 4, 1)
    await recurring_runs.EnableRecurringRun(pb.EnableRecurringRunRequest(recurring_run_id=rid))
    ticks = await harness.ticks(rid, 8)  # the queue, then the ticks missed while disabled
    assert ticks == [f"2026-05-04T{t}:00Z" for t in ("09:00", "09:15", "09:30", "09:45", "10:00", "10:15", "10:30", "10:45")]


async def test_a_recurring_run_left_enabled_in_an_archived_experiment_is_disabled_at_start(data_dir: Path, compiled: dict[str, Spec]) -> None:
    """Earlier versions allowed it, and its every tick failed: such a database is repaired."""
    clock = VirtualClock(us(START))
    async with running(data_dir, clock) as (_, stubs):
        version = await upload(stubs, "instant", compiled["instant-pipeline"])
        team = await stubs.experiments.CreateExperiment(experiment_pb2.CreateExperimentRequest(
            experiment=experiment_pb2.Experiment(display_name="team")))
        created = await Harness(stubs, clock).create(recurring(version, "stale", "* * * * *", experiment_id=team.experiment_id))
    with sqlite3.connect(data_dir / "kfpgrpc.db") as db:  # what an earlier version could leave behind
        db.execute("UPDATE experiments SET storage_state = 'ARCHIVED' WHERE experiment_id = ?", (team.experiment_id,))
    clock.set(us("2026-05-04T10:30:00+00:00"))
    async with running(data_dir, clock) as (_, stubs):
        harness = Harness(stubs, clock)
        assert (await harness.get(created.recurring_run_id)).status == pb.RecurringRun.DISABLED
        changes = await read_events(stubs, 2, recurring_run_id=created.recurring_run_id, types=[event_pb2.RECURRING_RUN_CHANGED])
        assert [e.recurring_run_changed.change for e in changes] == [event_pb2.RecurringRunChanged.CREATED, event_pb2.RecurringRunChanged.DISABLED]
        await harness.advance_to("2026-05-04T10:45:00+00:00", created.recurring_run_id)
        assert await harness.runs() == []


async def test_enabling_while_the_experiment_is_archived_never_leaves_it_enabled_there(harness: Harness, version: Any) -> None:
    """Enable and archive each check the other in their transaction: one of them fails."""
    experiments = harness.stubs.experiments
    for attempt in range(8):
        team = await experiments.CreateExperiment(experiment_pb2.CreateExperimentRequest(experiment=experiment_pb2.Experiment(display_name=f"t{attempt}")))
        created = await harness.create(recurring(version, f"r{attempt}", "0 0 1 1 *", experiment_id=team.experiment_id, mode=pb.RecurringRun.DISABLE))
        enabled, archived = await asyncio.gather(
            harness.stubs.recurring_runs.EnableRecurringRun(pb.EnableRecurringRunRequest(recurring_run_id=created.recurring_run_id)),
            experiments.ArchiveExperiment(experiment_pb2.ArchiveExperimentRequest(experiment_id=team.experiment_id)),
            return_exceptions=True,
        )
        state = (await harness.get(created.recurring_run_id)).status, (await experiments.GetExperiment(
            experiment_pb2.GetExperimentRequest(experiment_id=team.experiment_id))).storage_state
        assert state != (pb.RecurringRun.ENABLED, experiment_pb2.Experiment.ARCHIVED), (enabled, archived)


def fire_rows(response: pb.PreviewScheduleResponse) -> list[tuple[str, int, str, bool]]:
    return [(iso(f.time), f.utc_offset_seconds, f.local_time, f.dst_transition_day) for f in response.fire_times]


async def test_preview_schedule_shows_what_the_created_recurring_run_will_fire(harness: Harness, version: Any) -> None:
    """PreviewSchedule and next_scheduled_times are one computation: the preview of a trigger
    equals GetRecurringRun's times once it is created, here across Berlin's spring-forward day
    (2027-03-28: 02:30 does not exist, so that day fires at 03:00 CEST), which is flagged."""
    message = starting(recurring(version, "berlin", "30 2 * * *"), "2027-03-25T00:00:00+00:00")
    message.trigger.cron_schedule.time_zone = "Europe/Berlin"
    previewed = await harness.stubs.recurring_runs.PreviewSchedule(pb.PreviewScheduleRequest(trigger=message.trigger))
    assert previewed.time_zone == "Europe/Berlin" and len(previewed.fire_times) == 10
    assert fire_rows(previewed)[:5] == [
        ("2027-03-25T01:30:00Z", 3600, "2027-03-25T02:30:00+01:00", False),
        ("2027-03-26T01:30:00Z", 3600, "2027-03-26T02:30:00+01:00", False),
        ("2027-03-27T01:30:00Z", 3600, "2027-03-27T02:30:00+01:00", False),
        ("2027-03-28T01:00:00Z", 7200, "2027-03-28T03:00:00+02:00", True),
        ("2027-03-29T00:30:00Z", 7200, "2027-03-29T02:30:00+02:00", False),
    ]
    created = await harness.create(message)
    fetched = await harness.get(created.recurring_run_id)
    assert [iso(t) for t in fetched.next_scheduled_times] == [iso(f.time) for f in previewed.fire_times]

    later = await harness.stubs.recurring_runs.PreviewSchedule(
        pb.PreviewScheduleRequest(trigger=message.trigger, count=2, after=stamp("2027-03-28T01:00:00+00:00")))
    assert [iso(f.time) for f in later.fire_times] == ["2027-03-29T00:30:00Z", "2027-03-30T00:30:00Z"]
    most = await harness.stubs.recurring_runs.PreviewSchedule(pb.PreviewScheduleRequest(trigger=message.trigger, count=100))
    assert len(most.fire_times) == 100

    # A periodic schedule is read in the request's zone: a day's interval is 24 h of elapsed
    # time, so the local time moves with the offset.
    periodic = pb.Trigger(periodic_schedule=pb.PeriodicSchedule(interval_second=86400, start_time=stamp("2027-03-26T23:00:00+00:00")))
    daily = await harness.stubs.recurring_runs.PreviewSchedule(
        pb.PreviewScheduleRequest(trigger=periodic, count=3, time_zone="Europe/Berlin"))
    assert fire_rows(daily) == [
        ("2027-03-27T23:00:00Z", 3600, "2027-03-28T00:00:00+01:00", True),
        ("2027-03-28T23:00:00Z", 7200, "2027-03-29T01:00:00+02:00", False),
        ("2027-03-29T23:00:00Z", 7200, "2027-03-30T01:00:00+02:00", False),
    ]
    utc = await harness.stubs.recurring_runs.PreviewSchedule(pb.PreviewScheduleRequest(trigger=periodic, count=1))
    assert (utc.time_zone, fire_rows(utc)) == ("UTC", [("2027-03-27T23:00:00Z", 0, "2027-03-27T23:00:00+00:00", False)])


async def test_preview_schedule_refuses_what_create_refuses_naming_the_field(harness: Harness, version: Any) -> None:
    async def violations(**request: Any) -> dict[str, str]:
        error = await harness.error(harness.stubs.recurring_runs.PreviewSchedule(pb.PreviewScheduleRequest(**request)))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        return field_violations(error)

    assert await violations(trigger=pb.Trigger(cron_schedule=pb.CronSchedule(cron="61 3 * * *"))) == {
        "trigger.cron_schedule.cron": "minute must be 0-59, got 61"}
    assert list(await violations(trigger=pb.Trigger(cron_schedule=pb.CronSchedule(cron="0 3 * * *", time_zone="Mars/Olympus")))) == [
        "trigger.cron_schedule.time_zone"]
    assert list(await violations(trigger=pb.Trigger(periodic_schedule=pb.PeriodicSchedule(interval_second=5)))) == [
        "trigger.periodic_schedule.interval_second"]
    assert list(await violations(trigger=pb.Trigger())) == ["trigger"]
    daily = pb.Trigger(cron_schedule=pb.CronSchedule(cron="0 3 * * *"))
    assert list(await violations(trigger=daily, count=101)) == ["count"]
    assert list(await violations(trigger=daily, time_zone="Europe/Berlin")) == ["time_zone"]
    # The same cron, refused by create with the same words under its own field name.
    error = await harness.error(harness.create(recurring(version, "x", "61 3 * * *")))
    assert field_violations(error) == {"recurring_run.trigger.cron_schedule.cron": "minute must be 0-59, got 61"}


async def test_backfill_validate_only_lists_the_ticks_and_queues_nothing(harness: Harness, version: Any) -> None:
    created = await harness.create(recurring(version, "quarterly", "*/15 * * * *"))
    rid = created.recurring_run_id
    await harness.advance_to("2026-05-04T10:45:00+00:00", rid)
    await harness.ticks(rid, 3)  # 10:15, 10:30, 10:45
    window = {"recurring_run_id": rid, "start_time": stamp("2026-05-04T09:30:00+00:00"), "end_time": stamp("2026-05-04T10:30:00+00:00")}
    preview = await harness.stubs.recurring_runs.BackfillRecurringRun(pb.BackfillRecurringRunRequest(validate_only=True, **window))
    assert (preview.ticks_queued, preview.ticks_already_present) == (3, 2)
    assert [iso(t) for t in preview.queued_times] == ["2026-05-04T09:30:00Z", "2026-05-04T09:45:00Z", "2026-05-04T10:00:00Z"]
    after = await harness.get(rid)
    assert (after.counters.runs_created, after.counters.ticks_queued) == (3, 0)
    assert len(await harness.runs(rid)) == 3
    # Errors are the real backfill's.
    error = await harness.error(harness.stubs.recurring_runs.BackfillRecurringRun(pb.BackfillRecurringRunRequest(
        validate_only=True, recurring_run_id=rid, start_time=stamp("2026-05-04T09:30:00+00:00"), end_time=stamp("2026-05-05T10:30:00+00:00"))))
    assert field_violations(error) == {"end_time": "must not be in the future"}
    done = await harness.stubs.recurring_runs.BackfillRecurringRun(pb.BackfillRecurringRunRequest(**window))
    assert (done.ticks_queued, done.ticks_already_present, list(done.queued_times)) == (3, 2, [])
    assert await harness.ticks(rid, 6) == [f"2026-05-04T{t}:00Z" for t in ("09:30", "09:45", "10:00", "10:15", "10:30", "10:45")]
    again = await harness.stubs.recurring_runs.BackfillRecurringRun(pb.BackfillRecurringRunRequest(validate_only=True, **window))
    assert (again.ticks_queued, again.ticks_already_present, list(again.queued_times)) == (0, 5, [])


# -- sleeping actors: an idle recurring run is a heap entry, not a task ------------------------


async def test_idle_recurring_runs_hold_no_task_and_each_tick_runs_once(harness: Harness, version: Any) -> None:
    """60 enabled recurring runs between their ticks add no asyncio task (each sleeps in the
    manager's heap); every tick still makes exactly one run of each, at its time."""
    baseline = len(asyncio.all_tasks())
    hourly = [await harness.create(recurring(version, f"hourly-{i}", "0 * * * *")) for i in range(40)]
    half = [await harness.create(recurring(version, f"half-{i}", "30 * * * *")) for i in range(20)]
    await eventually(lambda: asyncio.sleep(0, len(asyncio.all_tasks())), lambda tasks: tasks < baseline + 10)
    for moment in ("2026-05-04T11:00:00+00:00", "2026-05-04T11:30:00+00:00", "2026-05-04T12:00:00+00:00"):
        harness.clock.set(us(moment))
        await harness.advance_to(moment, hourly[-1].recurring_run_id)
    for created in hourly:
        assert await harness.ticks(created.recurring_run_id, 2) == ["2026-05-04T11:00:00Z", "2026-05-04T12:00:00Z"]
    for created in half:
        assert await harness.ticks(created.recurring_run_id, 2) == ["2026-05-04T10:30:00Z", "2026-05-04T11:30:00Z"]
    await eventually(lambda: asyncio.sleep(0, len(asyncio.all_tasks())), lambda tasks: tasks < baseline + 10)


async def test_a_restart_arms_every_recurring_run_and_loses_no_tick_due_meanwhile(data_dir: Path, compiled: dict[str, Spec]) -> None:
    """Enabled recurring runs are armed after the server starts listening; a tick that fell
    due while the server was down or arming runs once, and the next ones follow."""
    clock = VirtualClock(us(START))
    async with served(data_dir, clock) as harness:
        version = await upload(harness.stubs, "instant", compiled["instant-pipeline"])
        created = [await harness.create(recurring(version, f"hourly-{i}", "0 * * * *")) for i in range(30)]
    clock.set(us("2026-05-04T11:00:00+00:00"))  # the tick is due as the server starts
    async with served(data_dir, clock) as harness:
        for recurring_run in created:
            assert await harness.ticks(recurring_run.recurring_run_id, 1) == ["2026-05-04T11:00:00Z"]
        harness.clock.set(us("2026-05-04T12:00:00+00:00"))
        for recurring_run in created:
            assert await harness.ticks(recurring_run.recurring_run_id, 2) == ["2026-05-04T11:00:00Z", "2026-05-04T12:00:00Z"]


async def test_triggering_a_sleeping_recurring_run_takes_its_slot(harness: Harness, version: Any, tmp_path: Path) -> None:
    """A triggered run of an enabled recurring run asleep between ticks counts against
    max_concurrency: the tick that comes while it runs is queued, then runs once it ends."""
    gate = str(tmp_path / "gate")
    created = await harness.create(recurring(version, "hourly", "0 * * * *", parameters={"gate": gate}))
    await harness.stubs.recurring_runs.TriggerRecurringRun(pb.TriggerRecurringRunRequest(recurring_run_id=created.recurring_run_id))
    got = await harness.advance_to("2026-05-04T11:00:00+00:00", created.recurring_run_id)
    assert (got.counters.runs_active, got.counters.ticks_queued, got.counters.runs_created) == (1, 1, 1)
    (tmp_path / "gate").touch()
    assert await harness.ticks(created.recurring_run_id, 2) == ["2026-05-04T10:07:00Z", "2026-05-04T11:00:00Z"]


async def test_ticks_follow_new_and_deleted_versions(harness: Harness, version: Any, compiled: dict[str, Spec]) -> None:
    """Each tick runs the version it names, or its pipeline's latest at that tick: a new
    version is run from the next tick, a deleted one no more (versions are cached between
    ticks, and forgotten when versions are created or deleted)."""
    # Slots enough that every tick starts on time (a queued one would run whatever is latest then).
    follower = await harness.create(recurring(version, "latest", "0 * * * *", max_concurrency=10))
    pinned_message = recurring(version, "pinned", "0 * * * *", max_concurrency=10)
    pinned_message.pipeline_version_reference.pipeline_version_id = version.pipeline_version_id
    pinned = await harness.create(pinned_message)
    await harness.advance_to("2026-05-04T11:00:00+00:00", follower.recurring_run_id)
    newer = await harness.stubs.pipelines.CreatePipelineVersion(pipeline_pb2.CreatePipelineVersionRequest(
        pipeline_id=version.pipeline_id, pipeline_version=pipeline_pb2.PipelineVersion(pipeline_spec=struct(compiled["instant-pipeline"]))))
    await harness.advance_to("2026-05-04T12:00:00+00:00", follower.recurring_run_id)
    await harness.stubs.pipelines.DeletePipelineVersion(pipeline_pb2.DeletePipelineVersionRequest(
        pipeline_id=version.pipeline_id, pipeline_version_id=newer.pipeline_version_id))
    await harness.advance_to("2026-05-04T13:00:00+00:00", follower.recurring_run_id)
    await harness.ticks(follower.recurring_run_id, 3)
    runs = await harness.runs(follower.recurring_run_id)
    assert [r.pipeline_version_reference.pipeline_version_id for r in runs] == [
        version.pipeline_version_id, newer.pipeline_version_id, version.pipeline_version_id]
    await harness.ticks(pinned.recurring_run_id, 3)
    await harness.stubs.pipelines.DeletePipelineVersion(pipeline_pb2.DeletePipelineVersionRequest(
        pipeline_id=version.pipeline_id, pipeline_version_id=version.pipeline_version_id))
    got = await harness.advance_to("2026-05-04T14:00:00+00:00", pinned.recurring_run_id)
    assert got.counters.runs_created == 3 and dict(got.counters.ticks_skipped_by_reason) == {"run creation failed": 1}


async def test_a_tick_the_store_refuses_fails_alone_in_a_shared_commit(data_dir: Path, compiled: dict[str, Spec]) -> None:
    """Ticks of many recurring runs commit together; one that cannot be stored (here: its tick
    already has a run, which the store refuses) does not hold back the others."""
    clock = VirtualClock(us(START))
    async with served(data_dir, clock) as harness:
        version = await upload(harness.stubs, "instant", compiled["instant-pipeline"])
        created = [await harness.create(recurring(version, f"hourly-{i}", "0 * * * *")) for i in range(20)]
        await harness.advance_to("2026-05-04T11:00:00+00:00", created[0].recurring_run_id)
        for recurring_run in created:
            await harness.ticks(recurring_run.recurring_run_id, 1)
    blocked = created[7].recurring_run_id
    with sqlite3.connect(data_dir / "kfpgrpc.db") as conn:  # a run of its 12:00 tick, as if already made
        columns = [row[1] for row in conn.execute("PRAGMA table_info(runs)")]
        values = ", ".join("'blocker'" if c == "run_id" else str(us("2026-05-04T12:00:00+00:00")) if c == "scheduled_at" else c
                           for c in columns)
        conn.execute(f"INSERT INTO runs ({', '.join(columns)}) SELECT {values} FROM runs WHERE recurring_run_id = ?", (blocked,))
    clock.set(us("2026-05-04T11:59:00+00:00"))
    async with served(data_dir, clock) as harness:
        errors: list[str] = []  # of another recurring run, seen by a watcher

        async def watch() -> None:
            request = pb.WatchRecurringRunRequest(recurring_run_id=created[0].recurring_run_id)
            async for snapshot in harness.stubs.recurring_runs.WatchRecurringRun(request):
                errors.append(snapshot.error.message)

        watching = asyncio.create_task(watch())
        await eventually(lambda: asyncio.sleep(0, errors), lambda seen: len(seen) > 0)
        clock.set(us("2026-05-04T12:00:00+00:00"))
        for recurring_run in created:
            if recurring_run.recurring_run_id != blocked:
                assert await harness.ticks(recurring_run.recurring_run_id, 2) == ["2026-05-04T11:00:00Z", "2026-05-04T12:00:00Z"]
        got = await eventually(lambda: harness.get(blocked), lambda got: "cannot be handled" in got.error.message)
        assert got.counters.runs_created == 1
        watching.cancel()
        assert not any(errors), errors  # it never failed for the other's sake


async def test_a_restart_keeps_each_periodic_schedule_on_its_own_anchor(data_dir: Path, compiled: dict[str, Spec]) -> None:
    """Two hourly periodic schedules without a start time, created half an hour apart, share
    their stored trigger: once armed after a restart, each still ticks on its creation time."""
    clock = VirtualClock(us(START))
    async with served(data_dir, clock) as harness:
        version = await upload(harness.stubs, "instant", compiled["instant-pipeline"])
        created = []
        for name, moment in (("early", "2026-05-04T10:07:00+00:00"), ("late", "2026-05-04T10:37:00+00:00")):
            clock.set(us(moment))
            message = recurring(version, name)
            message.trigger.periodic_schedule.interval_second = 3600
            created.append(await harness.create(message))
    clock.set(us("2026-05-04T10:50:00+00:00"))
    async with served(data_dir, clock) as harness:
        await harness.advance_to("2026-05-04T11:40:00+00:00", created[1].recurring_run_id)
        assert await harness.ticks(created[0].recurring_run_id, 1) == ["2026-05-04T11:07:00Z"]
        assert await harness.ticks(created[1].recurring_run_id, 1) == ["2026-05-04T11:37:00Z"]


async def test_a_sleeping_downstream_runs_once_per_upstream_success_even_close_together(harness: Harness, version: Any) -> None:
    """Two upstream recurring runs on one cron finish within milliseconds of each other: the
    downstream, asleep between fires, runs once for each (the second fire arrives while the
    first wakes it)."""
    upstream = [await harness.create(recurring(version, f"upstream-{i}", "0 * * * *", max_concurrency=10)) for i in range(2)]
    message = recurring(version, "downstream", max_concurrency=10)
    message.trigger.upstream_recurring_run_ids.extend(u.recurring_run_id for u in upstream)
    downstream = await harness.create(message)
    await harness.advance_to("2026-05-04T11:00:00+00:00", upstream[1].recurring_run_id)
    for recurring_run in upstream:
        await harness.ticks(recurring_run.recurring_run_id, 1)
    runs = await eventually(lambda: harness.runs(downstream.recurring_run_id), lambda found: len(found) >= 2)
    await asyncio.sleep(0.5)  # no third
    assert len(await harness.runs(downstream.recurring_run_id)) == 2, [r.scheduled_at.ToJsonString() for r in runs]
