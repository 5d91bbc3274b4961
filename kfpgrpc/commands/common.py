"""What the client commands share: connection flags, argument types, output, error handling."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn, TextIO, TypeVar

from google.protobuf import json_format, struct_pb2, timestamp_pb2
from google.protobuf.message import Message

from kfpgrpc.client import Client, KfpGrpcError, ReconnectPolicy, ServerUnreachable
from kfpgrpc.client.messages import interval_seconds, timestamp
from kfpgrpc.client.parameters import declared_parameters, typed_parameters
from kfpgrpc.v1 import common_pb2

T = TypeVar("T")
Handler = Callable[[argparse.Namespace, Client], int]
INTERRUPTED = 130  # the shell's code for a command stopped by Ctrl-C (128 + SIGINT)


@contextlib.contextmanager
def ctrl_c_interrupts() -> Iterator[None]:
    """Inside the block, SIGINT (Ctrl-C, `kill -INT`) raises KeyboardInterrupt, also when the
    process started with SIGINT ignored; the previous disposition comes back after it. For the
    commands that follow a stream, which only Ctrl-C ends: a shell without job control (a
    script, a CI job) starts its `&` commands with SIGINT ignored, their children inherit that,
    and Python then installs no handler, so that a watch never stopped. `kfpgrpc serve` too
    stops on SIGINT whatever it inherited. Signal handlers belong to the main thread: elsewhere
    the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if previous is not None:  # None: a handler installed by C code, which Python cannot reinstall
            signal.signal(signal.SIGINT, previous)


class ArgumentParser(argparse.ArgumentParser):
    """Reports a bad command line as one line on stderr, `kfpgrpc: <command>: <problem>`, exit 2."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("kfpgrpc").strip()
        self.exit(2, f"kfpgrpc: {command + ': ' if command else ''}{message} (see --help)\n")


# dest: default. Given before the command (`kfpgrpc --server H runs list`) they are stored as
# `before_<dest>`, after it as `<dest>`, each only when given, so that `connection()` can tell.
CONNECTION_DEFAULTS: dict[str, Any] = {"server": None, "token": None, "tls": False, "tls_ca": None, "tls_cert": None, "tls_key": None}
BEFORE_COMMAND = "before_"


def add_connection_options(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """The connection flags, into `parser`, stored as `<prefix><dest>` only when given."""
    group = parser.add_argument_group("connection" if not prefix else "connection (client commands; also after the command)")
    flags: dict[str, Any] = {"default": argparse.SUPPRESS}
    group.add_argument("--server", dest=f"{prefix}server", metavar="HOST[:PORT]", **flags,
                       help="HOST[:PORT] of the server, port 8887 unless given; http://… is plaintext,"
                            " https://… TLS (env KFPGRPC_SERVER; default 127.0.0.1:8887)")
    group.add_argument("--token", dest=f"{prefix}token", metavar="TOKEN", **flags, help="bearer token of `kfpgrpc serve --auth-token` (env KFPGRPC_TOKEN)")
    group.add_argument("--tls", dest=f"{prefix}tls", action="store_true", **flags, help="use TLS, verifying the server with the system's CAs")
    group.add_argument("--tls-ca", dest=f"{prefix}tls_ca", type=existing_file, metavar="FILE", **flags,
                       help="PEM CA bundle that signed the server's certificate; implies --tls")
    group.add_argument("--tls-cert", dest=f"{prefix}tls_cert", type=existing_file, metavar="FILE", **flags,
                       help="PEM client certificate (mTLS); needs --tls-key")
    group.add_argument("--tls-key", dest=f"{prefix}tls_key", type=existing_file, metavar="FILE", **flags, help="PEM private key of --tls-cert")


def connection(args: argparse.Namespace) -> dict[str, Any]:
    """The connection settings of a parsed command line, {dest: value}: each flag as given after
    the command, else before it, else its default."""
    return {
        name: getattr(args, name, getattr(args, BEFORE_COMMAND + name, default))
        for name, default in CONNECTION_DEFAULTS.items()
    }


def client_options() -> argparse.ArgumentParser:
    """The flags every client command takes (a parent parser)."""
    options = argparse.ArgumentParser(add_help=False)
    add_connection_options(options)
    options.add_argument("-o", "--output", choices=["table", "json"], default="table",
                         help="table for people (default), json for scripts (proto field names)")
    return options


def run(args: argparse.Namespace) -> int:
    """Run the handler the command line chose; a failure is one line on stderr and exit 1 (2
    for a bad command line)."""
    settings = connection(args)
    if bool(settings["tls_cert"]) != bool(settings["tls_key"]):
        print("kfpgrpc: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    reconnect = replace(getattr(args, "reconnect", ReconnectPolicy()), on_retry=RetryNotice())
    try:
        client = Client(settings.pop("server"), reconnect=reconnect, **settings)
    except KfpGrpcError as error:  # a malformed --server or KFPGRPC_SERVER, or TLS with http://
        return usage_error(args, "--server (or KFPGRPC_SERVER)", "; ".join(error.field_violations.values()))
    try:
        with client:
            handler: Handler = args.handler
            return handler(args, client)
    except UsageError as error:
        return usage_error(args, error.argument, error.problem)
    except KfpGrpcError as error:
        say(f"kfpgrpc: {explain(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return INTERRUPTED
    except BrokenPipeError:  # `kfpgrpc … | head`: the reader has what it wanted
        sys.stderr.close()  # Python would report the broken stdout again at exit
        return 0


class UsageError(Exception):
    """A command line that only the server's answer shows to be wrong (a --param the pipeline
    does not declare): reported like argparse's errors, exit 2."""

    def __init__(self, argument: str, problem: str) -> None:
        super().__init__(f"{argument}: {problem}")
        self.argument = argument
        self.problem = problem


