"""`kfpgrpc events tail`: follow the durable event log, resuming across restarts."""

from __future__ import annotations

import argparse
import itertools
from typing import Any

from kfpgrpc.client import Client, ReconnectPolicy
from kfpgrpc.commands.common import (
    action,
    ctrl_c_interrupts,
    int64_count,
    print_json,
    say,
    state_name,
    subcommands,
    when,
)
from kfpgrpc.v1 import event_pb2, recurring_run_pb2

EVENT_TYPES = [name for name in event_pb2.EventType.keys() if not name.endswith("UNSPECIFIED")]


def register(commands: Any, options: argparse.ArgumentParser) -> None:
    actions = subcommands(commands, "events", "the durable event log")
    tail = action(actions, "tail", tail_events,
                  "print events as they happen (after the stored ones); reconnects and resumes across server restarts", options)
    tail.add_argument("--after", type=int64_count, default=0, metavar="SEQUENCE", help="only events after this sequence (default 0: all kept)")
    tail.add_argument("--run", default="", metavar="RUN_ID", help="only events of this run")
    tail.add_argument("--recurring-run", default="", metavar="ID", help="only events of this recurring run and its runs")
    tail.add_argument("--experiment", metavar="NAME_OR_ID", help="only events of this experiment")
    tail.add_argument("--type", action="append", choices=EVENT_TYPES, default=[], help="only events of this type; repeatable")
    tail.add_argument("--limit", type=int64_count, metavar="N", help="exit after N events")
    # A tail waits for its server however long it takes, also before its first event.
    tail.set_defaults(reconnect=ReconnectPolicy(max_attempts=None, before_first_message=True))


def tail_events(args: argparse.Namespace, client: Client) -> int:
    events = client.watch_events(args.after, run_id=args.run, recurring_run_id=args.recurring_run,
                                 experiment=args.experiment, types=args.type)
    with ctrl_c_interrupts():
        for event in itertools.islice(events, args.limit):
            if args.output == "json":
                print_json(event, compact=True)
            else:
                say(f"{event.sequence:>6}  {when(event.time)}  {event_pb2.EventType.Name(event.type):<24}  {describe(event)}", flush=True)
    return 0


def describe(event: event_pb2.Event) -> str:
    """The event's subject and payload in a few words."""
    payload = event.WhichOneof("payload")
    subject = " ".join(part for part in (f"run {event.run_id}" if event.run_id else "",
                                         f"recurring run {event.recurring_run_id}" if event.recurring_run_id else "") if part)
    if payload == "run_state_changed":
        change = event.run_state_changed
        detail = f"{change.run_name}: {state_name(change.previous_state) or '-'} -> {state_name(change.state)}"
    elif payload == "run_completed":
        completed = event.run_completed
        detail = f"{completed.run_name}: {state_name(completed.state)}" + "".join(
            f" {artifact.name}={artifact.uri or '(' + artifact.unmatched_reason + ')'}" for artifact in completed.artifacts)
    elif payload == "recurring_run_changed":
        changed = event.recurring_run_changed
        detail = f"{changed.display_name}: {event_pb2.RecurringRunChanged.Change.Name(changed.change)}, " \
                 f"{recurring_run_pb2.RecurringRun.Status.Name(changed.status)}"
    elif payload == "tick_skipped":
        detail = f"tick {when(event.tick_skipped.scheduled_time)} skipped: {event.tick_skipped.reason} {event.tick_skipped.detail}".rstrip()
    elif payload == "run_deleted":
        detail = f"deleted ({event.run_deleted.reason})"
    elif payload == "pipeline_version_created":
        created = event.pipeline_version_created
        detail = f"pipeline {created.pipeline_id}: version {created.pipeline_version_id}"
    else:
        detail = ""
    return f"{subject}  {detail}".strip()
