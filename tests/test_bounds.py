"""Bounded output: whatever a pipeline prints or writes, and whatever a client stores, every
response stays readable by a client with gRPC's default 4 MiB receive limit (the `stubs`
fixture's channel has it): huge log lines, millions of lines, huge outputs, huge errors,
thousands of tasks, rows written before the bounds existed, and list pages of large items.
"""

# No `from __future__ import annotations`: the kfp SDK reads the components' annotations as types.
import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import struct_pb2
from kfp import compiler, dsl
from kfp.dsl import Model, Output

from kfpgrpc.bounds import (
    DEFAULT_MAX_SPEC_BYTES,
    MAX_ERROR_BYTES,
    MAX_ERROR_LINE_BYTES,
    MAX_LOG_LINE_BYTES,
    MAX_PATH_BYTES,
    MAX_PIPELINE_INPUTS,
    MESSAGE_BUDGET,
    OMIT_VALUES_FROM,
)
from kfpgrpc.v1 import common_pb2, experiment_pb2, pipeline_pb2, recurring_run_pb2, run_pb2
from kfpgrpc.v1 import event_pb2 as event_pb
from tests.support import (
    STREAM_TIMEOUT,
    Stubs,
    container_spec,
    field_violations,
    inline_run,
    plain,
    running,
    struct,
    task,
    upload,
    watch_to_end,
)

Spec = dict[str, Any]
DEFAULT_RECEIVE_LIMIT = 4 * 1024 * 1024  # gRPC's default max_receive_message_length

PRINT_LINES = """
import sys
count, size, last, code = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
line = ("x" * size + "\\n").encode()
for _ in range(count):
    sys.stdout.buffer.write(line)
print(last)
sys.exit(code)
"""


@dsl.container_component
def print_lines(count: int, size: int, last: str, code: int):
    """Prints `count` lines of `size` x's, then `last`, and exits with `code`."""
    return dsl.ContainerSpec(image="python:3.11", command=["python3", "-c", PRINT_LINES], args=[count, size, last, code])


@dsl.pipeline(name="print-lines")
def print_lines_pipeline(count: int, size: int, last: str = "the last words", code: int = 1):
    print_lines(count=count, size=size, last=last, code=code)


@dsl.component(base_image="python:3.11")
def produce(size: int) -> str:
    return "x" * size


@dsl.pipeline(name="produce-five")
def produce_five(size: int):
    for _ in range(5):
        produce(size=size)


@dsl.component(base_image="python:3.11")
def annotate(size: int, model: Output[Model]):
    with open(model.path, "w") as file:
        file.write("weights")
    model.metadata["notes"] = "x" * size


@dsl.pipeline(name="annotate")
def annotate_pipeline(size: int):
    annotate(size=size)


@dsl.container_component
def fill(size: int, text: dsl.OutputPath(str)):
    """Writes `size` bytes to its output parameter's file."""
    script = 'mkdir -p "$(dirname "$1")" && head -c "$0" /dev/zero | tr "\\0" x > "$1"'
    return dsl.ContainerSpec(image="busybox", command=["sh", "-c", script], args=[size, text])


@dsl.pipeline(name="fill")
def fill_pipeline(size: int):
    fill(size=size)


@dsl.container_component
def unstartable():
    """Its command is a file name too long for the system."""
    return dsl.ContainerSpec(image="busybox", command=["x" * 100_000])


@dsl.pipeline(name="unstartable")
def unstartable_pipeline():
    unstartable()


@dsl.pipeline(name="takes-text", description="Its parameter is used by no task.")
def takes_text(text: str = ""):
    produce(size=1)


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Spec]:
    out = tmp_path_factory.mktemp("bounds")
    found = {}
    for pipeline in (print_lines_pipeline, produce_five, annotate_pipeline, fill_pipeline, unstartable_pipeline, takes_text):
        path = out / f"{pipeline.name}.yaml"
        compiler.Compiler().compile(pipeline, package_path=str(path))
        found[pipeline.name] = yaml.safe_load(path.read_text())
    return found


async def finished(stubs: Stubs, spec: Spec, **parameters: Any) -> run_pb2.Run:
    created = await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=inline_run(spec, **parameters)))
    return (await watch_to_end(stubs.runs, created.run_id, STREAM_TIMEOUT))[-1]


async def log_texts(stubs: Stubs, run_id: str) -> list[str]:
    """Every stored log line of the run, checking that each response fits a default client."""
    texts: list[str] = []

    async def collect() -> None:
        async for response in stubs.runs.StreamRunLogs(run_pb2.StreamRunLogsRequest(run_id=run_id)):
            assert response.ByteSize() <= MESSAGE_BUDGET
            texts.extend(line.text for line in response.lines)

    await asyncio.wait_for(collect(), STREAM_TIMEOUT)
    return texts


