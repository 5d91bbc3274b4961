"""`kfpgrpc runs create|get|list|watch|logs|terminate|retry`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from kfpgrpc.client import Client, kfp_filter
from kfpgrpc.commands.common import (
    action,
    add_list_options,
    ctrl_c_interrupts,
    list_arguments,
    parameter,
    parameter_values,
    plain_values,
    print_details,
    print_json,
    print_table,
    say,
    show,
    state_name,
    subcommands,
    when,
)
from kfpgrpc.commands.watch import watch_run
from kfpgrpc.v1 import common_pb2, run_pb2


def register(commands: Any, options: argparse.ArgumentParser) -> None:
    actions = subcommands(commands, "runs", "runs: one execution of a pipeline each")
    create = action(actions, "create", create_run, "start a run of a pipeline", options, watch=True)
    create.add_argument("--pipeline", required=True, metavar="NAME_OR_ID")
    create.add_argument("--version", metavar="ID_OR_NAME", help="a version of the pipeline (default: the latest)")
    create.add_argument("--param", type=parameter, action="append", metavar="NAME=VALUE",
                        help="a pipeline parameter, converted to the type the pipeline declares for NAME (a string stays as"
                             " typed; LIST and STRUCT are JSON); repeatable")
    create.add_argument("--experiment", metavar="NAME_OR_ID", help="default: the Default experiment")
    create.add_argument("--name", default="", help="the run's display name (default: '<pipeline> <time>')")
    create.add_argument("--description", default="")
    listing = action(actions, "list", list_runs, "list runs, newest first", options)
    listing.add_argument("--experiment", metavar="NAME_OR_ID")
    states = [name for name in common_pb2.RuntimeState.keys() if name != "RUNTIME_STATE_UNSPECIFIED"]
    add_list_options(listing, sort_by="created_at desc").add_argument(
        "--state", action="append", choices=states, help="only runs in this state; repeatable")
    for name, handler, help in (
        ("get", get_run, "show a run and its tasks"),
        ("watch", watch, "follow a run until it ends, task by task; exit 0 only if it succeeded"),
        ("terminate", terminate_run, "stop a run"),
    ):
        action(actions, name, handler, help, options, target="RUN_ID")
    action(actions, "retry", retry_run, "run again the tasks of a failed or canceled run that did not succeed", options,
           target="RUN_ID", watch=True)
    logs = action(actions, "logs", run_logs, "print the log lines of a run's tasks", options, target="RUN_ID")
    logs.add_argument("--task", default="", help="only this task (task id or name)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until the run ends")


def create_run(args: argparse.Namespace, client: Client) -> int:
    values = parameter_values(args.param, client.resolve_pipeline_version(args.pipeline, args.version).pipeline_spec) if args.param else None
    run = client.create_run(args.pipeline, values, version=args.version, experiment=args.experiment,
                            display_name=args.name, description=args.description)
    return _then_watch(args, client, run)


def _then_watch(args: argparse.Namespace, client: Client, run: run_pb2.Run) -> int:
    """Show the run, or with --watch follow it (JSON output: only its final state)."""
    if not args.watch:
        return show(args, run, run_details)
    return watch_run(client, run.run_id, args.output)


def list_runs(args: argparse.Namespace, client: Client) -> int:
    filter = kfp_filter(state__in=args.state) if args.state else args.filter
    runs = list(client.list_runs(args.experiment, **{**list_arguments(args), "filter": filter}))
    return show(args, runs, run_table)


def get_run(args: argparse.Namespace, client: Client) -> int:
    return show(args, client.get_run(args.target), run_details)


def watch(args: argparse.Namespace, client: Client) -> int:
    return watch_run(client, args.target, args.output)


def terminate_run(args: argparse.Namespace, client: Client) -> int:
    client.terminate_run(args.target)
    run = client.get_run(args.target)
    return show(args, run, lambda r: say(f"run {r.display_name} ({r.run_id}): {state_name(r.state)}"))


def retry_run(args: argparse.Namespace, client: Client) -> int:
    client.retry_run(args.target)
    return _then_watch(args, client, client.get_run(args.target))


def run_logs(args: argparse.Namespace, client: Client) -> int:
    with ctrl_c_interrupts():
        for line in client.run_logs(args.target, args.task, args.follow):
            if args.output == "json":
                print_json(line, compact=True)
            else:
                say(f"{line.task_id}: {line.text}", flush=True)
    return 0


def run_table(runs: Sequence[run_pb2.Run]) -> None:
    print_table(["RUN ID", "NAME", "STATE", "CREATED", "FINISHED"],
                [[r.run_id, r.display_name, state_name(r.state), when(r.created_at), when(r.finished_at)] for r in runs])


def run_details(run: run_pb2.Run) -> None:
    reference = run.pipeline_version_reference
    print_details({
        "Run ID": run.run_id,
        "Name": run.display_name,
        "Description": run.description,
        "State": state_name(run.state),
        "Error": run.error.message.splitlines()[0] if run.error.message else "",
        "Experiment ID": run.experiment_id,
        "Pipeline ID": reference.pipeline_id,
        "Version ID": reference.pipeline_version_id,
        "Recurring run ID": run.recurring_run_id,
        "Parameters": plain_values(run.runtime_config.parameters),
        "Created": when(run.created_at),
        "Scheduled": when(run.scheduled_at) if run.recurring_run_id else "",
        "Finished": when(run.finished_at),
    })
    tasks = run.run_details.task_details
    if tasks:
        say()
        print_table(["TASK", "STATE", "STARTED", "ENDED", "OUTPUTS"],
                    [[t.task_id, state_name(t.state), when(t.start_time), when(t.end_time), plain_values(t.output_parameters)] for t in tasks])
