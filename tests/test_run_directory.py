"""A run stays inside its directory, through a real server: names that are paths are refused at
upload and CreateRun, a pipeline_root must be inside an allowed root, and deleting a run never
follows a link its tasks planted. (The executor's own defences: tests/test_executor.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest

from kfpgrpc.v1 import common_pb2, pipeline_pb2, run_pb2
from kfpgrpc.v1 import recurring_run_pb2 as rr
from tests.support import (
    REPLACE_OWN_DIRECTORY,
    REPLACE_RUN_DIRECTORY,
    ServerProcess,
    Stubs,
    assert_untouched,
    container_spec,
    field_violations,
    inline_run,
    run_of,
    running,
    struct,
    upload,
    victim_dir,
    wait_until,
    watch_to_end,
)

Spec = dict[str, Any]
ROOT_FIELD = "run.runtime_config.pipeline_root"


async def refused(call: Any) -> dict[str, str]:
    """The field violations of a call that must answer INVALID_ARGUMENT."""
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT, failure.value
    return field_violations(failure.value)


def create_run(stubs: Stubs, run: run_pb2.Run) -> Any:
    return stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=run))


def rooted(run: run_pb2.Run, pipeline_root: str) -> run_pb2.Run:
    run.runtime_config.pipeline_root = pipeline_root
    return run


def recurring_inline(spec: Spec, pipeline_root: str = "") -> rr.CreateRecurringRunRequest:
    recurring = rr.RecurringRun(display_name="hourly", mode=rr.RecurringRun.DISABLE, pipeline_spec=struct(spec))
    recurring.trigger.cron_schedule.cron = "0 * * * *"
    recurring.runtime_config.pipeline_root = pipeline_root
    return rr.CreateRecurringRunRequest(recurring_run=recurring)


def key(name: str) -> str:
    return "[" + json.dumps(name) + "]"


async def test_the_issue_examples_are_refused_wherever_a_spec_comes_in(stubs: Stubs, tmp_path: Path, data_dir: Path) -> None:
    """A task named `../../../../<victim>` would have made the server empty <victim>; an output
    parameter named after a file would have made it return that file's content."""
    victim = victim_dir(tmp_path)
    secret = tmp_path / "secret"
    secret.write_text("the server's secret")
    task = "../" * 30 + str(victim).lstrip("/")
    traversal = container_spec(task, ["sh", "-c", "echo ran"])
    reader = container_spec("x", ["true"], {"parameters": {str(secret): {"parameterType": "STRING"}}})
    pipeline = await stubs.pipelines.CreatePipeline(pipeline_pb2.CreatePipelineRequest(pipeline=pipeline_pb2.Pipeline(name="hostile")))
    for spec, path in ((traversal, f"root.dag.tasks{key(task)}"),
                       (reader, f"components.comp-x.outputDefinitions.parameters{key(str(secret))}")):
        version = pipeline_pb2.PipelineVersion(pipeline_spec=struct(spec))
        upload_request = pipeline_pb2.CreatePipelineVersionRequest(pipeline_id=pipeline.pipeline_id, pipeline_version=version)
        assert set(await refused(stubs.pipelines.CreatePipelineVersion(upload_request))) == {f"pipeline_version.pipeline_spec.{path}"}
        assert set(await refused(create_run(stubs, inline_run(spec)))) == {f"run.pipeline_spec.{path}"}
        assert set(await refused(stubs.recurring_runs.CreateRecurringRun(recurring_inline(spec)))) == {f"recurring_run.pipeline_spec.{path}"}
    short = await refused(create_run(stubs, inline_run(container_spec("../x", ["true"]))))
    assert list(short) == ['run.pipeline_spec.root.dag.tasks["../x"]']
    assert_untouched(victim)
    assert not (data_dir / "artifacts").exists() or not any((data_dir / "artifacts").iterdir())
    listed = await stubs.runs.ListRuns(run_pb2.ListRunsRequest())
    assert not listed.runs


