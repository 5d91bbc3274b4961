"""Real pipelines written with the kfp SDK, shared by the tests (validation, runs, schedules).

Each pipeline function is a `GraphComponent`; `compile_pipeline` turns one into the IR dict our API
receives. Components pin their base image so the compiled specs do not change when the SDK's
default image does. No `from __future__ import annotations` here: the SDK reads the component
signatures' annotations as types, not strings.
"""

import warnings
from pathlib import Path
from typing import Any, Callable, List, Optional

import yaml
from kfp import compiler, dsl
from kfp.dsl import Dataset, Input, Model, Output
from kfp.dsl.base_component import BaseComponent

BASE_IMAGE = "python:3.11"


@dsl.component(base_image=BASE_IMAGE)
def add(a: int, b: int) -> int:
    return a + b


@dsl.component(base_image=BASE_IMAGE)
def write_artifacts(text: str, dataset: Output[Dataset], model: Output[Model]):
    with open(dataset.path, "w") as file:
        file.write(text)
    dataset.metadata["pushed"] = 1
    with open(model.path, "w") as file:
        file.write(f"model trained on {len(text)} characters")
    model.metadata["pushed"] = 1


@dsl.component(base_image=BASE_IMAGE)
def read_dataset(dataset: Input[Dataset]) -> str:
    with open(dataset.path) as file:
        return file.read()


@dsl.component(base_image=BASE_IMAGE)
def fail(message: str):
    raise RuntimeError(message)


@dsl.component(base_image=BASE_IMAGE)
def count_to(n: int) -> list:
    return list(range(1, n + 1))


@dsl.component(base_image=BASE_IMAGE)
def total(values: list) -> int:
    return sum(values)


@dsl.component(base_image=BASE_IMAGE)
def parity(n: int) -> str:
    return "even" if n % 2 == 0 else "odd"


@dsl.component(base_image=BASE_IMAGE)
def echo(message: str) -> str:
    return message


@dsl.component(base_image=BASE_IMAGE)
def report_status(status: dsl.PipelineTaskFinalStatus):
    print(status.state, status.error_message)


@dsl.component(base_image=BASE_IMAGE)
def record(path: str, value: int) -> int:
    """Appends a line to `path` each time it runs, so tests can count executions."""
    with open(path, "a") as file:
        file.write("ran\n")
    return value


@dsl.component(base_image=BASE_IMAGE)
def wait_for(path: str, value: int) -> int:
    """Runs until the file `path` exists: a task that stays RUNNING as long as a test needs."""
    import os
    import time

    print("waiting for", path, flush=True)
    while not os.path.exists(path):
        time.sleep(0.05)
    return value + 1


@dsl.component(base_image=BASE_IMAGE)
def require(path: str, value: int) -> int:
    """Fails unless the file `path` exists."""
    import os

    if not os.path.exists(path):
        raise FileNotFoundError(path)
    return value + 1


# The mutable defaults are deliberate: KFP compiles them into LIST and STRUCT defaults.
@dsl.pipeline(name="add-pipeline", description="Adds a and b, then adds b again.")
def add_pipeline(
    a: int = 1,
    b: int = 2,
    label: str = "sum",
    scale: Optional[float] = None,
    verbose: bool = False,
    tags: list = ["demo"],  # noqa: B006
    options: dict = {"retries": 1},  # noqa: B006
) -> int:
    """Two chained `add` tasks; the other parameters cover every parameter type for run tests."""
    first = add(a=a, b=b)
    second = add(a=first.output, b=b)
    return second.output


@dsl.pipeline(
    name="artifact-pipeline", description="Writes a Dataset and a Model, then reads the Dataset."
)
def artifact_pipeline(text: str = "hello artifacts") -> str:
    written = write_artifacts(text=text)
    read = read_dataset(dataset=written.outputs["dataset"])
    return read.output


@dsl.pipeline(name="add-twice")
def add_twice(a: int, b: int = 1) -> int:
    """Sub-pipeline of `nested_pipeline`: compiled as a DAG component."""
    first = add(a=a, b=b)
    second = add(a=first.output, b=b)
    return second.output


@dsl.pipeline(name="nested-pipeline", description="Runs the add-twice sub-pipeline, then adds 10.")
def nested_pipeline(x: int, y: int = 5) -> int:
    """`x` has no default, so this pipeline also covers required parameters."""
    inner = add_twice(a=x, b=y)
    outer = add(a=inner.output, b=10)
    return outer.output


