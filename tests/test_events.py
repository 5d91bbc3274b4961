"""EventService.WatchEvents as clients use it: resume exactly where they left off (after a
disconnect and across a restart), fan-out to a thousand watchers, filters, a stalled watcher
cut off with the sequence to resume after while runs go on, retention, and bad requests."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest

from kfpgrpc.api.events import EncodedEvents, event_to_proto
from kfpgrpc.clock import MICROS_PER_SECOND, VirtualClock
from kfpgrpc.core.events import Events
from kfpgrpc.domain import PIPELINE_VERSION_CREATED, Event, EventFilter
from kfpgrpc.errors import Unavailable
from kfpgrpc.server import KfpGrpcServer
from kfpgrpc.store.database import Database
from kfpgrpc.v1 import (
    common_pb2,
    experiment_pb2,
    pipeline_pb2,
    recurring_run_pb2,
    run_pb2,
)
from kfpgrpc.v1 import event_pb2 as pb
from tests.stalled_http2 import StalledHttp2Stream
from tests.support import (
    STREAM_TIMEOUT,
    Stubs,
    eventually,
    field_violations,
    read_events,
    run_of,
    running,
    struct,
    upload,
    watch_to_end,
)

Spec = dict[str, Any]
MINUTE = 60 * MICROS_PER_SECOND
START = 1_780_000_000 * MICROS_PER_SECOND


async def add_versions(stubs: Stubs, pipeline_id: str, spec: Spec, count: int) -> list[str]:
    """Upload `count` versions (one PIPELINE_VERSION_CREATED event each), one after the other."""
    created = []
    for _ in range(count):
        version = await stubs.pipelines.CreatePipelineVersion(
            pipeline_pb2.CreatePipelineVersionRequest(
                pipeline_id=pipeline_id, pipeline_version=pipeline_pb2.PipelineVersion(pipeline_spec=struct(spec))
            )
        )
        created.append(version.pipeline_version_id)
    return created


async def new_pipeline(stubs: Stubs, name: str = "p") -> str:
    pipeline = await stubs.pipelines.CreatePipeline(pipeline_pb2.CreatePipelineRequest(pipeline=pipeline_pb2.Pipeline(name=name)))
    return pipeline.pipeline_id


def version_ids(events: list[pb.Event]) -> list[str]:
    return [e.pipeline_version_created.pipeline_version_id for e in events]


async def test_a_watcher_resumes_exactly_after_a_disconnect_and_a_restart(data_dir: Path, compiled: dict[str, Spec]) -> None:
    """Read part of the log, hang up, resume from the last sequence; stay connected through a
    shutdown (the stream ends UNAVAILABLE naming where to resume), resume on the restarted
    server: every event arrives exactly once, in order."""
    spec = compiled["instant-pipeline"]
    seen: list[pb.Event] = []
    async with running(data_dir) as (_, stubs):
        pipeline_id = await new_pipeline(stubs)
        created = await add_versions(stubs, pipeline_id, spec, 30)
        seen += await read_events(stubs, 12)
        seen += await read_events(stubs, 18, after_sequence=seen[-1].sequence)
        live = stubs.events.WatchEvents(pb.WatchEventsRequest(after_sequence=seen[-1].sequence))
        created += await add_versions(stubs, pipeline_id, spec, 5)
        for _ in range(5):
            seen.append(await asyncio.wait_for(live.read(), STREAM_TIMEOUT))
        stopping = asyncio.ensure_future(live.read())
    with pytest.raises(grpc.aio.AioRpcError) as ended:  # the server stopped under the stream
        await asyncio.wait_for(stopping, STREAM_TIMEOUT)
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    assert f"after_sequence={seen[-1].sequence}" in (ended.value.details() or "")
    async with running(data_dir) as (_, stubs):
        created += await add_versions(stubs, pipeline_id, spec, 5)
        seen += await read_events(stubs, 5, after_sequence=seen[-1].sequence)
        assert await read_events(stubs, 40) == seen  # the stored log holds the same events

    assert [e.sequence for e in seen] == list(range(seen[0].sequence, seen[0].sequence + 40))
    assert version_ids(seen) == created
    assert all(e.type == pb.PIPELINE_VERSION_CREATED and e.HasField("time") for e in seen)


async def test_a_thousand_watchers_each_receive_every_event_of_a_burst_in_order(
    stubs: Stubs, server: KfpGrpcServer, compiled: dict[str, Spec]
) -> None:
    pipeline_id = await new_pipeline(stubs)
    channels = [grpc.aio.insecure_channel(server.address) for _ in range(10)]
    try:
        watchers = [asyncio.create_task(read_events(Stubs.on(channels[i % 10]), 50)) for i in range(1000)]
        # The burst: 50 uploads from 5 concurrent clients, while the watchers subscribe.
        spec = compiled["instant-pipeline"]
        batches = await asyncio.gather(*(add_versions(stubs, pipeline_id, spec, 10) for _ in range(5)))
        received = await asyncio.gather(*watchers)
    finally:
        for channel in channels:
            await channel.close()
    log = await read_events(stubs, 50)
    assert sorted(version_ids(log)) == sorted(v for batch in batches for v in batch)
    assert [e.sequence for e in log] == sorted({e.sequence for e in log})
    assert all(events == log for events in received)


async def test_run_events_and_filters(stubs: Stubs, compiled: dict[str, Spec]) -> None:
    """A run's life as events (each state, then its completion), selected by run, recurring
    run, experiment and type; a filter on one run hides the others'."""
    version = await upload(stubs, "instant", compiled["instant-pipeline"])
    experiment = await stubs.experiments.CreateExperiment(
        experiment_pb2.CreateExperimentRequest(experiment=experiment_pb2.Experiment(display_name="filtered"))
    )
    in_experiment = run_of(version, "in-experiment")
    in_experiment.experiment_id = experiment.experiment_id
    first = await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=in_experiment))
    other = await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=run_of(version, "other")))
    await watch_to_end(stubs.runs, first.run_id)
    await watch_to_end(stubs.runs, other.run_id)

    of_run = await read_events(stubs, 4, run_id=first.run_id)
    assert [(e.type, e.run_state_changed.state if e.HasField("run_state_changed") else e.run_completed.state) for e in of_run] == [
        (pb.RUN_STATE_CHANGED, common_pb2.PENDING),
        (pb.RUN_STATE_CHANGED, common_pb2.RUNNING),
        (pb.RUN_STATE_CHANGED, common_pb2.SUCCEEDED),
        (pb.RUN_COMPLETED, common_pb2.SUCCEEDED),
    ]
    assert [e.run_state_changed.previous_state for e in of_run[:3]] == [
        common_pb2.RUNTIME_STATE_UNSPECIFIED, common_pb2.PENDING, common_pb2.RUNNING,
    ]
    assert {(e.run_id, e.experiment_id) for e in of_run} == {(first.run_id, experiment.experiment_id)}
    completed = of_run[-1].run_completed
    assert (completed.run_name, completed.pipeline_name) == ("in-experiment", "instant")
    assert completed.start_time.ToMicroseconds() <= completed.end_time.ToMicroseconds()
    assert await read_events(stubs, 4, experiment_id=experiment.experiment_id) == of_run
    completions = await read_events(stubs, 2, types=[pb.RUN_COMPLETED])
    assert {e.run_id for e in completions} == {first.run_id, other.run_id}
    assert {e.type for e in await read_events(stubs, 2, types=[pb.PIPELINE_VERSION_CREATED, pb.RUN_COMPLETED])} <= {
        pb.PIPELINE_VERSION_CREATED, pb.RUN_COMPLETED,
    }


