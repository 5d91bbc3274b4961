"""No request stalls the server's event loop: selector patterns run in linear time (RE2), macros
are found in linear time, and a large pipeline spec is decoded and validated off the loop, up
to a size limit. Servers that must stay answerable while the test waits run in a subprocess, so
that a stalled server fails the test by its (generous) timeout instead of hanging it."""

from __future__ import annotations

import asyncio
import copy
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from kfpgrpc.config import ServerConfig
from kfpgrpc.server import KfpGrpcServer
from kfpgrpc.v1 import common_pb2, experiment_pb2, pipeline_pb2, run_pb2
from kfpgrpc.v1 import recurring_run_pb2 as recurring_pb
from tests.support import ServerProcess, Stubs, field_violations, inline_run, run_of, struct, upload, watch_to_end

Spec = dict[str, Any]


async def test_a_backtracking_pattern_does_not_stall_the_server(tmp_path: Path, compiled: dict[str, Spec]) -> None:
    """`(a+)+$` against 40 a's and a `!` takes a backtracking engine hours; RE2 is linear."""
    server = ServerProcess(tmp_path / "data")
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stubs = Stubs.on(channel)
            version = await upload(stubs, "tag", compiled["tag-pipeline"])
            run = run_of(version, tag="a" * 40 + "!")
            run.artifacts.add(name="backtracking", path='tag-model:model[tag matches "(a+)+$"]')
            run.artifacts.add(name="anchored", path='tag-model:model[tag matches "^a{40}!$" and tag not matches `\\d`]')
            created = await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=run))
            final = (await watch_to_end(stubs.runs, created.run_id, timeout=120))[-1]
            experiments = await stubs.experiments.ListExperiments(experiment_pb2.ListExperimentsRequest(), timeout=30)
    finally:
        server.kill()
    assert final.state == common_pb2.SUCCEEDED
    backtracking, anchored = final.output_artifacts
    assert (backtracking.uri, backtracking.unmatched_reason) == ("", 'filter `tag matches "(a+)+$"` matched none of 1 artifact')
    assert anchored.uri and not anchored.unmatched_reason
    assert experiments.total_size == 1


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("(a)\\\\1", "invalid escape sequence: \\1 (RE2 syntax: no backreferences or look-around; \\z ends the text)"),
        ("^(?!tmp-)", "invalid perl operator: (?! (RE2 syntax: no backreferences or look-around; \\z ends the text)"),
    ],
)
async def test_patterns_re2_cannot_run_are_refused_at_create_time(
    stubs: Stubs, compiled: dict[str, Spec], pattern: str, problem: str
) -> None:
    version = await upload(stubs, "tag", compiled["tag-pipeline"])
    run = run_of(version)
    run.artifacts.add(name="ok", path="tag-model:model")
    run.artifacts.add(name="bad", path=f'tag-model:model[tag matches "{pattern}"]')
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=run))
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    shown = pattern.replace("\\\\", "\\")
    assert field_violations(failure.value) == {
        "run.artifacts[1].path": f"filter: at column 13: bad regular expression {shown!r}: {problem}",
    }


async def test_a_stored_selector_that_no_longer_parses_is_reported_not_fatal(
    data_dir: Path, compiled: dict[str, Spec], tmp_path: Path
) -> None:
    """A selector stored before RE2 (a look-ahead, say) cannot stop its run from ending: the
    run ends and says why the selector exposed nothing."""
    gate = tmp_path / "gate"
    server = KfpGrpcServer(ServerConfig(listen="127.0.0.1:0", data_dir=data_dir))
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            run = inline_run(compiled["instant-pipeline"], gate=str(gate))
            run.artifacts.add(name="model", path='noop:model[tag matches "^golden"]')
            created = await Stubs.on(channel).runs.CreateRun(run_pb2.CreateRunRequest(run=run))
    finally:
        await server.stop()  # the run stays RUNNING, to be resumed
    with sqlite3.connect(data_dir / "kfpgrpc.db") as database:
        database.execute(
            "UPDATE runs SET artifacts = ? WHERE run_id = ?",
            ('[{"name":"model","path":"noop:model[tag matches \\"^(?!tmp)\\"]"}]', created.run_id),
        )
    server = KfpGrpcServer(ServerConfig(listen="127.0.0.1:0", data_dir=data_dir))
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            gate.touch()
            final = (await watch_to_end(Stubs.on(channel).runs, created.run_id))[-1]
    finally:
        await server.stop()
    assert final.state == common_pb2.SUCCEEDED
    assert final.output_artifacts[0].unmatched_reason == (
        "the selector no longer parses: filter: at column 13: bad regular expression '^(?!tmp)':"
        " invalid perl operator: (?! (RE2 syntax: no backreferences or look-around; \\z ends the text)"
    )


