"""Pipelines of issue 12's features (control flow, importer, placeholders, caching, kfp-kubernetes
settings), written with the kfp SDK as a KFP user writes them.

This module is compiled by more than one kfp version (tests/kfp_sdks.py): by the kfp of the test
environment in-process, and by other interpreters in a subprocess that imports this file alone. So
it imports only the standard library and kfp (with kfp-kubernetes), and uses no DSL feature that
kfp 2.16 lacks (e.g. `.after(<ExitHandler>)` is 2.17 only). No `from __future__ import
annotations`: the SDK reads the components' annotations as types.

Task keys the tests name (e.g. "condition-branches-1.condition-2.echo") are what the SDK assigns;
both versions assign the same ones (kfp-semantics.md §14.1).
"""

import warnings
from typing import Dict, List, NamedTuple

from kfp import dsl, kubernetes
from kfp.dsl import Dataset, Input, Output, PipelineTaskFinalStatus

IMAGE = "python:3.11"


# -- components -------------------------------------------------------------------------------


@dsl.component(base_image=IMAGE)
def make_int(i: int) -> int:
    return i


@dsl.component(base_image=IMAGE)
def make_float(f: float) -> float:
    return f


@dsl.component(base_image=IMAGE)
def make_bool(b: bool) -> bool:
    return b


@dsl.component(base_image=IMAGE)
def make_str(s: str) -> str:
    return s


@dsl.component(base_image=IMAGE)
def echo(msg: str) -> str:
    print(msg)
    return msg


@dsl.component(base_image=IMAGE)
def add(a: int, b: int) -> int:
    return a + b


@dsl.component(base_image=IMAGE)
def multiply(a: int, b: int) -> int:
    return a * b


@dsl.component(base_image=IMAGE)
def slow_square(i: int) -> int:
    """Sleeps i/10 s: over [3, 2, 1] the first iteration finishes last, so a fan-in gathered in
    completion order would differ from iteration order."""
    import time

    time.sleep(i / 10)
    return i * i


@dsl.component(base_image=IMAGE)
def upper(s: str) -> str:
    return s.upper()


@dsl.component(base_image=IMAGE)
def make_list(n: int) -> List[int]:
    return [10 * (k + 1) for k in range(n)]


@dsl.component(base_image=IMAGE)
def make_dicts() -> List[Dict[str, int]]:
    return [{"a": 3, "b": 30}, {"a": 4, "b": 40}]


@dsl.component(base_image=IMAGE)
def sum_ints(nums: List[int]) -> int:
    return sum(nums)


@dsl.component(base_image=IMAGE)
def join_strs(strs: List[str]) -> str:
    return ",".join(strs)


@dsl.component(base_image=IMAGE)
def dump(x: list) -> str:
    import json

    return json.dumps(x)


@dsl.component(base_image=IMAGE)
def write_text(text: str, out: Output[Dataset]):
    with open(out.path, "w") as file:
        file.write(text)
    out.metadata["text"] = text


@dsl.component(base_image=IMAGE)
def slow_write(i: int, out: Output[Dataset]):
    """Writes str(i) after i/10 s: over [3, 2, 1] the first iteration finishes last."""
    import time

    time.sleep(i / 10)
    with open(out.path, "w") as file:
        file.write(str(i))


@dsl.component(base_image=IMAGE)
def read_text(ds: Input[Dataset]) -> str:
    with open(ds.path) as file:
        return file.read()


@dsl.component(base_image=IMAGE)
def read_texts(dss: Input[List[Dataset]]) -> str:
    texts = []
    for ds in dss:
        with open(ds.path) as file:
            texts.append(file.read())
    return ",".join(texts)


@dsl.component(base_image=IMAGE)
def span(i: int) -> NamedTuple("Span", [("start", float), ("end", float)]):
    """When this iteration's code ran (epoch seconds): a test counts how many overlapped."""
    import time
    from collections import namedtuple

    start = time.time()
    time.sleep(0.5)
    return namedtuple("Span", ["start", "end"])(start, time.time())