async def test_watchers_with_one_filter_each_get_every_match_and_other_filters_only_theirs(
    stubs: Stubs, compiled: dict[str, Spec]
) -> None:
    """Live streams, several with each filter (the server matches a filter once for all its
    watchers and shares the encoded event): each gets exactly the events the stored log holds
    for its filter, in order."""
    version = await upload(stubs, "instant", compiled["instant-pipeline"])
    experiments = [
        (await stubs.experiments.CreateExperiment(
            experiment_pb2.CreateExperimentRequest(experiment=experiment_pb2.Experiment(display_name=name))
        )).experiment_id
        for name in ("a", "b")
    ]
    a, b = experiments
    # (filter, how many events it matches: 4 per run, 1 per version, the upload's included)
    filters: list[tuple[dict[str, Any], int]] = [
        *[({"experiment_id": a}, 8)] * 3, *[({"experiment_id": b}, 4)] * 2, *[({"types": [pb.RUN_COMPLETED]}, 3)] * 2,
        ({"experiment_id": a, "types": [pb.RUN_COMPLETED]}, 2), ({"types": [pb.PIPELINE_VERSION_CREATED]}, 3),
    ]
    calls = [stubs.events.WatchEvents(pb.WatchEventsRequest(**wanted)) for wanted, _ in filters]
    extra_reads = []
    try:
        await asyncio.gather(*(asyncio.wait_for(call.initial_metadata(), STREAM_TIMEOUT) for call in calls))
        runs = []
        for index, experiment_id in enumerate([a, b, a]):
            message = run_of(version, f"run-{index}")
            message.experiment_id = experiment_id
            runs.append(await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=message)))
        for run in runs:
            await watch_to_end(stubs.runs, run.run_id)
        added = await add_versions(stubs, version.pipeline_id, compiled["instant-pipeline"], 2)
        received = {}
        for index, (call, (wanted, count)) in enumerate(zip(calls, filters)):
            received[index] = [await asyncio.wait_for(call.read(), STREAM_TIMEOUT) for _ in range(count)]
            assert received[index] == await read_events(stubs, count, **wanted), wanted
            extra_reads.append(asyncio.ensure_future(call.read()))
        # Nothing else matched: every stream is waiting (all the events were committed before).
        done, _ = await asyncio.wait(extra_reads, timeout=0.2)
        assert not done, [read.result() for read in done]
    finally:
        for call in calls:
            call.cancel()
        await asyncio.gather(*extra_reads, return_exceptions=True)
    assert {e.run_id for e in received[0] if e.run_id} == {runs[0].run_id, runs[2].run_id}
    assert version_ids(received[len(filters) - 1])[1:] == added