@dsl.pipeline(name="failing-pipeline", description="Its only task raises.")
def failing_pipeline(message: str = "this task always fails"):
    fail(message=message)


@dsl.pipeline(name="control-flow-pipeline", description="Loops, conditions and an exit handler.")
def control_flow_pipeline(n: int = 3) -> str:
    """Exercises the IR's control flow: ParallelFor with Collected, If/Elif/Else with OneOf,
    ExitHandler with PipelineTaskFinalStatus, and retries."""
    with dsl.ExitHandler(report_status()):
        numbers = count_to(n=n)
        with dsl.ParallelFor(numbers.output, parallelism=2) as number:
            doubled = add(a=number, b=number).set_retry(num_retries=2, backoff_duration="5s")
        total(values=dsl.Collected(doubled.output))
    kind = parity(n=n)
    with dsl.If(kind.output == "even"):
        even = echo(message="even")
    with dsl.Elif(kind.output == "odd"):
        odd = echo(message="odd")
    with dsl.Else():
        neither = echo(message="neither")
    return dsl.OneOf(even.output, odd.output, neither.output)


@dsl.pipeline(name="gated-pipeline", description="Counts its first task's runs; the second waits for a file.")
def gated_pipeline(counter: str, gate: str) -> int:
    first = record(path=counter, value=1)
    second = wait_for(path=gate, value=first.output)
    return second.output


@dsl.pipeline(name="retryable-pipeline", description="Counts its first task's runs; the second fails until a file exists.")
def retryable_pipeline(counter: str, gate: str) -> int:
    first = record(path=counter, value=1)
    second = require(path=gate, value=first.output)
    return second.output


@dsl.container_component
def noop(label: str, gate: str):
    """Succeeds at once, or once the file `gate` exists when it is not empty."""
    return dsl.ContainerSpec(
        image="busybox", command=["sh", "-c", 'while [ -n "$1" ] && [ ! -e "$1" ]; do sleep 0.02; done', "noop"], args=[gate, label]
    )


@dsl.pipeline(name="instant-pipeline", description="One container task that exits at once (or when its gate opens).")
def instant_pipeline(label: str = "none", gate: str = ""):
    noop(label=label, gate=gate)


@dsl.component(base_image=BASE_IMAGE)
def push_model(pushed: int, model: Output[Model]):
    with open(model.path, "w") as file:
        file.write("model weights")
    model.metadata["pushed"] = pushed
    model.metadata["accuracy"] = 0.93


@dsl.pipeline(name="push-pipeline", description="Writes a model whose metadata says whether it was pushed.")
def push_pipeline(pushed: int = 1):
    push_model(pushed=pushed)


@dsl.component(base_image=BASE_IMAGE)
def tag_model(tag: str, model: Output[Model]):
    with open(model.path, "w") as file:
        file.write("model weights")
    model.metadata["tag"] = tag


@dsl.pipeline(name="tag-pipeline", description="Writes a model whose metadata has a string `tag`.")
def tag_pipeline(tag: str = "golden"):
    tag_model(tag=tag)


@dsl.component(base_image=BASE_IMAGE)
def read_model(model_uri: str) -> str:
    with open(model_uri.removeprefix("file://")) as file:
        return file.read()


@dsl.pipeline(name="consume-pipeline", description="Reads the model a parameter points to.")
def consume_pipeline(model_uri: str) -> str:
    return read_model(model_uri=model_uri).output


@dsl.component(base_image=BASE_IMAGE)
def emit(kind: str, model: Output[Model]) -> int:
    """Writes an output no google.protobuf.Value can hold, chosen by `kind`, or a fine one."""
    with open(model.path, "w") as file:
        file.write("model")
    if kind == "huge-integer":
        return 10**400  # kfp writes it as a 401-digit JSON number
    if kind == "nan-metadata":
        model.metadata["loss"] = float("nan")
    if kind == "deep-metadata":
        nested: list = []
        for _ in range(60):
            nested = [nested]
        model.metadata["nested"] = nested
    return 1


@dsl.pipeline(name="emit-pipeline", description="One task whose outputs are out of range, or not.")
def emit_pipeline(kind: str = "fine") -> int:
    return emit(kind=kind).outputs["Output"]