async def test_a_pipeline_root_must_be_inside_the_artifact_root_by_default(stubs: Stubs, compiled: dict[str, Spec], data_dir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    artifacts = data_dir / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "link").symlink_to(elsewhere, target_is_directory=True)
    allowed = os.path.realpath(artifacts)
    for root in (str(elsewhere), f"file://{elsewhere}", f"{artifacts}/../escape", f"{artifacts}/link", f"{artifacts}/link/deeper",
                 f"{artifacts}-sibling", "/", "/etc"):
        violations = await refused(create_run(stubs, rooted(inline_run(compiled["artifact-pipeline"]), root)))
        assert set(violations) == {ROOT_FIELD}, root
        assert violations[ROOT_FIELD].startswith(f"must be inside an allowed pipeline root: {allowed}"), violations
    with pytest.raises(grpc.aio.AioRpcError) as linked:
        await create_run(stubs, rooted(inline_run(compiled["artifact-pipeline"]), f"{artifacts}/link"))
    assert (linked.value.details() or "").endswith(f"; it resolves to {str(elsewhere)!r}")
    for root in ("relative/dir", "gs://bucket/root", "/tmp/nul\0byte"):
        violations = await refused(create_run(stubs, rooted(inline_run(compiled["artifact-pipeline"]), root)))
        assert violations[ROOT_FIELD].startswith("must be an absolute local path or a file:// URI"), root
    recurring = await refused(stubs.recurring_runs.CreateRecurringRun(recurring_inline(compiled["artifact-pipeline"], str(elsewhere))))
    assert set(recurring) == {"recurring_run.runtime_config.pipeline_root"}
    assert not elsewhere.exists()

    inside = await create_run(stubs, rooted(inline_run(compiled["artifact-pipeline"], text="in team-a"), f"file://{artifacts}/team-a"))
    done = (await watch_to_end(stubs.runs, inside.run_id))[-1]
    assert done.state == common_pb2.SUCCEEDED, done.error
    assert done.runtime_config.pipeline_root == f"{artifacts}/team-a"
    assert (artifacts / "team-a" / done.run_id / "write-artifacts" / "dataset").read_text() == "in team-a"


async def test_allowed_pipeline_roots_add_directories(compiled: dict[str, Spec], data_dir: Path, tmp_path: Path) -> None:
    shared, other = tmp_path / "shared", tmp_path / "other"
    async with running(data_dir, allowed_pipeline_roots=(shared, other)) as (_, stubs):
        run = await create_run(stubs, rooted(inline_run(compiled["artifact-pipeline"], text="shared"), f"file://{shared}/team"))
        done = (await watch_to_end(stubs.runs, run.run_id))[-1]
        assert done.state == common_pb2.SUCCEEDED, done.error
        assert (shared / "team" / run.run_id / "write-artifacts" / "dataset").read_text() == "shared"
        violations = await refused(create_run(stubs, rooted(inline_run(compiled["artifact-pipeline"]), f"{shared}2")))
        allowed = ", ".join(os.path.realpath(p) for p in (data_dir / "artifacts", shared, other))
        assert violations[ROOT_FIELD].startswith(f"must be inside an allowed pipeline root: {allowed}")
        default = (await watch_to_end(stubs.runs, (await create_run(stubs, inline_run(compiled["artifact-pipeline"]))).run_id))[-1]
        assert default.state == common_pb2.SUCCEEDED and (data_dir / "artifacts" / default.run_id).is_dir()


async def test_a_run_whose_root_is_no_longer_allowed_neither_runs_nor_loses_its_files(compiled: dict[str, Spec], data_dir: Path, tmp_path: Path) -> None:
    """Decision: the server writes and deletes only below allowed roots. A run stored with a
    root the operator has since removed from the list fails on resume, cannot be retried, and
    its deletion leaves its files."""
    shared = tmp_path / "shared"
    async with running(data_dir, allowed_pipeline_roots=(shared,)) as (_, stubs):
        gated = await upload(stubs, "gated", compiled["gated-pipeline"])
        interrupted = await create_run(stubs, rooted(run_of(gated, counter=str(tmp_path / "count"), gate=str(tmp_path / "never")), str(shared)))
        await wait_until(stubs.runs, interrupted.run_id, lambda r: any(t.task_id == "wait-for" for t in r.run_details.task_details))
        failing = await upload(stubs, "failing", compiled["failing-pipeline"])
        failed = (await watch_to_end(stubs.runs, (await create_run(stubs, rooted(run_of(failing), str(shared)))).run_id))[-1]
        assert failed.state == common_pb2.FAILED
    assert (shared / failed.run_id).is_dir()

    async with running(data_dir) as (_, stubs):
        resumed = (await watch_to_end(stubs.runs, interrupted.run_id))[-1]
        assert resumed.state == common_pb2.FAILED
        assert f"has pipeline_root {str(shared)!r}, which is not inside an allowed pipeline root" in resumed.error.message
        with pytest.raises(grpc.aio.AioRpcError) as retry:
            await stubs.runs.RetryRun(run_pb2.RetryRunRequest(run_id=failed.run_id))
        assert retry.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "--allowed-pipeline-roots" in (retry.value.details() or "")
        await stubs.runs.DeleteRun(run_pb2.DeleteRunRequest(run_id=failed.run_id))
    assert (shared / failed.run_id).is_dir()
    assert (tmp_path / "count").read_text() == "ran\n"  # not run again


