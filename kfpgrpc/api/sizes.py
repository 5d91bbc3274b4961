"""Response messages that fit: every message the server sends stays within MESSAGE_BUDGET
(`kfpgrpc.bounds`), half of gRPC's default 4 MiB receive limit, so that a client with default
settings can always read it, whatever a pipeline produced or a client sent.

- A resource (Run, RecurringRun, Event) over the budget shows its largest parameter values and
  artifact metadata (of 1 KiB or more) as markers, largest first, until it fits: a value becomes
  the string `… [omitted 1,234,567 bytes: too large for one response]`, a metadata Struct
  `{"omitted": "<the same>"}`. A Run that still does not fit (thousands of tasks) leaves out
  task details, succeeded and skipped ones first, most recently created first, and says how
  many in `run_details.task_details_omitted`. Last, the run's (or recurring run's) own
  parameter values down to OMIT_VALUES_FROM bytes become markers (a pipeline's most
  parameters, each just under 1 KiB, would not fit otherwise).
- A pipeline spec is never shortened: with the largest spec `--max-spec-bytes` allows by
  default, what cannot be shortened still fits gRPC's default limit (`kfpgrpc.bounds`).
- A list page stops before the item that would take it over the budget (it always holds at
  least one) and returns the page token that continues after its last item.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from google.protobuf import struct_pb2
from google.protobuf.message import Message

from kfpgrpc.bounds import MESSAGE_BUDGET, OMIT_VALUES_FROM
from kfpgrpc.domain import Page
from kfpgrpc.v1 import common_pb2, run_pb2

M = TypeVar("M", bound=Message)
T = TypeVar("T")

_WORTH_OMITTING = 1024  # bytes; smaller values are shown whole while anything else can go first


def _as_field(message: Message) -> int:
    """The bytes `message` takes as an element of a repeated field: tag, length and itself."""
    size = message.ByteSize()
    return 1 + max(1, (size.bit_length() + 6) // 7) + size


def omitted(size: int) -> str:
    return f"… [omitted {size:,} bytes: too large for one response]"


def _values(values: Any, smallest: int = _WORTH_OMITTING) -> Iterator[tuple[int, Callable[[], None]]]:
    """(size, replace it by a marker) for each value of `smallest` bytes or more of a
    map<string, Value>."""
    for key, value in values.items():
        if (size := value.ByteSize()) >= smallest:

            def replace(values: Any = values, key: str = key, size: int = size) -> None:
                values[key].CopyFrom(struct_pb2.Value(string_value=omitted(size)))

            yield size, replace


def _metadata(holders: Any) -> Iterator[tuple[int, Callable[[], None]]]:
    """(size, replace it by a marker) for each large `metadata` Struct of the `holders`."""
    for holder in holders:
        if (size := holder.metadata.ByteSize()) >= _WORTH_OMITTING:

            def replace(holder: Any = holder, size: int = size) -> None:
                holder.metadata.Clear()
                holder.metadata.update({"omitted": omitted(size)})

            yield size, replace


def _omit_largest(message: Message, candidates: list[tuple[int, Callable[[], None]]], budget: int) -> None:
    """Replace the largest candidates by markers until `message` fits in `budget`."""
    excess = message.ByteSize() - budget
    for size, replace in sorted(candidates, key=lambda candidate: -candidate[0]):
        if excess <= 0:
            return
        replace()
        excess -= size - len(omitted(size).encode()) - 4  # its marker, as a Value or a Struct


def fit_run(message: run_pb2.Run, budget: int = MESSAGE_BUDGET) -> run_pb2.Run:
    """`message`, made to fit in `budget` (see the module docstring); changed in place."""
    if message.ByteSize() <= budget:
        return message
    tasks = message.run_details.task_details
    candidates = [*_values(message.runtime_config.parameters), *_metadata(message.output_artifacts)]
    for task in tasks:
        candidates += [*_values(task.input_parameters), *_values(task.output_parameters), *_metadata(task.output_artifacts)]
    _omit_largest(message, candidates, budget)
    excess = message.ByteSize() - budget
    if excess > 0:
        excess += 8  # task_details_omitted itself: its tag and value
        finished = (common_pb2.SUCCEEDED, common_pb2.SKIPPED)
        order = sorted(range(len(tasks)), key=lambda i: (tasks[i].state not in finished, -i))
        left_out = set()
        for index in order:
            if excess <= 0:
                break
            left_out.add(index)
            excess -= _as_field(tasks[index])
        kept = [task for index, task in enumerate(tasks) if index not in left_out]
        del tasks[:]
        tasks.extend(kept)
        message.run_details.task_details_omitted = len(left_out)
    return fit_values(message, message.runtime_config.parameters, budget)


def fit_values(message: M, values: Any, budget: int = MESSAGE_BUDGET) -> M:
    """`message`, its map<string, Value> `values` shortened until it fits (values of 1 KiB or
    more first, then down to OMIT_VALUES_FROM bytes); changed in place."""
    for smallest in (_WORTH_OMITTING, OMIT_VALUES_FROM):
        if message.ByteSize() > budget:
            _omit_largest(message, list(_values(values, smallest)), budget)
    return message


def fit_metadata(message: M, holders: Any, budget: int = MESSAGE_BUDGET) -> M:
    """`message`, the `metadata` of its `holders` shortened until it fits; changed in place."""
    if message.ByteSize() > budget:
        _omit_largest(message, list(_metadata(holders)), budget)
    return message


def fit_page(page: Page[T], convert: Callable[[T], M], budget: int = MESSAGE_BUDGET) -> tuple[list[M], str]:
    """The page's items converted, as many as fit in `budget` (at least one), and the token of
    the next page: the page's own, or the one continuing after the last item kept."""
    messages: list[M] = []
    used = 0
    for index, item in enumerate(page.items):
        message = convert(item)
        used += _as_field(message)
        if messages and used > budget:
            assert page.token_after is not None, "a page that can end early needs token_after"
            return messages, page.token_after(index - 1)
        messages.append(message)
    return messages, page.next_page_token