@dsl.component(base_image=BASE_IMAGE)
def train_model(previous_model: str, model: Output[Model]):
    weights = ""
    if previous_model:
        with open(previous_model.removeprefix("file://")) as file:
            weights = file.read()
    with open(model.path, "w") as file:
        file.write(weights + "+")


@dsl.pipeline(name="train-pipeline", description="Trains on top of the previous model (a URI), or from scratch.")
def train_pipeline(previous_model: str = ""):
    train_model(previous_model=previous_model)


@dsl.container_component
def shell(script: str):
    """Runs `script` with sh."""
    return dsl.ContainerSpec(image="busybox", command=["sh", "-c"], args=[script])


@dsl.pipeline(name="shell-pipeline", description="One task that runs a shell script.")
def shell_pipeline(script: str):
    shell(script=script)


def shell_pipeline_with(name: str, configure: Callable[[Any, Any], Any]) -> BaseComponent:
    """A pipeline `name` like shell-pipeline whose one task (task id "shell") is set up by
    `configure(task, setting)`, e.g. with resource requests or kfp-kubernetes node selectors;
    `setting` is the pipeline's string parameter `setting` (default ""), for a value given at
    run time."""

    @dsl.pipeline(name=name)
    def pipeline(script: str, setting: str = ""):
        configure(shell(script=script), setting)

    return pipeline


@dsl.container_component
def print_environment():
    """Prints, with the task's `python3`, its whole environment and its open file descriptors
    (the one listing them included) as JSON."""
    program = "import json, os; print(json.dumps({'environment': dict(os.environ), 'descriptors': sorted(os.listdir('/proc/self/fd'))}))"
    return dsl.ContainerSpec(image="python:3.11", command=["python3", "-c", program])


@dsl.pipeline(name="environment-pipeline", description="Prints its task's environment; sets GREETING.")
def environment_pipeline():
    print_environment().set_env_variable("GREETING", "hello")


def wide_spec(tasks: int) -> dict[str, Any]:
    """The IR of a pipeline of `tasks` independent container tasks (too many to compile with the
    SDK in a test) that each wait until the file named by the parameter `gate` exists."""
    return {
        "pipelineInfo": {"name": "wide"},
        "schemaVersion": "2.1.0",
        "sdkVersion": "kfp-2.16.1",
        "components": {"comp-wait": {"executorLabel": "exec-wait", "inputDefinitions": {"parameters": {"gate": {"parameterType": "STRING"}}}}},
        "deploymentSpec": {"executors": {"exec-wait": {"container": {
            "image": "busybox",
            "command": ["sh", "-c", 'while [ ! -e "$0" ]; do sleep 0.05; done'],
            "args": ["{{$.inputs.parameters['gate']}}"],
        }}}},
        "root": {
            "inputDefinitions": {"parameters": {"gate": {"parameterType": "STRING"}}},
            "dag": {"tasks": {
                f"wait-{index}": {
                    "componentRef": {"name": "comp-wait"},
                    "inputs": {"parameters": {"gate": {"componentInputParameter": "gate"}}},
                    "taskInfo": {"name": f"wait-{index}"},
                }
                for index in range(tasks)
            }},
        },
    }


ALL_PIPELINES = (
    add_pipeline,
    artifact_pipeline,
    nested_pipeline,
    failing_pipeline,
    control_flow_pipeline,
    gated_pipeline,
    retryable_pipeline,
    instant_pipeline,
    push_pipeline,
    consume_pipeline,
    emit_pipeline,
    train_pipeline,
    shell_pipeline,
    environment_pipeline,
    tag_pipeline,
)


def compile_pipeline(pipeline_func: BaseComponent, path: Path | str) -> dict[str, Any]:
    """Compile `pipeline_func` to the YAML file `path` and return the IR as a dict."""
    compiler.Compiler().compile(pipeline_func, package_path=str(path))
    with open(path) as file:
        return yaml.safe_load(file)


# Pipelines whose trigger-policy conditions and parameter expression selectors cover every CEL
# shape the kfp SDK compiles (tests/test_cel.py evaluates each one). The channel names match the
# research pipelines of issue 12, so the conditions are the same strings.


@dsl.component(base_image=BASE_IMAGE)
def make_int(i: int) -> int:
    return i