async def test_macros_in_a_megabyte_parameter_are_checked_in_linear_time(tmp_path: Path, compiled: dict[str, Spec]) -> None:
    """`[[a.` a quarter of a million times, never closed: each opening used to be matched to the
    end of the text (minutes of quadratic work on the event loop)."""
    server = ServerProcess(tmp_path / "data")
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stubs = Stubs.on(channel)
            version = await upload(stubs, "instant", compiled["instant-pipeline"])
            message = recurring_pb.RecurringRun(
                display_name="macros",
                pipeline_version_reference=common_pb2.PipelineVersionReference(pipeline_id=version.pipeline_id),
            )
            message.trigger.cron_schedule.cron = "0 3 * * *"
            message.runtime_config.parameters["label"].string_value = "[[a." * 262_144
            created = await stubs.recurring_runs.CreateRecurringRun(
                recurring_pb.CreateRecurringRunRequest(recurring_run=message), timeout=60
            )
    finally:
        server.kill()
    assert created.runtime_config.parameters["label"].string_value.startswith("[[a.[[a.")


def _big_spec(spec: Spec, tasks: int) -> Spec:
    """`spec` (the add pipeline) with `tasks` more copies of its first task: valid, and large."""
    spec = copy.deepcopy(spec)
    dag = spec["root"]["dag"]["tasks"]
    name, first = next(iter(dag.items()))
    for index in range(tasks):
        task = copy.deepcopy(first)
        task["taskInfo"] = {"name": f"copy-{index}"}
        task["inputs"]["parameters"] = {key: {"runtimeValue": {"constant": 1}} for key in task["inputs"]["parameters"]}
        dag[f"copy-{index}"] = task
    return spec


async def test_other_calls_are_answered_while_a_large_spec_is_uploaded(tmp_path: Path, compiled: dict[str, Spec]) -> None:
    """Decoding and validating a spec of megabytes takes seconds; meanwhile the server answers
    other calls (it used to answer almost none until the upload was done)."""
    spec = _big_spec(compiled["add-pipeline"], 16_000)
    server = ServerProcess(tmp_path / "data", "--max-spec-bytes", str(16 << 20))  # the default is 1.5 MiB
    try:
        async with grpc.aio.insecure_channel(server.address, options=[("grpc.max_receive_message_length", 64 << 20)]) as channel:
            stubs = Stubs.on(channel)
            pipeline = await stubs.pipelines.CreatePipeline(pipeline_pb2.CreatePipelineRequest(pipeline=pipeline_pb2.Pipeline(name="big")))
            request = pipeline_pb2.CreatePipelineVersionRequest(
                pipeline_id=pipeline.pipeline_id, pipeline_version=pipeline_pb2.PipelineVersion(pipeline_spec=struct(spec))
            ).SerializeToString()
            assert len(request) > 4 * 1024 * 1024
            experiment = (await stubs.experiments.ListExperiments(experiment_pb2.ListExperimentsRequest())).experiments[0]
            # Bytes in, bytes out: this process spends no time on the big message either way.
            create_version = channel.unary_unary("/kfpgrpc.v1.PipelineService/CreatePipelineVersion")
            uploading = asyncio.ensure_future(create_version(request, timeout=300))
            answered_meanwhile = 0
            while not uploading.done():
                await stubs.experiments.GetExperiment(
                    experiment_pb2.GetExperimentRequest(experiment_id=experiment.experiment_id), timeout=300
                )
                answered_meanwhile += not uploading.done()
            version = pipeline_pb2.PipelineVersion.FromString(await uploading)
    finally:
        server.kill()
    assert version.pipeline_version_id
    # Blocked, the server answered only in the upload's short waits for the database (about
    # 15 calls here); free, it answers throughout (about 200).
    assert answered_meanwhile >= 50, answered_meanwhile


