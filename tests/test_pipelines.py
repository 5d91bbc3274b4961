"""PipelineService through a real server and channel, with pipelines compiled by the kfp SDK."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, struct_pb2

from kfpgrpc.v1 import pipeline_pb2 as pb
from tests.support import Stubs, field_violations


def as_struct(spec: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(spec)
    return message


async def create_pipeline(stubs: Stubs, name: str = "", display_name: str = "") -> pb.Pipeline:
    return await stubs.pipelines.CreatePipeline(
        pb.CreatePipelineRequest(pipeline=pb.Pipeline(name=name, display_name=display_name))
    )


async def upload(stubs: Stubs, pipeline_id: str, spec: dict[str, Any], name: str = "") -> pb.PipelineVersion:
    return await stubs.pipelines.CreatePipelineVersion(
        pb.CreatePipelineVersionRequest(
            pipeline_id=pipeline_id, pipeline_version=pb.PipelineVersion(name=name, pipeline_spec=as_struct(spec))
        )
    )


async def test_kfp_compiled_pipeline_round_trips_unchanged(stubs: Stubs, compiled: dict[str, dict[str, Any]]) -> None:
    pipeline = await create_pipeline(stubs, name="adder")
    for spec in compiled.values():
        version = await upload(stubs, pipeline.pipeline_id, spec)
        fetched = await stubs.pipelines.GetPipelineVersion(
            pb.GetPipelineVersionRequest(pipeline_id=pipeline.pipeline_id, pipeline_version_id=version.pipeline_version_id)
        )
        assert json_format.MessageToDict(fetched.pipeline_spec) == spec
        assert fetched.pipeline_spec == as_struct(spec)
        assert fetched.description == spec["pipelineInfo"].get("description", "")


async def test_version_names_default_and_are_unique(stubs: Stubs, compiled: dict[str, dict[str, Any]]) -> None:
    pipeline = await create_pipeline(stubs, display_name="Adder")
    assert pipeline.name == "Adder" and pipeline.display_name == "Adder"
    spec = compiled["add-pipeline"]
    first, second = await upload(stubs, pipeline.pipeline_id, spec), await upload(stubs, pipeline.pipeline_id, spec)
    assert (first.name, first.display_name, second.name) == ("v1", "v1", "v2")
    await upload(stubs, pipeline.pipeline_id, spec, name="release")
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await upload(stubs, pipeline.pipeline_id, spec, name="release")
    assert failure.value.code() == grpc.StatusCode.ALREADY_EXISTS
    listed = await stubs.pipelines.ListPipelineVersions(
        pb.ListPipelineVersionsRequest(pipeline_id=pipeline.pipeline_id, sort_by="created_at desc")
    )
    assert [v.name for v in listed.pipeline_versions] == ["release", "v2", "v1"]
    assert listed.total_size == 3


async def test_get_by_name_and_duplicates(stubs: Stubs) -> None:
    created = await create_pipeline(stubs, name="etl", display_name="ETL job")
    assert await stubs.pipelines.GetPipelineByName(pb.GetPipelineByNameRequest(name="etl")) == created
    assert await stubs.pipelines.GetPipeline(pb.GetPipelineRequest(pipeline_id=created.pipeline_id)) == created
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await create_pipeline(stubs, name="etl")
    assert failure.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stubs.pipelines.GetPipelineByName(pb.GetPipelineByNameRequest(name="missing"))
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND


async def test_delete_needs_cascade_when_versions_exist(stubs: Stubs, compiled: dict[str, dict[str, Any]]) -> None:
    pipeline = await create_pipeline(stubs, name="to-delete")
    version = await upload(stubs, pipeline.pipeline_id, compiled["add-pipeline"])
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stubs.pipelines.DeletePipeline(pb.DeletePipelineRequest(pipeline_id=pipeline.pipeline_id))
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    await stubs.pipelines.DeletePipeline(pb.DeletePipelineRequest(pipeline_id=pipeline.pipeline_id, cascade=True))
    for call in (
        stubs.pipelines.GetPipeline(pb.GetPipelineRequest(pipeline_id=pipeline.pipeline_id)),
        stubs.pipelines.GetPipelineVersion(pb.GetPipelineVersionRequest(pipeline_version_id=version.pipeline_version_id)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await call
        assert failure.value.code() == grpc.StatusCode.NOT_FOUND


async def test_delete_version(stubs: Stubs, compiled: dict[str, dict[str, Any]]) -> None:
    pipeline = await create_pipeline(stubs, name="versions")
    keep = await upload(stubs, pipeline.pipeline_id, compiled["add-pipeline"])
    drop = await upload(stubs, pipeline.pipeline_id, compiled["add-pipeline"])
    other = await create_pipeline(stubs, name="other")
    with pytest.raises(grpc.aio.AioRpcError) as failure:  # the version must belong to the named pipeline
        await stubs.pipelines.DeletePipelineVersion(
            pb.DeletePipelineVersionRequest(pipeline_id=other.pipeline_id, pipeline_version_id=drop.pipeline_version_id)
        )
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND
    await stubs.pipelines.DeletePipelineVersion(
        pb.DeletePipelineVersionRequest(pipeline_id=pipeline.pipeline_id, pipeline_version_id=drop.pipeline_version_id)
    )
    listed = await stubs.pipelines.ListPipelineVersions(pb.ListPipelineVersionsRequest(pipeline_id=pipeline.pipeline_id))
    assert [v.pipeline_version_id for v in listed.pipeline_versions] == [keep.pipeline_version_id]


async def test_invalid_spec_is_rejected_naming_the_problem(stubs: Stubs, compiled: dict[str, dict[str, Any]]) -> None:
    pipeline = await create_pipeline(stubs, name="broken")
    spec = copy.deepcopy(compiled["add-pipeline"])
    task = next(iter(spec["root"]["dag"]["tasks"]))
    spec["root"]["dag"]["tasks"][task]["componentRef"]["name"] = "comp-missing"
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await upload(stubs, pipeline.pipeline_id, spec)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = field_violations(failure.value)
    assert f"pipeline_version.pipeline_spec.root.dag.tasks.{task}.componentRef.name" in violations
    assert "comp-missing" in violations[f"pipeline_version.pipeline_spec.root.dag.tasks.{task}.componentRef.name"]

    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await upload(stubs, pipeline.pipeline_id, {"pipelineInfo": {"name": "x"}, "bogus": 1})
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert any(field.startswith("pipeline_version.pipeline_spec") for field in field_violations(failure.value))
    listed = await stubs.pipelines.ListPipelineVersions(pb.ListPipelineVersionsRequest(pipeline_id=pipeline.pipeline_id))
    assert listed.total_size == 0  # nothing half-stored


async def test_conditions_and_selectors_are_compiled_at_upload(stubs: Stubs, compiled_cel: dict[str, dict[str, Any]]) -> None:
    pipeline = await create_pipeline(stubs, name="conditional")
    # The kfp SDK compiles `n.output == 'abc'` and `text == "it's"` to CEL that does not parse:
    # refused now rather than failing a run when the condition is reached.
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await upload(stubs, pipeline.pipeline_id, compiled_cel["condition-quirks"])
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(failure.value) == {
        "pipeline_version.pipeline_spec.root.dag.tasks.condition-1.triggerPolicy.condition":
            "is not valid CEL: at column 31: Syntax error: mismatched input 'pipelinechannel' expecting <EOF>",
        "pipeline_version.pipeline_spec.root.dag.tasks.condition-2.triggerPolicy.condition":
            "is not valid CEL: at column 57: Syntax error: extraneous input 's' expecting <EOF>;"
            " at column 58: Syntax error: token recognition error at: '''",
    }
    spec = copy.deepcopy(compiled_cel["item-fields"])
    add_inputs = spec["components"]["comp-for-loop-2"]["dag"]["tasks"]["add"]["inputs"]["parameters"]
    add_inputs["a"]["parameterExpressionSelector"] = "parseJson(string_value)[a]"
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await upload(stubs, pipeline.pipeline_id, spec)
    assert field_violations(failure.value) == {
        "pipeline_version.pipeline_spec.components.comp-for-loop-2.dag.tasks.add.inputs.parameters.a.parameterExpressionSelector":
            "is not valid CEL: at column 25: undeclared reference to 'a'",
    }
    for name, spec in compiled_cel.items():
        if name != "condition-quirks":
            await upload(stubs, pipeline.pipeline_id, spec, name=name)
    listed = await stubs.pipelines.ListPipelineVersions(pb.ListPipelineVersionsRequest(pipeline_id=pipeline.pipeline_id))
    assert sorted(v.name for v in listed.pipeline_versions) == ["condition-casts", "conditions", "item-fields", "oneof"]


async def test_version_request_validation(stubs: Stubs, compiled: dict[str, dict[str, Any]]) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stubs.pipelines.CreatePipelineVersion(pb.CreatePipelineVersionRequest())
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(failure.value) == {
        "pipeline_id": "is required",
        "pipeline_version.pipeline_spec": "is required",
    }
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await upload(stubs, "no-such-pipeline", compiled["add-pipeline"])
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await create_pipeline(stubs)
    assert field_violations(failure.value) == {"pipeline.name": "is required"}
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stubs.pipelines.ListPipelineVersions(pb.ListPipelineVersionsRequest(pipeline_id="no-such-pipeline"))
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND


async def test_paging_through_1000_pipelines_sees_each_once(stubs: Stubs) -> None:
    names = [f"pipeline-{i:04d}" for i in range(1000)]
    for start in range(0, len(names), 100):
        await asyncio.gather(*(create_pipeline(stubs, name=n) for n in names[start : start + 100]))
    for sort_by, expected in (("name", names), ("name desc", names[::-1]), ("", None), ("created_at desc", None)):
        seen: list[str] = []
        token = ""
        pages = 0
        while True:
            page = await stubs.pipelines.ListPipelines(
                pb.ListPipelinesRequest(page_size=37, page_token=token, sort_by="" if token else sort_by)
            )
            assert page.total_size == 1000
            seen += [p.name for p in page.pipelines]
            pages += 1
            token = page.next_page_token
            if not token:
                break
        assert pages == 28  # ceil(1000 / 37)
        assert sorted(seen) == names  # every pipeline exactly once
        if expected is not None:
            assert seen == expected


async def test_filtered_paging_keeps_the_filter_in_the_token(stubs: Stubs) -> None:
    await asyncio.gather(*(create_pipeline(stubs, name=f"{kind}-{i}") for kind in ("train", "serve") for i in range(30)))
    only_train = json.dumps({"predicates": [{"key": "name", "operation": "IS_SUBSTRING", "string_value": "train-"}]})
    first = await stubs.pipelines.ListPipelines(pb.ListPipelinesRequest(page_size=20, filter=only_train, sort_by="name"))
    rest = await stubs.pipelines.ListPipelines(pb.ListPipelinesRequest(page_size=20, page_token=first.next_page_token))
    names = [p.name for p in first.pipelines] + [p.name for p in rest.pipelines]
    assert names == sorted(f"train-{i}" for i in range(30))
    assert first.total_size == rest.total_size == 30 and not rest.next_page_token


async def test_a_spec_with_hundreds_of_errors_still_gets_a_readable_error(stubs: Stubs, compiled: dict[str, dict[str, Any]]) -> None:
    pipeline = await create_pipeline(stubs, name="very-broken")
    spec = copy.deepcopy(compiled["add-pipeline"])
    template = next(iter(spec["root"]["dag"]["tasks"].values()))
    spec["root"]["dag"]["tasks"] = {
        f"task-{i}": {**copy.deepcopy(template), "componentRef": {"name": f"comp-missing-{i}"}} for i in range(500)
    }
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await upload(stubs, pipeline.pipeline_id, spec)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    count, _, rest = failure.value.details().partition(" ")
    assert int(count) >= 500 and rest == "invalid fields; the first 20 are in the details"
    assert len(field_violations(failure.value)) == 20


async def test_default_version_names_skip_taken_names(stubs: Stubs, compiled: dict[str, dict[str, Any]]) -> None:
    pipeline = await create_pipeline(stubs, name="renumbered")
    spec = compiled["add-pipeline"]
    first, _ = await upload(stubs, pipeline.pipeline_id, spec), await upload(stubs, pipeline.pipeline_id, spec)
    await stubs.pipelines.DeletePipelineVersion(
        pb.DeletePipelineVersionRequest(pipeline_id=pipeline.pipeline_id, pipeline_version_id=first.pipeline_version_id)
    )
    await upload(stubs, pipeline.pipeline_id, spec, name="v3")
    assert (await upload(stubs, pipeline.pipeline_id, spec)).name == "v4"  # count+1 = 3 is taken


def _nested_levels(add: dict[str, Any], levels: int, uses_per_level: int) -> dict[str, Any]:
    """The add pipeline wrapped in `levels` sub-pipelines, each running the next one
    `uses_per_level` times: `uses_per_level ** levels` add tasks once unfolded."""
    spec = copy.deepcopy(add)
    inner_task = next(iter(spec["root"]["dag"]["tasks"].values()))
    spec["components"]["comp-level-0"] = {"dag": {"tasks": {"add": copy.deepcopy(inner_task)}}}
    for level in range(1, levels + 1):
        spec["components"][f"comp-level-{level}"] = {
            "dag": {"tasks": {f"use-{i}": {"componentRef": {"name": f"comp-level-{level - 1}"}, "taskInfo": {"name": f"use-{i}"}}
                              for i in range(uses_per_level)}}
        }
    spec["root"]["dag"]["tasks"] = {"top": {"componentRef": {"name": f"comp-level-{levels}"}, "taskInfo": {"name": "top"}}}
    spec["root"].pop("inputDefinitions", None)
    spec["root"]["dag"].pop("outputs", None)
    spec["root"].pop("outputDefinitions", None)
    return spec


@pytest.mark.parametrize(
    ("levels", "uses", "problem"),
    [(40, 2, "expands to more than 100,000 tasks"), (150, 1, "nests DAGs 152 deep")],
    ids=["2**40 tasks", "150 levels"],
)
async def test_a_spec_that_unfolds_too_far_is_refused(
    stubs: Stubs, compiled: dict[str, dict[str, Any]], levels: int, uses: int, problem: str
) -> None:
    """A few kilobytes of spec must not make a run of 2**40 tasks nor a walk deeper than Python
    recurses: refused at upload, naming the root DAG."""
    add = copy.deepcopy(compiled["add-pipeline"])
    task = next(iter(add["root"]["dag"]["tasks"].values()))
    task["inputs"] = {"parameters": {"a": {"runtimeValue": {"constant": 1}}, "b": {"runtimeValue": {"constant": 2}}}}
    pipeline = await create_pipeline(stubs, name=f"unfolds-{levels}")
    await upload(stubs, pipeline.pipeline_id, _nested_levels(add, 3, 2), name="small-enough")  # 8 tasks: fine
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await upload(stubs, pipeline.pipeline_id, _nested_levels(add, levels, uses))
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert problem in field_violations(failure.value)["pipeline_version.pipeline_spec.root.dag"]


async def test_create_pipeline_and_version_makes_both_or_neither(stubs: Stubs, compiled: dict[str, dict[str, Any]]) -> None:
    spec = compiled["add-pipeline"]
    pipeline = await stubs.pipelines.CreatePipelineAndVersion(pb.CreatePipelineAndVersionRequest(
        pipeline=pb.Pipeline(name="both"), pipeline_version=pb.PipelineVersion(name="first", pipeline_spec=as_struct(spec))))
    listed = await stubs.pipelines.ListPipelineVersions(pb.ListPipelineVersionsRequest(pipeline_id=pipeline.pipeline_id))
    assert [(v.name, v.display_name) for v in listed.pipeline_versions] == [("first", "first")]
    assert json_format.MessageToDict(listed.pipeline_versions[0].pipeline_spec) == spec

    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stubs.pipelines.CreatePipelineAndVersion(pb.CreatePipelineAndVersionRequest(
            pipeline=pb.Pipeline(name="neither"), pipeline_version=pb.PipelineVersion(pipeline_spec=as_struct({"not": "a spec"}))))
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stubs.pipelines.GetPipelineByName(pb.GetPipelineByNameRequest(name="neither"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
