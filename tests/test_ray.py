"""The Ray launcher (`kfpgrpc serve --launcher ray`, issue 15) against a real Ray cluster of two
nodes on this machine, bound to 127.0.0.1: the head with 2 CPUs, and a second node with 2 CPUs,
a GPU and the custom resource `disktype=ssd` (what `kfp.kubernetes.add_node_selector(task,
"disktype", "ssd")` asks for). The cluster is started once for the module (~8 s); the servers are
real `kfpgrpc serve` processes and the pipelines are compiled by the kfp SDK.

Skipped only when Ray is not installed: it is in the test extra, so CI runs these."""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from kfp import compiler, kubernetes
from kfp.dsl.base_component import BaseComponent

from kfpgrpc.client.messages import load_pipeline_spec
from kfpgrpc.executor.launcher import kubernetes_executors
from kfpgrpc.executor.resources import ResourceError, ResourceRequest
from kfpgrpc.v1 import common_pb2, run_pb2
from tests import pipelines
from tests.pipelines import shell_pipeline_with
from tests.support import (
    ServerProcess,
    Stubs,
    create,
    eventually,
    finished,
    inline_run,
    is_running,
    plain,
    run_to_end,
    serving,
    task,
    task_processes,
    tasks_of,
    wait_until,
)

pytest.importorskip("ray", reason="Ray is not installed: the test extra brings it (pip install -e '.[test]')")
from ray.cluster_utils import Cluster  # noqa: E402

from kfpgrpc.executor.ray_launcher import ray_options  # noqa: E402

Spec = dict[str, Any]
SUCCEEDED, FAILED, CANCELED = common_pb2.SUCCEEDED, common_pb2.FAILED, common_pb2.CANCELED
NODE_NOTE = re.compile(r"^ran on Ray node ([0-9a-f]+) ")
UNSCHEDULABLE = "no node of the Ray cluster can run this task"
STARTUP_SECONDS = 90  # only turns a hang into a failure: Ray starts workers slowly on a busy machine
# Every `kfpgrpc serve` here logs warnings only: its stderr pipe, read when it ends, never fills.
QUIET = ("--log-level", "warning")


@dataclass(frozen=True)
class TwoNodes:
    """The module's Ray cluster: its GCS `address`, the id of its head node, and that of the node
    that alone has a GPU and `disktype=ssd`."""

    address: str
    head_id: str
    gpu_id: str

    def serve(self, *extra: str) -> tuple[str, ...]:
        """The arguments of `kfpgrpc serve --launcher ray` on this cluster, with `extra`."""
        return ("--launcher", "ray", "--ray-address", self.address, *QUIET, *extra)


@pytest.fixture(scope="module")
def cluster() -> Iterator[TwoNodes]:
    started = Cluster(
        initialize_head=True, connect=False,
        head_node_args={"num_cpus": 2, "node_ip_address": "127.0.0.1", "include_dashboard": False},
    )
    try:
        gpu_node = started.add_node(num_cpus=2, num_gpus=1, resources={"disktype=ssd": 1000}, node_ip_address="127.0.0.1")
        started.wait_for_nodes()
        head_id = started.head_node.node_id
        assert {node.node_id for node in started.list_all_nodes()} == {head_id, gpu_node.node_id}
        yield TwoNodes(started.address, head_id, gpu_node.node_id)
    finally:
        started.shutdown()