async def events_of(stubs: Stubs, run_id: str) -> list[event_pb.Event]:
    """Every event from the start of the log up to the run's RUN_COMPLETED, keeping the run's."""
    call = stubs.events.WatchEvents(event_pb.WatchEventsRequest(after_sequence=0))
    found = []
    try:
        while not found or found[-1].type != event_pb.RUN_COMPLETED:
            event = await asyncio.wait_for(call.read(), STREAM_TIMEOUT)
            assert event is not grpc.aio.EOF
            if event.run_id == run_id:
                found.append(event)
    finally:
        call.cancel()
    return found


def omitted(text: str) -> str:
    """The marker that replaces the parameter value `text` in a response."""
    return f"… [omitted {struct_pb2.Value(string_value=text).ByteSize():,} bytes: too large for one response]"


def assert_error_bounded(status: common_pb2.Status, *parts: str) -> None:
    assert len(status.message.encode()) <= MAX_ERROR_BYTES + 100, len(status.message)  # + "task 'x' failed: "
    for part in parts:
        assert part in status.message, status.message[:300]


def assert_history_reasons_are_one_line(history: Any) -> None:
    for entry in history:
        assert "\n" not in entry.error.message and len(entry.error.message.encode()) <= MAX_ERROR_LINE_BYTES


async def test_a_task_printing_huge_lines_leaves_its_run_readable(
    data_dir: Path, stubs: Stubs, specs: dict[str, Spec]
) -> None:
    """The issue's example: 20 lines of 3.4 MB, then exit 1. GetRun, ListRuns, WatchRun,
    WatchEvents from the start and StreamRunLogs all work for a default client; each line is cut
    with a marker; the error is bounded and says what failed and how it ended, with the last
    lines cut one by one; the state histories and the state-change event give a one-line
    reason, so the stored rows hold the error once per object, not four times."""
    run = await finished(stubs, specs["print-lines"], count=20, size=3_400_000)
    assert run.state == common_pb2.FAILED
    got = await stubs.runs.GetRun(run_pb2.GetRunRequest(run_id=run.run_id))
    listed = await stubs.runs.ListRuns(run_pb2.ListRunsRequest(filter=json.dumps(
        {"predicates": [{"key": "run_id", "operation": "EQUALS", "string_value": run.run_id}]})))
    assert [r.run_id for r in listed.runs] == [run.run_id]
    for message in (run, got, listed.runs[0]):
        failed = task(message, "print-lines")
        assert failed.state == common_pb2.FAILED and failed.exit_code == 1
        assert_error_bounded(failed.error, "exit code 1", "the last words")
        assert failed.error.message.count("x… [truncated 3,39") >= 2  # the last lines, each cut
        assert_error_bounded(message.error, "task 'print-lines' failed: exit code 1", "the last words")
        assert_history_reasons_are_one_line(message.state_history)
        assert_history_reasons_are_one_line(failed.state_history)
        assert message.state_history[-1].error.message == "task 'print-lines' failed: exit code 1"
        assert failed.state_history[-1].error.message == "exit code 1"

    texts = await log_texts(stubs, run.run_id)
    assert texts[0].startswith("+ python3 -c") and texts[-1] == "the last words"
    assert len(texts) == 22
    for text in texts[1:21]:
        assert len(text.encode()) <= MAX_LOG_LINE_BYTES
        assert text.startswith("xxxx") and text.endswith(f"… [truncated {3_400_000 - text.index('…'):,} bytes]")

    state_changed, completed = [e for e in await events_of(stubs, run.run_id) if e.run_state_changed.state == common_pb2.FAILED or e.type == event_pb.RUN_COMPLETED]
    assert state_changed.run_state_changed.error.message == "task 'print-lines' failed: exit code 1"
    assert_error_bounded(completed.run_completed.error, "exit code 1", "the last words")

    assert_stored_rows_bounded(data_dir, run.run_id)


def assert_stored_rows_bounded(data_dir: Path, run_id: str) -> None:
    """The stored rows of a run's run, tasks and events hold its (bounded) error once each, and
    its log lines are stored cut."""
    with sqlite3.connect(data_dir / "kfpgrpc.db") as db:
        for table in ("runs", "tasks", "events"):
            (stored,) = db.execute(f"SELECT SUM(length(CAST(({ROW[table]}) AS BLOB))) FROM {table} WHERE run_id = ?", (run_id,)).fetchone()
            assert stored < MAX_ERROR_BYTES + 2048, (table, stored)  # the whole error once: on the object or its completion
        (longest,) = db.execute("SELECT MAX(length(CAST(text AS BLOB))) FROM log_lines WHERE run_id = ?", (run_id,)).fetchone()
        assert longest <= MAX_LOG_LINE_BYTES


ROW = {  # every column of each table, as one text
    "runs": "error || state_history || parameters || output_artifacts",
    "tasks": "error || state_history || input_parameters || output_parameters || output_artifacts",
    "events": "details",
}


