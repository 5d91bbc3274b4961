"""The README's commands work as written: its grpcurl session runs against a real server, and
its test command is the one CI runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ServerProcess

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
CI_RUN = REPO / ".ci" / "run"
README_ADDRESS = "127.0.0.1:8887"


def sh_block(heading: str) -> str:
    """The first ```sh fenced block under the `## heading` of the README."""
    text = README.read_text()
    section = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert section, f"README has no '## {heading}' section"
    block = re.search(r"^```sh\n(.*?)^```$", section.group(1), re.MULTILINE | re.DOTALL)
    assert block, f"README's '## {heading}' section has no ```sh block"
    return block.group(1)


def one_command(heading: str) -> str:
    lines = [line for line in sh_block(heading).splitlines() if line.strip()]
    assert len(lines) == 1, f"'## {heading}' should hold exactly one command line, got {lines}"
    return lines[0]


def test_readme_commands_are_one_line_each() -> None:
    assert one_command("Install and start") == (
        "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && kfpgrpc serve"
    )
    assert one_command("Run the tests") == (
        "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' && python -m pytest"
    )


def test_grpcurl_session_runs_against_a_real_server(tmp_path: Path) -> None:
    script = sh_block("A grpcurl session")
    assert README_ADDRESS in script
    server = ServerProcess(tmp_path / "data")
    try:
        workdir = tmp_path / "session"
        workdir.mkdir()
        venv_bin = str(Path(sys.executable).parent)
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script.replace(README_ADDRESS, server.address)],
            cwd=workdir,
            env={**os.environ, "PATH": venv_bin + os.pathsep + os.environ.get("PATH", "")},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=300,
        )
    except BaseException:
        server.kill()
        raise
    code, stderr = server.terminate()
    output = result.stdout
    assert result.returncode == 0, output
    assert (workdir / "pipeline.yaml").is_file()
    for expected in (
        "kfpgrpc.v1.PipelineService",  # list
        '"status": "SERVING"',  # health
        '"display_name": "readme-demo"',  # the experiment, created and then listed
        '"name": "v1"',  # the uploaded version, created and then listed
        '"description": "Adds two numbers."',  # its description, taken from the spec
        "type.googleapis.com/google.rpc.BadRequest",  # the bad request
        '"field":"pipeline_version.pipeline_spec.schemaVersion"',
        "grpcurl exit code: 67",
        '  "state": "SUCCEEDED"',  # the run, watched to its end
        "add SUCCEEDED {'Output': 7}",  # 5 + the default 2
        "Wrote executor output file",  # the end of the task's log
    ):
        assert expected in output, f"{expected!r} not in the session's output:\n{output}"
    assert output.count('"name": "v1"') == 2, output  # CreatePipelineVersion, then ListPipelineVersions
    assert code == 0, stderr


@pytest.mark.skipif(not CI_RUN.exists(), reason=".ci/run does not exist yet")
def test_readme_test_command_is_what_ci_runs() -> None:
    command = one_command("Run the tests")
    assert command in CI_RUN.read_text(), f".ci/run does not run the README's test command verbatim: {command}"