@pytest.mark.parametrize("planted", ["run directory", "task directory"])
async def test_deleting_a_run_removes_the_links_its_tasks_planted_not_what_they_point_to(
    stubs: Stubs, data_dir: Path, tmp_path: Path, planted: str
) -> None:
    victim = victim_dir(tmp_path, "x")
    if planted == "run directory":
        spec = container_spec("x", ["sh", "-c", REPLACE_RUN_DIRECTORY, "sh", "{{$.pipeline_root}}", str(victim)])
    else:
        command = ["sh", "-c", REPLACE_OWN_DIRECTORY, "sh", "{{$.outputs.artifacts['out'].path}}", str(victim), str(tmp_path / "marker")]
        spec = container_spec("x", command, {"artifacts": {"out": {"artifactType": {"schemaTitle": "system.Artifact"}}}})
    done = (await watch_to_end(stubs.runs, (await create_run(stubs, inline_run(spec))).run_id))[-1]
    assert done.state == common_pb2.FAILED if planted == "task directory" else common_pb2.SUCCEEDED, done.error
    planted_link = data_dir / "artifacts" / done.run_id / ("" if planted == "run directory" else "x")
    assert planted_link.is_symlink()
    await stubs.runs.DeleteRun(run_pb2.DeleteRunRequest(run_id=done.run_id))
    assert_untouched(victim, "x")
    assert not os.path.lexists(data_dir / "artifacts" / done.run_id)


def test_the_serve_flag_and_its_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def serve(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kfpgrpc.cli", "serve", "--data-dir", str(tmp_path / "data"), *args],
                              capture_output=True, text=True, timeout=30)

    relative = serve("--allowed-pipeline-roots", f"/abs{os.pathsep}relative/dir")
    assert relative.returncode == 2
    assert relative.stderr.strip() == (
        "kfpgrpc: --allowed-pipeline-roots 'relative/dir': must be an absolute directory or an object-store URL"
    )
    # Object-store URLs: the Ray launcher's alone, and only with a backend for their scheme.
    for args, message in [
        (("--pipeline-root", "s3://bucket/root"), "kfpgrpc: --pipeline-root 's3://bucket/root': object-store URLs need --launcher ray"),
        (("--allowed-pipeline-roots", f"/abs{os.pathsep}gs://bucket/x"), "kfpgrpc: --allowed-pipeline-roots 'gs://bucket/x': object-store URLs need --launcher ray"),
        (("--launcher", "ray", "--pipeline-root", "nosuch://bucket"), "kfpgrpc: --pipeline-root 'nosuch://bucket': 'nosuch://bucket': no fsspec backend for nosuch://"),
    ]:
        refused = serve(*args)
        assert refused.returncode == 2
        assert refused.stderr.strip().startswith(message), refused.stderr
    roots = {"flag": (tmp_path / "a", tmp_path / "b"), "env": (tmp_path / "c",)}
    monkeypatch.setenv("KFPGRPC_ALLOWED_PIPELINE_ROOTS", str(roots["env"][0]))
    for source, extra in (("flag", ("--allowed-pipeline-roots", os.pathsep.join(map(str, roots["flag"])))), ("env", ())):
        server = ServerProcess(tmp_path / source, *extra)
        try:
            allowed = os.path.realpath(tmp_path / source / "artifacts") + "".join(f", {os.path.realpath(r)}" for r in roots[source])
            with grpc.insecure_channel(server.address) as channel:
                violations = field_violations(_refused_sync(channel, str(tmp_path / "elsewhere")))
                assert violations[ROOT_FIELD].startswith(f"must be inside an allowed pipeline root: {allowed}"), violations
        finally:
            server.terminate()


def _refused_sync(channel: grpc.Channel, pipeline_root: str) -> grpc.RpcError:
    from kfpgrpc.v1 import run_pb2_grpc

    with pytest.raises(grpc.RpcError) as failure:
        run_pb2_grpc.RunServiceStub(channel).CreateRun(
            run_pb2.CreateRunRequest(run=rooted(inline_run(container_spec("x", ["true"])), pipeline_root))
        )
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return failure.value