async def test_an_error_naming_a_huge_command_is_bounded_where_it_is_stored(
    data_dir: Path, stubs: Stubs, specs: dict[str, Spec]
) -> None:
    """A command of 100 KB cannot start: the error that names it is cut where it is stored
    (task, run, events), keeping its start and its end."""
    run = await finished(stubs, specs["unstartable"])
    assert run.state == common_pb2.FAILED
    failed = task(run, "unstartable")
    assert_error_bounded(failed.error, "could not start 'xxx", "… [truncated ")
    assert not failed.error.message.endswith("x")  # the end of the error (why) is kept too
    assert_error_bounded(run.error, "task 'unstartable' failed: could not start 'xxx", "… [truncated ")
    assert_stored_rows_bounded(data_dir, run.run_id)
    texts = await log_texts(stubs, run.run_id)  # the command run, and why it could not start
    assert [text[:20] for text in texts] == ["+ " + "x" * 18, "could not start 'xxx"]
    assert all(len(text.encode()) <= MAX_LOG_LINE_BYTES and "… [truncated " in text for text in texts)


async def test_log_responses_fit_with_many_long_lines(stubs: Stubs, specs: dict[str, Spec]) -> None:
    """600 lines of 20 KB: each is cut to 16 KiB, and StreamRunLogs sends them in responses of
    at most 1 MiB of text, not 500 lines at once (8 MiB)."""
    run = await finished(stubs, specs["print-lines"], count=600, size=20_000, code=0)
    assert run.state == common_pb2.SUCCEEDED, run.error
    texts = await log_texts(stubs, run.run_id)
    assert len(texts) == 602 and all(len(text.encode()) <= MAX_LOG_LINE_BYTES for text in texts)


async def test_past_its_log_volume_a_task_runs_on_and_its_log_says_so(data_dir: Path, specs: dict[str, Spec]) -> None:
    """Two million short lines past --max-log-bytes-per-task: the task runs to its end, the log
    keeps the lines up to the limit, says once that it is truncated and at the end how much
    was not stored; the error's tail still comes from the last lines printed."""
    limit = 100_000
    async with running(data_dir, max_log_bytes_per_task=limit) as (_, stubs):
        run = await finished(stubs, specs["print-lines"], count=2_000_000, size=5, last="done at last", code=3)
        assert run.state == common_pb2.FAILED
        failed = task(run, "print-lines")
        assert failed.exit_code == 3
        assert failed.error.message.splitlines()[-2:] == ["xxxxx", "done at last"]
        texts = await log_texts(stubs, run.run_id)
    stored = [text for text in texts[1:] if text == "xxxxx"]
    notices = [text for text in texts if text.startswith("log truncated: ")]
    assert notices == [texts[-2], texts[-1]], texts[-3:]
    assert notices[0].startswith(f"log truncated: this task's log reached {limit:,} bytes (--max-log-bytes-per-task)")
    argv_cost = len(texts[0].encode()) + 64
    assert len(stored) == (limit - argv_cost) // (5 + 64)
    dropped_lines = 2_000_000 - len(stored) + 1  # with "done at last"
    dropped_bytes = (2_000_000 - len(stored)) * 5 + len("done at last")
    assert notices[1] == f"log truncated: {dropped_bytes:,} further bytes ({dropped_lines:,} lines) not stored"


@pytest.mark.parametrize(
    ("pipeline", "size", "what"),
    [
        ("produce-five", 2_000_000, "the executor output file is 2,000,"),  # a returned value
        ("annotate", 2_000_000, "the executor output file is 2,000,"),  # artifact metadata
        ("fill", 100_000_000, "output parameter file 'text' is 100,000,000 bytes"),  # dsl.OutputPath
    ],
)
async def test_task_outputs_over_the_limit_fail_the_task(stubs: Stubs, specs: dict[str, Spec], pipeline: str, size: int, what: str) -> None:
    """A task's output parameters and artifact metadata may take 1 MiB together: more fails the
    task with a clear error (they are never read whole), and the run stays readable."""
    run = await finished(stubs, specs[pipeline], size=size)
    assert run.state == common_pb2.FAILED
    failed = next(t for t in run.run_details.task_details if t.state == common_pb2.FAILED)
    assert failed.exit_code == 0
    assert failed.error.message.startswith(what), failed.error.message[:300]
    assert "may take at most 1,048,576 bytes together (write large data to an output artifact)" in failed.error.message
    assert not failed.output_parameters and not failed.output_artifacts
    assert run.ByteSize() < 100_000