@pytest.fixture(scope="module")
def ray_server(cluster: TwoNodes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server on the cluster for the tests that need no setting of their own."""
    with serving(tmp_path_factory.mktemp("ray-server") / "data", *cluster.serve()) as server:
        yield server


@contextlib.asynccontextmanager
async def connected(server: ServerProcess) -> AsyncIterator[Stubs]:
    """Stubs on a channel to `server`, for the `async with` block."""
    async with grpc.aio.insecure_channel(server.address) as channel:
        yield Stubs.on(channel)


@pytest.fixture
async def stubs(ray_server: ServerProcess) -> AsyncIterator[Stubs]:
    """Stubs on the module's Ray server (instead of conftest's in-process server)."""
    async with connected(ray_server) as opened:
        yield opened


PLAIN = shell_pipeline_with("plain", lambda task, _: task)
GPU = shell_pipeline_with("gpu", lambda task, _: task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1))
SSD = shell_pipeline_with("ssd", lambda task, _: kubernetes.add_node_selector(task, "disktype", "ssd"))
MANY_CPUS = shell_pipeline_with("many-cpus", lambda task, _: task.set_cpu_request("64"))
CPU_AT_RUN_TIME = shell_pipeline_with("cpu-at-run-time", lambda task, setting: task.set_cpu_request(setting))
MEMORY_AT_RUN_TIME = shell_pipeline_with("memory-at-run-time", lambda task, setting: task.set_memory_limit(setting))
GPUS_AT_RUN_TIME = shell_pipeline_with(
    "gpus-at-run-time", lambda task, setting: task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(setting)
)
RETRIED = shell_pipeline_with("retried", lambda task, _: task.set_retry(num_retries=1, backoff_duration="0s"))
MANY_GPUS = shell_pipeline_with("many-gpus", lambda task, _: task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(8))


def compiled(pipeline: BaseComponent, out: Path) -> Spec:
    """`pipeline` compiled by the kfp SDK into `out`, as our API receives it (with its platform
    spec when it has one)."""
    path = out / f"{pipeline.name}.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    return load_pipeline_spec(path)


def node_of(detail: run_pb2.PipelineTaskDetail) -> str:
    """The id of the Ray node the task ran on, from its notes."""
    found = [match.group(1) for note in detail.notes if (match := NODE_NOTE.match(note))]
    assert len(found) == 1, list(detail.notes)
    return found[0]


def outcome(run: run_pb2.Run) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each task's state and output parameters, by task id."""
    return {
        task_id: (common_pb2.RuntimeState.Name(detail.state), plain(detail.output_parameters))
        for task_id, detail in tasks_of(run).items()
    }


async def log_lines(stubs: Stubs, run_id: str, follow: bool = False) -> AsyncIterator[str]:
    """The text of the run's log lines, as StreamRunLogs sends them; the call is cancelled when
    the caller stops reading (`contextlib.aclosing`)."""
    call = stubs.runs.StreamRunLogs(run_pb2.StreamRunLogsRequest(run_id=run_id, follow=follow))
    try:
        async for response in call:
            for line in response.lines:
                yield line.text
    finally:
        call.cancel()


async def state_of(stubs: Stubs, run_id: str) -> int:
    """The state of the task "shell" of the run, now."""
    return task(await stubs.runs.GetRun(run_pb2.GetRunRequest(run_id=run_id)), "shell").state


async def processes_of(run_id: str) -> dict[int, int]:
    """task_processes(run_id), for `eventually`."""
    return task_processes(run_id)


async def attempts_of(path: Path) -> int:
    """How many lines the file `path` has (0 when it does not exist), for `eventually`."""
    return len(path.read_text().splitlines()) if path.exists() else 0


def gate_script(gate: Path, before: str = "", after: str = "") -> str:
    """Shell that runs `before`, waits until the file `gate` exists, then runs `after`."""
    return f"{before}\nwhile [ ! -e {shlex.quote(str(gate))} ]; do sleep 0.02; done\n{after}"


