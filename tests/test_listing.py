"""List requests: page_size, page_token, sort_by and KFP's JSON filter, over gRPC; and the
query plans that keep every page an index range scan."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import urllib.parse
from pathlib import Path
from typing import Any

import grpc
import pytest

from kfpgrpc.server import KfpGrpcServer
from kfpgrpc.store.experiments import EXPERIMENTS
from kfpgrpc.store.listing import ListRequest, build_query
from kfpgrpc.store.pipelines import PIPELINE_VERSIONS, PIPELINES
from kfpgrpc.store.recurring_runs import RECURRING_RUNS
from kfpgrpc.store.runs import RUNS
from kfpgrpc.v1 import experiment_pb2 as pb
from kfpgrpc.v1 import pipeline_pb2
from tests.support import Stubs, field_violations


def predicate(key: str, operation: str, **value: Any) -> str:
    return json.dumps({"predicates": [{"key": key, "operation": operation, **value}]})


async def names(stubs: Stubs, **request: Any) -> list[str]:
    listed = await stubs.experiments.ListExperiments(pb.ListExperimentsRequest(**request))
    return [e.display_name for e in listed.experiments]


@pytest.fixture
async def experiments(stubs: Stubs) -> list[pb.Experiment]:
    created = []
    for name in ("apple", "banana", "cherry", "date"):
        created.append(await stubs.experiments.CreateExperiment(
            pb.CreateExperimentRequest(experiment=pb.Experiment(display_name=name))))
        await asyncio.sleep(0.002)  # distinct created_at
    return created


@pytest.mark.parametrize(
    ("operation", "value", "expected"),
    [
        ("EQUALS", {"string_value": "banana"}, ["banana"]),
        ("NOT_EQUALS", {"string_value": "banana"}, ["Default", "apple", "cherry", "date"]),
        ("GREATER_THAN", {"string_value": "banana"}, ["cherry", "date"]),
        ("GREATER_THAN_EQUALS", {"string_value": "banana"}, ["banana", "cherry", "date"]),
        ("LESS_THAN", {"string_value": "banana"}, ["Default", "apple"]),
        ("LESS_THAN_EQUALS", {"string_value": "banana"}, ["Default", "apple", "banana"]),
        ("IN", {"string_values": {"values": ["date", "apple", "zzz"]}}, ["apple", "date"]),
        ("IS_SUBSTRING", {"string_value": "an"}, ["banana"]),
        ("IS_SUBSTRING", {"string_value": "%"}, []),  # wildcards are literal
    ],
)
async def test_every_operation_on_a_string_key(
    stubs: Stubs, experiments: list[pb.Experiment], operation: str, value: dict[str, Any], expected: list[str]
) -> None:
    assert await names(stubs, filter=predicate("display_name", operation, **value), sort_by="display_name") == expected


async def test_time_filters_compare_at_the_precision_given(stubs: Stubs, experiments: list[pb.Experiment]) -> None:
    banana = experiments[1].created_at
    exact = banana.ToJsonString()
    assert await names(stubs, filter=predicate("created_at", "EQUALS", timestamp_value=exact)) == ["banana"]
    assert await names(stubs, filter=predicate("created_at", "GREATER_THAN", timestamp_value=exact)) == ["cherry", "date"]
    # Unix seconds, as KFP clients send them: the whole second matches.
    second = predicate("created_at", "GREATER_THAN_EQUALS", long_value=banana.seconds)
    assert "banana" in await names(stubs, filter=second)
    everything_before = predicate("created_at", "LESS_THAN", long_value=banana.seconds + 3600)
    assert len(await names(stubs, filter=everything_before)) == 5


async def test_predicates_are_anded_and_camel_case_and_url_encoding_work(stubs: Stubs, experiments: list[pb.Experiment]) -> None:
    both = json.dumps({"predicates": [
        {"key": "name", "operation": "GREATER_THAN", "stringValue": "apple"},
        {"key": "storage_state", "operation": 1, "stringValue": "AVAILABLE"},
        {"key": "id", "operation": "NOT_EQUALS", "string_value": experiments[2].experiment_id},
    ]})
    assert await names(stubs, filter=both, sort_by="name") == ["banana", "date"]
    assert await names(stubs, filter=urllib.parse.quote(both), sort_by="name") == ["banana", "date"]


@pytest.mark.parametrize(
    ("request_fields", "field", "message"),
    [
        ({"page_size": -1}, "page_size", "must not be negative, got -1"),
        ({"page_token": "garbage!"}, "page_token", "is not a page token returned by this list"),
        ({"sort_by": "color"}, "sort_by", "cannot sort by 'color'; sortable fields: created_at, display_name, experiment_id"),
        ({"sort_by": "description"}, "sort_by", "cannot sort by 'description'; sortable fields: created_at, display_name, experiment_id"),
        ({"sort_by": "created_at sideways"}, "sort_by", "expected \"field\", \"field asc\" or \"field desc\", got 'created_at sideways'"),
        ({"filter": "{not json"}, "filter", None),
        ({"filter": predicate("color", "EQUALS", string_value="red")}, "filter.predicates[0].key",
         "unknown key 'color'; valid keys: created_at, description, display_name, experiment_id, storage_state"),
        ({"filter": predicate("display_name", "EQUALS")}, "filter.predicates[0].value", "is required"),
        ({"filter": json.dumps({"predicates": [{"key": "display_name", "string_value": "x"}]})}, "filter.predicates[0].operation", "is required"),
        ({"filter": predicate("display_name", "EQUALS", int_value=3)}, "filter.predicates[0].value", "'display_name' is a string key; use string_value(s)"),
        ({"filter": predicate("display_name", "IN", string_value="x")}, "filter.predicates[0].value", "IN takes int_values, long_values or string_values"),
        ({"filter": predicate("display_name", "EQUALS", string_values={"values": ["x"]})}, "filter.predicates[0].value", "EQUALS takes a single value, not string_values"),
        ({"filter": predicate("created_at", "IS_SUBSTRING", long_value=1)}, "filter.predicates[0].operation", "IS_SUBSTRING applies to string keys; 'created_at' is not one"),
        ({"filter": predicate("created_at", "EQUALS", string_value="yesterday")}, "filter.predicates[0].value", "'created_at' is a time key; use timestamp_value or long_value (Unix seconds)"),
        ({"filter": predicate("storage_state", "EQUALS", string_value="DELETED")}, "filter.predicates[0].value", "'DELETED' is not a storage_state value; one of: AVAILABLE, ARCHIVED"),
        ({"filter": predicate("storage_state", "EQUALS", string_value="STORAGE_STATE_UNSPECIFIED")}, "filter.predicates[0].value", "'STORAGE_STATE_UNSPECIFIED' is not a storage_state value; one of: AVAILABLE, ARCHIVED"),
        ({"filter": predicate("storage_state", "LESS_THAN", string_value="ARCHIVED")}, "filter.predicates[0].operation", "LESS_THAN does not apply to 'storage_state'; use EQUALS, NOT_EQUALS or IN"),
    ],
)
async def test_bad_list_requests_name_the_field(stubs: Stubs, request_fields: dict[str, Any], field: str, message: str | None) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stubs.experiments.ListExperiments(pb.ListExperimentsRequest(**request_fields))
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = field_violations(failure.value)
    assert list(violations) == [field]
    if message is None:
        assert violations[field].startswith("is not a valid KFP filter")
    else:
        assert violations[field] == message


async def test_page_size_is_capped_and_defaults(stubs: Stubs) -> None:
    await asyncio.gather(*(stubs.pipelines.CreatePipeline(
        pipeline_pb2.CreatePipelineRequest(pipeline=pipeline_pb2.Pipeline(name=f"p{i}"))) for i in range(230)))
    default = await stubs.pipelines.ListPipelines(pipeline_pb2.ListPipelinesRequest())
    capped = await stubs.pipelines.ListPipelines(pipeline_pb2.ListPipelinesRequest(page_size=5000))
    assert (len(default.pipelines), len(capped.pipelines)) == (20, 200)


async def test_token_must_match_sort_filter_and_parent(stubs: Stubs, experiments: list[pb.Experiment]) -> None:
    first = await stubs.experiments.ListExperiments(pb.ListExperimentsRequest(page_size=2, sort_by="display_name"))
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stubs.experiments.ListExperiments(
            pb.ListExperimentsRequest(page_size=2, sort_by="created_at", page_token=first.next_page_token))
    assert field_violations(failure.value) == {"sort_by": "differs from the sort of page_token"}
    same = await stubs.experiments.ListExperiments(
        pb.ListExperimentsRequest(page_size=2, sort_by="display_name asc", page_token=first.next_page_token))
    assert [e.display_name for e in same.experiments] == ["banana", "cherry"]
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stubs.experiments.ListExperiments(pb.ListExperimentsRequest(
            page_token=first.next_page_token, filter=predicate("display_name", "EQUALS", string_value="x")))
    assert field_violations(failure.value) == {"filter": "differs from the filter of page_token"}

    pipelines = [await stubs.pipelines.CreatePipeline(pipeline_pb2.CreatePipelineRequest(
        pipeline=pipeline_pb2.Pipeline(name=n))) for n in ("a", "b")]
    versions = await stubs.pipelines.ListPipelineVersions(
        pipeline_pb2.ListPipelineVersionsRequest(pipeline_id=pipelines[0].pipeline_id, page_size=1))
    assert versions.next_page_token == ""
    forged = build_query(PIPELINE_VERSIONS, ListRequest(page_size=1), scope=[("pipeline_id", pipelines[0].pipeline_id)])
    token = forged.next_page_token({"created_at": 1, "pipeline_version_id": "x"})
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stubs.pipelines.ListPipelineVersions(pipeline_pb2.ListPipelineVersionsRequest(
            pipeline_id=pipelines[1].pipeline_id, page_token=token))
    assert field_violations(failure.value) == {"page_token": "belongs to a different list (its parent resource differs)"}


@pytest.mark.parametrize(
    ("listing", "scope"),
    [
        (EXPERIMENTS, []),
        (PIPELINES, []),
        (PIPELINE_VERSIONS, [("pipeline_id", "p")]),
        (RUNS, []),
        (RUNS, [("experiment_id", "e")]),
        (RECURRING_RUNS, []),
        (RECURRING_RUNS, [("experiment_id", "e")]),
    ],
    ids=["experiments", "pipelines", "pipeline_versions", "runs", "runs_of_an_experiment", "recurring_runs",
         "recurring_runs_of_an_experiment"],
)
async def test_every_sort_is_an_index_scan(server: KfpGrpcServer, data_dir: Path, listing: Any, scope: list[tuple[str, str]]) -> None:
    database = sqlite3.connect(data_dir / "kfpgrpc.db")
    try:
        for column, spec in listing.columns.items():
            if not spec.sortable:
                continue
            for direction in ("", " desc"):
                first = build_query(listing, ListRequest(sort_by=column + direction), scope)
                token = first.next_page_token({column: "m" if spec.kind.value == "text" else 5, listing.id_column: "m"})
                deep = build_query(listing, ListRequest(page_token=token), scope)
                for query in (first, deep):
                    sql, params = query.page_sql("*")
                    plan = " | ".join(row[3] for row in database.execute(f"EXPLAIN QUERY PLAN {sql}", params))
                    assert "USING INDEX" in plan or "USING PRIMARY KEY" in plan, plan
                    assert "TEMP B-TREE" not in plan, plan  # no sort step: the index gives the order
                    assert "SCAN" not in plan or query is first, plan  # deep pages seek, never scan from the start
    finally:
        database.close()


async def test_runs_filtered_by_state_seek_the_state_index(server: KfpGrpcServer, data_dir: Path) -> None:
    """"Which runs are RUNNING?" must not scan every run ever made."""
    query = build_query(RUNS, ListRequest(filter=predicate("state", "EQUALS", string_value="RUNNING")))
    with contextlib.closing(sqlite3.connect(data_dir / "kfpgrpc.db")) as database:
        plan = " | ".join(row[3] for row in database.execute(f"EXPLAIN QUERY PLAN {query.page_sql('*')[0]}", query.page_sql("*")[1]))
        assert "runs_by_state (state=?)" in plan and "TEMP B-TREE" not in plan, plan


AVAILABLE = {"key": "storage_state", "operation": "EQUALS", "string_value": "AVAILABLE"}
FAILED = {"key": "state", "operation": "EQUALS", "string_value": "FAILED"}
NAMED = {"key": "display_name", "operation": "IS_SUBSTRING", "string_value": "x"}


@pytest.mark.parametrize(
    ("predicates", "summed"),
    [([], True), ([AVAILABLE], True), ([AVAILABLE, FAILED], True),
     ([{"key": "state", "operation": "IN", "string_values": {"values": ["PENDING", "RUNNING"]}}], True),
     ([{"key": "experiment_id", "operation": "NOT_EQUALS", "string_value": "e"}], True),
     ([AVAILABLE, NAMED], False), ([{"key": "created_at", "operation": "GREATER_THAN", "long_value": 5}], False)],
    ids=["none", "ui_default", "ui_state", "state_in", "experiment", "name", "time"],
)
async def test_runs_total_size_sums_the_count_table_when_the_filter_allows(
    server: KfpGrpcServer, data_dir: Path, predicates: list[dict[str, Any]], summed: bool
) -> None:
    """ListRuns' total_size at 10^6 runs: a filter on experiment, storage state and state only
    (all the UI's runs list asks by default) sums a few rows of run_counts instead of counting
    runs; any other key counts the matching runs. Pages of the UI's filters need no sort step,
    in all runs or one experiment's: in any order, and in created_at order (the UI's, KFP's
    default) with a state EQUALS, whose index (state, created_at, run_id) has no other order (a
    state IN sorts the union of its seeks: the unfinished runs are few)."""
    text = json.dumps({"predicates": predicates}) if predicates else ""
    with contextlib.closing(sqlite3.connect(data_dir / "kfpgrpc.db")) as database:
        for scope in ([], [("experiment_id", "e")]):
            query = build_query(RUNS, ListRequest(filter=text), scope)
            sql, params = query.count_sql()
            plan = " | ".join(row[3] for row in database.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            assert ("run_counts" in plan) is summed and ("runs " in plan + " ") is not summed, plan
            sorts = [column for column, spec in RUNS.columns.items() if spec.sortable]
            if any(p["key"] == "state" for p in predicates):
                sorts = ["created_at"]
            if any(p["key"] == "created_at" or p["operation"] == "IN" for p in predicates):
                sorts = []
            for column in sorts:
                for direction in ("", " desc"):
                    page = build_query(RUNS, ListRequest(filter=text, sort_by=column + direction), scope)
                    sql, params = page.page_sql("*")
                    plan = " | ".join(row[3] for row in database.execute(f"EXPLAIN QUERY PLAN {sql}", params))
                    assert "TEMP B-TREE" not in plan, plan
