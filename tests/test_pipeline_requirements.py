"""What a pipeline asks of Kubernetes (kfp-kubernetes, kfp-semantics.md §10) and of its caller
(root input artifacts, §11), with pipelines compiled by each kfp version (tests/kfp_sdks.py):
scheduling advice is ignored and noted on the task; what a task depends on is refused at
CreateRun, naming exactly what is unsupported, before anything runs."""

from __future__ import annotations

import re
from typing import Any

import grpc

from kfpgrpc.v1 import common_pb2, run_pb2
from tests.support import Stubs, create, inline_run, output, rpc_error, run_to_end, tasks_of

Spec = dict[str, Any]


def squeezed(text: str) -> str:
    """`text` lowercased without spaces, dashes and underscores: "PVC mount" and "pvcMount" agree."""
    return "".join(c for c in text.lower() if c not in " -_")


async def no_runs(stubs: Stubs) -> bool:
    return (await stubs.runs.ListRuns(run_pb2.ListRunsRequest())).total_size == 0


async def test_scheduling_advice_is_ignored_and_noted_on_the_task(stubs: Stubs, each_kfp: dict[str, Spec]) -> None:
    """Issue 12: node selectors, tolerations, pod labels and annotations only steer where a pod is
    scheduled (§10.2), so the task runs here and its task detail notes each ignored setting by
    its platform-spec name (design12.md: "ignored on this machine: nodeSelector"). CPU, memory
    and accelerator requests are not enforced here: the task runs and its detail says so."""
    run = await run_to_end(stubs, each_kfp["cf-scheduling-advice"], "advice")
    assert run.state == common_pb2.SUCCEEDED, run.error
    echo = tasks_of(run)["echo"]
    assert output(echo) == "scheduled anywhere"
    ignored = [note for note in echo.notes if "ignored" in note]
    for setting in ("nodeSelector", "tolerations", "podMetadata"):
        assert any(setting in note for note in ignored), (setting, list(echo.notes))
    (resources,) = [note for note in echo.notes if "not enforced" in note]
    for asked in ("CPU limit 2", "memory limit 1G", "accelerator nvidia.com/gpu × 1"):
        assert asked in resources, (asked, resources)


async def test_a_pvc_mount_is_refused_at_create_run(stubs: Stubs, each_kfp: dict[str, Spec]) -> None:
    """Issue 12: a task that mounts a PVC (`kubernetes.mount_pvc`, platform spec `pvcMount`)
    depends on a volume this machine does not have: CreateRun answers FAILED_PRECONDITION naming
    the PVC mount (and nothing else) and no run is created."""
    error = await rpc_error(create(stubs, inline_run(each_kfp["cf-pvc-mount"], "pvc")))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "pvcmount" in squeezed(error.details()) and "secretasenv" not in squeezed(error.details()), error.details()
    assert await no_runs(stubs)


async def test_a_secret_as_env_is_refused_at_create_run(stubs: Stubs, each_kfp: dict[str, Spec]) -> None:
    """Issue 12: a task that reads a Kubernetes secret into its environment
    (`kubernetes.use_secret_as_env`, platform spec `secretAsEnv`) cannot get it here: CreateRun
    answers FAILED_PRECONDITION naming the secret as env (and nothing else); no run is created."""
    error = await rpc_error(create(stubs, inline_run(each_kfp["cf-secret-env"], "secret")))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "secretasenv" in squeezed(error.details()) and "pvcmount" not in squeezed(error.details()), error.details()
    assert await no_runs(stubs)


async def test_a_required_input_artifact_of_the_pipeline_is_refused_at_create_run(stubs: Stubs, each_kfp: dict[str, Spec]) -> None:
    """KFP (§11): a run cannot be given input artifacts (RuntimeConfig holds parameters only), so a
    pipeline with a required root input artifact can never get it; issue 12 asks for the check at
    CreateRun instead of a task that runs with None. The answer is FAILED_PRECONDITION (like every
    pipeline this server cannot run; no argument of the request can fix it) naming the input."""
    error = await rpc_error(create(stubs, inline_run(each_kfp["cf-root-artifact"], "root artifact")))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert re.search(r"\bdataset\b", error.details()), error.details()  # the input's name
    assert await no_runs(stubs)