async def test_a_pipeline_with_a_condition_and_a_loop_succeeds_on_ray_as_on_the_local_launcher(
    stubs: Stubs, cluster: TwoNodes, tmp_path: Path
) -> None:
    """The control-flow pipeline (ParallelFor with Collected, If/Elif/Else with OneOf, an exit
    handler) ends with the same task states and output parameters on Ray as with the local
    launcher, each container task on a node of the cluster."""
    spec = compiled(pipelines.control_flow_pipeline, tmp_path)
    on_ray = await run_to_end(stubs, spec, n=3)
    assert on_ray.state == SUCCEEDED, on_ray.error
    with serving(tmp_path / "local", *QUIET) as local:
        async with connected(local) as local_stubs:
            on_local = await run_to_end(local_stubs, spec, n=3)
    assert on_local.state == SUCCEEDED, on_local.error
    assert outcome(on_ray) == outcome(on_local)
    tasks = outcome(on_ray)
    assert tasks["exit-handler-1.for-loop-2"] == ("SUCCEEDED", {"pipelinechannel--add-Output": [2, 4, 6]})
    assert tasks["exit-handler-1.total"] == ("SUCCEEDED", {"Output": 12})
    assert tasks["condition-branches-3.condition-5.echo-2"] == ("SUCCEEDED", {"Output": "odd"})  # n = 3: Elif
    assert tasks["condition-branches-3.condition-4"][0] == tasks["condition-branches-3.condition-6"][0] == "SKIPPED"
    containers = [detail for detail in tasks_of(on_ray).values() if detail.notes]
    assert len(containers) == 8  # parity, count-to, 3 × add, total, echo-2, report-status
    assert {node_of(detail) for detail in containers} <= {cluster.head_id, cluster.gpu_id}


@pytest.mark.parametrize("pipeline, on_gpu_node", [(GPU, True), (SSD, True), (PLAIN, False)], ids=["gpu", "node-selector", "no-request"])
async def test_a_task_asking_for_what_one_node_has_runs_there(
    stubs: Stubs, cluster: TwoNodes, tmp_path: Path, pipeline: BaseComponent, on_gpu_node: bool
) -> None:
    """Only the second node has a GPU and `disktype=ssd`: a task that asks for one of them runs
    there, and says so in its notes; a task without requests may run on either node."""
    run = await run_to_end(stubs, compiled(pipeline, tmp_path), script='echo "devices: ${CUDA_VISIBLE_DEVICES-none}"')
    assert run.state == SUCCEEDED, run.error
    node = node_of(task(run, "shell"))
    if on_gpu_node:
        assert node == cluster.gpu_id, (node, cluster)
    else:
        assert node in (cluster.head_id, cluster.gpu_id), (node, cluster)
    # The GPU Ray gave the task (its worker's CUDA_VISIBLE_DEVICES) reaches the task's processes.
    lines = [line async for line in log_lines(stubs, run.run_id)]
    assert ("devices: 0" if pipeline is GPU else "devices: none") in lines, lines


@pytest.mark.parametrize(
    "pipeline, asked", [(MANY_CPUS, "CPU 64;"), (MANY_GPUS, "CPU 1, GPU 8;")], ids=["64-cpus", "8-gpus"]
)
async def test_a_task_no_node_can_run_fails_saying_what_it_asked(
    stubs: Stubs, tmp_path: Path, pipeline: BaseComponent, asked: str
) -> None:
    """A task that asks for more than any node has fails at once: its error says so, with what it
    asked and what the nodes offer, and names the setting that would make it wait."""
    run = await run_to_end(stubs, compiled(pipeline, tmp_path), script="echo never")
    assert run.state == FAILED
    error = task(run, "shell").error.message
    assert UNSCHEDULABLE in error and f"it asks for {asked}" in error, error
    assert "--ray-unschedulable wait" in error, error
    assert UNSCHEDULABLE in run.error.message, run.error


async def test_with_unschedulable_wait_a_task_no_node_can_run_stays_pending_saying_why(
    cluster: TwoNodes, tmp_path: Path
) -> None:
    """With `--ray-unschedulable wait` (for a node an autoscaler may add) the task does not fail:
    it waits, not started, a line of its log saying why; TerminateRun cancels it."""
    with serving(tmp_path / "data", *cluster.serve("--ray-unschedulable", "wait")) as server:
        async with connected(server) as stubs:
            created = await create(stubs, inline_run(compiled(MANY_CPUS, tmp_path), script="echo never"))
            line = ""
            async with contextlib.aclosing(log_lines(stubs, created.run_id, follow=True)) as lines:
                async for line in lines:
                    if line.startswith("waiting: "):
                        break
            assert UNSCHEDULABLE in line and "it asks for CPU 64" in line, line
            # Not started: the orchestrator reports a task from RUNNING on, so it has no detail yet.
            run = await stubs.runs.GetRun(run_pb2.GetRunRequest(run_id=created.run_id))
            assert run.state == common_pb2.RUNNING and not run.run_details.task_details, run
            await stubs.runs.TerminateRun(run_pb2.TerminateRunRequest(run_id=created.run_id))
            run = await finished(stubs, created)
    assert run.state == CANCELED, run.error


