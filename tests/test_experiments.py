"""ExperimentService through a real server and channel."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import pytest

from kfpgrpc.v1 import common_pb2, run_pb2
from kfpgrpc.v1 import experiment_pb2 as pb
from tests.support import Stubs, field_violations, upload, watch_to_end

Experiment = pb.Experiment


async def create(stubs: Stubs, name: str, description: str = "") -> pb.Experiment:
    return await stubs.experiments.CreateExperiment(
        pb.CreateExperimentRequest(experiment=Experiment(display_name=name, description=description))
    )


async def test_default_experiment_exists_and_is_protected(stubs: Stubs) -> None:
    listed = await stubs.experiments.ListExperiments(pb.ListExperimentsRequest())
    assert [e.display_name for e in listed.experiments] == ["Default"]
    default_id = listed.experiments[0].experiment_id
    for call in (stubs.experiments.DeleteExperiment(pb.DeleteExperimentRequest(experiment_id=default_id)),
                 stubs.experiments.ArchiveExperiment(pb.ArchiveExperimentRequest(experiment_id=default_id))):
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await call
        assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "Default" in failure.value.details()


async def test_create_get_archive_unarchive_delete(stubs: Stubs) -> None:
    created = await create(stubs, "training", "nightly training runs")
    assert created.experiment_id and created.created_at.seconds > 0
    assert created.storage_state == Experiment.AVAILABLE
    fetched = await stubs.experiments.GetExperiment(pb.GetExperimentRequest(experiment_id=created.experiment_id))
    assert fetched == created

    await stubs.experiments.ArchiveExperiment(pb.ArchiveExperimentRequest(experiment_id=created.experiment_id))
    archived = await stubs.experiments.GetExperiment(pb.GetExperimentRequest(experiment_id=created.experiment_id))
    assert archived.storage_state == Experiment.ARCHIVED
    await stubs.experiments.UnarchiveExperiment(pb.UnarchiveExperimentRequest(experiment_id=created.experiment_id))
    restored = await stubs.experiments.GetExperiment(pb.GetExperimentRequest(experiment_id=created.experiment_id))
    assert restored.storage_state == Experiment.AVAILABLE

    await stubs.experiments.DeleteExperiment(pb.DeleteExperimentRequest(experiment_id=created.experiment_id))
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stubs.experiments.GetExperiment(pb.GetExperimentRequest(experiment_id=created.experiment_id))
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND


async def test_duplicate_name_is_already_exists(stubs: Stubs) -> None:
    await create(stubs, "dup")
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await create(stubs, "dup")
    assert failure.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "dup" in failure.value.details()


async def test_concurrent_duplicates_create_exactly_one(stubs: Stubs) -> None:
    results = await asyncio.gather(*(create(stubs, "race") for _ in range(20)), return_exceptions=True)
    created = [r for r in results if isinstance(r, pb.Experiment)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(created) == 1
    assert len(refused) == 19 and {r.code() for r in refused} == {grpc.StatusCode.ALREADY_EXISTS}


@pytest.mark.parametrize(
    ("name", "description", "field", "message"),
    [
        ("", "", "experiment.display_name", "is required"),
        ("   ", "", "experiment.display_name", "is required"),
        (" padded", "", "experiment.display_name", "must not start or end with white space"),
        ("x" * 257, "", "experiment.display_name", "must be at most 256 characters, got 257"),
        ("ok", "d" * 10_001, "experiment.description", "must be at most 10000 characters, got 10001"),
    ],
)
async def test_bad_experiment_names_name_the_field(stubs: Stubs, name: str, description: str, field: str, message: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await create(stubs, name, description)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(failure.value) == {field: message}


async def test_missing_and_unknown_ids(stubs: Stubs) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stubs.experiments.GetExperiment(pb.GetExperimentRequest())
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(failure.value) == {"experiment_id": "is required"}
    for call in (
        stubs.experiments.GetExperiment(pb.GetExperimentRequest(experiment_id="nope")),
        stubs.experiments.ArchiveExperiment(pb.ArchiveExperimentRequest(experiment_id="nope")),
        stubs.experiments.UnarchiveExperiment(pb.UnarchiveExperimentRequest(experiment_id="nope")),
        stubs.experiments.DeleteExperiment(pb.DeleteExperimentRequest(experiment_id="nope")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await call
        assert failure.value.code() == grpc.StatusCode.NOT_FOUND
        assert "'nope'" in failure.value.details()


async def test_list_filters_on_storage_state_and_name(stubs: Stubs) -> None:
    for name in ("alpha", "beta", "gamma"):
        created = await create(stubs, name)
        if name != "beta":
            await stubs.experiments.ArchiveExperiment(pb.ArchiveExperimentRequest(experiment_id=created.experiment_id))
    archived = json.dumps({"predicates": [{"key": "storage_state", "operation": "EQUALS", "string_value": "ARCHIVED"}]})
    listed = await stubs.experiments.ListExperiments(pb.ListExperimentsRequest(filter=archived, sort_by="display_name desc"))
    assert [e.display_name for e in listed.experiments] == ["gamma", "alpha"]
    assert listed.total_size == 2
    substring = json.dumps({"predicates": [{"key": "name", "operation": "IS_SUBSTRING", "stringValue": "MM"}]})
    listed = await stubs.experiments.ListExperiments(pb.ListExperimentsRequest(filter=substring))
    assert [e.display_name for e in listed.experiments] == ["gamma"]


async def test_the_runs_of_an_archived_experiment_stay_inactive(stubs: Stubs, compiled: dict[str, Any]) -> None:
    """Neither retried nor unarchived until the experiment is unarchived (as KFP)."""
    experiment = await create(stubs, "archived-team")
    version = await upload(stubs, "failing", compiled["failing-pipeline"])
    created = await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=run_pb2.Run(
        display_name="fails", experiment_id=experiment.experiment_id,
        pipeline_version_reference=common_pb2.PipelineVersionReference(pipeline_id=version.pipeline_id))))
    assert (await watch_to_end(stubs.runs, created.run_id))[-1].state == common_pb2.FAILED
    await stubs.experiments.ArchiveExperiment(pb.ArchiveExperimentRequest(experiment_id=experiment.experiment_id))
    for call, action in (
        (stubs.runs.RetryRun(run_pb2.RetryRunRequest(run_id=created.run_id)), "retrying"),
        (stubs.runs.UnarchiveRun(run_pb2.UnarchiveRunRequest(run_id=created.run_id)), "unarchiving"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await call
        assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert failure.value.details() == (
            f"experiment {experiment.experiment_id!r} is archived: unarchive it before {action} run {created.run_id!r}"
        )
    run = await stubs.runs.GetRun(run_pb2.GetRunRequest(run_id=created.run_id))
    assert (run.state, run.storage_state) == (common_pb2.FAILED, run_pb2.Run.ARCHIVED)

    await stubs.experiments.UnarchiveExperiment(pb.UnarchiveExperimentRequest(experiment_id=experiment.experiment_id))
    assert (await stubs.runs.GetRun(run_pb2.GetRunRequest(run_id=created.run_id))).storage_state == run_pb2.Run.ARCHIVED
    await stubs.runs.UnarchiveRun(run_pb2.UnarchiveRunRequest(run_id=created.run_id))
    await stubs.runs.RetryRun(run_pb2.RetryRunRequest(run_id=created.run_id))
    assert (await watch_to_end(stubs.runs, created.run_id))[-1].state == common_pb2.FAILED