def usage_error(args: argparse.Namespace, argument: str, problem: str) -> int:
    """Print `kfpgrpc: <command>: argument <argument>: <problem> (see --help)`; return 2."""
    say(f"kfpgrpc: {args.command} {args.action}: argument {argument}: {problem} (see --help)", file=sys.stderr)
    return 2


def explain(error: KfpGrpcError) -> str:
    """An error as the commands print it; for a server that cannot be reached, what to check."""
    if not isinstance(error, ServerUnreachable):
        return str(error)
    if "handshake" in error.reason.lower():
        return f"{error}: TLS failed: --tls-ca must name the CA that signed the server's --tls-cert, and a server without --tls-cert takes no TLS"
    return f"{error}: is `kfpgrpc serve` running there? set --server or KFPGRPC_SERVER (and --tls-ca FILE if it serves TLS)"


class RetryNotice:
    """The commands' ReconnectPolicy.on_retry: a watch or an event tail that waits for its
    server says why on stderr, when it starts waiting and then every 30 seconds."""

    INTERVAL = 30.0

    def __init__(self) -> None:
        self._last = 0.0

    def __call__(self, error: KfpGrpcError, attempt: int) -> None:
        now = time.monotonic()
        if attempt == 0 or now - self._last >= self.INTERVAL:
            self._last = now
            say(f"kfpgrpc: {explain(error)}; retrying", file=sys.stderr, flush=True)


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
        return show(args, shown, lambda _: say(f"{done} {noun} {shown.display_name} ({identify(shown)})"))

    return handler


# Argument types: a bad value is a usage error (exit 2) before anything is sent.


def _argument_type(convert: Callable[[str], T]) -> Callable[[str], T]:
    def checked(text: str) -> T:
        try:
            return convert(text)
        except KfpGrpcError as error:
            raise argparse.ArgumentTypeError(next(iter(error.field_violations.values()), error.message)) from None

    return checked