async def test_a_run_whose_outputs_exceed_a_message_shows_markers_for_the_largest(stubs: Stubs, specs: dict[str, Spec]) -> None:
    """Five outputs of 900 KB each are accepted (each task is within its limit) but do not fit in
    one response together: GetRun, ListRuns and WatchRun show the largest as markers, and the
    others whole."""
    run = await finished(stubs, specs["produce-five"], size=900_000)
    assert run.state == common_pb2.SUCCEEDED, run.error
    listed = await stubs.runs.ListRuns(run_pb2.ListRunsRequest())
    got = await stubs.runs.GetRun(run_pb2.GetRunRequest(run_id=run.run_id))
    for message in (run, got, *listed.runs):
        assert message.ByteSize() <= MESSAGE_BUDGET
        values = [plain(t.output_parameters)["Output"] for t in message.run_details.task_details]
        assert len(values) == 5 and message.run_details.task_details_omitted == 0
        whole = [v for v in values if v == "x" * 900_000]
        marked = [v for v in values if v == omitted("x" * 900_000)]
        assert len(whole) == 2 and len(marked) == 3, [v[:60] for v in values]


async def test_artifact_metadata_that_does_not_fit_is_shown_as_a_marker(stubs: Stubs, specs: dict[str, Spec]) -> None:
    """Metadata of 900 KB, within the task's limit, exposed by three selectors: four copies in
    the run (the task's and the exposed ones), three in its completion event. Each shows as
    many whole as fit, the others as markers."""
    message = inline_run(specs["annotate"], size=900_000)
    for index in range(3):
        message.artifacts.add(name=f"model-{index}", path="annotate:model")
    created = await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=message))
    run = (await watch_to_end(stubs.runs, created.run_id, STREAM_TIMEOUT))[-1]
    assert run.state == common_pb2.SUCCEEDED, run.error
    (completed,) = [e for e in await events_of(stubs, run.run_id) if e.type == event_pb.RUN_COMPLETED]
    copies = [task(run, "annotate").output_artifacts[0].metadata, *(a.metadata for a in run.output_artifacts)]
    for container, metadata, kept in ((run, copies, 2), (completed, [a.metadata for a in completed.run_completed.artifacts], 2)):
        assert container.ByteSize() <= MESSAGE_BUDGET
        shown = [dict(m) for m in metadata]
        marker = {"omitted": f"… [omitted {struct({'notes': 'x' * 900_000}).ByteSize():,} bytes: too large for one response]"}
        assert sum(m == {"notes": "x" * 900_000} for m in shown) == kept
        assert sum(m == marker for m in shown) == len(shown) - kept


def legacy_rows(database: Path, run_id: str, *, tasks: int, size: int) -> None:
    """Rewrite a stored run as code without bounds left it: `tasks` more (succeeded) tasks, and
    an error of `size` bytes on the run, its task, their state histories and its events, a log
    line of `size` bytes and huge parameter values."""
    huge = "y" * size
    with sqlite3.connect(database) as db:
        row = db.execute("SELECT * FROM tasks WHERE run_id = ?", (run_id,)).fetchone()
        columns = "run_id, task_id, display_name, parent_task_id, state, create_time, start_time, end_time, image," \
            " exit_code, error, input_parameters, output_parameters, output_artifacts, state_history"
        db.executemany(
            f"INSERT INTO tasks ({columns}) VALUES ({', '.join('?' * 15)})",
            [(run_id, f"extra-{i:05}", "extra", "", "SUCCEEDED", row[5] + 1 + i, row[6], row[7], "", 0, "",
              json.dumps({"note": "n" * 400}), "{}", "[]", '[["SUCCEEDED", 1, ""]]') for i in range(tasks)],
        )
        db.execute("UPDATE runs SET error = ?, state_history = json_set(state_history, '$[#-1][2]', ?) WHERE run_id = ?",
                   (f"task 'print-lines' failed: exit code 1\n{huge}\nthe end", huge, run_id))
        db.execute("UPDATE runs SET parameters = json_set(parameters, '$.last', ?) WHERE run_id = ?", (huge, run_id))
        db.execute("UPDATE tasks SET error = ?, state_history = json_set(state_history, '$[#-1][2]', ?),"
                   " output_parameters = json_object('big', ?) WHERE run_id = ? AND task_id = 'print-lines'",
                   (f"exit code 1\n{huge}", huge, huge, run_id))
        db.execute("UPDATE log_lines SET text = ? WHERE run_id = ? AND line_number = 2", (huge, run_id))
        db.execute("UPDATE events SET details = json_set(details, '$.error', ?) WHERE run_id = ?", (huge, run_id))


