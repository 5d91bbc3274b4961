"""What the client commands share: connection flags, argument types, output, error handling."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from google.protobuf import json_format, timestamp_pb2
from google.protobuf.message import Message

from kfpgrpc.client import Client, KfpGrpcError, ReconnectPolicy
from kfpgrpc.client.messages import interval_seconds, timestamp
from kfpgrpc.v1 import common_pb2

T = TypeVar("T")
Handler = Callable[[argparse.Namespace, Client], int]


class ArgumentParser(argparse.ArgumentParser):
    """Reports a bad command line as one line on stderr, `kfpgrpc: <command>: <problem>`, exit 2."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("kfpgrpc").strip()
        self.exit(2, f"kfpgrpc: {command + ': ' if command else ''}{message} (see --help)\n")


def client_options() -> argparse.ArgumentParser:
    """The flags every client command takes (a parent parser)."""
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("connection")
    group.add_argument("--server", help="HOST:PORT of the server (env KFPGRPC_SERVER; default 127.0.0.1:8887)")
    group.add_argument("--token", help="bearer token of `kfpgrpc serve --auth-token` (env KFPGRPC_TOKEN)")
    group.add_argument("--tls", action="store_true", help="use TLS, verifying the server with the system's CAs")
    group.add_argument("--tls-ca", type=existing_file, metavar="FILE", help="PEM CA bundle that signed the server's certificate; implies --tls")
    group.add_argument("--tls-cert", type=existing_file, metavar="FILE", help="PEM client certificate (mTLS); needs --tls-key")
    group.add_argument("--tls-key", type=existing_file, metavar="FILE", help="PEM private key of --tls-cert")
    options.add_argument("-o", "--output", choices=["table", "json"], default="table",
                         help="table for people (default), json for scripts (proto field names)")
    return options