async def test_a_stalled_watcher_holds_up_neither_the_writes_nor_a_watcher_with_the_same_filter(
    data_dir: Path, compiled: dict[str, Spec]
) -> None:
    """Two watchers of one filter, one of them on an HTTP/2 window of 0 bytes: the other gets
    every event as it is committed; the stalled one, once it reads again, gets the one message
    that was waiting and is cut off (its buffer of 20 overflowed), and resuming after it gives
    the rest."""
    async with running(data_dir, event_watcher_capacity=20) as (server, stubs):
        pipeline_id = await new_pipeline(stubs)
        wanted: dict[str, Any] = {"types": [pb.PIPELINE_VERSION_CREATED]}
        stalled = await StalledHttp2Stream.open(server.address, "/kfpgrpc.v1.EventService/WatchEvents", pb.WatchEventsRequest(**wanted))
        try:
            await asyncio.wait_for(stalled.headers_received.wait(), STREAM_TIMEOUT)
            sibling = stubs.events.WatchEvents(pb.WatchEventsRequest(**wanted))
            await asyncio.wait_for(sibling.initial_metadata(), STREAM_TIMEOUT)
            added, received = [], []
            for _ in range(60):  # one commit each, every one read by the sibling before the next
                added += await add_versions(stubs, pipeline_id, compiled["instant-pipeline"], 1)
                received.append(await asyncio.wait_for(sibling.read(), STREAM_TIMEOUT))
            sibling.cancel()
            assert version_ids(received) == added
            assert stalled.messages(pb.Event) == [] and not stalled.ended.is_set()  # it really was stalled
            await stalled.resume()
            await asyncio.wait_for(stalled.ended.wait(), STREAM_TIMEOUT)
            assert not stalled.reset
            assert stalled.messages(pb.Event) == received[:1]
            assert received[:1] + await read_events(stubs, 59, after_sequence=received[0].sequence, **wanted) == received
        finally:
            await stalled.close()


