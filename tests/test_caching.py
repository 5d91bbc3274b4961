"""Execution caching as KFP does it (kfp-semantics.md §8): a task whose cache key matches an earlier
successful execution of the same pipeline reuses its outputs instead of running. The component
`record` appends a line to a file each time it really runs. Compiled by this environment's kfp
only: the caching options are the same IR in every version (§14.1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc

from kfpgrpc.v1 import common_pb2, run_pb2
from tests.support import ServerProcess, Stubs, output, run_to_end, tasks_of

Spec = dict[str, Any]
SUCCEEDED = common_pb2.SUCCEEDED


def lines(path: Path) -> int:
    return len(path.read_text().splitlines())


async def test_a_second_identical_run_reuses_the_outputs_of_the_first(stubs: Stubs, this_kfp: dict[str, Spec], tmp_path: Path) -> None:
    """KFP (§8.1, §8.2): caching is on by default (`cachingOptions.enableCache`); a task whose
    cache key (component and resolved inputs) matches the newest earlier SUCCEEDED execution in a
    pipeline of the same name reuses its outputs, by reference, and does not run. design12.md:
    reported SUCCEEDED with cached = true and cached_from_run_id, its artifacts stored again in
    this run's directory (a run's deletion or TTL must not break another run's artifacts).
    `set_caching_options(False)` runs
    every time; other input values are another key; an execution whose run was deleted (its
    artifacts gone) is no longer reused."""
    cached_log, uncached_log = tmp_path / "cached.log", tmp_path / "uncached.log"
    spec = this_kfp["cf-caching"]
    parameters = {"cached_log": str(cached_log), "uncached_log": str(uncached_log), "value": 1}

    first = await run_to_end(stubs, spec, "first", **parameters)
    assert first.state == SUCCEEDED, first.error
    assert not any(t.cached or t.cached_from_run_id for t in first.run_details.task_details)
    second = await run_to_end(stubs, spec, "second", **parameters)
    assert second.state == SUCCEEDED, second.error
    assert (lines(cached_log), lines(uncached_log)) == (1, 2)  # `record` ran once, `record-2` twice
    reused, original = tasks_of(second)["record"], tasks_of(first)["record"]
    assert reused.state == SUCCEEDED and reused.cached and reused.cached_from_run_id == first.run_id
    assert output(reused) == 1
    # Stored again as this run's (hard links), so deleting the first run keeps them.
    (reused_artifact,), (original_artifact,) = reused.output_artifacts, original.output_artifacts
    assert reused_artifact.name == original_artifact.name and reused_artifact.uri != original_artifact.uri
    assert Path(reused_artifact.uri).is_relative_to(Path(original_artifact.uri).parents[2] / second.run_id)
    assert Path(reused_artifact.uri).read_text() == "value 1"
    # A consumer of a cached artifact is cached as well: its key names the artifact as first
    # produced, not the copy (KFP: the cached producer keeps its artifact's URI).
    consumer = tasks_of(second)["read-text"]
    assert consumer.cached and consumer.cached_from_run_id == first.run_id and output(consumer) == "value 1"
    not_cached = tasks_of(second)["record-2"]
    assert not not_cached.cached and not not_cached.cached_from_run_id and output(not_cached) == 1

    other_value = await run_to_end(stubs, spec, "other value", **{**parameters, "value": 2})
    assert not tasks_of(other_value)["record"].cached and lines(cached_log) == 2
    assert not tasks_of(other_value)["read-text"].cached and output(tasks_of(other_value)["read-text"]) == "value 2"

    await stubs.runs.DeleteRun(run_pb2.DeleteRunRequest(run_id=first.run_id))
    assert Path(reused_artifact.uri).read_text() == "value 1"  # the second run's copy stays
    after_delete = await run_to_end(stubs, spec, "after delete", **parameters)
    assert after_delete.state == SUCCEEDED, after_delete.error
    assert not tasks_of(after_delete)["record"].cached and lines(cached_log) == 3


async def test_the_server_switch_turns_caching_off(this_kfp: dict[str, Spec], tmp_path: Path) -> None:
    """design12.md: `kfpgrpc serve --cache off` runs every task (KFP: the API server's
    cache_disabled, §8.2 step 1)."""
    cached_log, uncached_log = tmp_path / "cached.log", tmp_path / "uncached.log"
    parameters = {"cached_log": str(cached_log), "uncached_log": str(uncached_log)}
    server = ServerProcess(tmp_path / "data", "--cache", "off")
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stubs = Stubs.on(channel)
            runs = [await run_to_end(stubs, this_kfp["cf-caching"], name, **parameters) for name in ("first", "second")]
    finally:
        server.terminate()
    assert [r.state for r in runs] == [SUCCEEDED, SUCCEEDED]
    assert not any(t.cached for t in runs[1].run_details.task_details)
    assert (lines(cached_log), lines(uncached_log)) == (2, 2)


async def test_a_cached_task_without_output_artifacts_makes_no_directories(
    stubs: Stubs, compiled: dict[str, Spec], data_dir: Path
) -> None:
    """Its outputs are parameters only: nothing is linked into this run's directory, so none is
    made (a cached run cost two directories before)."""
    first = await run_to_end(stubs, compiled["instant-pipeline"], "first")
    second = await run_to_end(stubs, compiled["instant-pipeline"], "second")
    assert first.state == second.state == SUCCEEDED
    (task,) = [t for t in second.run_details.task_details if t.display_name == "noop"]
    assert task.cached and task.cached_from_run_id == first.run_id
    artifacts = data_dir / "artifacts"
    assert (artifacts / first.run_id).is_dir() and not (artifacts / second.run_id).exists()
