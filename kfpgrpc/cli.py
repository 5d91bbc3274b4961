"""The `kfpgrpc` command.

Only `serve` needs the server (grpc.aio server, aiosqlite, croniter, the kfp pipeline spec, which
imports the whole kfp SDK when that is installed): it imports them itself, so that the client
commands start in a fraction of the time.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import sys
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# gRPC's C core reads this once, when grpc is imported: without it, a failed TLS handshake adds
# lines of its own log to the one-line errors of the commands.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from kfpgrpc.commands import (  # noqa: E402
    BEFORE_COMMAND,
    ArgumentParser,
    add_client_commands,
    add_connection_options_before_commands,
    run_client_command,
)
from kfpgrpc.config import (  # noqa: E402
    DEFAULT_HTTP_LISTEN,
    LAUNCHERS,
    RAY_UNSCHEDULABLE,
    TASK_CONTAINMENTS,
    ServerConfig,
)

_INT32_MAX = 2**31 - 1  # gRPC's integer channel arguments are C ints


def _env(name: str, default: str) -> str:
    return os.environ.get(f"KFPGRPC_{name}", default)


def _optional_path(value: str) -> Path | None:
    return Path(value) if value else None


class _PrintVersion(argparse.Action):
    """`--version`: print the installed package's version and exit 0. importlib.metadata is
    imported only then (it costs a quarter of the client commands' start-up)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print kfpgrpc's version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        from importlib.metadata import version

        print(f"kfpgrpc {version('kfpgrpc')}")
        parser.exit()


def _read_token(path: Path) -> str:
    """The token in `path`, without its trailing newline. Raises ValueError when it cannot be
    read, is empty or spans several lines."""
    try:
        token = path.read_text().removesuffix("\n").removesuffix("\r")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(getattr(error, "strerror", None) or str(error)) from None
    if not token:
        raise ValueError("the file is empty")
    if "\n" in token:
        raise ValueError("the token must be one line")
    return token


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="kfpgrpc", description="Run and schedule Kubeflow Pipelines over gRPC.")
    parser.add_argument("--version", action=_PrintVersion)
    add_connection_options_before_commands(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start the server")
    defaults = ServerConfig()
    serve.add_argument("--listen", default=_env("LISTEN", defaults.listen),
                       help="HOST:PORT to listen on; port 0 picks a free port (env KFPGRPC_LISTEN)")
    serve.add_argument("--http-listen", default=_env("HTTP_LISTEN", DEFAULT_HTTP_LISTEN),
                       help="HOST:PORT of KFP's REST API (kfp.Client), with the same token and TLS; port 0 picks"
                            f" a free port; off: none (default {DEFAULT_HTTP_LISTEN}; env KFPGRPC_HTTP_LISTEN)")
    serve.add_argument("--data-dir", default=_env("DATA_DIR", str(defaults.data_dir)),
                       help="directory of the database, artifacts and logs (env KFPGRPC_DATA_DIR)")
    serve.add_argument("--auth-token", default=_env("AUTH_TOKEN", ""),
                       help="require `authorization: Bearer TOKEN` on every call (env KFPGRPC_AUTH_TOKEN)")
    serve.add_argument("--auth-token-file", default=_env("AUTH_TOKEN_FILE", ""),
                       help="like --auth-token, with the token read from FILE (a trailing newline is dropped),"
                            " so that it is not on the command line (env KFPGRPC_AUTH_TOKEN_FILE)")
    serve.add_argument("--tls-cert", default=_env("TLS_CERT", ""), help="PEM certificate chain; enables TLS")
    serve.add_argument("--tls-key", default=_env("TLS_KEY", ""), help="PEM private key of --tls-cert")
    serve.add_argument("--tls-client-ca", default=_env("TLS_CLIENT_CA", ""),
                       help="PEM CA bundle; clients must present a certificate it signed (mTLS)")
    serve.add_argument("--default-time-zone", default=_env("DEFAULT_TIME_ZONE", defaults.default_time_zone),
                       help="IANA zone of cron schedules that name none (env KFPGRPC_DEFAULT_TIME_ZONE)")
    serve.add_argument("--max-parallel-tasks", type=int,
                       default=_env("MAX_PARALLEL_TASKS", str(defaults.max_parallel_tasks)),
                       help="task processes running at once, across all runs (env KFPGRPC_MAX_PARALLEL_TASKS)")
    serve.add_argument("--task-python", default=_env("TASK_PYTHON", defaults.task_python),
                       help="the Python interpreter that is `python3` for tasks; default: the server's"
                            " (env KFPGRPC_TASK_PYTHON)")
    serve.add_argument("--task-env-max-age", default=_env("TASK_ENV_MAX_AGE", "720h"),
                       help="remove a task environment (a venv of a component's packages_to_install) unused for this"
                            " long, a Go duration; 0 = never (env KFPGRPC_TASK_ENV_MAX_AGE)")
    serve.add_argument("--task-env-max-bytes", type=int,
                       default=_env("TASK_ENV_MAX_BYTES", str(defaults.task_env_max_bytes)),
                       help="remove the least recently used task environments while all of them take more bytes"
                            " than this; 0 = no limit (env KFPGRPC_TASK_ENV_MAX_BYTES)")
    serve.add_argument("--task-containment", default=_env("TASK_CONTAINMENT", defaults.task_containment),
                       choices=list(TASK_CONTAINMENTS),
                       help="how a task's processes are all found and killed: a cgroup, a subreaper init"
                            " process, or auto (a cgroup where one can be made) (env KFPGRPC_TASK_CONTAINMENT)")
    serve.add_argument("--launcher", default=_env("LAUNCHER", defaults.launcher), choices=list(LAUNCHERS),
                       help="where container tasks run: local subprocesses, or a Ray cluster"
                            " (pip install 'kfpgrpc[ray]'; docs/cluster.md) (env KFPGRPC_LAUNCHER)")
    serve.add_argument("--ray-address", default=_env("RAY_ADDRESS", defaults.ray_address),
                       help="the Ray cluster of --launcher ray: auto (the cluster this machine belongs to)"
                            " or its GCS HOST:PORT (env KFPGRPC_RAY_ADDRESS)")
    serve.add_argument("--ray-unschedulable", default=_env("RAY_UNSCHEDULABLE", defaults.ray_unschedulable),
                       choices=list(RAY_UNSCHEDULABLE),
                       help="a task that no node of the Ray cluster can ever satisfy: fail it, or wait for"
                            " such a node (an autoscaler may add one) (env KFPGRPC_RAY_UNSCHEDULABLE)")
    serve.add_argument("--min-interval-seconds", type=int,
                       default=_env("MIN_INTERVAL_SECONDS", str(defaults.min_interval_seconds)),
                       help="shortest periodic / @every interval in seconds (env KFPGRPC_MIN_INTERVAL_SECONDS)")
    serve.add_argument("--event-retention", default=_env("EVENT_RETENTION", "168h"),
                       help="how long events are kept, a Go duration such as 168h; 0 = forever (env KFPGRPC_EVENT_RETENTION)")
    serve.add_argument("--run-ttl", default=_env("RUN_TTL", "0"),
                       help="delete finished runs (with logs and artifacts) this long after they finish,"
                            " a Go duration such as 720h; 0 = never (env KFPGRPC_RUN_TTL)")
    serve.add_argument("--pipeline-root", default=_env("PIPELINE_ROOT", ""),
                       help="where the artifacts of runs that name no pipeline_root go: an absolute directory"
                            " (default DATA_DIR/artifacts; with --launcher ray, one every node sees at this path) or,"
                            " with --launcher ray, an object-store URL such as s3://bucket/prefix (fsspec and the"
                            " scheme's backend installed) (env KFPGRPC_PIPELINE_ROOT)")
    serve.add_argument("--allowed-pipeline-roots", default=_env("ALLOWED_PIPELINE_ROOTS", ""),
                       help=f"absolute directories (and, with --launcher ray, object-store URLs), separated by"
                            f" {os.pathsep!r}, where runs may put their artifacts (runtime_config.pipeline_root) besides"
                            " the default pipeline root (env KFPGRPC_ALLOWED_PIPELINE_ROOTS)")
    serve.add_argument("--max-message-bytes", type=int,
                       default=_env("MAX_MESSAGE_BYTES", str(defaults.max_message_bytes)),
                       help="largest gRPC message received or sent; larger requests are RESOURCE_EXHAUSTED"
                            " (env KFPGRPC_MAX_MESSAGE_BYTES)")
    serve.add_argument("--max-spec-bytes", type=int,
                       default=_env("MAX_SPEC_BYTES", str(defaults.max_spec_bytes)),
                       help="largest pipeline spec accepted, in protobuf bytes; default 1.5 MiB, what KFP on"
                            " Kubernetes can run (etcd's limit). Responses carry a spec whole: above 2 MiB they may"
                            " exceed gRPC's default 4 MiB client limit, and clients must raise theirs"
                            " (env KFPGRPC_MAX_SPEC_BYTES)")
    serve.add_argument("--max-connection-idle", default=_env("MAX_CONNECTION_IDLE", "5m"),
                       help="close a connection that has had no call for this long, a Go duration; 0 = never"
                            " (env KFPGRPC_MAX_CONNECTION_IDLE)")
    serve.add_argument("--max-connections", type=int,
                       default=_env("MAX_CONNECTIONS", str(defaults.max_connections)),
                       help="incoming connections at once; more are closed as they arrive (env KFPGRPC_MAX_CONNECTIONS)")
    serve.add_argument("--http-request-timeout", default=_env("HTTP_REQUEST_TIMEOUT", "10s"),
                       help="REST: close a connection whose request head has not arrived whole this long after"
                            " it opened or after its last response; answer 408 when a request body makes no"
                            " progress for this long, or then comes slower than 500 bytes per second. A Go"
                            " duration (env KFPGRPC_HTTP_REQUEST_TIMEOUT)")
    serve.add_argument("--max-log-bytes-per-task", type=int,
                       default=_env("MAX_LOG_BYTES_PER_TASK", str(defaults.max_log_bytes_per_task)),
                       help="log bytes stored per task (a line costs its bytes plus 64); past it the task runs on"
                            " and the log says it is truncated (env KFPGRPC_MAX_LOG_BYTES_PER_TASK)")
    serve.add_argument("--cache", default=_env("CACHE", "on" if defaults.cache else "off"), choices=["on", "off"],
                       help="reuse the outputs of an earlier identical task execution when the task enables"
                            " caching, as KFP does; off: every task runs (env KFPGRPC_CACHE)")
    serve.add_argument("--log-level", default=_env("LOG_LEVEL", "info"),
                       choices=["debug", "info", "warning", "error"])
    serve.add_argument("--log-format", default=_env("LOG_FORMAT", "text"), choices=["text", "json"])
    add_client_commands(commands)
    return parser


def _serve(args: argparse.Namespace) -> int:
    import asyncio

    from kfpgrpc import logs
    from kfpgrpc.executor.process import make_undumpable
    from kfpgrpc.schedule import parse_go_duration
    from kfpgrpc.server import (
        KfpGrpcServer,
        StartError,
        raise_open_file_limit,
        stop_signal_event,
    )

    if bool(args.tls_cert) != bool(args.tls_key):
        print("kfpgrpc: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    if args.tls_client_ca and not args.tls_cert:
        print("kfpgrpc: --tls-client-ca needs --tls-cert and --tls-key", file=sys.stderr)
        return 2
    try:
        ZoneInfo(args.default_time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        print(f"kfpgrpc: --default-time-zone: unknown IANA time zone {args.default_time_zone!r}", file=sys.stderr)
        return 2
    if args.auth_token and args.auth_token_file:
        print("kfpgrpc: give one of --auth-token (KFPGRPC_AUTH_TOKEN) and --auth-token-file (KFPGRPC_AUTH_TOKEN_FILE)", file=sys.stderr)
        return 2
    auth_token = args.auth_token
    if args.auth_token_file:
        try:
            auth_token = _read_token(Path(args.auth_token_file))
        except ValueError as error:
            print(f"kfpgrpc: --auth-token-file {args.auth_token_file}: {error}", file=sys.stderr)
            return 2
    # Each setting's check, in order, and what the first one that fails prints.
    refusals = [
        (bool(args.task_python) and not (os.path.isfile(args.task_python) and os.access(args.task_python, os.X_OK)),
         f"--task-python: {args.task_python!r} is not an executable file"),
        (args.max_parallel_tasks < 1, "--max-parallel-tasks must be at least 1"),
        (args.min_interval_seconds < 1, "--min-interval-seconds must be at least 1"),
        (not 4 * 1024 * 1024 <= args.max_message_bytes <= _INT32_MAX,
         f"--max-message-bytes must be between 4194304 (4 MiB, gRPC's default) and {_INT32_MAX}"),
        (not 1 <= args.max_spec_bytes <= args.max_message_bytes, "--max-spec-bytes must be between 1 and --max-message-bytes"),
        (not 1 <= args.max_connections <= _INT32_MAX, f"--max-connections must be between 1 and {_INT32_MAX}"),
        (args.max_log_bytes_per_task < 0, "--max-log-bytes-per-task must not be negative"),
        (args.task_env_max_bytes < 0, "--task-env-max-bytes must not be negative"),
    ]
    for refused, message in refusals:
        if refused:
            print(f"kfpgrpc: {message}", file=sys.stderr)
            return 2
    durations = {}
    for flag in ("event_retention", "run_ttl", "max_connection_idle", "task_env_max_age", "http_request_timeout"):
        try:
            durations[flag] = parse_go_duration(getattr(args, flag))
        except ValueError as error:
            print(f"kfpgrpc: --{flag.replace('_', '-')}: {error}", file=sys.stderr)
            return 2
    if durations["http_request_timeout"] <= 0:
        print("kfpgrpc: --http-request-timeout must be positive", file=sys.stderr)
        return 2
    from kfpgrpc.executor import (
        object_store,  # here: the client commands start without the executor
    )

    # Separated by ':' (os.pathsep), except the ':' of a URL's "://".
    allowed_roots = [root for root in re.split(re.escape(os.pathsep) + "(?!//)", args.allowed_pipeline_roots) if root]
    for flag, roots in (("--pipeline-root", [args.pipeline_root] if args.pipeline_root else []), ("--allowed-pipeline-roots", allowed_roots)):
        for root in roots:
            if object_store.is_url(root):
                problem = object_store.problem(root) if args.launcher == "ray" else (
                    "object-store URLs need --launcher ray (the local launcher writes artifacts on this machine)")
            else:
                problem = "" if os.path.isabs(root) else "must be an absolute directory or an object-store URL"
            if problem:
                print(f"kfpgrpc: {flag} {root!r}: {problem}", file=sys.stderr)
                return 2
    logs.configure(args.log_level, args.log_format)
    config = ServerConfig(
        listen=args.listen,
        http_listen="" if args.http_listen == "off" else args.http_listen,
        data_dir=Path(args.data_dir),
        auth_token=auth_token,
        tls_cert=_optional_path(args.tls_cert),
        tls_key=_optional_path(args.tls_key),
        tls_client_ca=_optional_path(args.tls_client_ca),
        default_time_zone=args.default_time_zone,
        max_parallel_tasks=args.max_parallel_tasks,
        min_interval_seconds=args.min_interval_seconds,
        event_retention_us=durations["event_retention"],
        run_ttl_us=durations["run_ttl"],
        pipeline_root=args.pipeline_root,
        allowed_pipeline_roots=tuple(allowed_roots),
        launcher=args.launcher,
        ray_address=args.ray_address,
        ray_unschedulable=args.ray_unschedulable,
        task_python=args.task_python,
        task_containment=args.task_containment,
        max_message_bytes=args.max_message_bytes,
        max_spec_bytes=args.max_spec_bytes,
        max_connection_idle_us=durations["max_connection_idle"],
        max_connections=args.max_connections,
        http_request_timeout_us=durations["http_request_timeout"],
        max_log_bytes_per_task=args.max_log_bytes_per_task,
        cache=args.cache == "on",
        task_env_max_age_us=durations["task_env_max_age"],
        task_env_max_bytes=args.task_env_max_bytes,
    )
    server = KfpGrpcServer(config)

    async def run() -> None:
        stop_requested = stop_signal_event()
        # A failed start prints its one line alone; --log-level debug shows what led to it.
        with logs.held(drop_on_error=args.log_level != "debug"):
            raise_open_file_limit()
            make_undumpable()  # before any task starts: tasks must not read its environment
            await server.start()
        settle_heap()
        # Two lines: parsers of the first (`listening on HOST:PORT`) stay as they were.
        print(f"listening on {server.address}", flush=True)
        if server.http_url:
            print(f"listening for HTTP on {server.http_url}", flush=True)
        await stop_requested.wait()
        await server.stop()

    try:
        asyncio.run(run())
    except StartError as exc:  # one line, no traceback (--log-level debug logs it)
        print(f"kfpgrpc: {exc}", file=sys.stderr)
        return 1
    return 0


GC_YOUNG_THRESHOLD = 20_000  # net new container objects between young collections (Python's default: 700)


def settle_heap() -> None:
    """Keep the cyclic garbage collector from pausing a busy server for long (measured in
    docs/benchmarks.md, Events). What start-up built (modules, the kfp SDK's among them,
    protobuf descriptors, the server's own objects) lives as long as the process: frozen, a
    full collection no longer walks it. And a young collection every 20,000 rather than 700
    new objects: a fan-out to 1,000 streams has thousands of messages in flight, which the
    default promoted to the old generations, so that a full collection walked every open
    stream's objects every few seconds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        if given := sorted(name for name in vars(args) if name.startswith(BEFORE_COMMAND)):
            flags = ", ".join("--" + name.removeprefix(BEFORE_COMMAND).replace("_", "-") for name in given)
            parser.error(f"{flags}: connection options are for the client commands; serve has its own flags after `serve`")
        return _serve(args)
    return run_client_command(args)


if __name__ == "__main__":
    sys.exit(main())