@dsl.component(base_image=IMAGE)
def final_status(status: PipelineTaskFinalStatus) -> str:
    """The fields of the exit handler's final status, as JSON."""
    import json

    return json.dumps({
        "state": status.state,
        "pipeline_job_resource_name": status.pipeline_job_resource_name,
        "pipeline_task_name": status.pipeline_task_name,
        "error_code": status.error_code,
        "error_message": status.error_message,
    })


@dsl.component(base_image=IMAGE)
def maybe_fail(should_fail: bool) -> str:
    if should_fail:
        raise RuntimeError("boom: asked to fail")
    return "fine"


@dsl.component(base_image=IMAGE)
def fail_with_output(msg: str) -> str:
    raise RuntimeError(msg)


@dsl.component(base_image=IMAGE)
def cleanup(msg: str = "default-msg") -> str:
    return msg


@dsl.component(base_image=IMAGE)
def read_imported(ds: Input[Dataset]) -> str:
    """What a consumer sees of an imported artifact: the file's text, the metadata, the URI."""
    import json

    with open(ds.path) as file:
        text = file.read()
    return json.dumps({"text": text, "metadata": ds.metadata, "uri": ds.uri})


@dsl.component(base_image=IMAGE)
def show(
    job_name: str, job_resource_name: str, job_id: str, task_name: str, task_id: str, create_time: str,
    schedule_time: str,
) -> str:
    """The values of the runtime placeholders it was given, as JSON."""
    import json

    return json.dumps({
        "job_name": job_name, "job_resource_name": job_resource_name, "job_id": job_id, "task_name": task_name,
        "task_id": task_id, "create_time": create_time, "schedule_time": schedule_time,
    })


@dsl.component(base_image=IMAGE)
def where(task_name: str, task_id: str) -> str:
    return f"{task_name}|{task_id}"


@dsl.container_component
def args_placeholders(out: dsl.OutputPath(str)):
    """Runtime placeholders written directly in a container component's args."""
    return dsl.ContainerSpec(
        image="busybox",
        command=["sh", "-c", 'printf "%s|%s" "$1" "$2" > "$0"'],
        args=[out, dsl.PIPELINE_JOB_NAME_PLACEHOLDER, dsl.PIPELINE_TASK_NAME_PLACEHOLDER],
    )


@dsl.component(base_image=IMAGE)
def made_with_get_uri() -> Dataset:
    """An output artifact whose URI the component chose with dsl.get_uri()."""
    dataset = Dataset(uri=dsl.get_uri(suffix="data"), metadata={"made": "get_uri"})
    with open(dataset.path, "w") as file:
        file.write("written at get_uri")
    return dataset


@dsl.component(base_image=IMAGE)
def write_workspace(workspace_path: str) -> str:
    import os

    with open(os.path.join(workspace_path, "shared.txt"), "w") as file:
        file.write("left in the workspace")
    return workspace_path


@dsl.component(base_image=IMAGE)
def read_workspace(workspace_path: str) -> str:
    import os

    with open(os.path.join(workspace_path, "shared.txt")) as file:
        return file.read()


@dsl.component(base_image=IMAGE)
def mark(directory: str, index: int, gate: str, gated_index: int) -> int:
    """Appends a line to `<directory>/marker-<index>` each time it runs (tests count runs), then,
    in iteration `gated_index` only, waits until the file `gate` exists."""
    import os
    import time

    with open(os.path.join(directory, f"marker-{index}"), "a") as file:
        file.write("ran\n")
    print("marked", index, flush=True)
    while index == gated_index and not os.path.exists(gate):
        time.sleep(0.05)
    return 10 * index


@dsl.component(base_image=IMAGE)
def mark_or_fail(directory: str, index: int, gate: str, failing_index: int) -> int:
    """Appends a line to `<directory>/marker-<index>`, then fails in iteration `failing_index`
    unless the file `gate` exists."""
    import os

    with open(os.path.join(directory, f"marker-{index}"), "a") as file:
        file.write("ran\n")
    if index == failing_index and not os.path.exists(gate):
        raise FileNotFoundError(gate)
    return 10 * index


