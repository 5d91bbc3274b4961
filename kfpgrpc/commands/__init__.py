"""The client commands of `kfpgrpc` (experiments, pipelines, runs, recurring, events), beside
`serve`. They talk to a server with kfpgrpc.client."""

from __future__ import annotations

import argparse
from typing import Any

from kfpgrpc.commands import events, experiments, pipelines, recurring, runs
from kfpgrpc.commands.common import BEFORE_COMMAND, ArgumentParser, add_connection_options, client_options, run

__all__ = ["ArgumentParser", "add_client_commands", "add_connection_options_before_commands", "run_client_command", "BEFORE_COMMAND"]


def add_connection_options_before_commands(parser: argparse.ArgumentParser) -> None:
    """Let the `kfpgrpc` parser take the connection flags before the command too
    (`kfpgrpc --server HOST runs list`); given after it, they win."""
    add_connection_options(parser, BEFORE_COMMAND)


def add_client_commands(commands: Any) -> None:
    """Add the client commands to the subparsers of the `kfpgrpc` parser."""
    options = client_options()
    for group in (experiments, pipelines, runs, recurring, events):
        group.register(commands, options)


def run_client_command(args: argparse.Namespace) -> int:
    return run(args)
