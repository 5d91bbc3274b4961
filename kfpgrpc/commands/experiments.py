"""`kfpgrpc experiments list|create|get|archive|unarchive|delete`."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from kfpgrpc.client import Client
from kfpgrpc.commands.common import (
    Handler,
    action,
    add_list_options,
    change_command,
    list_arguments,
    print_details,
    print_table,
    show,
    subcommands,
    when,
)
from kfpgrpc.v1 import experiment_pb2


def register(commands: Any, options: argparse.ArgumentParser) -> None:
    actions = subcommands(commands, "experiments", "experiments: groups of runs and recurring runs")
    listing = action(actions, "list", list_experiments, "list experiments", options)
    add_list_options(listing)
    create = action(actions, "create", create_experiment, "create an experiment", options)
    create.add_argument("name")
    create.add_argument("--description", default="")
    for name, handler, help in (
        ("get", get_experiment, "show an experiment"),
        ("archive", _change(lambda client, id: client.archive_experiment(id), "archived"),
         "archive an experiment and its runs; disable its recurring runs"),
        ("unarchive", _change(lambda client, id: client.unarchive_experiment(id), "unarchived"), "restore an archived experiment"),
        ("delete", _change(lambda client, id: client.delete_experiment(id), "deleted"), "delete an experiment that has no runs"),
    ):
        action(actions, name, handler, help, options, target="NAME_OR_ID")


def list_experiments(args: argparse.Namespace, client: Client) -> int:
    return show(args, list(client.list_experiments(**list_arguments(args))), experiment_table)


def create_experiment(args: argparse.Namespace, client: Client) -> int:
    return show(args, client.create_experiment(args.name, args.description), experiment_details)


def get_experiment(args: argparse.Namespace, client: Client) -> int:
    return show(args, client.find_experiment(args.target), experiment_details)


def _change(operation: Callable[[Client, str], None], done: str) -> Handler:
    return change_command("experiment", lambda client, name: client.find_experiment(name), lambda e: e.experiment_id, operation, done)


def experiment_table(experiments: Sequence[experiment_pb2.Experiment]) -> None:
    print_table(
        ["EXPERIMENT ID", "NAME", "STATE", "CREATED", "LAST RUN"],
        [[e.experiment_id, e.display_name, experiment_pb2.Experiment.StorageState.Name(e.storage_state),
          when(e.created_at), when(e.last_run_created_at)] for e in experiments],
    )


def experiment_details(experiment: experiment_pb2.Experiment) -> None:
    print_details({
        "Experiment ID": experiment.experiment_id,
        "Name": experiment.display_name,
        "Description": experiment.description,
        "State": experiment_pb2.Experiment.StorageState.Name(experiment.storage_state),
        "Created": when(experiment.created_at),
        "Last run": when(experiment.last_run_created_at),
    })