async def test_terminate_kills_the_task_processes_on_their_node(stubs: Stubs, tmp_path: Path) -> None:
    """A task that started a background child: TerminateRun cancels its Ray task, and no process
    of the run is left on the node."""
    created = await create(stubs, inline_run(compiled(PLAIN, tmp_path), script="sleep 600 & sleep 600; wait"))
    await wait_until(stubs.runs, created.run_id, is_running("shell"))
    await eventually(lambda: processes_of(created.run_id), lambda found: len(found) >= 3)  # sh and the two sleeps
    await stubs.runs.TerminateRun(run_pb2.TerminateRunRequest(run_id=created.run_id))
    run = await finished(stubs, created)
    assert run.state == CANCELED and task(run, "shell").state == CANCELED, run
    await eventually(lambda: processes_of(created.run_id), lambda found: not found)


async def test_a_server_killed_mid_run_and_restarted_ends_the_run_with_the_task_run_again(
    cluster: TwoNodes, tmp_path: Path
) -> None:
    """SIGKILL of the server (the Ray driver) mid-task: Ray ends its tasks, and their processes
    die with their workers; the restarted server runs the task again, and the run succeeds."""
    attempts, gate = tmp_path / "attempts", tmp_path / "gate"
    script = gate_script(gate, before=f"echo attempt >> {shlex.quote(str(attempts))}", after="echo passed")
    spec = compiled(PLAIN, tmp_path)
    server = ServerProcess(tmp_path / "data", *cluster.serve())
    try:
        async with connected(server) as stubs:
            created = await create(stubs, inline_run(spec, script=script))
            await eventually(lambda: attempts_of(attempts), lambda count: count == 1)
            assert task_processes(created.run_id), "the attempt waits for the gate"
    finally:
        server.kill()
    # Ray notices the driver's death, then kills its workers: a liveness wait, not a timing check.
    await eventually(lambda: processes_of(created.run_id), lambda found: not found, timeout=STARTUP_SECONDS)
    with serving(tmp_path / "data", *cluster.serve()) as restarted:
        async with connected(restarted) as stubs:
            await eventually(lambda: attempts_of(attempts), lambda count: count == 2, timeout=STARTUP_SECONDS)
            gate.touch()
            run = await finished(stubs, created)
    assert run.state == SUCCEEDED, run.error
    assert attempts.read_text() == "attempt\nattempt\n"


async def test_logs_stream_while_the_task_runs(stubs: Stubs, tmp_path: Path) -> None:
    """StreamRunLogs (follow) sends a line the task printed while the task still runs: the task
    waits for a file that the test makes only after it has seen the line."""
    gate = tmp_path / "gate"
    spec = compiled(PLAIN, tmp_path)
    created = await create(stubs, inline_run(spec, script=gate_script(gate, before="echo before-the-gate", after="echo after-the-gate")))
    seen = []
    async for line in log_lines(stubs, created.run_id, follow=True):
        seen.append(line)
        if line == "before-the-gate":
            assert await state_of(stubs, created.run_id) == common_pb2.RUNNING
            gate.touch()
    assert "after-the-gate" in seen and seen.index("before-the-gate") < seen.index("after-the-gate"), seen
    run = await finished(stubs, created)
    assert run.state == SUCCEEDED, run.error