def _whole_number(low: int, high: int) -> Callable[[str], int]:
    """A converter of text to a whole number from `low` to `high`, both included."""
    def convert(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            number = None
        if number is None or not low <= number <= high:
            raise KfpGrpcError.invalid_argument("number", f"must be a whole number from {low} to {high}, got {text!r}")
        return number

    return convert


def _parameter(text: str) -> tuple[str, str]:
    """NAME=VALUE, both as text: the pipeline's declared type of NAME says what VALUE means
    (see parameter_values)."""
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise KfpGrpcError.invalid_argument("param", f"expected NAME=VALUE, got {text!r}")
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
# Every integer option takes one of these: the range of the proto field it goes into (beyond it
# protobuf refuses to encode), never negative where that means nothing; the server checks its
# own rules (max_concurrency 1 to 100). `count`: int32 (a list's --limit, which caps page_size;
# `recurring next --count`); `int64_count`: after_sequence, max_concurrency, `events tail --limit`.
INT32_MAX, INT64_MAX = 2**31 - 1, 2**63 - 1
count = _argument_type(_whole_number(0, INT32_MAX))
int64_count = _argument_type(_whole_number(0, INT64_MAX))


def parameter_values(pairs: Sequence[tuple[str, str]] | None, spec: struct_pb2.Struct) -> dict[str, Any] | None:
    """The --param pairs (the last of a name counts) converted to the types the pipeline spec
    declares (kfpgrpc.client.parameters); None without any. Raises UsageError for a name the
    pipeline does not declare or a value that is not of its type."""
    if not pairs:
        return None
    try:
        return typed_parameters(dict(pairs), declared_parameters(json_format.MessageToDict(spec)))
    except KfpGrpcError as error:
        field, problem = next(iter(error.field_violations.items()))
        raise UsageError("--param", f"{field.removeprefix('parameters.')}: {problem}") from None


def add_list_options(parser: argparse.ArgumentParser, sort_by: str = "") -> Any:
    """--filter, --sort-by and --limit; returns the group of --filter, where other ways to
    filter go (they exclude each other)."""
    filters = parser.add_mutually_exclusive_group()
    filters.add_argument("--filter", default="", help="KFP JSON filter, e.g. '{\"predicates\": [...]}'")
    parser.add_argument("--sort-by", default=sort_by, help=f"FIELD or 'FIELD desc' (default {sort_by or 'created_at'})")
    parser.add_argument("--limit", type=count, default=100, help="show at most N (default 100; 0 = all)")
    return filters


def list_arguments(args: argparse.Namespace) -> dict[str, Any]:
    return {"filter": args.filter, "sort_by": args.sort_by, "limit": args.limit or None}


# Output


def to_json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def print_json(value: Message | Iterable[Message], compact: bool = False) -> None:
    data = to_json(value) if isinstance(value, Message) else [to_json(item) for item in value]
    print(json.dumps(data, separators=(",", ":")) if compact else json.dumps(data, indent=2), flush=True)


# C0 controls, DEL and C1 controls, as `\x1b`: a name from another client must not move the
# cursor, set the terminal's title or start a line of its own (ECMA-48).
_CONTROLS = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))}


def printable(text: str) -> str:
    """`text` with each control character (C0, DEL, C1) written as a `\\xNN` escape."""
    return text.translate(_CONTROLS)


def say(line: str = "", file: TextIO | None = None, flush: bool = False) -> None:
    """Print one line of text output (not JSON), its control characters escaped (printable):
    every line the commands print goes through here, since most hold names and messages that
    came from the server."""
    print(printable(line), file=file or sys.stdout, flush=flush)


def print_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    rows = [list(headers), *([printable(cell) for cell in row] for row in rows)]  # escaped first: the widths are those shown
    widths = [max(len(row[column]) for row in rows) for column in range(len(headers))]
    for row in rows:
        say("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def print_details(fields: Mapping[str, str]) -> None:
    """`Name:  value` lines for the fields that have a value."""
    shown = {name: value for name, value in fields.items() if value}
    width = max(map(len, shown), default=0) + 1
    for name, value in shown.items():
        say(f"{name + ':':<{width}}  {value}")


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