@dsl.component(base_image=BASE_IMAGE)
def make_float(f: float) -> float:
    return f


@dsl.component(base_image=BASE_IMAGE)
def make_bool(b: bool) -> bool:
    return b


@dsl.component(base_image=BASE_IMAGE)
def make_str(s: str) -> str:
    return s


@dsl.pipeline(name="conditions", description="Conditions on task outputs and parameters of each type.")
def conditions_pipeline(text: str = "heads", threshold: int = 5, ratio: float = 0.5, flag: bool = True):
    n = make_int(i=7)
    with dsl.If(n.output > 5, name="big"):  # an int output and an int literal: If/Elif/Else
        echo(message="big")
    with dsl.Elif(n.output == 5):
        echo(message="five")
    with dsl.Else():
        echo(message="small")
    with dsl.If(text == "heads"):  # a string parameter: If/Else
        echo(message="got heads")
    with dsl.Else():
        echo(message="got tails")
    with dsl.If(n.output >= threshold):  # two int channels
        echo(message="ge threshold")
    f = make_float(f=0.25)
    with dsl.If(f.output < ratio):  # two float channels
        echo(message="lt ratio")
    b = make_bool(b=True)
    with dsl.If(b.output == True):  # noqa: E712 (the SDK compiles the comparison, not Python)
        echo(message="bool true")
    with dsl.If(flag == False):  # noqa: E712
        echo(message="flag false")
    s = make_str(s="x")
    with dsl.If(s.output != "y"):
        echo(message="ne y")
    with warnings.catch_warnings():  # dsl.Condition is deprecated, and still compiled
        warnings.simplefilter("ignore", DeprecationWarning)
        with dsl.Condition(text == "heads", name="outer"):  # nesting an If
            with dsl.If(n.output > 1, name="inner"):
                echo(message="nested")


@dsl.pipeline(name="oneof", description="An If/Elif/Else on a string parameter whose branches' outputs are one OneOf.")
def oneof_pipeline(text: str = "heads") -> str:
    with dsl.If(text == "heads"):
        a = echo(message="A")
    with dsl.Elif(text == "tails"):
        b = echo(message="B")
    with dsl.Else():
        c = echo(message="C")
    return dsl.OneOf(a.output, b.output, c.output)


@dsl.pipeline(name="condition-casts", description="Comparisons the SDK compiles with casts (valid CEL).")
def condition_casts_pipeline(flag: bool = True, f: float = 1.5):
    s = make_str(s="10")
    n = make_int(i=3)
    with dsl.If(s.output > 5, name="str-gt-int"):  # compares strings: '10' > '5' is false
        echo(message="a")
    with dsl.If(flag == 1, name="bool-eq-1"):  # compiles to `flag == false`
        echo(message="b")
    with dsl.If(n.output < f, name="int-lt-double"):
        echo(message="e")
    with dsl.If(n.output != 2.5, name="int-ne-float-literal"):
        echo(message="f")


@dsl.pipeline(name="condition-quirks", description="Comparisons the SDK compiles to CEL that does not parse.")
def condition_quirks_pipeline(text: str = "it's"):
    n = make_int(i=3)
    with dsl.If(n.output == "abc", name="int-eq-str"):  # `'int(inputs…)' == 'abc'`
        echo(message="c")
    with dsl.If(text == "it's", name="quote-literal"):  # the quote is not escaped
        echo(message="d")


@dsl.pipeline(name="item-fields", description="Loops over dicts using their fields: in tasks, conditions and inner loops.")
def item_fields_pipeline(rows: List[dict] = [{"city": "Lyon"}, {"city": "Oslo"}]):
    with dsl.ParallelFor([{"a": 1, "b": 10}, {"a": 2, "b": 20}]) as item:
        add(a=item.a, b=item.b)
        with dsl.If(item.a > 1, name="a-gt-1"):
            echo(message="big a")
    with dsl.ParallelFor(rows) as row:
        echo(message=row.city)
    with dsl.ParallelFor([{"xs": ["p", "q"]}, {"xs": ["r"]}]) as group:
        with dsl.ParallelFor(group.xs) as x:  # a loop over a field of the outer loop's item
            echo(message=x)


CEL_PIPELINES = (conditions_pipeline, oneof_pipeline, condition_casts_pipeline, item_fields_pipeline)
