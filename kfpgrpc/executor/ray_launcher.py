"""The `ray` launcher: runs each container task as a Ray task on a Ray cluster
(`kfpgrpc serve --launcher ray --ray-address ADDRESS`; docs/cluster.md).

The server stays the orchestrator (scheduling, the DAG, control flow, caching, events); Ray only
places and runs container tasks. The server is a Ray driver (`ray.init(address)`); each attempt
of a container task is one Ray task, a streaming generator (`ray_node.run_attempt`) that runs
the task's command as a subprocess on the node Ray picks, as the local launcher would, and sends
back its log lines as they are printed and then its outcome.

Decisions:
- KFP's resource requests become Ray's (`ray_options`): CPU → `num_cpus` (1 when not asked,
  Ray's default for a task), memory → `memory` (bytes), a GPU accelerator → `num_gpus` plus
  Ray's `accelerator_type:<TYPE>` resource when the type names a model, a TPU → the `TPU`
  resource, and each kfp-kubernetes node selector label `key: value` → the custom resource
  `key=value` (a node declares it, e.g. `ray start --resources '{"disktype=ssd": 1000}'`;
  each task takes 0.001 of it). The request, else the limit, as Kubernetes schedules.
- A task that no node of the cluster can ever satisfy (no alive node has all of what it asks in
  total) FAILS at once, saying what it asked and what the nodes offer; with
  `--ray-unschedulable wait` it waits instead (PENDING, a line in its log says why), for a
  node an autoscaler may add.
- Ray never retries a task (`max_retries=0`): the task's KFP retry policy does, here.
- Terminate: `ray.cancel` interrupts the attempt on its node, which stops the task's processes
  (SIGTERM, the grace period, SIGKILL); if the Ray task has not ended after that and
  KILL_WAIT_SECONDS, or when the server is shutting down, the worker process is killed
  (`force=True`) and the task's processes die with it (`ray_node`).
- Server restart: Ray ends the tasks of a driver that is gone (the server's process), and their
  processes die with their workers (each task's init kills its tree when its worker dies; Ray's
  own kill of a worker's children is turned off for our workers, `WORKER_ENV`, as it would kill
  the init alone and orphan the rest); the resumed run runs those tasks again, as after a local
  crash (docs/cluster.md).
- Artifacts: a run's pipeline root is a file system every node and the server see at the same
  path (NFS, a mounted bucket), or an object-store URL (`object_store`: the node downloads a
  task's inputs and uploads its outputs; the server copies cached outputs and deletes a deleted
  run's objects) — see docs/cluster.md.
- `--max-parallel-tasks` does not cap the cluster: Ray's resources do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import ray

from kfpgrpc.bounds import cut_error
from kfpgrpc.executor import object_store
from kfpgrpc.executor.base import TaskResult
from kfpgrpc.executor.launcher import ContainerTask, TaskFailed
from kfpgrpc.executor.local import PLACEMENT_SETTINGS, reuse_outputs, unsupported
from kfpgrpc.executor.process import KILL_WAIT_SECONDS
from kfpgrpc.executor.ray_node import run_attempt
from kfpgrpc.executor.resources import ResourceError, ResourceRequest
from kfpgrpc.executor.task_log import LogVolume, TaskLog

log = logging.getLogger(__name__)

UNSCHEDULABLE_POLICIES = ("fail", "wait")
CONNECT_TIMEOUT_SECONDS = 10.0  # for the cluster's GCS port to answer at start
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Ray SIGKILLs a dead worker's child processes by default: that is a task's init (`task_init`),
# whose own death would then orphan the task's processes (the leader has a session of its own).
# Left alone, the init sees the worker die (PR_SET_PDEATHSIG) and kills the whole task tree.
WORKER_ENV = {"RAY_kill_child_processes_on_worker_exit": "0"}
NODES_MAX_AGE_SECONDS = 2.0  # how old the cluster's node list may be when a task is checked against it
RAY_PRECISION = 0.0001  # the smallest amount of a resource Ray counts (ray_option_utils)
SELECTOR_SHARE = 0.001  # of a node selector's custom resource, per task: a marker, not a capacity
# Accelerator types that name a kind, not a model: num_gpus alone.
GPU_KINDS = {"nvidia.com/gpu", "amd.com/gpu", "gpu"}
# GKE's and KFP v1's accelerator names, e.g. NVIDIA_TESLA_T4 or nvidia-tesla-t4, before Ray's model name (T4).
_GPU_MODEL_PREFIX = re.compile(r"^(?:nvidia[-_](?:tesla[-_])?)", re.IGNORECASE)


def ray_options(request: ResourceRequest) -> dict[str, Any]:
    """Ray task options (`num_cpus`, `num_gpus`, `memory`, `resources`) for a task's KFP
    requests; see the module docstring. Raises ResourceError for a CPU below what Ray counts
    (RAY_PRECISION)."""
    if request.cpu is not None and 0 < request.cpu < RAY_PRECISION:
        raise ResourceError(f"CPU {request.cpu:g} is less than Ray counts: ask for 0 or at least {RAY_PRECISION:g} (100u)")
    options: dict[str, Any] = {"num_cpus": request.cpu if request.cpu is not None else 1}
    resources: dict[str, float] = {}
    if request.memory:
        options["memory"] = request.memory
    kind = request.accelerator_type
    if kind and request.accelerator_count:
        if kind.upper().startswith("TPU") or kind.startswith("cloud-tpus.google.com"):
            resources["TPU"] = request.accelerator_count
        else:
            options["num_gpus"] = request.accelerator_count
            if kind.lower() not in GPU_KINDS:
                resources[f"accelerator_type:{_GPU_MODEL_PREFIX.sub('', kind).upper()}"] = SELECTOR_SHARE
    for key, value in request.node_selector.items():
        resources[f"{key}={value}"] = SELECTOR_SHARE
    if resources:
        options["resources"] = resources
    return options


def demand(options: Mapping[str, Any]) -> dict[str, float]:
    """What Ray task `options` ask of one node, by Ray's resource names (CPU, GPU, memory...)."""
    asked = {"CPU": options.get("num_cpus", 1), "GPU": options.get("num_gpus", 0), "memory": options.get("memory", 0)}
    asked.update(options.get("resources") or {})
    return {name: float(amount) for name, amount in asked.items() if amount}


