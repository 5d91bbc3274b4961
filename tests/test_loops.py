"""dsl.ParallelFor and dsl.Collected run as on KFP (kfp-semantics.md §4), with pipelines compiled by
each kfp version (tests/kfp_sdks.py). Iterations appear in task_details in KFP's shape
(design12.md): the loop task "for-loop-2" with iteration_count, one child DAG task per item
"for-loop-2[i]" with iteration_index i, and the body's tasks inside, "for-loop-2[i].square"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kfpgrpc.v1 import common_pb2, run_pb2
from tests.support import Stubs, output, plain, run_to_end, tasks_of

Spec = dict[str, Any]
Tasks = dict[str, run_pb2.PipelineTaskDetail]
SUCCEEDED = common_pb2.SUCCEEDED


def iterations(tasks: Tasks, loop_id: str, count: int) -> list[run_pb2.PipelineTaskDetail]:
    """The `count` iteration DAG tasks of loop `loop_id`, checked for KFP's shape, by index."""
    loop = tasks[loop_id]
    assert loop.state == SUCCEEDED, loop
    assert loop.HasField("iteration_count") and loop.iteration_count == count, loop
    assert not loop.HasField("iteration_index"), "the loop task is not an iteration"
    children = [t for t in tasks.values() if t.parent_task_id == loop_id]
    assert sorted(t.task_id for t in children) == sorted(f"{loop_id}[{i}]" for i in range(count))
    by_index = sorted(children, key=lambda t: t.iteration_index)
    for index, child in enumerate(by_index):
        assert child.task_id == f"{loop_id}[{index}]" and child.HasField("iteration_index") and child.iteration_index == index
        assert child.display_name == loop.display_name and child.state == SUCCEEDED, child
    return by_index


def body_outputs(tasks: Tasks, loop_id: str, count: int, body: str) -> list[Any]:
    """The `Output` of task `body` in each iteration of `loop_id`, in iteration order."""
    iterations(tasks, loop_id, count)
    found = []
    for index in range(count):
        detail = tasks[f"{loop_id}[{index}].{body}"]
        assert detail.parent_task_id == f"{loop_id}[{index}]" and detail.state == SUCCEEDED, detail
        found.append(output(detail))
    return found


async def test_parallel_for_over_each_source_of_items(stubs: Stubs, each_kfp: dict[str, Spec]) -> None:
    """KFP (§4.1, §4.2): loop items come from a raw JSON list, a pipeline parameter, or an upstream
    task's list output; each item runs the loop body once, with the item bound to the body's item
    input. Over a list of dicts, `item.a` is a parameterExpressionSelector on the consumer's input.
    `dsl.Collected` gathers the iterations' outputs in iteration order, not completion order (the
    first iteration of [3, 2, 1] finishes last), as the loop task's output and the consumer's
    input. An empty list runs no iteration and collects []."""
    run = await run_to_end(stubs, each_kfp["cf-loops"], "loops", items=["p", "q", "r", "s"], count=3)
    assert run.state == SUCCEEDED, run.error
    tasks = tasks_of(run)

    assert body_outputs(tasks, "for-loop-2", 3, "slow-square") == [9, 4, 1]  # literal [3, 2, 1]
    assert plain(tasks["for-loop-2"].output_parameters) == {"pipelinechannel--slow-square-Output": [9, 4, 1]}
    assert plain(tasks["sum-ints"].input_parameters) == {"nums": [9, 4, 1]} and output(tasks["sum-ints"]) == 14

    assert body_outputs(tasks, "for-loop-3", 4, "upper") == ["P", "Q", "R", "S"]  # pipeline parameter
    assert plain(tasks["for-loop-3[2].upper"].input_parameters) == {"s": "r"}
    assert output(tasks["join-strs"]) == "P,Q,R,S"

    assert output(tasks["make-list"]) == [10, 20, 30]
    assert body_outputs(tasks, "for-loop-4", 3, "add") == [11, 21, 31]  # an upstream output
    assert output(tasks["sum-ints-2"]) == 63

    assert body_outputs(tasks, "for-loop-6", 2, "add-2") == [11, 22]  # raw dicts: item.a + item.b
    assert plain(tasks["for-loop-6[1].add-2"].input_parameters) == {"a": 2, "b": 20}
    assert body_outputs(tasks, "for-loop-7", 2, "multiply") == [90, 160]  # upstream dicts

    assert output(tasks["make-list-2"]) == []
    iterations(tasks, "for-loop-8", 0)  # an empty list: no iteration
    assert not [t for t in tasks if t.startswith("for-loop-8[")]
    assert plain(tasks["sum-ints-3"].input_parameters) == {"nums": []} and output(tasks["sum-ints-3"]) == 0
    for loop in ("for-loop-2", "for-loop-3", "for-loop-4", "for-loop-6", "for-loop-7", "for-loop-8"):
        assert tasks[loop].display_name == loop and tasks[loop].parent_task_id == ""