async def test_runs_stored_with_huge_rows_or_thousands_of_tasks_are_readable(data_dir: Path, specs: dict[str, Spec]) -> None:
    """Rows written before the bounds (errors, histories, parameters, log lines and events of
    6 MB) and a run of 5,001 tasks: GetRun, ListRuns, WatchRun, WatchEvents and StreamRunLogs
    work for a default client; the run leaves out succeeded tasks and says how many."""
    async with running(data_dir) as (_, stubs):
        run = await finished(stubs, specs["print-lines"], count=3, size=10)
    legacy_rows(data_dir / "kfpgrpc.db", run.run_id, tasks=5_000, size=6_000_000)
    async with running(data_dir) as (_, stubs):
        got = await stubs.runs.GetRun(run_pb2.GetRunRequest(run_id=run.run_id))
        (watched,) = await watch_to_end(stubs.runs, run.run_id, STREAM_TIMEOUT)
        (listed,) = (await stubs.runs.ListRuns(run_pb2.ListRunsRequest())).runs
        for message in (got, watched, listed):
            assert message.ByteSize() <= MESSAGE_BUDGET
            details = message.run_details
            assert details.task_details_omitted > 0
            assert len(details.task_details) + details.task_details_omitted == 5_001
            assert task(message, "print-lines").state == common_pb2.FAILED  # kept: not succeeded
            assert_error_bounded(message.error, "task 'print-lines' failed: exit code 1", "the end")
            assert_error_bounded(task(message, "print-lines").error, "exit code 1")
            assert_history_reasons_are_one_line(message.state_history)
            assert plain(message.runtime_config.parameters)["last"] == omitted("y" * 6_000_000)
        texts = await log_texts(stubs, run.run_id)
        assert texts[1] == "y" * (MAX_LOG_LINE_BYTES - 31) + "… [truncated 5,983,647 bytes]"
        for event in await events_of(stubs, run.run_id):
            assert event.ByteSize() < 10_000


async def list_all(call: Any, request: Any, items: str) -> list[Any]:
    """Every item of a list, page by page; each page must fit a default client."""
    found: list[Any] = []
    while True:
        page = await call(request)
        assert page.ByteSize() <= MESSAGE_BUDGET + 1024
        found += getattr(page, items)
        if not page.next_page_token:
            return found
        request.page_token = page.next_page_token


EMOJI_DESCRIPTION = "🙂" * 10_000  # 40 KB: the longest description a client may give


async def test_list_pages_shrink_to_fit_and_page_through_everything(stubs: Stubs, specs: dict[str, Spec]) -> None:
    """Pages of large items (experiments and pipelines with the longest descriptions, versions
    of a large spec, runs and recurring runs with large parameters) hold fewer items than asked
    rather than exceed a client's limit; their tokens lead through every item exactly once."""
    for index in range(110):
        await stubs.experiments.CreateExperiment(experiment_pb2.CreateExperimentRequest(
            experiment=experiment_pb2.Experiment(display_name=f"e{index}", description=EMOJI_DESCRIPTION)))
        await stubs.pipelines.CreatePipeline(pipeline_pb2.CreatePipelineRequest(
            pipeline=pipeline_pb2.Pipeline(name=f"p{index}", description=EMOJI_DESCRIPTION)))
    spec = json.loads(json.dumps(specs["takes-text"]))
    spec["root"]["inputDefinitions"]["parameters"]["text"]["defaultValue"] = "z" * 700_000
    version = await upload(stubs, "large", spec)
    for _ in range(7):
        await stubs.pipelines.CreatePipelineVersion(pipeline_pb2.CreatePipelineVersionRequest(
            pipeline_id=version.pipeline_id, pipeline_version=pipeline_pb2.PipelineVersion(pipeline_spec=struct(spec))))
    reference = common_pb2.PipelineVersionReference(pipeline_id=version.pipeline_id, pipeline_version_id=version.pipeline_version_id)
    config = common_pb2.RuntimeConfig(parameters={"text": struct({"v": "t" * 600_000}).fields["v"]})
    for index in range(8):
        run = await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=run_pb2.Run(
            display_name=f"r{index}", pipeline_version_reference=reference, runtime_config=config)))
        await watch_to_end(stubs.runs, run.run_id, STREAM_TIMEOUT)  # no task left running at the end
        recurring = recurring_run_pb2.RecurringRun(
            display_name=f"rr{index}", pipeline_version_reference=reference, runtime_config=config)
        recurring.trigger.periodic_schedule.interval_second = 3600
        await stubs.recurring_runs.CreateRecurringRun(recurring_run_pb2.CreateRecurringRunRequest(recurring_run=recurring))

    cases = [
        (stubs.experiments.ListExperiments, experiment_pb2.ListExperimentsRequest(page_size=200), "experiments", 111, "experiment_id"),
        (stubs.pipelines.ListPipelines, pipeline_pb2.ListPipelinesRequest(page_size=200), "pipelines", 111, "pipeline_id"),
        (stubs.pipelines.ListPipelineVersions, pipeline_pb2.ListPipelineVersionsRequest(
            pipeline_id=version.pipeline_id, page_size=200), "pipeline_versions", 8, "pipeline_version_id"),
        (stubs.runs.ListRuns, run_pb2.ListRunsRequest(page_size=200), "runs", 8, "run_id"),
        (stubs.recurring_runs.ListRecurringRuns, recurring_run_pb2.ListRecurringRunsRequest(page_size=200), "recurring_runs", 8, "recurring_run_id"),
    ]
    for call, request, items, count, key in cases:
        first = await call(request)
        assert 0 < len(getattr(first, items)) < count and first.total_size == count and first.next_page_token, items
        found = await list_all(call, request, items)
        assert len({getattr(item, key) for item in found}) == len(found) == count, items


