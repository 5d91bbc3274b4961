"""Size bounds on what a pipeline or a client makes the server store and send, and the text
cuts that enforce them.

A pipeline is untrusted input: whatever it prints or writes, every message the server sends
must stay well below gRPC's default receive limit of 4 MiB (the limit a client has unless it
raises it), or GetRun, ListRuns, WatchRun, WatchEvents and StreamRunLogs would fail with
RESOURCE_EXHAUSTED for ever. Texts are cut where they are produced and again where they are
read (rows written before these bounds existed); whole messages are fitted by `kfpgrpc.api.sizes`.

A cut text ends with a marker saying how much was cut, `… [truncated 3,400,000 bytes]`, and
stays within its limit, marker included. Sizes are UTF-8 bytes.
"""

from __future__ import annotations

CLIENT_RECEIVE_LIMIT = 4 * 1024 * 1024  # gRPC's default max_receive_message_length
MESSAGE_BUDGET = 2 * 1024 * 1024  # a response message or page: half of gRPC's default 4 MiB
# Largest pipeline spec by default (--max-spec-bytes), as protobuf: 1.5 MiB, etcd's request limit.
# KFP on Kubernetes cannot run a bigger one either (its Argo Workflow object, which holds the spec,
# must fit in one etcd request); compiled pipelines are typically 10-500 KB. A spec is sent whole
# in every response that carries it, so it and the fields that cannot be shortened (below) must
# stay under CLIENT_RECEIVE_LIMIT; tests/test_bounds.py builds that largest message.
DEFAULT_MAX_SPEC_BYTES = 1_572_864
# What a Run or RecurringRun holds besides its spec and cannot shorten to fit, at most (UTF-8):
# display name and service account 1 KiB each, description 40 KB, error 4 KiB, pipeline_root
# MAX_PATH_BYTES, 100 selectors of a 1 KiB name and a MAX_PATH_BYTES path, their 100 exposed
# artifacts (name, URI, reason; metadata becomes a marker), and MAX_PIPELINE_INPUTS parameters of
# a name of 255 bytes and a value shown whole only under OMIT_VALUES_FROM bytes: about 1.5 MiB.
MAX_PATH_BYTES = 4096  # PATH_MAX: a pipeline_root, a selector path, a code_source_url
MAX_PIPELINE_INPUTS = 1000  # input parameters a pipeline's root may declare (each is a run parameter)
OMIT_VALUES_FROM = 128  # bytes; a smaller value is never shown as a marker (which takes ~60)
MAX_LOG_LINE_BYTES = 16 * 1024  # as Docker and the CRI split container log lines
LOG_LINE_OVERHEAD = 64  # what storing a line costs besides its text (row, index entries)
DEFAULT_MAX_LOG_BYTES_PER_TASK = 10 * 1024 * 1024  # the kubelet's default containerLogMaxSize
LOG_BATCH_BYTES = 1024 * 1024  # text of one StreamRunLogs response
MAX_ERROR_BYTES = 4 * 1024  # a task's or a run's error: what failed and the last lines
MAX_ERROR_LINE_BYTES = 1024  # one line of an error; a state history entry's reason
MAX_TASK_OUTPUTS_BYTES = 1024 * 1024  # a task's output parameters and artifact metadata together
# Tasks of one run with every sub-pipeline unfolded and every loop's iterations counted.
MAX_TASKS = 100_000
MAX_DAG_DEPTH = 100  # sub-pipelines, conditions and loops nested in one another


def marker(cut_bytes: int) -> str:
    """What replaces `cut_bytes` bytes cut from a text."""
    return f"… [truncated {cut_bytes:,} bytes]"


def utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def _fits(text: str, limit: int) -> bool:
    return len(text) <= limit // 4 or (len(text) <= limit and utf8_size(text) <= limit)


def _prefix(data: bytes, limit: int) -> str:
    """The longest start of UTF-8 `data` within `limit` bytes that ends on a character boundary."""
    if len(data) > limit:
        while limit > 0 and data[limit] & 0xC0 == 0x80:  # a continuation byte: back to the start
            limit -= 1
        data = data[:limit]
    return data.decode("utf-8", errors="replace")


def cut_bytes(data: bytes, limit: int, size: int | None = None) -> str:
    """`data` (UTF-8, maybe itself the start of a longer text of `size` bytes) as text of at
    most `limit` bytes: whole if it fits, else its start and a marker."""
    size = len(data) if size is None else size
    if size <= limit:
        return data.decode("utf-8", errors="replace")
    keep = max(0, limit - len(marker(size).encode()))
    head = _prefix(data, keep)
    return head + marker(size - len(head.encode()))


def cut(text: str, limit: int) -> str:
    """`text` if it fits in `limit` bytes, else its start and a marker (at most `limit` bytes)."""
    if _fits(text, limit):
        return text
    return cut_bytes(text[: limit + 1].encode(), limit, utf8_size(text))


def cut_error(error: str, limit: int = MAX_ERROR_BYTES) -> str:
    """An error within `limit` bytes: the start of its first line (what failed, at most
    MAX_ERROR_LINE_BYTES), a marker, and as much of its end (the last lines a task printed,
    where the exception is) as fits."""
    if _fits(error, limit):
        return error
    data = error.encode()
    first_end = data.find(b"\n", 0, MAX_ERROR_LINE_BYTES + 1)
    head = _prefix(data, MAX_ERROR_LINE_BYTES if first_end == -1 else first_end)
    after_head = len(head.encode()) + (first_end != -1)  # past its newline
    room = limit - len(head.encode()) - len(marker(len(data)).encode()) - 2
    start = max(after_head, len(data) - max(0, room))
    while start < len(data) and data[start] & 0xC0 == 0x80:  # do not start inside a character
        start += 1
    return f"{head}\n{marker(start - after_head)}\n{data[start:].decode('utf-8', errors='replace')}"


def summary(error: str) -> str:
    """The first line of an error, cut to MAX_ERROR_LINE_BYTES: the reason a state history
    entry gives (the whole error is on the run or the task itself)."""
    return cut(error.partition("\n")[0], MAX_ERROR_LINE_BYTES)