class RayLauncher:
    """Runs container tasks as Ray tasks (see the module docstring). `address`: the Ray
    cluster's (`auto`, `HOST:PORT` of its GCS); `unschedulable`: `fail` or `wait`;
    `kill_grace_seconds`: between SIGTERM and SIGKILL when a task is cancelled."""

    def __init__(self, artifact_root: str, address: str = "auto", unschedulable: str = "fail", kill_grace_seconds: float = 3.0) -> None:
        if unschedulable not in UNSCHEDULABLE_POLICIES:
            raise ValueError(f"unschedulable must be one of {UNSCHEDULABLE_POLICIES}, got {unschedulable!r}")
        self.artifact_root = artifact_root if object_store.is_url(artifact_root) else os.path.abspath(artifact_root)
        self.address = address
        self.unschedulable = unschedulable
        self.kill_grace_seconds = kill_grace_seconds
        self.parallel_tasks = 1  # the cluster's CPUs, once started
        self._remote: Any = None
        self._nodes: list[dict[str, Any]] = []
        self._nodes_at = -NODES_MAX_AGE_SECONDS
        self._force = False

    async def start(self) -> None:
        """Connect to the cluster as a Ray driver. Raises OSError when it cannot."""
        # Ray's driver installs its own SIGTERM handler (a stack dump, and no stop): the server's
        # graceful stop on SIGINT and SIGTERM is put back after it.
        stop_handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        await self._reachable()
        try:
            # Blocking for a second or so, before the server serves: nothing waits on the loop.
            ray.init(
                address=self.address, namespace="kfpgrpc", log_to_driver=False, configure_logging=False,
                runtime_env={"env_vars": WORKER_ENV},
            )
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise OSError(f"cannot connect to the Ray cluster at {self.address!r} (--ray-address): {error}") from None
        finally:
            for sig, handler in stop_handlers.items():
                if handler is not None:
                    signal.signal(sig, handler)
        self._remote = ray.remote(run_attempt)
        self.parallel_tasks = max(1, int(ray.cluster_resources().get("CPU", 1)))
        nodes = self._nodes = [node for node in ray.nodes() if node.get("Alive")]  # also what _unschedulable checks first
        self._nodes_at = time.monotonic()
        log.info("ray launcher", extra={"fields": {
            "address": self.address, "nodes": len(nodes), "cpus": self.parallel_tasks, "pipeline_root": self.artifact_root,
        }})
        addresses = {node.get("NodeManagerAddress") for node in nodes}
        if len(addresses) > 1 and not object_store.is_url(self.artifact_root):
            log.warning(
                "the default pipeline root must be a file system every node sees at the same path (docs/cluster.md)",
                extra={"fields": {"pipeline_root": self.artifact_root, "node_addresses": len(addresses)}},
            )

    async def _reachable(self) -> None:
        """Raise OSError unless the GCS at a HOST:PORT address accepts a connection within
        CONNECT_TIMEOUT_SECONDS: Ray itself would retry for minutes before it gives up."""
        host, _, port = self.address.rpartition(":")
        if not host or not port.isdigit():  # "auto" and the like: Ray finds the address
            return
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
        except (OSError, TimeoutError) as error:
            raise OSError(f"cannot connect to the Ray cluster at {self.address!r} (--ray-address): {error or 'timed out'}") from None
        writer.close()

    async def stop(self) -> None:
        if ray.is_initialized():
            await asyncio.to_thread(ray.shutdown)

    def stop_now(self) -> None:
        self._force = True

    def uri_problem(self, uri: str) -> str:
        if os.path.isabs(uri):
            return ""
        if object_store.is_url(uri):
            return object_store.problem(uri)
        return f"{uri!r} is neither an absolute path (of a file system every node shares) nor an object-store URL"

    async def reuse_outputs(self, result: TaskResult, run_dir: str, task_id: str) -> TaskResult | None:
        if object_store.is_url(run_dir):
            return await asyncio.to_thread(object_store.reuse_outputs, result, run_dir, task_id)
        return await reuse_outputs(result, run_dir, task_id)

    async def unsupported(self, spec: Mapping[str, Any], platform_spec: Mapping[str, Any] | None = None) -> list[str]:
        return unsupported(spec, platform_spec)

    async def run(
        self, task: ContainerTask, log: TaskLog, on_start: Callable[[Sequence[str]], Awaitable[None]]
    ) -> TaskResult:
        try:
            request = ResourceRequest.of(task.container, task.platform, task.parameters)
            options = ray_options(request)
        except ResourceError as error:
            raise TaskFailed(str(error)) from None
        if problem := await self._unschedulable(options):
            if self.unschedulable == "fail":
                raise TaskFailed(f"{problem} (with --ray-unschedulable wait it would wait for such a node, one an autoscaler adds)")
            log.add(f"waiting: {problem}")
            await log.flush()
        volume = log.volume
        try:
            generator = self._remote.options(
                name=f"kfpgrpc:{task.run_id}:{task.task_id}", max_retries=0, **options
            ).remote(task, LogVolume(volume.limit, volume.stored, volume.truncated), 0.0 if self._force else self.kill_grace_seconds)
        except (ValueError, TypeError, OverflowError) as error:  # Ray's own checks of the options
            raise TaskFailed(f"Ray refused the task's resource requests ({_resources_text(demand(options))}): {error}") from None
        ended = False
        try:
            async for reference in generator:
                message = await reference
                kind = message[0]
                if kind == "lines":
                    _, lines, volume.stored, volume.truncated = message
                    await log.observer.log_lines(log.task_id, lines)
                    log.tail.extend(lines)
                elif kind == "started":
                    await on_start(self._notes(task, options, message[1], message[2]))
                elif kind == "failed":
                    ended = True
                    raise TaskFailed(message[1], message[2])
                else:
                    ended = True
                    return message[1]
            ended = True
            raise TaskFailed("the Ray task ended without an outcome")
        except ray.exceptions.RayError as error:
            ended = True
            raise TaskFailed(_ray_error(error)) from None
        finally:
            if not ended:  # cancelled, or on_start refused: stop it on its node
                self._cancel(generator)

    def _cancel(self, generator: Any) -> None:
        """Stop the Ray task of `generator`: interrupt it, so that its node stops its processes
        (SIGTERM, the grace period, SIGKILL), and kill its worker if the task has not ended
        KILL_WAIT_SECONDS after the grace period (a no-op for a task that has ended); kill the
        worker at once when the server is shutting down. Ray ends a cancelled generator at once
        for its reader, so what the task prints after the SIGTERM is not received."""
        if self._force:
            ray.cancel(generator, force=True)
            return
        ray.cancel(generator)
        asyncio.get_running_loop().call_later(self.kill_grace_seconds + KILL_WAIT_SECONDS, _kill_worker, generator)

    async def _unschedulable(self, options: Mapping[str, Any]) -> str:
        """Why no node of the cluster can ever run a task with `options` ("" when one can)."""
        if time.monotonic() - self._nodes_at > NODES_MAX_AGE_SECONDS:
            self._nodes = [node for node in await asyncio.to_thread(ray.nodes) if node.get("Alive")]
            self._nodes_at = time.monotonic()
        asked = demand(options)
        if any(all(node["Resources"].get(name, 0) >= amount for name, amount in asked.items()) for node in self._nodes):
            return ""
        offers = "; ".join(
            f"{node['NodeID'][:12]}: {_resources_text(node['Resources'])}" for node in self._nodes[:8]
        ) or "none alive"
        absent = [name for name in asked if not any(node["Resources"].get(name) for node in self._nodes)]
        missing = f"no node has {', '.join(absent)} at all (a node declares such a resource: ray start --resources); " if absent else ""
        return cut_error(f"no node of the Ray cluster can run this task: it asks for {_resources_text(asked)}; {missing}the nodes offer {offers}")

    def _notes(self, task: ContainerTask, options: Mapping[str, Any], node_id: str, node_ip: str) -> list[str]:
        notes = [f"ran on Ray node {node_id} ({node_ip})", f"Ray resources: {_resources_text(demand(options))}"]
        if image := task.container.get("image", ""):
            notes.append(f"image {image} was not pulled: the command runs on the Ray node's machine")
        ignored = [key for key in PLACEMENT_SETTINGS if key != "nodeSelector" and task.platform.get(key)]
        if ignored:
            notes.append(f"ignored on Ray (Kubernetes scheduling only): {', '.join(ignored)}")
        return notes


