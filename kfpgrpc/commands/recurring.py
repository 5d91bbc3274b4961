"""`kfpgrpc recurring create|list|get|update|enable|disable|trigger|backfill|next|delete`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from google.protobuf import struct_pb2

from kfpgrpc.client import Client
from kfpgrpc.commands.common import (
    Handler,
    action,
    add_list_options,
    change_command,
    count,
    duration,
    int64_count,
    list_arguments,
    parameter,
    parameter_values,
    plain_values,
    print_details,
    print_table,
    say,
    show,
    subcommands,
    time_value,
    utc_datetime,
    when,
)
from kfpgrpc.commands.runs import run_details
from kfpgrpc.commands.watch import watch_run
from kfpgrpc.v1 import recurring_run_pb2

OVERLAP_POLICIES = [name for name in recurring_run_pb2.OverlapPolicy.keys() if not name.endswith("UNSPECIFIED")]


def register(commands: Any, options: argparse.ArgumentParser) -> None:
    actions = subcommands(commands, "recurring", "recurring runs: a pipeline run on a schedule")
    create = action(actions, "create", create_recurring_run, "create a recurring run (enabled unless --disabled)", options)
    _add_definition_flags(create, creating=True)
    update = action(actions, "update", update_recurring_run, "change the given fields of a recurring run", options, target="ID_OR_NAME")
    _add_definition_flags(update, creating=False)
    listing = action(actions, "list", list_recurring_runs, "list recurring runs", options)
    listing.add_argument("--experiment", metavar="NAME_OR_ID")
    add_list_options(listing)
    for name, handler, help in (
        ("get", get_recurring_run, "show a recurring run with its counters and next fire times"),
        ("enable", _change(lambda client, id: client.enable_recurring_run(id), "enabled"),
         "enable: ticks missed while disabled are caught up (unless no_catchup)"),
        ("disable", _change(lambda client, id: client.disable_recurring_run(id), "disabled"), "disable: no new ticks"),
    ):
        action(actions, name, handler, help, options, target="ID_OR_NAME")
    action(actions, "trigger", trigger_recurring_run, "start one run now, outside the schedule", options, target="ID_OR_NAME", watch=True)
    backfill = action(actions, "backfill", backfill_recurring_run, "queue a run for every tick in [--start, --end] that has none",
                      options, target="ID_OR_NAME")
    backfill.add_argument("--start", type=time_value, required=True, metavar="TIME", help="ISO 8601; no zone = UTC")
    backfill.add_argument("--end", type=time_value, required=True, metavar="TIME", help="ISO 8601, not in the future")
    upcoming = action(actions, "next", next_fire_times, "print the next fire times, in the schedule's zone and in UTC", options,
                      target="ID_OR_NAME")
    upcoming.add_argument("--count", type=count, default=10, help="at most N (the server computes up to 10)")
    action(actions, "delete", _change(lambda client, id: client.delete_recurring_run(id), "deleted"), "delete a recurring run", options,
           target="ID_OR_NAME")


def _add_definition_flags(parser: argparse.ArgumentParser, creating: bool) -> None:
    """The flags that define a recurring run; on update, only those given change."""
    parser.add_argument("--pipeline", required=creating, metavar="NAME_OR_ID")
    parser.add_argument("--version", metavar="ID_OR_NAME", help="a version of the pipeline (default: follow the latest)")
    schedule = parser.add_mutually_exclusive_group(required=creating)
    schedule.add_argument("--cron", metavar="EXPR", help="5 fields (crontab), 6 (seconds first), @daily… or '@every 1h'")
    schedule.add_argument("--every", type=duration, metavar="DURATION", help="a periodic schedule: 90s, 15m, 1h30m or seconds")
    parser.add_argument("--time-zone", metavar="ZONE", help="IANA zone of --cron (default: the server's, UTC unless set)")
    parser.add_argument("--start", type=time_value, metavar="TIME", help="no tick before (ISO 8601; no zone = UTC)")
    parser.add_argument("--end", type=time_value, metavar="TIME", help="no tick after (ISO 8601; no zone = UTC)")
    parser.add_argument("--max-concurrency", type=int64_count, metavar="N", help="runs active at once (1 to 100; default 1)")
    parser.add_argument("--overlap-policy", choices=OVERLAP_POLICIES, help="when every slot is busy (default BUFFER_ALL)")
    parser.add_argument("--param", type=parameter, action="append", metavar="NAME=VALUE",
                        help="a pipeline parameter for every run, converted to the type the pipeline declares for NAME"
                             " (strings may hold macros such as [[ScheduledTime]]); repeatable")
    parser.add_argument("--experiment", metavar="NAME_OR_ID")
    parser.add_argument("--name", help="display name, prefix of its runs' names (default: the pipeline's name)")
    parser.add_argument("--description")
    parser.add_argument("--catchup", action=argparse.BooleanOptionalAction,
                        help="after downtime run every missed tick (the default), or with --no-catchup only the latest")
    if creating:
        parser.add_argument("--disabled", action="store_true", help="create it disabled")


def _options(args: argparse.Namespace, spec: Callable[[], struct_pb2.Struct]) -> dict[str, Any]:
    """The client's RecurringRunOptions from the flags given (None = not given); `spec` gives
    the pipeline spec whose declared types the --param values take."""
    return {
        "version": args.version, "cron": args.cron, "interval": args.every, "time_zone": args.time_zone,
        "start_time": args.start, "end_time": args.end, "max_concurrency": args.max_concurrency,
        "overlap_policy": args.overlap_policy, "parameters": parameter_values(args.param, spec()) if args.param else None,
        "experiment": args.experiment, "display_name": args.name, "description": args.description,
        "no_catchup": None if args.catchup is None else not args.catchup,
    }


def create_recurring_run(args: argparse.Namespace, client: Client) -> int:
    def spec() -> struct_pb2.Struct:
        return client.resolve_pipeline_version(args.pipeline, args.version).pipeline_spec

    options = {name: value for name, value in _options(args, spec).items() if value is not None}
    recurring_run = client.create_recurring_run(args.pipeline, enabled=not args.disabled, **options)
    return show(args, recurring_run, recurring_run_details)


def update_recurring_run(args: argparse.Namespace, client: Client) -> int:
    found = client.find_recurring_run(args.target)

    def spec() -> struct_pb2.Struct:
        """The spec the recurring run will have: of --pipeline and --version when given, else its own."""
        reference = found.pipeline_version_reference
        if not args.pipeline and found.HasField("pipeline_spec"):
            return found.pipeline_spec
        version = args.version or (None if args.pipeline else reference.pipeline_version_id or None)
        return client.resolve_pipeline_version(args.pipeline or reference.pipeline_id, version).pipeline_spec

    changes = {name: value for name, value in {**_options(args, spec), "pipeline": args.pipeline}.items() if value is not None}
    return show(args, client.update_recurring_run(found.recurring_run_id, **changes), recurring_run_details)


def list_recurring_runs(args: argparse.Namespace, client: Client) -> int:
    return show(args, list(client.list_recurring_runs(args.experiment, **list_arguments(args))), recurring_run_table)


def get_recurring_run(args: argparse.Namespace, client: Client) -> int:
    return show(args, client.find_recurring_run(args.target), recurring_run_details)


def _change(operation: Callable[[Client, str], None], done: str) -> Handler:
    return change_command("recurring run", lambda client, name: client.find_recurring_run(name), lambda r: r.recurring_run_id, operation, done)


def trigger_recurring_run(args: argparse.Namespace, client: Client) -> int:
    run = client.trigger_recurring_run(client.find_recurring_run(args.target).recurring_run_id)
    if args.watch:
        return watch_run(client, run.run_id, args.output)
    return show(args, run, run_details)


def backfill_recurring_run(args: argparse.Namespace, client: Client) -> int:
    recurring_run = client.find_recurring_run(args.target)
    result = client.backfill_recurring_run(recurring_run.recurring_run_id, args.start, args.end)
    return show(args, result, lambda r: say(
        f"queued {r.ticks_queued} ticks of {recurring_run.display_name}; {r.ticks_already_present} already had a run"))


def next_fire_times(args: argparse.Namespace, client: Client) -> int:
    recurring_run = client.find_recurring_run(args.target)
    zone_name = recurring_run.trigger.cron_schedule.time_zone or "UTC"
    zone = ZoneInfo(zone_name)
    times = [utc_datetime(time) for time in recurring_run.next_scheduled_times[: args.count]]
    if args.output == "json":
        print(json.dumps([{"time_zone": zone_name, "local": t.astimezone(zone).isoformat(), "utc": t.isoformat().replace("+00:00", "Z")}
                          for t in times], indent=2))
    elif not times:
        state = recurring_run_pb2.RecurringRun.Status.Name(recurring_run.status)
        say(f"no upcoming fire times ({'its schedule has ended' if state == 'ENABLED' else state.lower()})")
    else:
        print_table([zone_name.upper() if zone_name == "UTC" else zone_name, "UTC"],
                    [[f"{t.astimezone(zone):%Y-%m-%d %H:%M:%S %Z}", f"{t:%Y-%m-%d %H:%M:%S} UTC"] for t in times])
    return 0


def schedule_text(recurring_run: recurring_run_pb2.RecurringRun) -> str:
    trigger = recurring_run.trigger
    if trigger.HasField("cron_schedule"):
        return f"cron {trigger.cron_schedule.cron} ({trigger.cron_schedule.time_zone or 'UTC'})"
    if trigger.HasField("periodic_schedule"):
        return f"every {trigger.periodic_schedule.interval_second}s"
    return ""


def recurring_run_table(recurring_runs: Sequence[recurring_run_pb2.RecurringRun]) -> None:
    print_table(
        ["RECURRING RUN ID", "NAME", "STATUS", "SCHEDULE", "NEXT", "RUNS"],
        [[r.recurring_run_id, r.display_name, recurring_run_pb2.RecurringRun.Status.Name(r.status), schedule_text(r),
          when(r.next_scheduled_times[0]) if r.next_scheduled_times else "", str(r.counters.runs_created)] for r in recurring_runs],
    )


def recurring_run_details(recurring_run: recurring_run_pb2.RecurringRun) -> None:
    r, counters = recurring_run, recurring_run.counters
    schedule = getattr(r.trigger, r.trigger.WhichOneof("trigger") or "cron_schedule")
    print_details({
        "Recurring run ID": r.recurring_run_id,
        "Name": r.display_name,
        "Description": r.description,
        "Status": recurring_run_pb2.RecurringRun.Status.Name(r.status),
        "Error": r.error.message,
        "Schedule": schedule_text(r),
        "Start": when(schedule.start_time),
        "End": when(schedule.end_time),
        "Pipeline ID": r.pipeline_version_reference.pipeline_id,
        "Version ID": r.pipeline_version_reference.pipeline_version_id or "(latest)",
        "Experiment ID": r.experiment_id,
        "Parameters": plain_values(r.runtime_config.parameters),
        "Max concurrency": str(r.max_concurrency or 1),
        "Overlap policy": recurring_run_pb2.OverlapPolicy.Name(r.overlap_policy or recurring_run_pb2.BUFFER_ALL),
        "Catch-up": "latest missed tick only" if r.no_catchup else "every missed tick",
        "Runs": f"{counters.runs_created} created, {counters.runs_active} active, {counters.ticks_queued} queued, {counters.ticks_skipped} skipped",
        "Last tick": when(r.last_scheduled_time),
        "Next": ", ".join(when(t) for t in r.next_scheduled_times[:3]),
        "Created": when(r.created_at),
        "Updated": when(r.updated_at),
    })