def request_of(configure: Callable[[Any, Any], Any], out: Path, **parameters: Any) -> ResourceRequest:
    """The ResourceRequest of the task of a shell pipeline set up by `configure`, compiled by the
    kfp SDK, with the task's input `parameters`."""
    spec = compiled(shell_pipeline_with("resources", configure), out)
    platform = kubernetes_executors(spec.get("platform_spec") or {})
    pipeline_spec = spec.get("pipeline_spec", spec)
    return ResourceRequest.of(pipeline_spec["deploymentSpec"]["executors"]["exec-shell"]["container"], platform.get("exec-shell") or {}, parameters)


GIB, MIB = 2**30, 2**20


@pytest.mark.parametrize(
    "configure, parameters, options",
    [
        (lambda task, _: task, {}, {"num_cpus": 1}),
        (lambda task, _: task.set_cpu_request("500m"), {}, {"num_cpus": 0.5}),
        (lambda task, _: task.set_cpu_limit("2"), {}, {"num_cpus": 2}),
        (lambda task, _: task.set_cpu_request("1").set_cpu_limit("4"), {}, {"num_cpus": 1}),
        (lambda task, setting: task.set_cpu_request(setting), {"pipelinechannel--setting": "250m"}, {"num_cpus": 0.25}),
        (lambda task, _: task.set_memory_request("512Mi").set_memory_limit("1G"), {}, {"num_cpus": 1, "memory": 512 * MIB}),
        (lambda task, _: task.set_memory_limit("1G"), {}, {"num_cpus": 1, "memory": 10**9}),
        (lambda task, _: task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1), {}, {"num_cpus": 1, "num_gpus": 1}),
        (
            lambda task, _: task.set_accelerator_type("NVIDIA_TESLA_T4").set_accelerator_limit(2), {},
            {"num_cpus": 1, "num_gpus": 2, "resources": {"accelerator_type:T4": 0.001}},
        ),
        (lambda task, _: task.set_accelerator_type("TPU_V3").set_accelerator_limit(8), {}, {"num_cpus": 1, "resources": {"TPU": 8}}),
        (
            lambda task, _: kubernetes.add_node_selector(task.set_cpu_request("2"), "disktype", "ssd"), {},
            {"num_cpus": 2, "resources": {"disktype=ssd": 0.001}},
        ),
    ],
    ids=["none", "cpu-request", "cpu-limit", "cpu-request-and-limit", "cpu-parameter", "memory-request-and-limit",
         "memory-limit", "gpu", "t4", "tpu", "node-selector"],
)
def test_ray_options_of_kfp_resource_requests(
    tmp_path: Path, configure: Callable[[Any, Any], Any], parameters: dict[str, Any], options: dict[str, Any]
) -> None:
    """KFP's requests as the SDK compiles them become Ray's task options: the request, else the
    limit (as Kubernetes schedules); a model of GPU also asks for Ray's accelerator_type resource;
    a node selector label asks for a share of the custom resource `key=value`."""
    assert ray_options(request_of(configure, tmp_path, **parameters)) == options


def test_a_quantity_that_is_not_one_is_a_resource_error(tmp_path: Path) -> None:
    """The SDK checks literal quantities; one given at run time is checked here."""
    with pytest.raises(ResourceError, match="CPU 'two' is not a Kubernetes quantity"):
        request_of(lambda task, setting: task.set_cpu_request(setting), tmp_path, **{"pipelinechannel--setting": "two"})


async def test_a_failed_attempt_is_retried_by_the_retry_policy_as_a_new_ray_task(stubs: Stubs, tmp_path: Path) -> None:
    """KFP's retry policy retries, not Ray: the first attempt fails, the second (a new Ray task,
    on any node) succeeds, and the task counts one retry."""
    attempts = tmp_path / "attempts"
    script = f"echo attempt >> {shlex.quote(str(attempts))}; [ $(wc -l < {shlex.quote(str(attempts))}) -ge 2 ]"
    run = await run_to_end(stubs, compiled(RETRIED, tmp_path), script=script)
    assert run.state == SUCCEEDED, run.error
    assert task(run, "shell").retries == 1
    assert attempts.read_text() == "attempt\nattempt\n"