@pytest.fixture
async def small_specs(data_dir: Path) -> AsyncIterator[Stubs]:
    """Stubs on a server that accepts specs of at most 64 KiB."""
    server = KfpGrpcServer(ServerConfig(listen="127.0.0.1:0", data_dir=data_dir, max_spec_bytes=65_536))
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            yield Stubs.on(channel)
    finally:
        await server.stop()


async def test_specs_over_the_size_limit_are_refused_naming_the_field(small_specs: Stubs, compiled: dict[str, Spec]) -> None:
    stubs = small_specs
    spec = compiled["add-pipeline"]
    padded = {**spec, "pipelineInfo": {**spec["pipelineInfo"], "description": "x" * 70_000}}
    size = struct(padded).ByteSize()
    expected = f"is {size:,} bytes; this server accepts pipeline specs of at most 65,536 bytes (--max-spec-bytes)"
    version = await upload(stubs, "add", spec)  # a real spec is far under the limit
    recurring = recurring_pb.RecurringRun(display_name="big", pipeline_spec=struct(padded))
    recurring.trigger.cron_schedule.cron = "0 3 * * *"
    calls = {
        "pipeline_version.pipeline_spec": stubs.pipelines.CreatePipelineVersion(pipeline_pb2.CreatePipelineVersionRequest(
            pipeline_id=version.pipeline_id, pipeline_version=pipeline_pb2.PipelineVersion(name="v2", pipeline_spec=struct(padded))
        )),
        "run.pipeline_spec": stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=inline_run(padded, a=1, b=2))),
        "recurring_run.pipeline_spec": stubs.recurring_runs.CreateRecurringRun(
            recurring_pb.CreateRecurringRunRequest(recurring_run=recurring)
        ),
    }
    for field, call in calls.items():
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await call
        assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(failure.value) == {field: expected}


async def test_other_calls_are_answered_while_a_large_rest_body_is_parsed(tmp_path: Path) -> None:
    """A JSON body of megabytes takes seconds of protobuf's Python to parse; meanwhile the
    server answers gRPC calls (it used to answer none until the body was parsed: a 28 MB body
    froze it for a minute). The body's bulk is an unknown field, ignored once parsed, as KFP's
    gateway ignores one."""
    bulk = [{"a": index, "b": [1, 2, {"c": "d"}]} for index in range(400_000)]
    body = json.dumps({"display_name": "big", "namespace_details": bulk}).encode()
    assert len(body) > 12 << 20
    server = ServerProcess(tmp_path / "data", http=True)
    try:
        async with grpc.aio.insecure_channel(server.address) as channel, httpx.AsyncClient(timeout=300) as http:
            stubs = Stubs.on(channel)
            experiment = (await stubs.experiments.ListExperiments(experiment_pb2.ListExperimentsRequest())).experiments[0]
            posting = asyncio.ensure_future(http.post(f"{server.http_url}/apis/v2beta1/experiments", content=body,
                                                      headers={"Content-Type": "application/json"}))
            answered_meanwhile = 0
            while not posting.done():
                await stubs.experiments.GetExperiment(
                    experiment_pb2.GetExperimentRequest(experiment_id=experiment.experiment_id), timeout=300
                )
                answered_meanwhile += not posting.done()
            response = await posting
    finally:
        server.kill()
    assert response.status_code == 200 and response.json()["display_name"] == "big"
    # Blocked, the server answered only while the body was still arriving (3 to 6 calls here);
    # free, it answers throughout the parse (50 to 180 on two busy cores).
    assert answered_meanwhile >= 25, answered_meanwhile