def _kill_worker(generator: Any) -> None:
    """A forced cancel of the Ray task of `generator`, later (a timer): nothing when the task
    has ended meanwhile, or the driver is gone (the server stopped)."""
    if ray.is_initialized():
        with contextlib.suppress(ray.exceptions.RayError, RuntimeError, ValueError):
            ray.cancel(generator, force=True)


def _resources_text(resources: Mapping[str, float]) -> str:
    """E.g. "CPU 2, memory 1.0 GiB, disktype=ssd 0.001"; Ray's internal node markers left out."""
    parts = []
    for name, amount in sorted(resources.items()):
        if name.startswith(("node:", "object_store_memory")):
            continue
        if name == "memory":
            parts.append(f"memory {amount / 2**30:.1f} GiB" if amount >= 2**30 else f"memory {amount / 2**20:.0f} MiB")
        else:
            parts.append(f"{name} {amount:g}")
    return ", ".join(parts)


def _ray_error(error: Exception) -> str:
    """A Ray failure as a task error: its kind and why, the last line of its cause (a
    RayTaskError's first line is only Ray's colored `ray::function() (pid=…, ip=…)` header; a
    worker that cannot import kfpgrpc ends with "ModuleNotFoundError: No module named …")."""
    cause = getattr(error, "cause", None) or error
    lines = [line for line in _ANSI.sub("", str(cause)).splitlines() if line.strip()]
    return cut_error(f"the Ray task failed ({type(error).__name__}): {lines[-1].strip() if lines else type(cause).__name__}")