@dsl.component(base_image=IMAGE)
def record(path: str, value: int, out: Output[Dataset]) -> int:
    """Appends a line to `path` each time it runs (tests count executions); writes `out`."""
    with open(path, "a") as file:
        file.write("ran\n")
    with open(out.path, "w") as file:
        file.write(f"value {value}")
    return value


# -- conditions (kfp-semantics.md §3) ------------------------------------------------------------


@dsl.pipeline(name="cf-branches")
def branches(n: int = 7):
    """If/Elif/Else on an int task output: exactly one branch runs."""
    made = make_int(i=n)
    with dsl.If(made.output > 5, name="big"):
        echo(msg="big")
    with dsl.Elif(made.output == 5, name="five"):
        echo(msg="five")
    with dsl.Else(name="small"):
        echo(msg="small")


@dsl.pipeline(name="cf-comparisons")
def comparisons(text: str = "heads", threshold: int = 5, ratio: float = 0.5, flag: bool = True):
    """One condition per operand shape and type the SDK compiles to CEL, and nested conditions."""
    n = make_int(i=7)
    f = make_float(f=0.25)
    b = make_bool(b=True)
    s = make_str(s="x")
    with dsl.If(text == "heads"):  # string pipeline parameter vs literal
        echo(msg="text == heads")
    with dsl.If(n.output >= threshold):  # int output vs int parameter: int(...) casts
        echo(msg="n >= threshold")
    with dsl.If(f.output < ratio):  # float output vs float parameter
        echo(msg="f < ratio")
    with dsl.If(b.output == True):  # noqa: E712  bool output vs literal
        echo(msg="b == true")
    with dsl.If(flag == False):  # noqa: E712  bool parameter vs literal
        echo(msg="flag == false")
    with dsl.If(s.output != "y"):  # string output vs literal
        echo(msg="s != y")
    with dsl.If(n.output < 7.5):  # int output vs float literal: double(int(...))
        echo(msg="n < 7.5")
    with warnings.catch_warnings():  # dsl.Condition is deprecated; pipelines still use it
        warnings.simplefilter("ignore", DeprecationWarning)
        with dsl.Condition(text == "heads", name="outer"):  # nested conditions
            with dsl.If(n.output > threshold, name="inner-big"):
                echo(msg="nested big")
            with dsl.If(n.output < threshold, name="inner-small"):
                echo(msg="nested small")


@dsl.pipeline(name="cf-oneof")
def oneof(text: str = "heads") -> str:
    """dsl.OneOf of a parameter and of an artifact, consumed downstream and returned."""
    with dsl.If(text == "heads"):
        a = echo(msg="A")
        da = write_text(text="A")
    with dsl.Elif(text == "tails"):
        b = echo(msg="B")
        db = write_text(text="B")
    with dsl.Else():
        c = echo(msg="C")
        dc = write_text(text="C")
    chosen = dsl.OneOf(a.output, b.output, c.output)
    echo(msg=chosen)
    read_text(ds=dsl.OneOf(da.outputs["out"], db.outputs["out"], dc.outputs["out"]))
    return chosen


# -- loops (kfp-semantics.md §4) -----------------------------------------------------------------


@dsl.pipeline(name="cf-loops")
def loops(items: List[str] = ["x", "y", "z"], count: int = 3):  # noqa: B006
    """ParallelFor over each source of items, with dsl.Collected fan-ins."""
    with dsl.ParallelFor([3, 2, 1]) as i:  # a literal list
        squared = slow_square(i=i)
    sum_ints(nums=dsl.Collected(squared.output))
    with dsl.ParallelFor(items) as item:  # a pipeline parameter
        shouted = upper(s=item)
    join_strs(strs=dsl.Collected(shouted.output))
    made = make_list(n=count)
    with dsl.ParallelFor(made.output) as x:  # an upstream task's list output
        incremented = add(a=x, b=1)
    sum_ints(nums=dsl.Collected(incremented.output))
    with dsl.ParallelFor([{"a": 1, "b": 10}, {"a": 2, "b": 20}]) as d:  # dicts: item.a, item.b
        add(a=d.a, b=d.b)
    dicts = make_dicts()
    with dsl.ParallelFor(dicts.output) as e:  # an upstream list of dicts
        multiply(a=e.a, b=e.b)
    nothing = make_list(n=0)
    with dsl.ParallelFor(nothing.output) as z:  # an empty list: no iteration
        none = add(a=z, b=1)
    sum_ints(nums=dsl.Collected(none.output))