async def test_a_stalled_watcher_is_cut_off_and_resumes_while_runs_go_on(data_dir: Path, compiled: dict[str, Spec]) -> None:
    """A watcher that stops reading while 2,000 ticks are handled: the schedule goes on and its
    run succeeds; the watcher then gets what was buffered for it, RESOURCE_EXHAUSTED naming the
    sequence to resume after, and resuming from there gives the rest, exactly once."""
    clock = VirtualClock(START)
    async with running(data_dir, clock, event_watcher_capacity=100) as (server, stubs):
        version = await upload(stubs, "instant", compiled["instant-pipeline"])
        message = recurring_run_pb2.RecurringRun(
            display_name="every-minute", mode=recurring_run_pb2.RecurringRun.ENABLE, no_catchup=True,
            pipeline_version_reference=common_pb2.PipelineVersionReference(pipeline_id=version.pipeline_id),
        )
        message.trigger.periodic_schedule.interval_second = 60
        created = await stubs.recurring_runs.CreateRecurringRun(recurring_run_pb2.CreateRecurringRunRequest(recurring_run=message))
        of_it = {"recurring_run_id": created.recurring_run_id}
        (creation,) = await read_events(stubs, 1, **of_it)
        # A client with a tiny transport window: the server cannot push past it.
        async with grpc.aio.insecure_channel(
            server.address, options=[("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 1024)]
        ) as slow_channel:
            stalled = Stubs.on(slow_channel).events.WatchEvents(pb.WatchEventsRequest(after_sequence=creation.sequence, **of_it))
            await stalled.wait_for_connection()
            clock.advance(2000 * 60)  # 1,999 missed ticks skipped (no_catchup); the newest runs
            runs = await eventually(
                lambda: stubs.runs.ListRuns(run_pb2.ListRunsRequest()),
                lambda page: page.total_size == 1 and page.runs[0].state == common_pb2.SUCCEEDED,
            )
            received: list[pb.Event] = []
            with pytest.raises(grpc.aio.AioRpcError) as cut_off:
                async for event in stalled:
                    received.append(event)
        assert cut_off.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        last = received[-1].sequence if received else creation.sequence
        assert f"resume with after_sequence={last}" in (cut_off.value.details() or "")
        everything = await read_events(stubs, 1999 + 4, after_sequence=creation.sequence, **of_it)
        rest = await read_events(stubs, len(everything) - len(received), after_sequence=last, **of_it)
        assert received + rest == everything
    skips = [e.tick_skipped for e in everything if e.type == pb.TICK_SKIPPED]
    assert [s.reason for s in skips] == ["no_catchup"] * 1999
    assert [s.scheduled_time.ToMicroseconds() for s in skips] == [START + n * MINUTE for n in range(1, 2000)]
    assert [e.type for e in everything[1999:]] == [pb.RUN_STATE_CHANGED] * 3 + [pb.RUN_COMPLETED]
    assert {e.run_id for e in everything[1999:]} == {runs.runs[0].run_id}


async def test_events_older_than_the_retention_are_pruned(data_dir: Path, compiled: dict[str, Spec]) -> None:
    clock = VirtualClock(START)
    async with running(data_dir, clock, event_retention_us=60 * MINUTE) as (_, stubs):
        pipeline_id = await new_pipeline(stubs)
        old = await read_events(stubs, 3, after_sequence=0) if await add_versions(stubs, pipeline_id, compiled["instant-pipeline"], 3) else []
        clock.advance(2 * 3600)  # two hours later: the sweep prunes them
        await eventually(lambda: error_of(stubs, old[0].sequence), lambda error: error is not None)
        error = await error_of(stubs, old[0].sequence)
        assert error is not None and error.code() == grpc.StatusCode.OUT_OF_RANGE
        assert f"resume with after_sequence={old[-1].sequence}" in (error.details() or "")
        new = await add_versions(stubs, pipeline_id, compiled["instant-pipeline"], 1)
        assert version_ids(await read_events(stubs, 1, after_sequence=0)) == new  # 0: the oldest retained
        assert version_ids(await read_events(stubs, 1, after_sequence=old[-1].sequence)) == new


async def error_of(stubs: Stubs, after_sequence: int) -> grpc.aio.AioRpcError | None:
    """The error WatchEvents answers at once for `after_sequence`, if any."""
    call = stubs.events.WatchEvents(pb.WatchEventsRequest(after_sequence=after_sequence))
    try:
        await asyncio.wait_for(call.read(), 0.5)
    except grpc.aio.AioRpcError as error:
        return error
    except asyncio.TimeoutError:
        pass
    finally:
        call.cancel()
    return None


@pytest.mark.parametrize("newest", [0, 1])
async def test_a_watch_whose_stream_starts_after_the_server_began_stopping_ends_unavailable(tmp_path: Path, newest: int) -> None:
    """The server's stop (Events.close) ends every watch, also one that watch() handed out
    before it and whose stream starts after it: an HTTP event stream starts the stream only
    once it has sent its first bytes, or watch() may still be reading `newest`'s start when the
    stop comes. Such a watch used to follow for ever, and held the HTTP server's stop until the
    shutdown grace ran out (uvicorn then cancelled it with an ERROR and a traceback)."""
    db = await Database.open(tmp_path / "kfpgrpc.db")
    try:
        events = Events(db)
        stream = await events.watch(0, EventFilter(), newest)
        events.close()
        with pytest.raises(Unavailable, match="shutting down; resume with after_sequence=0"):
            await asyncio.wait_for(anext(stream), STREAM_TIMEOUT)  # the timeout only turns a hang into a failure
    finally:
        await db.close()


async def test_bad_requests_name_the_field(stubs: Stubs) -> None:
    for request, field, text in [
        (pb.WatchEventsRequest(after_sequence=5), "after_sequence", "is after the newest event, 0"),
        (pb.WatchEventsRequest(after_sequence=-1), "after_sequence", "must not be negative"),
        (pb.WatchEventsRequest(types=[pb.RUN_COMPLETED, 99]), "types[1]", "99 is not an event type"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await stubs.events.WatchEvents(request).read()
        assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(failure.value) == {field: text}


async def test_newest_starts_with_the_newest_matching_events_then_follows(stubs: Stubs, compiled: dict[str, Spec]) -> None:
    """`newest` N sends the newest N stored events that match the filters (run, types, both),
    oldest first, then follows as from after_sequence; fewer when fewer match."""
    version = await upload(stubs, "instant", compiled["instant-pipeline"])
    first = await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=run_of(version, "first")))
    other = await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=run_of(version, "other")))
    await watch_to_end(stubs.runs, first.run_id)
    await watch_to_end(stubs.runs, other.run_id)

    of_first = await read_events(stubs, 4, run_id=first.run_id)
    assert await read_events(stubs, 2, run_id=first.run_id, newest=2) == of_first[-2:]
    assert await read_events(stubs, 4, run_id=first.run_id, newest=1000) == of_first  # all there are
    changes = await read_events(stubs, 3, run_id=other.run_id, types=[pb.RUN_STATE_CHANGED])
    newest_two = await read_events(stubs, 2, run_id=other.run_id, types=[pb.RUN_STATE_CHANGED], newest=2)
    assert newest_two == changes[-2:]
    assert [e.run_state_changed.state for e in newest_two] == [common_pb2.RUNNING, common_pb2.SUCCEEDED]
    completions = await read_events(stubs, 2, types=[pb.RUN_COMPLETED])
    assert await read_events(stubs, 1, types=[pb.RUN_COMPLETED], newest=1) == completions[-1:]

    # Stored first, then live: the newest version's event, then one created after the start.
    stored = await read_events(stubs, 1, types=[pb.PIPELINE_VERSION_CREATED])
    call = stubs.events.WatchEvents(pb.WatchEventsRequest(types=[pb.PIPELINE_VERSION_CREATED], newest=1))
    try:
        assert await asyncio.wait_for(call.read(), STREAM_TIMEOUT) == stored[0]
        added = await add_versions(stubs, version.pipeline_id, compiled["instant-pipeline"], 1)
        live = await asyncio.wait_for(call.read(), STREAM_TIMEOUT)
        assert version_ids([live]) == added and live.sequence > stored[0].sequence
    finally:
        call.cancel()


