"""An object-store pipeline root on the Ray launcher: a real two-node Ray cluster on 127.0.0.1, a
real S3 API (moto's server, on 127.0.0.1) reached through fsspec's s3fs, a real server.

Tasks run on local copies: inputs downloaded before, outputs uploaded after; artifacts' uris in
runs are s3:// URLs; caching copies within the store; DeleteRun removes the run's objects; a
run's own pipeline_root must be inside an allowed root."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from kfpgrpc.v1 import common_pb2, run_pb2
from tests.pipelines import artifact_pipeline, compile_pipeline
from tests.support import (
    Stubs,
    container_spec,
    create,
    field_violations,
    finished,
    inline_run,
    output,
    rpc_error,
    serving,
    tasks_of,
)

ray_cluster_utils = pytest.importorskip("ray.cluster_utils", reason="ray is not installed (pip install 'kfpgrpc[ray]')")
boto3 = pytest.importorskip("boto3", reason="boto3 (with moto) is not installed")
moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed")

BUCKET = "kfp"


@pytest.fixture(scope="module")
def s3_and_cluster() -> Iterator[dict[str, str]]:
    """A moto S3 server with the bucket, and a two-node Ray cluster whose workers reach it (the
    S3 settings are in the environment the cluster's processes inherit). Yields the settings
    (environment variables) and the cluster's address under "address"."""
    s3 = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    s3.start()
    host, port = s3.get_host_and_port()
    settings = {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "FSSPEC_S3_ENDPOINT_URL": f"http://{host}:{port}",  # fsspec's configuration from the environment
    }
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    cluster = None
    try:
        boto3.client("s3", endpoint_url=settings["FSSPEC_S3_ENDPOINT_URL"]).create_bucket(Bucket=BUCKET)
        cluster = ray_cluster_utils.Cluster(
            initialize_head=True, connect=False,
            head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False},
        )
        cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        cluster.wait_for_nodes()
        yield {**settings, "address": cluster.address}
    finally:
        if cluster is not None:
            cluster.shutdown()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        s3.stop()


def objects(settings: dict[str, str], prefix: str) -> dict[str, bytes]:
    """The objects of the bucket below `prefix`, by key, but the kfp executor's
    executor_output.json (the task's directory holds it, as on the local launcher)."""
    client = boto3.client("s3", endpoint_url=settings["FSSPEC_S3_ENDPOINT_URL"])
    found = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {
        item["Key"]: client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
        for item in found if not item["Key"].endswith("/executor_output.json")
    }


def rooted(run: run_pb2.Run, pipeline_root: str) -> run_pb2.Run:
    run.runtime_config.pipeline_root = pipeline_root
    return run


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return compile_pipeline(artifact_pipeline, tmp_path_factory.mktemp("spec") / "artifacts.yaml")


async def test_artifacts_live_in_the_object_store(s3_and_cluster: dict[str, str], spec: dict[str, Any], tmp_path: Path) -> None:
    settings = s3_and_cluster
    with serving(
        tmp_path / "data", "--launcher", "ray", "--ray-address", settings["address"], "--pipeline-root", f"s3://{BUCKET}/root",
        "--allowed-pipeline-roots", f"s3://{BUCKET}/other:{tmp_path}",
    ) as server:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stubs = Stubs.on(channel)
            first = await finished(stubs, await create(stubs, inline_run(spec, text="over s3")))
            assert first.state == common_pb2.SUCCEEDED, first.error
            tasks = tasks_of(first)
            assert output(tasks["read-dataset"]) == "over s3"  # the consumer read the producer's upload
            uris = {artifact.name: artifact.uri for artifact in tasks["write-artifacts"].output_artifacts}
            prefix = f"root/{first.run_id}/write-artifacts/"
            assert uris == {"dataset": f"s3://{BUCKET}/{prefix}dataset", "model": f"s3://{BUCKET}/{prefix}model"}
            assert objects(settings, prefix) == {f"{prefix}dataset": b"over s3", f"{prefix}model": b"model trained on 7 characters"}

            # The same inputs again: both tasks from the cache, the artifacts copied to the new run.
            second = await finished(stubs, await create(stubs, inline_run(spec, text="over s3")))
            assert second.state == common_pb2.SUCCEEDED, second.error
            assert {task.cached_from_run_id for task in second.run_details.task_details if task.task_id in ("write-artifacts", "read-dataset")} == {first.run_id}
            copied = f"root/{second.run_id}/write-artifacts/"
            assert objects(settings, copied) == {f"{copied}dataset": b"over s3", f"{copied}model": b"model trained on 7 characters"}

            # A run's own root: inside an allowed one, or refused naming the field.
            other = await finished(stubs, await create(stubs, rooted(inline_run(spec, text="elsewhere"), f"s3://{BUCKET}/other/team")))
            assert other.state == common_pb2.SUCCEEDED, other.error
            assert objects(settings, f"other/team/{other.run_id}/write-artifacts/dataset") != {}
            refused = await rpc_error(create(stubs, rooted(inline_run(spec), f"s3://{BUCKET}/elsewhere")))
            assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "run.runtime_config.pipeline_root" in field_violations(refused)
            # Roots are compared as text: what could name another place than the text says is refused.
            for sneaky in ("other/../root/x", "other/./x", "other//x", "other/%2e%2e/root", "other/x?versionId=1", "other/x#y"):
                refused = await rpc_error(create(stubs, rooted(inline_run(spec), f"s3://{BUCKET}/{sneaky}")))
                assert "must be a plain scheme://bucket/path" in field_violations(refused)["run.runtime_config.pipeline_root"], sneaky

            # DeleteRun removes the run's objects, and only those.
            await stubs.runs.DeleteRun(run_pb2.DeleteRunRequest(run_id=first.run_id))
            assert objects(settings, f"root/{first.run_id}/") == {}
            assert objects(settings, copied) != {}


async def test_a_link_among_the_outputs_is_not_followed(s3_and_cluster: dict[str, str], tmp_path: Path) -> None:
    """A task that leaves a link to a file of its node's in its artifact directory FAILS: the
    upload follows no link, so the node's file never reaches the store."""
    settings = s3_and_cluster
    spec = container_spec(
        "leak",
        ["sh", "-c", 'echo data > "$0"; ln -s /etc/hostname "$(dirname "$0")/extra"', "{{$.outputs.artifacts['out'].path}}"],
        outputs={"artifacts": {"out": {"artifactType": {"schemaTitle": "system.Dataset", "schemaVersion": "0.0.1"}}}},
    )
    with serving(tmp_path / "data", "--launcher", "ray", "--ray-address", settings["address"], "--pipeline-root", f"s3://{BUCKET}/root") as server:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stubs = Stubs.on(channel)
            run = await finished(stubs, await create(stubs, inline_run(spec)))
    assert run.state == common_pb2.FAILED
    assert "'extra' is a link" in tasks_of(run)["leak"].error.message
    assert objects(settings, f"root/{run.run_id}/") == {}