async def test_huge_parameters_from_a_client_come_back_as_markers(stubs: Stubs, specs: dict[str, Spec]) -> None:
    """A client may send a 5 MB parameter (the server accepts large requests); the run and the
    recurring run it creates still come back to a default client, with the value as a marker."""
    version = await upload(stubs, "takes-text", specs["takes-text"])
    reference = common_pb2.PipelineVersionReference(pipeline_id=version.pipeline_id)
    config = common_pb2.RuntimeConfig(parameters={"text": struct({"v": "t" * 5_000_000}).fields["v"]})
    marker = omitted("t" * 5_000_000)
    run = await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=run_pb2.Run(
        display_name="large", pipeline_version_reference=reference, runtime_config=config)))
    await watch_to_end(stubs.runs, run.run_id, STREAM_TIMEOUT)  # no task left running at the end
    (listed,) = (await stubs.runs.ListRuns(run_pb2.ListRunsRequest())).runs
    for message in (run, await stubs.runs.GetRun(run_pb2.GetRunRequest(run_id=run.run_id)), listed):
        assert plain(message.runtime_config.parameters) == {"text": marker}
    recurring = recurring_run_pb2.RecurringRun(display_name="large", pipeline_version_reference=reference, runtime_config=config)
    recurring.trigger.periodic_schedule.interval_second = 3600
    created = await stubs.recurring_runs.CreateRecurringRun(recurring_run_pb2.CreateRecurringRunRequest(recurring_run=recurring))
    (listed,) = (await stubs.recurring_runs.ListRecurringRuns(recurring_run_pb2.ListRecurringRunsRequest())).recurring_runs
    got = await stubs.recurring_runs.GetRecurringRun(recurring_run_pb2.GetRecurringRunRequest(recurring_run_id=created.recurring_run_id))
    for message in (created, got, listed):
        assert plain(message.runtime_config.parameters) == {"text": marker}


async def test_fields_every_run_message_repeats_are_bounded_at_creation(stubs: Stubs, specs: dict[str, Spec]) -> None:
    """Artifact selectors and the service account are echoed in every message about a run (and
    a selector adds an exposed artifact): their count and lengths are INVALID_ARGUMENT past the
    bounds, naming the field, so that no run is made too large to read."""
    spec = specs["takes-text"]

    async def violations(**fields: Any) -> dict[str, str]:
        message = inline_run(spec)
        message.MergeFrom(run_pb2.Run(**fields))
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=message))
        assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        return field_violations(failed.value)

    many = [common_pb2.ArtifactSelector(name=f"s{i}", path="produce:Output") for i in range(101)]
    assert "must hold at most 100 selectors, got 101" in (await violations(artifacts=many))["run.artifacts"]
    long_path = "produce:Output[x == \"" + "y" * 4096 + "\"]"
    long = [common_pb2.ArtifactSelector(name="s", path=long_path)]
    assert (await violations(artifacts=long))["run.artifacts[0].path"] == f"must be at most 4096 bytes in UTF-8, got {len(long_path)}"
    account = "a" * 257
    assert (await violations(service_account=account))["run.service_account"] == "must be at most 256 characters, got 257"


async def test_a_long_tick_error_is_bounded_in_its_events_and_recurring_run(data_dir: Path, specs: dict[str, Spec]) -> None:
    """A recurring run whose ticks cannot create their run (the pipeline's new version needs
    900 more parameters): every TICK_SKIPPED event and the recurring run's error hold a
    bounded message, however long the list of violations."""
    spec = json.loads(json.dumps(specs["takes-text"]))
    async with running(data_dir, min_interval_seconds=1) as (_, stubs):
        version = await upload(stubs, "grows", spec)
        recurring = recurring_run_pb2.RecurringRun(  # created disabled: no tick runs before the new version
            display_name="ticks", pipeline_version_reference=common_pb2.PipelineVersionReference(pipeline_id=version.pipeline_id))
        recurring.trigger.periodic_schedule.interval_second = 1
        created = await stubs.recurring_runs.CreateRecurringRun(recurring_run_pb2.CreateRecurringRunRequest(recurring_run=recurring))
        inputs = spec["root"]["inputDefinitions"]["parameters"]
        inputs.update({f"required-parameter-{i:04}": {"parameterType": "STRING"} for i in range(900)})
        await stubs.pipelines.CreatePipelineVersion(pipeline_pb2.CreatePipelineVersionRequest(
            pipeline_id=version.pipeline_id, pipeline_version=pipeline_pb2.PipelineVersion(pipeline_spec=struct(spec))))
        await stubs.recurring_runs.EnableRecurringRun(recurring_run_pb2.EnableRecurringRunRequest(recurring_run_id=created.recurring_run_id))
        call = stubs.events.WatchEvents(event_pb.WatchEventsRequest(
            recurring_run_id=created.recurring_run_id, types=[event_pb.TICK_SKIPPED]))
        try:
            skipped = await asyncio.wait_for(call.read(), STREAM_TIMEOUT)
        finally:
            call.cancel()
        got = await stubs.recurring_runs.GetRecurringRun(recurring_run_pb2.GetRecurringRunRequest(recurring_run_id=created.recurring_run_id))
    assert skipped.tick_skipped.reason == "run creation failed"
    for message in (skipped.tick_skipped.detail, got.error.message):
        assert message.startswith("invalid argument: recurring_run.runtime_config.parameters.required-parameter-0000: is required")
        assert "… [truncated " in message and len(message.encode()) <= MAX_ERROR_BYTES
    with sqlite3.connect(data_dir / "kfpgrpc.db") as db:
        (longest,) = db.execute("SELECT MAX(length(details)) FROM events WHERE type = 'TICK_SKIPPED'").fetchone()
    assert longest < MAX_ERROR_BYTES + 200


