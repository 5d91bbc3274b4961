"""Assembles and runs the gRPC server: store, core, servicers, health, reflection, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import socket
import sqlite3
import ssl
import sys
from collections.abc import Awaitable, Iterator
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from kfpgrpc.api.events import EventServicer, add_event_service
from kfpgrpc.api.experiments import ExperimentServicer
from kfpgrpc.api.interceptors import ErrorMappingInterceptor, TokenAuthInterceptor
from kfpgrpc.api.pipelines import PipelineServicer
from kfpgrpc.api.recurring_runs import RecurringRunServicer
from kfpgrpc.api.runs import RunServicer
from kfpgrpc.clock import Clock, SystemClock
from kfpgrpc.config import ServerConfig
from kfpgrpc.core.cache import StoredExecutionCache
from kfpgrpc.core.events import Events
from kfpgrpc.core.experiments import Experiments
from kfpgrpc.core.housekeeping import Housekeeping
from kfpgrpc.core.pipelines import Pipelines
from kfpgrpc.core.recurring import RecurringRuns
from kfpgrpc.core.runs import Runs
from kfpgrpc.datadir import DataDir, DataDirError
from kfpgrpc.errors import StoreFault
from kfpgrpc.executor import LocalLauncher, Orchestrator
from kfpgrpc.executor.launcher import Launcher
from kfpgrpc.http.app import build_app
from kfpgrpc.http.server import HttpServer, bind
from kfpgrpc.store.database import Database, SchemaTooNew
from kfpgrpc.v1 import (
    event_pb2,
    experiment_pb2,
    experiment_pb2_grpc,
    pipeline_pb2,
    pipeline_pb2_grpc,
    recurring_run_pb2,
    recurring_run_pb2_grpc,
    run_pb2,
    run_pb2_grpc,
)

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    experiment_pb2.DESCRIPTOR.services_by_name["ExperimentService"].full_name,
    pipeline_pb2.DESCRIPTOR.services_by_name["PipelineService"].full_name,
    run_pb2.DESCRIPTOR.services_by_name["RunService"].full_name,
    recurring_run_pb2.DESCRIPTOR.services_by_name["RecurringRunService"].full_name,
    event_pb2.DESCRIPTOR.services_by_name["EventService"].full_name,
)
def server_options(config: ServerConfig) -> list[tuple[str, int]]:
    """gRPC channel arguments: the transport bounds of `config` (docs/api.md "Transport")."""
    return [
        # gRPC enables SO_REUSEPORT by default: a second server on a taken port would start and
        # split connections with the first, over a different database.
        ("grpc.so_reuseport", 0),
        # Ping each client every 30 s, calls or not, and drop it if it does not answer within
        # 10 s; let clients ping every 10 s (more often: GOAWAY after two strikes).
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_allowed_incoming_connections", config.max_connections),
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        # 0 = never: gRPC's own default, no option. Channel arguments are C ints.
        *([("grpc.max_connection_idle_ms", min(max(1, config.max_connection_idle_us // 1000), 2**31 - 1))]
          if config.max_connection_idle_us else []),
    ]


class StartError(Exception):
    """The server cannot start; str() is one line for the operator. A failed start leaves
    nothing behind in the data directory."""


class KfpGrpcServer:
    """`await start()`, then `await stop()`.

    Health: SERVING once started; NOT_SERVING (overall and per service) while the database
    cannot take writes, and from the start of a shutdown on."""

    def __init__(self, config: ServerConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.port = 0
        self._data_dir: DataDir | None = None
        self._db: Database | None = None
        self._events: Events | None = None
        self._orchestrator: Orchestrator | None = None
        self._runs: Runs | None = None
        self._recurring_runs: RecurringRuns | None = None
        self._housekeeping: Housekeeping | None = None
        self._server: grpc.aio.Server | None = None
        self._http: HttpServer | None = None
        self._health = health.aio.HealthServicer()
        self._health_update: asyncio.Task[None] | None = None
        self._serving = False
        self._stopped = asyncio.Event()

    @property
    def address(self) -> str:
        host = self.config.listen.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    @property
    def http_url(self) -> str:
        """http(s)://HOST:PORT of KFP's REST API, or "" when --http-listen is off."""
        return self._http.url if self._http is not None else ""

    async def start(self) -> None:
        """Bind the address, lock the data dir, open the store, resume runs and actors, serve.
        Raises StartError, having undone everything: the port is checked before the data dir
        is touched, and what the start created there is removed."""
        config = self.config
        self._server = server = self._new_grpc_server()
        self.port = self._bind(server)  # nothing is created when the address is taken
        try:
            self._http = self._bind_http()
            database = config.database_path
            self._data_dir = DataDir.open(config.data_dir, [
                database, *(database.with_name(database.name + suffix) for suffix in ("-wal", "-shm", "-journal")),
                config.artifact_root, config.work_root, config.envs_root,
            ])
        except (StartError, DataDirError) as error:
            await server.stop(None)  # frees the ports
            if self._http is not None:
                await self._http.stop()
            raise StartError(str(error)) from None
        try:
            self._db = db = await Database.open(database)
            db.fault_listeners.append(lambda _: self._update_health())
            self._events = events = Events(db, config.event_watcher_capacity)
            experiments = Experiments(db, self.clock)
            await experiments.ensure_default()
            pipelines = Pipelines(db, self.clock, events)
            launcher = self._new_launcher()
            orchestrator = Orchestrator(
                launcher, self.clock, cache=StoredExecutionCache(db, self.clock) if config.cache else None,
                max_log_bytes_per_task=config.max_log_bytes_per_task,
            )
            await orchestrator.start()  # kills a crashed server's task processes: under the lock
            self._orchestrator = orchestrator
            self._runs = runs = Runs(
                db, self.clock, events, orchestrator, config.default_pipeline_root, lambda: experiments.default_experiment_id,
                # Enough runs in hand to keep every task slot busy, few enough not to flood the writer.
                max_executing=2 * launcher.parallel_tasks,
                allowed_pipeline_roots=config.allowed_pipeline_roots,
            )
            self._recurring_runs = recurring_runs = RecurringRuns(
                db, self.clock, events, runs, lambda: experiments.default_experiment_id,
                config.default_time_zone, config.min_interval_seconds,
            )
            experiments.archiving_listeners.append(recurring_runs.experiment_archiving)
            experiments.archive_listeners.append(runs.experiment_archived)
            pipelines.version_listeners += [runs.version_created, recurring_runs.pipeline_version_created]
            pipelines.deletion_listeners.append(runs.pipeline_deleted)
            self._housekeeping = Housekeeping(db, self.clock, runs, config.event_retention_us, config.run_ttl_us)
            self._add_services(server, experiments, pipelines, runs, recurring_runs, events)
            await runs.start()
            await recurring_runs.start()
            self._housekeeping.start()
            await server.start()
            if self._http is not None:
                self._http.start(build_app(config, experiments, pipelines, runs, recurring_runs, events))
        except BaseException as error:
            await self._stop_core()
            self._data_dir.discard()  # under the lock: no other server is creating these
            self._data_dir.close()
            if isinstance(error, Exception):
                log.debug("start failed", exc_info=error)
                raise StartError(_start_failure(error, database.absolute())) from error
            raise
        self._serving = True
        await self._apply_health()  # before `start` returns: a client may check at once
        log.info("serving", extra={"fields": {"address": self.address, "http": self.http_url, "data_dir": str(config.data_dir)}})

    def _new_launcher(self) -> Launcher:
        """The launcher `--launcher` names. Raises StartError when Ray is not installed."""
        config = self.config
        if config.launcher == "ray":
            if config.ray_address.rsplit(":", 1)[0].strip("[]") in ("127.0.0.1", "localhost", "::1"):
                # A cluster of this machine bound to loopback: Ray would otherwise replace the
                # address by the machine's outward IP, where nothing listens, and bind the
                # driver there. The variable (read when ray is imported) makes it keep loopback.
                os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
            try:
                from kfpgrpc.executor.ray_launcher import RayLauncher
            except ImportError as error:
                raise StartError(f"--launcher ray needs Ray: pip install 'kfpgrpc[ray]' ({error})") from None
            return RayLauncher(config.default_pipeline_root, config.ray_address, config.ray_unschedulable)
        return LocalLauncher(
            config.artifact_root, config.work_root, max_parallel_tasks=config.max_parallel_tasks,
            python=config.task_python or sys.executable, containment=config.task_containment,
            envs_root=config.envs_root, env_max_age_us=config.task_env_max_age_us,
            env_max_bytes=config.task_env_max_bytes, clock=self.clock,
        )

    def _update_health(self) -> None:
        """Bring health in line with the state (serving, store fault, stopping): one update at
        a time, each to the latest wanted status."""
        if self._health_update is None or self._health_update.done():
            self._health_update = asyncio.get_running_loop().create_task(self._apply_health())

    async def _apply_health(self) -> None:
        while True:
            wanted = self._wanted_health()
            for name in ("", *SERVICE_NAMES):
                await self._health.set(name, wanted)  # ignored once shutting down
            if wanted == self._wanted_health():
                return

    def _wanted_health(self) -> health_pb2.HealthCheckResponse.ServingStatus.ValueType:
        serving = self._serving and self._db is not None and self._db.fault is None
        return health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING

    def _new_grpc_server(self) -> grpc.aio.Server:
        interceptors: list[grpc.aio.ServerInterceptor] = []
        if self.config.auth_token:
            interceptors.append(TokenAuthInterceptor(self.config.auth_token))
        interceptors.append(ErrorMappingInterceptor())
        return grpc.aio.server(interceptors=interceptors, options=server_options(self.config))

    def _add_services(
        self, server: grpc.aio.Server, experiments: Experiments, pipelines: Pipelines, runs: Runs,
        recurring_runs: RecurringRuns, events: Events,
    ) -> None:
        experiment_pb2_grpc.add_ExperimentServiceServicer_to_server(ExperimentServicer(experiments), server)
        pipeline_pb2_grpc.add_PipelineServiceServicer_to_server(PipelineServicer(pipelines, self.config.max_spec_bytes), server)
        run_pb2_grpc.add_RunServiceServicer_to_server(RunServicer(runs, self.config.max_spec_bytes), server)
        recurring_run_pb2_grpc.add_RecurringRunServiceServicer_to_server(RecurringRunServicer(recurring_runs, self.config.max_spec_bytes), server)
        add_event_service(EventServicer(events), server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        health_name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
        reflection.enable_server_reflection((*SERVICE_NAMES, health_name, reflection.SERVICE_NAME), server)

    def _credentials(self) -> grpc.ServerCredentials | None:
        config = self.config
        if not (config.tls_cert and config.tls_key):
            return None
        client_ca = _read(config.tls_client_ca, "--tls-client-ca") if config.tls_client_ca else None
        key, cert = _read(config.tls_key, "--tls-key"), _read(config.tls_cert, "--tls-cert")
        # grpc takes any bytes and then only fails to bind: check them here, to say what is wrong.
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(config.tls_cert, config.tls_key)
        except ssl.SSLError as error:
            raise StartError(f"--tls-cert/--tls-key: not a PEM certificate chain and its private key{_why(error)}") from None
        if client_ca is not None:
            try:
                ssl.create_default_context(cadata=client_ca.decode("ascii", errors="replace"))
            except ssl.SSLError as error:
                raise StartError(f"--tls-client-ca: not a PEM CA bundle{_why(error)}") from None
        return grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None)

    def _bind(self, server: grpc.aio.Server) -> int:
        listen, credentials = self.config.listen, self._credentials()
        try:
            with _stderr_silenced():  # grpc logs a failure in a line of its own; ours says why
                port = server.add_secure_port(listen, credentials) if credentials else server.add_insecure_port(listen)
        except RuntimeError:  # grpc's way of saying the address is taken or invalid
            port = 0
        if not port:
            raise StartError(f"cannot listen on {listen}{_bind_failure(listen)}")
        return port

    def _bind_http(self) -> HttpServer | None:
        listen = self.config.http_listen
        if not listen:
            return None
        try:
            return HttpServer(self.config, bind(listen))
        except ValueError:
            raise StartError(f"cannot listen on {listen} (--http-listen): the port must be a number") from None
        except OSError as error:
            raise StartError(f"cannot listen on {listen} (--http-listen): {error.strerror or error}") from None

    async def stop(self) -> None:
        """Graceful: health NOT_SERVING, refuse new calls, let calls finish, commit, close."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._serving = False
        log.info("shutting down")
        await self._health.enter_graceful_shutdown()
        await self._stop_core()
        if self._data_dir is not None:
            self._data_dir.close()  # last: the next server may start once the store is closed
        log.info("stopped")

    async def _stop_core(self) -> None:
        """Stop actors (first: no new runs), then executions (resumed by the next start) and
        watch streams; then let calls in flight finish; then commit and close the store."""
        if self._events is not None:
            self._events.close()
        if self._housekeeping is not None:
            await self._housekeeping.stop()
        if self._recurring_runs is not None:
            await self._recurring_runs.stop()
        if self._runs is not None:
            await self._runs.stop()
        if self._orchestrator is not None:
            await self._orchestrator.stop()
        # Both front ends at once: each lets its calls in flight finish within the grace.
        stopping: list[Awaitable[None]] = []
        if self._server is not None:
            stopping.append(self._server.stop(self.config.shutdown_grace_seconds))
        if self._http is not None:
            stopping.append(self._http.stop())
        await asyncio.gather(*stopping)
        if self._db is not None:
            await self._db.close()


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """File descriptor 2 to /dev/null for a moment (grpc's core logs there, not via Python)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _bind_failure(listen: str) -> str:
    """Why `listen` cannot be bound, as the system says it (": Address already in use"), or ""."""
    host, _, port = listen.rpartition(":")
    if not port.isdigit():
        return ": the port must be a number"
    try:
        infos = socket.getaddrinfo(host.strip("[]") or None, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in infos:
            with socket.socket(family, kind, proto) as probe:
                probe.bind(address)
    except OSError as error:
        return f": {error.strerror or error}"
    return ""


def _read(path: Path, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise StartError(f"{flag}: cannot read {path}: {error.strerror}") from None


def _why(error: ssl.SSLError) -> str:
    """OpenSSL's reason, when it gives one: " (key values mismatch)"."""
    return f" ({error.reason.lower().replace('_', ' ')})" if error.reason else ""


def _start_failure(error: Exception, database: Path) -> str:
    """One line saying why the start failed and what to do."""
    if isinstance(error, StartError):
        return str(error)
    if isinstance(error, StoreFault):
        return f"database {database} cannot be written: {error.reason}"
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", -1) & 0xFF
        if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
            return f"database {database} is not a kfpgrpc database or is damaged ({error}); move it away or restore a backup"
        if code == sqlite3.SQLITE_BUSY:
            return f"database {database} is locked by another process ({error}); stop it and start again"
        return f"database {database} cannot be opened for writing ({error}); check its permissions and the free space"
    if isinstance(error, SchemaTooNew):
        return f"database {database}: {error}"
    if isinstance(error, OSError):
        return f"{error.filename}: {error.strerror}" if error.filename and error.strerror else str(error)
    return f"cannot start: {type(error).__name__}: {error}"


def raise_open_file_limit() -> None:
    """Raise this process's soft limit on open files (RLIMIT_NOFILE) to its hard limit: each
    connection, task pipe and log file is one, and the soft limit is often 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as error:  # e.g. macOS, whose hard limit may be "unlimited"
            log.warning("cannot raise the open-file limit", extra={"fields": {"soft": soft, "hard": hard, "error": str(error)}})
            return
    log.info("open-file limit", extra={"fields": {"was": soft, "now": hard}})


def stop_signal_event() -> asyncio.Event:
    """An event set by the first SIGINT or SIGTERM. Install it before announcing readiness, so
    that a signal sent as soon as the address is printed still stops the server gracefully."""
    requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, requested.set)
    return requested
