"""Starting `kfpgrpc serve`: one server per data dir, and start-up failures that exit 1 with one
line, no traceback and nothing created (real subprocesses, real files, real SQLite)."""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from kfpgrpc.config import ServerConfig
from kfpgrpc.server import KfpGrpcServer, StartError
from kfpgrpc.store.schema import MIGRATIONS
from kfpgrpc.v1 import common_pb2
from kfpgrpc.v1 import experiment_pb2 as pb
from tests.support import STREAM_TIMEOUT, ServerProcess, Stubs, eventually, running, task_processes, watch_to_end
from tests.test_run_streams import Gated, start_gated
from tests.test_server import certificates  # noqa: F401 - the CA and certificates fixture, reused

HANG = 60  # only turns a hang into a failure


def serve(data_dir: Path, *args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """`kfpgrpc serve` on a free port, run to its end (a server that starts is a failure here)."""
    command = [*prefix, sys.executable, "-m", "kfpgrpc.cli", "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir), *args]
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=HANG, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as expired:
        raise AssertionError(f"`kfpgrpc serve` neither served nor exited: {expired.stdout!r} {expired.stderr!r}") from None


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a failed start printed (exit code 1, nothing else on stderr or stdout)."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("kfpgrpc: "), result.stderr
    return result.stderr.removeprefix("kfpgrpc: ").rstrip("\n")


def snapshot(directory: Path) -> dict[str, bytes | None]:
    """Every path under `directory` with its content (None for a directory)."""
    return {
        str(path.relative_to(directory)): None if path.is_dir() else path.read_bytes()
        for path in sorted(directory.rglob("*"))
    }


def without_privileges() -> tuple[str, ...]:
    """A command prefix under which file permissions apply: none for a user; for root (who
    writes read-only files anyway), a user namespace where it is an ordinary user owning the
    same files."""
    if os.geteuid() != 0:
        return ()
    prefix = ("unshare", "--user", "--map-user=1000", "--map-group=1000")
    if shutil.which("unshare") is None or subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
        pytest.skip("running as root without user namespaces: file permissions cannot be made to apply")
    return prefix


async def make_database(data_dir: Path) -> Path:
    """A real database with some rows, written and closed by a real server."""
    async with running(data_dir) as (_, stubs):
        for index in range(300):
            await stubs.experiments.CreateExperiment(pb.CreateExperimentRequest(
                experiment=pb.Experiment(display_name=f"e{index}", description="x" * 500)))
    return data_dir / "kfpgrpc.db"


async def test_a_second_server_on_the_same_data_dir_exits_at_once_and_harms_nothing(
    tmp_path: Path, compiled: dict[str, Any]
) -> None:
    """The second server must not kill the first's task as an orphan nor schedule anything:
    it exits 1 naming the data dir and the first's PID. The lock goes with the process: once
    the first is killed (its task living on), a new server starts and resumes the run."""
    data_dir, gated = tmp_path / "data", Gated(tmp_path / "gated")
    first = ServerProcess(data_dir)
    try:
        async with grpc.aio.insecure_channel(first.address) as channel:
            run_id = (await start_gated(Stubs.on(channel), compiled, gated)).run_id
        # The task's own process (a group leader): its children may come and go meanwhile.
        leaders = await eventually(
            lambda: asyncio.sleep(0, {pid for pid, group in task_processes(run_id).items() if pid == group}), bool
        )
        before = (data_dir / "kfpgrpc.db").stat().st_mtime_ns, sorted(os.listdir(data_dir))

        refused = one_line(serve(data_dir))
        assert refused == (
            f"data dir {data_dir} is in use by another kfpgrpc server (pid {first.process.pid});"
            " stop it or choose another --data-dir"
        )
        assert leaders <= task_processes(run_id).keys()  # not killed as orphans
        assert ((data_dir / "kfpgrpc.db").stat().st_mtime_ns, sorted(os.listdir(data_dir))) == before
    finally:
        first.kill()  # its task process lives on, an orphan

    third = ServerProcess(data_dir)
    try:
        async with grpc.aio.insecure_channel(third.address) as channel:
            stubs = Stubs.on(channel)
            gated.open()
            final = (await watch_to_end(stubs.runs, run_id, STREAM_TIMEOUT))[-1]
            assert final.state == common_pb2.SUCCEEDED
    finally:
        assert third.terminate()[0] == 0


async def test_a_second_server_in_the_same_process_cannot_start_either(data_dir: Path) -> None:
    async with running(data_dir) as (_, stubs):
        second = KfpGrpcServer(ServerConfig(listen="127.0.0.1:0", data_dir=data_dir))
        with pytest.raises(StartError, match="is in use by another kfpgrpc server"):
            await second.start()
        listed = await stubs.experiments.ListExperiments(pb.ListExperimentsRequest())
        assert listed.total_size == 1  # the first serves on
    restarted = KfpGrpcServer(ServerConfig(listen="127.0.0.1:0", data_dir=data_dir))
    await restarted.start()  # the first's stop released the lock
    await restarted.stop()


def random_bytes(data_dir: Path) -> None:
    data_dir.mkdir()
    (data_dir / "kfpgrpc.db").write_bytes(os.urandom(64 * 1024))


def newer_schema(data_dir: Path) -> None:
    data_dir.mkdir()
    with sqlite3.connect(data_dir / "kfpgrpc.db") as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()


def a_file(data_dir: Path) -> None:
    data_dir.write_text("not a directory")


@pytest.mark.parametrize(
    ("prepare", "expected"),
    [
        (random_bytes, "database {db} is not a kfpgrpc database or is damaged (file is not a database);"
                       " move it away or restore a backup"),
        (newer_schema, f"database {{db}}: database schema version {len(MIGRATIONS) + 1} is newer than this"
                       f" kfpgrpc ({len(MIGRATIONS)}); upgrade kfpgrpc"),
        (a_file, "data dir {data_dir} is not a directory"),
    ],
    ids=["random-bytes", "newer-schema", "data-dir-is-a-file"],
)
def test_an_unusable_data_dir_fails_with_one_line_and_changes_nothing(
    tmp_path: Path, prepare: Callable[[Path], None], expected: str
) -> None:
    data_dir = tmp_path / "data"
    prepare(data_dir)
    before = snapshot(tmp_path)
    assert one_line(serve(data_dir)) == expected.format(db=data_dir / "kfpgrpc.db", data_dir=data_dir)
    assert snapshot(tmp_path) == before


async def test_a_truncated_database_fails_with_one_line_and_is_left_as_it_was(tmp_path: Path) -> None:
    database = await make_database(tmp_path / "data")
    content = database.read_bytes()
    database.write_bytes(content[: len(content) // 2])
    before = snapshot(tmp_path)
    message = one_line(serve(tmp_path / "data"))
    assert message.startswith(f"database {database} is not a kfpgrpc database or is damaged (")
    assert snapshot(tmp_path) == before


def test_a_data_dir_inside_a_file_fails_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    assert one_line(serve(tmp_path / "file" / "data")) == f"cannot create data dir {tmp_path / 'file' / 'data'}: Not a directory"
    assert snapshot(tmp_path) == {"file": b""}


async def test_a_read_only_database_fails_with_one_line_and_leaves_no_wal(tmp_path: Path) -> None:
    """A read-only file opens and reads fine: only a write tells, so the start writes once."""
    database = await make_database(tmp_path / "data")
    database.chmod(0o444)
    before = snapshot(tmp_path)
    message = one_line(serve(tmp_path / "data", prefix=without_privileges()))
    assert message == (
        f"database {database} cannot be opened for writing (attempt to write a readonly database);"
        " check its permissions and the free space"
    )
    assert snapshot(tmp_path) == before  # no -wal or -shm left behind


def test_an_unwritable_directory_fails_with_one_line_and_nothing_is_created(tmp_path: Path) -> None:
    prefix = without_privileges()
    empty, parent = tmp_path / "empty", tmp_path / "parent"
    empty.mkdir(mode=0o555)
    parent.mkdir(mode=0o555)
    try:
        assert one_line(serve(empty, prefix=prefix)) == (
            f"database {empty / 'kfpgrpc.db'} cannot be opened for writing (unable to open database file);"
            " check its permissions and the free space"
        )
        assert one_line(serve(parent / "data", prefix=prefix)) == f"cannot create data dir {parent / 'data'}: Permission denied"
        assert snapshot(tmp_path) == {"empty": None, "parent": None}
    finally:
        empty.chmod(0o755)
        parent.chmod(0o755)


def test_a_database_locked_by_another_process_fails_with_one_line(tmp_path: Path) -> None:
    """Another process (an operator's sqlite3 shell, say) holds the write lock past the busy
    timeout while the server starts."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    holder = sqlite3.connect(data_dir / "kfpgrpc.db", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        message = one_line(serve(data_dir))
    finally:
        holder.close()
    assert message == (
        f"database {data_dir / 'kfpgrpc.db'} is locked by another process (database is locked); stop it and start again"
    )


def test_a_start_that_fails_after_creating_the_database_leaves_nothing(tmp_path: Path) -> None:
    """A file size limit (a full disk, as far as SQLite can tell) makes the schema migration
    fail after the data dir, the database and its WAL were created: they are removed again,
    and the message comes alone (no log line of a migration that was rolled back)."""
    data_dir = tmp_path / "new" / "data"
    # prlimit(1), not a Python preexec_fn in a fork of this multi-threaded process (see test_transport).
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    command = [
        "prlimit", f"--fsize={16 * 1024}:{'unlimited' if hard == resource.RLIM_INFINITY else hard}",
        sys.executable, "-m", "kfpgrpc.cli", "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=HANG)
    assert one_line(result).startswith(f"database {data_dir / 'kfpgrpc.db'} cannot be opened for writing (")
    assert list(tmp_path.iterdir()) == []


def test_bad_tls_files_fail_with_one_line_before_anything_is_created(tmp_path: Path, certificates: Path) -> None:
    """grpc takes any bytes and then only fails to bind ("cannot listen on ..."): each file is
    checked first, so that the line names it."""
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not PEM\n")
    server_files = ["--tls-cert", str(certificates / "server.pem"), "--tls-key", str(certificates / "server.key")]
    cases = {
        (*server_files[:2], "--tls-key", str(tmp_path / "missing.key")):
            f"--tls-key: cannot read {tmp_path / 'missing.key'}: No such file or directory",
        ("--tls-cert", str(garbage), "--tls-key", str(garbage)):
            "--tls-cert/--tls-key: not a PEM certificate chain and its private key",
        (*server_files[:2], "--tls-key", str(certificates / "client.key")):
            "--tls-cert/--tls-key: not a PEM certificate chain and its private key (key values mismatch)",
        (*server_files, "--tls-client-ca", str(garbage)): "--tls-client-ca: not a PEM CA bundle",
    }
    for args, expected in cases.items():
        assert one_line(serve(tmp_path / "data", *args)) == expected
    assert sorted(path.name for path in tmp_path.iterdir()) == ["garbage.pem"]


def test_a_failure_after_the_store_was_set_up_prints_one_line_and_removes_the_new_database(tmp_path: Path) -> None:
    """The task work directory (`work/`) is a file: the start fails after the database was
    created and migrated (whose log line is dropped with the rest), and the database goes again.
    With --log-level debug, what was logged is shown, the traceback included."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "work").write_text("")
    assert one_line(serve(data_dir)) == f"{data_dir / 'work'}: Not a directory"
    assert snapshot(tmp_path) == {"data": None, "data/work": b""}
    debug = serve(data_dir, "--log-level", "debug")
    assert debug.returncode == 1
    lines = debug.stderr.splitlines()
    assert lines[-1] == f"kfpgrpc: {data_dir / 'work'}: Not a directory"
    assert any('msg="applied schema migrations"' in line for line in lines)
    assert any('msg="start failed"' in line and "NotADirectoryError" in line for line in lines)
    assert snapshot(tmp_path) == {"data": None, "data/work": b""}