async def test_an_update_mask_repeating_a_path_makes_a_small_event(stubs: Stubs, specs: dict[str, Spec]) -> None:
    """A mask naming one field 200,000 times (3 MB): the RECURRING_RUN_CHANGED event names it once."""
    version = await upload(stubs, "masked", specs["takes-text"])
    recurring = recurring_run_pb2.RecurringRun(
        display_name="masked", pipeline_version_reference=common_pb2.PipelineVersionReference(pipeline_id=version.pipeline_id))
    recurring.trigger.periodic_schedule.interval_second = 3600
    created = await stubs.recurring_runs.CreateRecurringRun(recurring_run_pb2.CreateRecurringRunRequest(recurring_run=recurring))
    created.description = "updated"
    request = recurring_run_pb2.UpdateRecurringRunRequest(recurring_run=created)
    request.update_mask.paths.extend(["description"] * 200_000)
    await stubs.recurring_runs.UpdateRecurringRun(request)
    call = stubs.events.WatchEvents(event_pb.WatchEventsRequest(recurring_run_id=created.recurring_run_id))
    try:
        events = [await asyncio.wait_for(call.read(), STREAM_TIMEOUT) for _ in range(2)]
    finally:
        call.cancel()
    assert [e.recurring_run_changed.change for e in events] == [event_pb.RecurringRunChanged.CREATED, event_pb.RecurringRunChanged.UPDATED]
    assert list(events[1].recurring_run_changed.updated_fields) == ["description"]


def spec_of_size(size: int | None, inputs: int = 0) -> Spec:
    """A one-task container pipeline of exactly `size` protobuf bytes (None: as small as it is),
    whose root declares `inputs` input parameters with names of 255 bytes; a component input's
    default pads it."""
    spec = container_spec("t", ["sh", "-c", "echo ok"])
    names = [f"p{index:04}".ljust(255, "n") for index in range(inputs)]
    spec["root"]["inputDefinitions"] = {"parameters": {name: {"parameterType": "STRING"} for name in names}}
    padding = spec["components"]["comp-x"]["inputDefinitions"] = {"parameters": {"pad": {"parameterType": "STRING", "defaultValue": ""}}}
    while size is not None and (missing := size - struct(spec).ByteSize()) != 0:  # the length's varint may grow as it does
        pad = padding["parameters"]["pad"]
        pad["defaultValue"] = pad["defaultValue"] + "x" * missing if missing > 0 else pad["defaultValue"][:missing]
    return spec


