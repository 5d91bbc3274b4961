"""Server settings. Each has a `kfpgrpc serve` flag and a KFPGRPC_* environment variable."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kfpgrpc.bounds import DEFAULT_MAX_LOG_BYTES_PER_TASK, DEFAULT_MAX_SPEC_BYTES

DEFAULT_TASK_ENV_MAX_AGE_US = 30 * 24 * 3600 * 1_000_000  # see kfpgrpc/executor/environments.py
DEFAULT_TASK_ENV_MAX_BYTES = 10 * 1024**3


TASK_CONTAINMENTS = ("auto", "cgroup", "subreaper")  # see kfpgrpc/executor/process.py
LAUNCHERS = ("local", "ray")  # where container tasks run: kfpgrpc/executor/local.py, ray_launcher.py
RAY_UNSCHEDULABLE = ("fail", "wait")  # a task no Ray node can satisfy: see ray_launcher.py

DEFAULT_HTTP_LISTEN = "127.0.0.1:8888"  # KFP's REST port (the ml-pipeline service's 8888)


@dataclass(frozen=True)
class ServerConfig:
    listen: str = "127.0.0.1:8887"
    # KFP's REST API (kfpgrpc/http/) on HOST:PORT; "" = none. `kfpgrpc serve` listens on
    # DEFAULT_HTTP_LISTEN unless told `off`; a server built in code serves gRPC only unless asked,
    # so that tests and embedders never take the fixed port 8888 by surprise.
    http_listen: str = ""
    data_dir: Path = Path(".kfpgrpc")
    auth_token: str = ""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # set = mTLS: clients must present a certificate it signed
    default_time_zone: str = "UTC"
    shutdown_grace_seconds: float = 5.0
    max_parallel_tasks: int = 4  # task processes running at once, across all runs
    min_interval_seconds: int = 60  # shortest periodic or @every interval; tests lower it
    event_retention_us: int = 7 * 24 * 3600 * 1_000_000  # events older are pruned; 0 = kept forever
    run_ttl_us: int = 0  # finished runs older are deleted; 0 = kept forever
    event_watcher_capacity: int = 10_000  # events buffered per WatchEvents stream before it is cut off
    # The pipeline root of runs that name none: an absolute directory, or (Ray launcher) an
    # object-store URL such as s3://bucket/prefix; "" = DATA_DIR/artifacts.
    pipeline_root: str = ""
    # Where else a run's pipeline_root may be (absolute directories; object-store URLs with the
    # Ray launcher), besides the default pipeline root (always allowed).
    allowed_pipeline_roots: tuple[str | Path, ...] = ()
    task_python: str = ""  # the interpreter of the tasks' `python3`; "" = the server's
    task_containment: str = "auto"  # how task process trees are found: auto, cgroup or subreaper
    launcher: str = "local"  # where container tasks run: LAUNCHERS
    ray_address: str = "auto"  # the Ray cluster of the ray launcher: auto, or its GCS HOST:PORT
    ray_unschedulable: str = "fail"  # a task no Ray node can ever satisfy: fail, or wait for one
    # Transport bounds (docs/api.md "Transport"): what one client can make the server hold.
    max_message_bytes: int = 32 * 1024 * 1024  # largest request or response message
    max_spec_bytes: int = DEFAULT_MAX_SPEC_BYTES  # largest pipeline spec, as protobuf (see kfpgrpc.bounds)
    max_connection_idle_us: int = 5 * 60 * 1_000_000  # a connection without calls for this long is closed
    max_connections: int = 1000  # incoming connections at once; more are closed as they arrive
    # HTTP (KFP REST): a request head must arrive whole within this long of the connection's
    # opening or its previous response, and each piece of a body within this long of the last
    # (then at 500 bytes per second on average: kfpgrpc/http/server.py).
    http_request_timeout_us: int = 10 * 1_000_000
    max_log_bytes_per_task: int = DEFAULT_MAX_LOG_BYTES_PER_TASK  # log kept per task execution
    cache: bool = True  # KFP execution caching of tasks that enable it
    # Task environments unused for longer are removed; 0 = kept however old.
    task_env_max_age_us: int = DEFAULT_TASK_ENV_MAX_AGE_US
    # Least recently used task environments are removed while all take more; 0 = no limit.
    task_env_max_bytes: int = DEFAULT_TASK_ENV_MAX_BYTES

    @property
    def database_path(self) -> Path:
        return self.data_dir / "kfpgrpc.db"

    @property
    def artifact_root(self) -> Path:
        """The directory of this machine that is the default pipeline root, or DATA_DIR/artifacts
        when that is an object-store URL."""
        if self.pipeline_root and "://" not in self.pipeline_root:
            return Path(self.pipeline_root)
        return self.data_dir / "artifacts"

    @property
    def default_pipeline_root(self) -> str:
        """The pipeline root of runs that name none: a directory or an object-store URL."""
        return self.pipeline_root or str(self.artifact_root)

    @property
    def work_root(self) -> Path:
        """The tasks' working directories; emptied at start (a crashed server's leftovers)."""
        return self.data_dir / "work"

    @property
    def envs_root(self) -> Path:
        """Task environments (kfpgrpc/executor/environments.py), kept across restarts."""
        return self.data_dir / "envs"