def run(args: argparse.Namespace) -> int:
    """Run the handler the command line chose; a failure is one line on stderr and exit 1."""
    if bool(args.tls_cert) != bool(args.tls_key):
        print("kfpgrpc: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    reconnect = getattr(args, "reconnect", ReconnectPolicy())
    try:
        with Client(args.server, token=args.token, tls=args.tls, tls_ca=args.tls_ca, tls_cert=args.tls_cert,
                    tls_key=args.tls_key, reconnect=reconnect) as client:
            handler: Handler = args.handler
            return handler(args, client)
    except KfpGrpcError as error:
        print(f"kfpgrpc: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `kfpgrpc … | head`: the reader has what it wanted
        sys.stderr.close()  # Python would report the broken stdout again at exit
        return 0


def subcommands(commands: Any, name: str, help: str) -> Any:
    """A command group (`kfpgrpc runs …`) whose actions are added to the returned object."""
    group = commands.add_parser(name, help=help, description=help)
    return group.add_subparsers(dest="action", required=True, metavar="ACTION")


def action(actions: Any, name: str, handler: Handler, help: str, options: argparse.ArgumentParser,
           target: str = "", watch: bool = False) -> argparse.ArgumentParser:
    """An action of a command group. `target` is the metavar of the positional argument naming
    what it acts on (args.target); `watch` adds --watch (args.watch)."""
    parser: argparse.ArgumentParser = actions.add_parser(name, help=help, description=help, parents=[options])
    parser.set_defaults(handler=handler)
    if target:
        parser.add_argument("target", metavar=target)
    if watch:
        parser.add_argument("--watch", action="store_true", help="then follow the run like `runs watch`")
    return parser


def change_command(
    noun: str, find: Callable[[Client, str], Any], identify: Callable[[Any], str], operation: Callable[[Client, str], object], done: str
) -> Handler:
    """A handler that finds the resource named by the TARGET argument, applies `operation` to
    its id and shows it afterwards (as it was, once `done` is "deleted")."""

    def handler(args: argparse.Namespace, client: Client) -> int:
        found = find(client, args.target)
        operation(client, identify(found))
        shown = found if done == "deleted" else find(client, identify(found))
        return show(args, shown, lambda _: print(f"{done} {noun} {shown.display_name} ({identify(shown)})"))

    return handler


# Argument types: a bad value is a usage error (exit 2) before anything is sent.


def _argument_type(convert: Callable[[str], T]) -> Callable[[str], T]:
    def checked(text: str) -> T:
        try:
            return convert(text)
        except KfpGrpcError as error:
            raise argparse.ArgumentTypeError(next(iter(error.field_violations.values()), error.message)) from None

    return checked


def _parameter(text: str) -> tuple[str, Any]:
    """NAME=VALUE; VALUE is read as JSON when it parses (5, true, [1, 2]), else as a string."""
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise KfpGrpcError.invalid_argument("param", f"expected NAME=VALUE, got {text!r}")
    try:
        return name, json.loads(value)
    except ValueError:  # not JSON: a plain string
        return name, value


def _existing_file(text: str) -> str:
    if not Path(text).is_file():
        raise KfpGrpcError.invalid_argument("file", f"no such file: {text}")
    return text


def _time(text: str) -> str:
    timestamp(text)  # refuses what the client would refuse
    return text


parameter = _argument_type(_parameter)
existing_file = _argument_type(_existing_file)
time_value = _argument_type(_time)
duration = _argument_type(interval_seconds)


def parameters(pairs: Sequence[tuple[str, Any]] | None) -> dict[str, Any] | None:
    return dict(pairs) if pairs else None


def add_list_options(parser: argparse.ArgumentParser, sort_by: str = "") -> Any:
    """--filter, --sort-by and --limit; returns the group of --filter, where other ways to
    filter go (they exclude each other)."""
    filters = parser.add_mutually_exclusive_group()
    filters.add_argument("--filter", default="", help="KFP JSON filter, e.g. '{\"predicates\": [...]}'")
    parser.add_argument("--sort-by", default=sort_by, help=f"FIELD or 'FIELD desc' (default {sort_by or 'created_at'})")
    parser.add_argument("--limit", type=int, default=100, help="show at most N (default 100; 0 = all)")
    return filters


def list_arguments(args: argparse.Namespace) -> dict[str, Any]:
    return {"filter": args.filter, "sort_by": args.sort_by, "limit": args.limit or None}


# Output


def to_json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def print_json(value: Message | Iterable[Message], compact: bool = False) -> None:
    data = to_json(value) if isinstance(value, Message) else [to_json(item) for item in value]
    print(json.dumps(data, separators=(",", ":")) if compact else json.dumps(data, indent=2), flush=True)


def print_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    rows = [list(headers), *(list(row) for row in rows)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(headers))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def print_details(fields: Mapping[str, str]) -> None:
    """`Name:  value` lines for the fields that have a value."""
    shown = {name: value for name, value in fields.items() if value}
    width = max(map(len, shown), default=0) + 1
    for name, value in shown.items():
        print(f"{name + ':':<{width}}  {value}")


def show(args: argparse.Namespace, value: Any, table: Callable[[Any], None]) -> int:
    """Print `value` (a message or a list of them) as JSON or with `table`."""
    if args.output == "json":
        print_json(value)
    else:
        table(value)
    return 0


def when(time: timestamp_pb2.Timestamp) -> str:
    """A time for people: UTC to the second; empty when unset."""
    if not time.seconds and not time.nanos:
        return ""
    return time.ToDatetime(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def utc_datetime(time: timestamp_pb2.Timestamp) -> datetime:
    return time.ToDatetime(timezone.utc)


def state_name(state: int) -> str:
    return common_pb2.RuntimeState.Name(state) if state else ""


def plain_values(values: Mapping[str, Any]) -> str:
    """A proto map of google.protobuf.Value as `name=json` pairs (whole numbers without ".0")."""

    def plain(value: Any) -> Any:
        number = json_format.MessageToDict(value)
        return int(number) if isinstance(number, float) and number.is_integer() else number

    return " ".join(f"{name}={json.dumps(plain(value))}" for name, value in sorted(values.items()))