async def test_a_spec_over_the_limit_is_refused_and_one_at_it_comes_back_whole_to_a_default_client(data_dir: Path) -> None:
    """The default --max-spec-bytes is 1.5 MiB (etcd's limit, which KFP's Workflow objects must
    fit). A spec at it, with every field that a response cannot shorten at its largest (names,
    description, selectors, pipeline_root, the most parameters a pipeline may declare with
    values just too short to be omitted), comes back whole from every RPC that carries it, on a
    channel with gRPC's default 4 MiB receive limit. One byte more is INVALID_ARGUMENT naming the
    field, and creates nothing (before: a 5 MB spec created a run that CreateRun then failed to
    return, RESOURCE_EXHAUSTED, so a client's retry made a second one)."""
    over = spec_of_size(DEFAULT_MAX_SPEC_BYTES + 1)
    spec = spec_of_size(DEFAULT_MAX_SPEC_BYTES, inputs=MAX_PIPELINE_INPUTS)
    long_name, description = "🙂" * 256, "🙂" * 10_000
    value = struct_pb2.Value(string_value="v" * (OMIT_VALUES_FROM - 8))
    assert value.ByteSize() < OMIT_VALUES_FROM
    parameters = {name: value for name in spec["root"]["inputDefinitions"]["parameters"]}
    filter_text = "🙂" * ((MAX_PATH_BYTES - 20) // 4)
    selectors = [common_pb2.ArtifactSelector(name=f"{index:03}" + long_name[3:], path=f't:o[x == "{filter_text}"]') for index in range(100)]
    assert all(len(selector.path.encode()) <= MAX_PATH_BYTES for selector in selectors)
    async with running(data_dir) as (server, stubs):  # the stubs' channel has gRPC's default limits
        root = str(server.config.artifact_root / "/".join(["r" * 200] * 20))[:MAX_PATH_BYTES]
        config = common_pb2.RuntimeConfig(parameters=parameters, pipeline_root=root)
        run = run_pb2.Run(display_name=long_name, description=description, service_account=long_name,
                          runtime_config=config, artifacts=selectors, pipeline_spec=struct(over))
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=run))
        assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"this server accepts pipeline specs of at most {DEFAULT_MAX_SPEC_BYTES:,} bytes" in field_violations(failed.value)["run.pipeline_spec"]
        pipeline = await stubs.pipelines.CreatePipeline(pipeline_pb2.CreatePipelineRequest(pipeline=pipeline_pb2.Pipeline(name="p")))
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stubs.pipelines.CreatePipelineVersion(pipeline_pb2.CreatePipelineVersionRequest(
                pipeline_id=pipeline.pipeline_id, pipeline_version=pipeline_pb2.PipelineVersion(pipeline_spec=struct(over))))
        assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "pipeline_version.pipeline_spec" in field_violations(failed.value)
        assert not (await stubs.runs.ListRuns(run_pb2.ListRunsRequest())).runs

        version = await stubs.pipelines.CreatePipelineVersion(pipeline_pb2.CreatePipelineVersionRequest(
            pipeline_id=pipeline.pipeline_id, pipeline_version=pipeline_pb2.PipelineVersion(
                pipeline_spec=struct(spec), description=description, display_name=long_name,
                code_source_url="https://" + "u" * (MAX_PATH_BYTES - 8))))
        versions = [
            version,
            await stubs.pipelines.GetPipelineVersion(pipeline_pb2.GetPipelineVersionRequest(pipeline_version_id=version.pipeline_version_id)),
            *(await stubs.pipelines.ListPipelineVersions(pipeline_pb2.ListPipelineVersionsRequest(pipeline_id=pipeline.pipeline_id))).pipeline_versions,
        ]
        run.pipeline_spec.CopyFrom(struct(spec))
        created = await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=run))
        snapshots = await watch_to_end(stubs.runs, created.run_id, STREAM_TIMEOUT)
        (listed,) = (await stubs.runs.ListRuns(run_pb2.ListRunsRequest())).runs  # lists leave the spec out
        runs = [created, await stubs.runs.GetRun(run_pb2.GetRunRequest(run_id=created.run_id))]
        recurring = recurring_run_pb2.RecurringRun(
            display_name=long_name, description=description, service_account=long_name, runtime_config=config,
            artifacts=selectors, pipeline_spec=struct(spec), mode=recurring_run_pb2.RecurringRun.DISABLE)
        recurring.trigger.periodic_schedule.interval_second = 3600
        made = await stubs.recurring_runs.CreateRecurringRun(recurring_run_pb2.CreateRecurringRunRequest(recurring_run=recurring))
        recurring_runs = [
            made,
            await stubs.recurring_runs.GetRecurringRun(recurring_run_pb2.GetRecurringRunRequest(recurring_run_id=made.recurring_run_id)),
        ]
        (listed_recurring,) = (await stubs.recurring_runs.ListRecurringRuns(recurring_run_pb2.ListRecurringRunsRequest())).recurring_runs
    assert len(versions) == 3 and listed.run_id == created.run_id
    for message in (*versions, *runs, *recurring_runs):
        assert message.pipeline_spec.ByteSize() == DEFAULT_MAX_SPEC_BYTES
    # Lists of runs and recurring runs and WatchRun leave an inline spec out.
    for message in (*runs, snapshots[-1], listed, *recurring_runs, listed_recurring):
        assert message.runtime_config.parameters == parameters and len(message.artifacts) == 100


async def test_a_pipeline_declares_at_most_1000_input_parameters(stubs: Stubs) -> None:
    """Each is a run parameter, which every message about its runs holds (at least its name)."""
    spec = spec_of_size(None, inputs=MAX_PIPELINE_INPUTS + 1)
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await upload(stubs, "many-inputs", spec)
    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(failed.value)["pipeline_version.pipeline_spec.root.inputDefinitions.parameters"] == (
        "declares 1,001 input parameters; a pipeline may have at most 1,000")