async def test_nested_loops_collect_a_list_per_level(stubs: Stubs, each_kfp: dict[str, Spec]) -> None:
    """KFP (§4.1, §4.2): a loop inside a loop runs the inner loop once per outer item, and the
    inner body sees both items. `dsl.Collected` inside the outer iteration gathers that iteration's
    inner outputs; at the root it gathers every level. design12.md: nested Collected of parameters
    is a list of lists (kfp.local's shape; KFP's backend flattens it, a documented deviation), in
    iteration order at each level."""
    run = await run_to_end(stubs, each_kfp["cf-nested-loops"], "nested")
    assert run.state == SUCCEEDED, run.error
    tasks = tasks_of(run)
    for outer, i in zip(iterations(tasks, "for-loop-2", 2), (1, 2)):
        inner = f"{outer.task_id}.for-loop-4"
        assert tasks[inner].parent_task_id == outer.task_id
        assert body_outputs(tasks, inner, 3, "multiply") == [i * 10, i * 20, i * 30]
        assert output(tasks[f"{outer.task_id}.sum-ints"]) == i * 60
    assert json.loads(output(tasks["dump"])) == [[10, 20, 30], [20, 40, 60]]
    assert plain(tasks["sum-ints-2"].input_parameters) == {"nums": [60, 120]} and output(tasks["sum-ints-2"]) == 180


async def test_parallelism_limits_the_iterations_running_at_once(stubs: Stubs, each_kfp: dict[str, Spec]) -> None:
    """KFP (§4.1, §4.2): `ParallelFor(parallelism=2)` compiles to iteratorPolicy.parallelismLimit,
    Argo's template parallelism: at most 2 iterations run at once, whatever the server's task slots
    (4 here). Each iteration records when its code ran (0.5 s); no instant is inside 3 spans."""
    run = await run_to_end(stubs, each_kfp["cf-parallelism"], "throttled")
    assert run.state == SUCCEEDED, run.error
    tasks = tasks_of(run)
    iterations(tasks, "for-loop-2", 6)
    spans = [(output(tasks[f"for-loop-2[{i}].span"], "start"), output(tasks[f"for-loop-2[{i}].span"], "end")) for i in range(6)]
    most = max(sum(1 for start, end in spans if start <= instant < end) for instant, _ in spans)
    assert most <= 2, spans


async def test_collected_artifacts_and_a_loop_over_artifacts(stubs: Stubs, each_kfp: dict[str, Spec]) -> None:
    """KFP (§4.1, §4.3): `dsl.Collected` of an artifact output is the list of the iterations'
    artifacts in iteration order, not completion order: a consumer's Input[List[Dataset]], and
    the loop task's output_artifacts, named by the loop's output key as its output_parameters
    are (design12.md). A sub-pipeline can return it and a ParallelFor can iterate over it (KFP's
    artifactIterator; design12.md: supported, though KFP's backend refuses it), each iteration
    receiving one artifact."""
    run = await run_to_end(stubs, each_kfp["cf-loop-artifacts"], "artifacts")
    assert run.state == SUCCEEDED, run.error
    tasks = tasks_of(run)
    iterations(tasks, "for-loop-2", 3)
    written = [tasks[f"for-loop-2[{i}].slow-write"].output_artifacts[0] for i in range(3)]
    assert [Path(a.uri).read_text() for a in written] == ["3", "2", "1"]
    collected = tasks["for-loop-2"].output_artifacts
    assert [(a.name, a.uri) for a in collected] == [("pipelinechannel--slow-write-out", a.uri) for a in written]
    assert output(tasks["read-texts"]) == "3,2,1"

    inner = "cf-write-texts.for-loop-1"
    iterations(tasks, inner, 2)
    assert [tasks[f"{inner}[{i}].write-text"].output_artifacts[0].metadata["text"] for i in range(2)] == ["p", "q"]
    assert body_outputs(tasks, "for-loop-3", 2, "read-text") == ["p", "q"]


async def test_integral_numbers_in_lists_and_structs_reach_tasks_as_integers(stubs: Stubs, each_kfp: dict[str, Spec]) -> None:
    """KFP's backend writes parameter values with protojson, where 1.0 is `1`: a LIST or STRUCT
    input given at CreateRun (a google.protobuf.Value: doubles only) or as a loop item reaches
    the component as [1, 2] on KFP, not [1.0, 2.0]."""
    run = await run_to_end(stubs, each_kfp["cf-json-numbers"], "numbers", values=[1, 2, 3.5])
    assert run.state == SUCCEEDED, run.error
    tasks = tasks_of(run)
    assert json.loads(output(tasks["to-json"])) == [[1, 2, 3.5], {"n": 3}]
    assert output(tasks["to-json"]) == '[[1, 2, 3.5], {"n": 3}]'
    assert body_outputs(tasks, "for-loop-2", 2, "to-json-2") == ['[[1, 2, 3.5], {"n": 1}]', '[[1, 2, 3.5], {"n": 2}]']