@dsl.pipeline(name="cf-nested-loops")
def nested_loops():
    """A loop in a loop; Collected inside the outer iteration and at the root."""
    with dsl.ParallelFor([1, 2]) as i:
        with dsl.ParallelFor([10, 20, 30]) as j:
            product = multiply(a=i, b=j)
        inner_sum = sum_ints(nums=dsl.Collected(product.output))
    dump(x=dsl.Collected(product.output))
    sum_ints(nums=dsl.Collected(inner_sum.output))


@dsl.pipeline(name="cf-parallelism")
def parallelism():
    with dsl.ParallelFor([0, 1, 2, 3, 4, 5], parallelism=2) as i:
        span(i=i)


@dsl.pipeline(name="cf-write-texts")
def write_texts(texts: List[str]) -> List[Dataset]:
    """A sub-pipeline whose output is a Collected list of artifacts."""
    with dsl.ParallelFor(texts) as text:
        written = write_text(text=text)
    return dsl.Collected(written.outputs["out"])


@dsl.pipeline(name="cf-loop-artifacts")
def loop_artifacts():
    """Collected artifacts, and a loop over a list of artifacts (KFP's artifactIterator)."""
    with dsl.ParallelFor([3, 2, 1]) as i:
        written = slow_write(i=i)
    read_texts(dss=dsl.Collected(written.outputs["out"]))
    inner = write_texts(texts=["p", "q"])
    with dsl.ParallelFor(inner.output) as dataset:
        read_text(ds=dataset)


@dsl.pipeline(name="cf-gated-loop")
def gated_loop(directory: str, gate: str, gated_index: int = 2):
    """Four iterations that mark files; one waits for a gate."""
    with dsl.ParallelFor([0, 1, 2, 3]) as index:
        marked = mark(directory=directory, index=index, gate=gate, gated_index=gated_index)
    sum_ints(nums=dsl.Collected(marked.output))


@dsl.pipeline(name="cf-throttled-loop")
def throttled_loop(directory: str, gate: str):
    """Five iterations, two at a time, each waiting for a gate."""
    with dsl.ParallelFor([0, 1, 2, 3, 4], parallelism=2) as index:
        mark(directory=directory, index=index, gate=gate, gated_index=index)


@dsl.pipeline(name="cf-flaky-loop")
def flaky_loop(directory: str, gate: str, failing_index: int = 1):
    """Three iterations; one fails until a gate file exists."""
    with dsl.ParallelFor([0, 1, 2]) as index:
        marked = mark_or_fail(directory=directory, index=index, gate=gate, failing_index=failing_index)
    sum_ints(nums=dsl.Collected(marked.output))


# -- exit handlers and ignore_upstream_failure (kfp-semantics.md §5) ------------------------------


@dsl.pipeline(name="cf-exit-handler")
def exit_handler(should_fail: bool = False):
    status = final_status()
    with dsl.ExitHandler(status, name="guarded"):
        first = echo(msg="body")
        maybe_fail(should_fail=should_fail).after(first)


@dsl.pipeline(name="cf-ignore-upstream")
def ignore_upstream(message: str = "hi"):
    made = make_str(s=message)
    failing = fail_with_output(msg=made.output)
    cleanup(msg=failing.output).ignore_upstream_failure()  # its producer failed: the default
    cleanup(msg=made.output).after(failing).ignore_upstream_failure()  # its producer succeeded
    echo(msg="never").after(failing)  # an ordinary dependant of a failed task never starts


# -- importer (kfp-semantics.md §6) --------------------------------------------------------------


@dsl.pipeline(name="cf-importer")
def importer(path: str, uri: str, tag: str = "v1"):
    by_path = dsl.importer(
        artifact_uri=path, artifact_class=Dataset, metadata={"tag": tag, "k": "const", "n": 3}
    )
    read_imported(ds=by_path.output)
    by_uri = dsl.importer(artifact_uri=uri, artifact_class=Dataset, reimport=True)
    read_imported(ds=by_uri.output)


