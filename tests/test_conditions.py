"""dsl.If / dsl.Elif / dsl.Else, dsl.Condition and dsl.OneOf run as on KFP (kfp-semantics.md §3),
with pipelines compiled by each kfp version (tests/kfp_sdks.py) and run as real subprocesses."""

from __future__ import annotations

import asyncio
from typing import Any

from kfpgrpc.v1 import common_pb2, run_pb2
from tests.support import Stubs, output, run_to_end, tasks_of

Spec = dict[str, Any]
SUCCEEDED, SKIPPED = common_pb2.SUCCEEDED, common_pb2.SKIPPED


def skip_reason(detail: run_pb2.PipelineTaskDetail) -> str:
    """Why a task was SKIPPED: the error of its last state transition."""
    assert detail.state_history and detail.state_history[-1].state == SKIPPED, detail.state_history
    return detail.state_history[-1].error.message


def assert_tasks(run: run_pb2.Run, ran: dict[str, Any], skipped: set[str], succeeded: set[str]) -> None:
    """The run SUCCEEDED with exactly these tasks: `ran` = container tasks that SUCCEEDED, with
    their output; `skipped` = condition tasks SKIPPED because their condition was false;
    `succeeded` = the other tasks, all SUCCEEDED (DAG tasks, tasks without an `Output`). Each
    task's parent is the DAG task its task_id is nested in."""
    assert run.state == SUCCEEDED, run.error
    tasks = tasks_of(run)
    assert set(tasks) == set(ran) | skipped | succeeded
    for task_id, value in ran.items():
        assert tasks[task_id].state == SUCCEEDED and output(tasks[task_id]) == value, tasks[task_id]
    for task_id in succeeded:
        assert tasks[task_id].state == SUCCEEDED, tasks[task_id]
    for task_id in skipped:
        assert tasks[task_id].state == SKIPPED, tasks[task_id]
        assert "condition" in skip_reason(tasks[task_id]).lower()
    for task_id, detail in tasks.items():
        assert detail.parent_task_id == task_id.rpartition(".")[0], detail


async def test_if_elif_else_runs_exactly_one_branch(stubs: Stubs, each_kfp: dict[str, Spec]) -> None:
    """KFP (§3.1, §3.2): an If/Elif/Else chain is a `condition-branches-N` DAG (an ordinary DAG
    task) holding one `condition-N` DAG per branch; an Elif/Else condition is the conjunction of
    the negated earlier ones and its own, so exactly one branch runs. A branch whose
    trigger-policy condition is false is SKIPPED and nothing inside it is reported. The condition
    compares an int task output (`int(...)` in CEL); `name=` only sets the display name."""
    spec = each_kfp["cf-branches"]
    runs = await asyncio.gather(*(run_to_end(stubs, spec, f"n={n}", n=n) for n in (7, 5, 3)))
    branches = {"condition-2": ("echo", "big"), "condition-3": ("echo-2", "five"), "condition-4": ("echo-3", "small")}
    for run, n, taken in zip(runs, (7, 5, 3), branches):
        echo, message = branches[taken]
        assert_tasks(
            run,
            ran={"make-int": n, f"condition-branches-1.{taken}.{echo}": message},
            skipped={f"condition-branches-1.{c}" for c in branches if c != taken},
            succeeded={"condition-branches-1", f"condition-branches-1.{taken}"},
        )
        names = {t.task_id: t.display_name for t in run.run_details.task_details if t.task_id.count(".") == 1}
        assert names == {
            "condition-branches-1.condition-2": "big",
            "condition-branches-1.condition-3": "five",
            "condition-branches-1.condition-4": "small",
        }


async def test_conditions_compare_parameters_and_task_outputs_of_every_type(stubs: Stubs, each_kfp: dict[str, Spec]) -> None:
    """KFP (§3.1, §3.2): conditions are CEL over the condition task's resolved inputs: string,
    int (`int(...)`), float, bool and mixed int/float (`double(int(...))`) comparisons of pipeline
    parameters, task outputs and literals. Nested conditions (the deprecated `dsl.Condition`
    holding two `dsl.If`) each evaluate their own condition: a false inner one is SKIPPED inside
    its SUCCEEDED parent; when the outer one is false, nothing inside it is reported."""
    spec = each_kfp["cf-comparisons"]
    defaults, flipped = await asyncio.gather(
        run_to_end(stubs, spec, "defaults"),
        run_to_end(stubs, spec, "flipped", text="tails", threshold=9, ratio=0.1, flag=False),
    )
    producers = {"make-int": 7, "make-float": 0.25, "make-bool": True, "make-str": "x"}
    assert_tasks(
        defaults,  # text='heads', threshold=5, ratio=0.5, flag=True
        ran={
            **producers,
            "condition-1.echo": "text == heads",
            "condition-2.echo-2": "n >= threshold",
            "condition-3.echo-3": "f < ratio",
            "condition-4.echo-4": "b == true",
            "condition-6.echo-6": "s != y",
            "condition-7.echo-7": "n < 7.5",
            "condition-8.condition-9.echo-8": "nested big",
        },
        skipped={"condition-5", "condition-8.condition-10"},
        succeeded={"condition-1", "condition-2", "condition-3", "condition-4", "condition-6", "condition-7",
                   "condition-8", "condition-8.condition-9"},
    )
    display_names = {t.task_id: t.display_name for t in defaults.run_details.task_details}
    assert display_names["condition-8"] == "outer" and display_names["condition-8.condition-10"] == "inner-small"
    assert_tasks(
        flipped,  # text='tails', threshold=9, ratio=0.1, flag=False
        ran={
            **producers,
            "condition-4.echo-4": "b == true",
            "condition-5.echo-5": "flag == false",
            "condition-6.echo-6": "s != y",
            "condition-7.echo-7": "n < 7.5",
        },
        skipped={"condition-1", "condition-2", "condition-3", "condition-8"},
        succeeded={"condition-4", "condition-5", "condition-6", "condition-7"},
    )


async def test_one_of_passes_on_the_output_of_the_branch_that_ran(stubs: Stubs, each_kfp: dict[str, Spec]) -> None:
    """KFP (§3.3): `dsl.OneOf` is an output of the `condition-branches-N` DAG that takes the first
    selector whose producer branch succeeded — for parameters and (since KFP 2.17.0) artifacts;
    consumers outside the chain read it. The middle branch catches both "first selector" and
    "last selector" shortcuts."""
    spec = each_kfp["cf-oneof"]
    runs = await asyncio.gather(*(run_to_end(stubs, spec, text, text=text) for text in ("heads", "tails", "edge")))
    branches = {"condition-2": ("echo", "write-text", "A"), "condition-3": ("echo-2", "write-text-2", "B"),
                "condition-4": ("echo-3", "write-text-3", "C")}
    for run, taken in zip(runs, branches):
        echo, writer, letter = branches[taken]
        assert_tasks(
            run,
            ran={f"condition-branches-1.{taken}.{echo}": letter, "echo-4": letter, "read-text": letter},
            skipped={f"condition-branches-1.{c}" for c in branches if c != taken},
            succeeded={"condition-branches-1", f"condition-branches-1.{taken}", f"condition-branches-1.{taken}.{writer}"},
        )
        written = tasks_of(run)[f"condition-branches-1.{taken}.{writer}"].output_artifacts
        assert [(a.name, dict(a.metadata)) for a in written] == [("out", {"text": letter})]