async def test_bad_newest_requests_name_the_field(stubs: Stubs) -> None:
    """`newest` is checked first: out of range, or with after_sequence, whatever the log holds."""
    for request, text in [
        (pb.WatchEventsRequest(newest=1001), "must be 1 to 1,000 (0 = start at after_sequence)"),
        (pb.WatchEventsRequest(newest=-1), "must be 1 to 1,000 (0 = start at after_sequence)"),
        (pb.WatchEventsRequest(newest=5, after_sequence=1), "cannot be combined with after_sequence (set one of them)"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await stubs.events.WatchEvents(request).read()
        assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(failure.value) == {"newest": text}


def test_encoded_events_are_each_events_own_message_also_once_the_budget_evicts() -> None:
    """The shared encoding of an event is its own Event message, whether it is served from the
    cache or encoded again after the byte budget (here about two events) evicted it."""
    events = [
        Event(n, START + n, PIPELINE_VERSION_CREATED, details={"pipeline_id": "p", "pipeline_version_id": f"v{n}"})
        for n in range(1, 6)
    ]
    budget = 2 * len(event_to_proto(events[0]).SerializeToString())
    encoded = EncodedEvents(max_bytes=budget)
    for event in [*events, *events[::-1], events[0], events[0]]:
        assert pb.Event.FromString(encoded(event)) == event_to_proto(event)
        assert 0 < encoded.held_bytes <= budget