# -- runtime placeholders, workspace, dsl.get_uri (kfp-semantics.md §7) --------------------------


@dsl.pipeline(name="cf-placeholders")
def placeholders():
    show(
        job_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
        job_resource_name=dsl.PIPELINE_JOB_RESOURCE_NAME_PLACEHOLDER,
        job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        task_name=dsl.PIPELINE_TASK_NAME_PLACEHOLDER,
        task_id=dsl.PIPELINE_TASK_ID_PLACEHOLDER,
        create_time=dsl.PIPELINE_JOB_CREATE_TIME_UTC_PLACEHOLDER,
        schedule_time=dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER,
    ).set_display_name("shown")
    echo(msg="job-" + dsl.PIPELINE_JOB_ID_PLACEHOLDER)
    with dsl.ParallelFor([1, 2]):
        where(task_name=dsl.PIPELINE_TASK_NAME_PLACEHOLDER, task_id=dsl.PIPELINE_TASK_ID_PLACEHOLDER)
    args_placeholders()
    made = made_with_get_uri()
    read_text(ds=made.output)


@dsl.pipeline(
    name="cf-workspace",
    pipeline_config=dsl.PipelineConfig(workspace=dsl.WorkspaceConfig(size="1Gi")),
)
def workspace():
    written = write_workspace(workspace_path=dsl.WORKSPACE_PATH_PLACEHOLDER)
    read_workspace(workspace_path=dsl.WORKSPACE_PATH_PLACEHOLDER).after(written)


# -- kfp-kubernetes settings (kfp-semantics.md §10) ----------------------------------------------


@dsl.pipeline(name="cf-scheduling-advice")
def scheduling_advice():
    task = echo(msg="scheduled anywhere").set_cpu_limit("2").set_memory_limit("1G")
    task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
    kubernetes.add_node_selector(task, label_key="pool", label_value="gpu")
    kubernetes.add_toleration(task, key="k", operator="Equal", value="v", effect="NoSchedule")
    kubernetes.add_pod_label(task, "team", "ml")
    kubernetes.add_pod_annotation(task, "note", "hi")


@dsl.pipeline(name="cf-pvc-mount")
def pvc_mount():
    kubernetes.mount_pvc(echo(msg="needs a volume"), pvc_name="my-pvc", mount_path="/data")


@dsl.pipeline(name="cf-secret-env")
def secret_env():
    kubernetes.use_secret_as_env(echo(msg="needs a secret"), secret_name="s1", secret_key_to_env={"password": "PW"})


# -- root inputs and caching ---------------------------------------------------------------------


@dsl.pipeline(name="cf-root-artifact")
def root_artifact(dataset: Input[Dataset]):
    read_text(ds=dataset)


@dsl.pipeline(name="cf-caching")
def caching(cached_log: str, uncached_log: str, value: int = 1):
    recorded = record(path=cached_log, value=value)
    read_text(ds=recorded.outputs["out"])  # cached too: its input is the cached artifact
    record(path=uncached_log, value=value).set_caching_options(False)


@dsl.component(base_image=IMAGE)
def to_json(values: list, config: dict) -> str:
    import json

    return json.dumps([values, config])


# The mutable defaults are deliberate: the SDK compiles them into LIST and STRUCT defaults.
@dsl.pipeline(name="cf-json-numbers")
def json_numbers(values: list = [1, 2.5], config: dict = {"n": 3}):  # noqa: B006
    to_json(values=values, config=config)
    with dsl.ParallelFor([{"n": 1}, {"n": 2}]) as row:
        to_json(values=values, config=row)


PIPELINES = (
    branches, comparisons, oneof, loops, nested_loops, parallelism, loop_artifacts, gated_loop,
    throttled_loop, flaky_loop, exit_handler, ignore_upstream, importer, placeholders, workspace,
    scheduling_advice, pvc_mount, secret_env, root_artifact, caching, json_numbers,
)