def test_a_ray_address_where_nothing_answers_fails_the_start_at_once(tmp_path: Path) -> None:
    """Ray would retry an unreachable GCS for minutes; the server says so and exits instead."""
    with socket.socket() as probe:  # a port of this machine where nothing listens
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    result = subprocess.run(
        [sys.executable, "-m", "kfpgrpc.cli", "serve", "--listen", "127.0.0.1:0", "--http-listen", "off",
         "--data-dir", str(tmp_path / "data"), "--launcher", "ray", "--ray-address", address],
        capture_output=True, text=True, timeout=STARTUP_SECONDS,
    )
    assert result.returncode != 0 and "listening on" not in result.stdout, result
    assert f"cannot connect to the Ray cluster at '{address}' (--ray-address)" in result.stderr, result.stderr


async def test_a_task_on_a_node_sees_a_minimal_environment_not_its_workers(stubs: Stubs, tmp_path: Path) -> None:
    """A Ray worker's environment (Ray's variables, the cluster's settings, cloud credentials) is
    not the task's: the task gets the same minimal environment as on the local launcher."""
    run = await run_to_end(stubs, compiled(pipelines.environment_pipeline, tmp_path))
    assert run.state == SUCCEEDED, run.error
    printed = json.loads(next(line for line in [line async for line in log_lines(stubs, run.run_id)] if line.startswith("{")))
    assert set(printed["environment"]) == {
        "PATH", "HOME", "TMPDIR", "LANG", "PYTHONUNBUFFERED", "KFP_POD_NAME", "KFP_POD_UID", "GREETING",
        "KFPGRPC_RUN_ID", "KFPGRPC_TASK_DIR",
    }


@pytest.mark.parametrize(
    "pipeline, setting, error",
    [
        (CPU_AT_RUN_TIME, "1u", "CPU 1e-06 is less than Ray counts"),
        (MEMORY_AT_RUN_TIME, "1e309", "memory '1e309' is more than any machine has"),
        (GPUS_AT_RUN_TIME, "-1", "accelerator count -1 must be between 0 and 1024"),
    ],
    ids=["cpu-below-ray-precision", "infinite-memory", "negative-gpus"],
)
async def test_a_request_ray_cannot_take_fails_its_task_saying_why(
    stubs: Stubs, tmp_path: Path, pipeline: BaseComponent, setting: str, error: str
) -> None:
    """Values given at run time that Ray would refuse (or that overflow) fail the task with what
    is wrong, as a task error, not the run with an internal error."""
    run = await run_to_end(stubs, compiled(pipeline, tmp_path), script="echo never", setting=setting)
    assert run.state == FAILED
    assert error in task(run, "shell").error.message, task(run, "shell").error
    assert "internal" not in run.error.message, run.error



async def test_terminate_gives_the_task_its_grace_period_on_its_node(stubs: Stubs, tmp_path: Path) -> None:
    """TerminateRun stops a task on Ray as locally: SIGTERM, and the grace period before SIGKILL
    (a task that cleans up on SIGTERM finishes its clean-up), not a kill of its worker."""
    cleaned = tmp_path / "cleaned-up"
    script = f"trap 'sleep 0.5; touch {shlex.quote(str(cleaned))}; exit 143' TERM; echo ready; while :; do sleep 0.1; done"
    created = await create(stubs, inline_run(compiled(PLAIN, tmp_path), script=script))
    async with contextlib.aclosing(log_lines(stubs, created.run_id, follow=True)) as lines:
        async for line in lines:
            if line == "ready":
                break
    await stubs.runs.TerminateRun(run_pb2.TerminateRunRequest(run_id=created.run_id))
    run = await finished(stubs, created)
    assert run.state == CANCELED
    await eventually(lambda: processes_of(created.run_id), lambda found: not found)
    assert cleaned.exists()
