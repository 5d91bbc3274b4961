"""The Ray launcher's part on a Ray node: one attempt of a container task, run inside a Ray
worker process exactly as the local launcher runs it on its own machine, its log and outcome
sent back to the server as the items of a Ray streaming generator (see `ray_launcher`).

Each Ray worker process keeps one `LocalLauncher` and one event loop, made by its first task:
work root `<temp>/kfpgrpc-ray/worker-<pid>/work` (tasks' working directories), task
environments in `<temp>/kfpgrpc-ray/worker-<pid>/envs` (one worker's builds never meet
another's), and task containment `subreaper`: every process of a task dies with the worker
(PR_SET_PDEATHSIG), so when Ray kills the worker (a forced cancel, the server's driver gone)
nothing of the task survives. The directories of workers that are gone are removed by the next
worker to start on the node.

The generator yields tuples, in order: ("started", node_id, node_ip) when the command is about
to start; ("lines", lines, stored, truncated) for each batch of log lines (`task_log`, bounded
on the node by the task's remaining log volume, whose state follows each batch); then one of
("succeeded", TaskResult) or ("failed", error, exit_code).

Under an object-store pipeline root the attempt runs on local copies in a staging directory of
the worker, removed after it: input artifacts downloaded before, outputs uploaded after it
succeeded (`object_store.stage_inputs`, `publish_outputs`).

Cancelling: `ray.cancel(force=False)` interrupts the worker's main thread with SIGINT; the
loop's SIGINT handler cancels the attempt, which stops the task (SIGTERM, the grace period,
SIGKILL) like a terminated local task. Ray then closes the generator (GeneratorExit at its
`yield`), and the generator waits for the attempt to have stopped before it ends; what the
task printed meanwhile is not received (Ray's reader of a cancelled generator stops at once).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from kfpgrpc.executor import object_store
from kfpgrpc.executor.base import TaskUpdate
from kfpgrpc.executor.launcher import ContainerTask, TaskFailed
from kfpgrpc.executor.local import LocalLauncher
from kfpgrpc.executor.process import make_undumpable
from kfpgrpc.executor.task_log import LogVolume, TaskLog, error_with_tail

NODE_ROOT = Path(tempfile.gettempdir()) / "kfpgrpc-ray"
# What Ray sets in a worker's environment to give a task its accelerators (ray/_private/accelerators).
VISIBLE_DEVICES = (
    "CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "NEURON_RT_VISIBLE_CORES",
    "TPU_VISIBLE_CHIPS", "ONEAPI_DEVICE_SELECTOR", "HABANA_VISIBLE_MODULES",
)
_WORKER: dict[str, Any] = {}  # this worker process's "loop" and "launcher"


def run_attempt(task: ContainerTask, volume: LogVolume, kill_grace_seconds: float) -> Iterator[tuple[Any, ...]]:
    """The body of the Ray task: one attempt of `task` on this node (see the module docstring).
    `volume` is the task's log volume so far; `kill_grace_seconds` the grace period between
    SIGTERM and SIGKILL when cancelled."""
    loop, launcher = _worker_launcher()
    launcher.kill_grace_seconds = kill_grace_seconds
    outbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
    log = TaskLog(_Outbox(outbox, volume), task.task_id, volume)

    async def on_start(_notes: Sequence[str]) -> None:  # the server writes the notes of a Ray node
        import ray

        outbox.put_nowait(("started", ray.get_runtime_context().get_node_id(), ray.util.get_node_ip_address()))

    async def attempt() -> tuple[Any, ...]:
        staging = ""
        try:
            # The devices Ray gave this task (it sets them in the worker's environment for the
            # task's num_gpus...): the task's processes get a minimal environment, so pass them.
            local = replace(task, env={**task.env, **{name: os.environ[name] for name in VISIBLE_DEVICES if name in os.environ}})
            if object_store.is_url(task.run_dir):
                staging = os.path.realpath(launcher.artifact_root / "staging" / uuid.uuid4().hex)
                local = await asyncio.to_thread(object_store.stage_inputs, local, staging)
            result = await launcher.run(local, log, on_start)
            if staging:
                result = await asyncio.to_thread(object_store.publish_outputs, result, local.run_dir, task)
        except TaskFailed as failed:
            outcome: tuple[Any, ...] = ("failed", failed.error, failed.exit_code)
        except object_store.ObjectStoreError as error:
            outcome = ("failed", error_with_tail(str(error), log.tail), None)
        else:
            outcome = ("succeeded", result)
        finally:
            await log.flush()
            if staging:
                await asyncio.to_thread(shutil.rmtree, staging, True)
        return outcome

    job = loop.create_task(attempt())
    loop.add_signal_handler(signal.SIGINT, job.cancel)
    try:
        while True:
            item = loop.create_task(outbox.get())
            loop.run_until_complete(asyncio.wait({item, job}, return_when=asyncio.FIRST_COMPLETED))
            if item.done():
                yield item.result()
                continue
            item.cancel()
            while not outbox.empty():
                yield outbox.get_nowait()
            if not job.cancelled():
                yield job.result()
            return
    finally:
        if not job.done():  # Ray closes a cancelled generator: let the attempt stop as cancelled
            if not job.cancelling():  # a second cancel would cut the task's grace period short
                job.cancel()
            loop.run_until_complete(asyncio.wait({job}))
        loop.remove_signal_handler(signal.SIGINT)


class _Outbox:
    """The TaskLog's observer on a node: each stored batch becomes an item of the generator."""

    def __init__(self, outbox: asyncio.Queue[tuple[Any, ...]], volume: LogVolume) -> None:
        self.outbox = outbox
        self.volume = volume

    async def log_lines(self, task_id: str, lines: list[str]) -> None:
        self.outbox.put_nowait(("lines", lines, self.volume.stored, self.volume.truncated))

    async def task_changed(self, update: TaskUpdate) -> None:  # pragma: no cover - never called
        pass


def _worker_launcher() -> tuple[asyncio.AbstractEventLoop, LocalLauncher]:
    """This worker process's loop and launcher, made and started by its first task."""
    if not _WORKER:
        make_undumpable()  # its tasks run as its user: they must not read its environment (credentials)
        _remove_gone_workers()
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        root = NODE_ROOT / f"worker-{os.getpid()}"  # also its artifact_root: staging goes below it
        launcher = LocalLauncher(
            artifact_root=root, work_root=root / "work", max_parallel_tasks=1, containment="subreaper",
            envs_root=root / "envs",
        )
        loop.run_until_complete(launcher.start())
        _WORKER.update(loop=loop, launcher=launcher)
    return _WORKER["loop"], _WORKER["launcher"]


def _remove_gone_workers() -> None:
    """Remove the directories of this node's workers whose process is gone."""
    try:
        entries = list(NODE_ROOT.iterdir())
    except FileNotFoundError:
        return
    for entry in entries:
        pid = entry.name.removeprefix("worker-")
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(entry, ignore_errors=True)
