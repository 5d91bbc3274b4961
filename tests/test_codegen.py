"""The API contract's tooling: buf lint, reproducible generated code, protobuf 6 and 7."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_buf_lint_passes_with_the_standard_rules() -> None:
    result = subprocess.run([str(BIN / "buf"), "lint"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_code_is_up_to_date() -> None:
    result = subprocess.run([sys.executable, "scripts/generate_protos.py", "--check"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "up to date" in result.stdout


IMPORT_ALL = """
import importlib, pkgutil, google.protobuf, kfpgrpc.v1
for module in pkgutil.iter_modules(kfpgrpc.v1.__path__):
    importlib.import_module("kfpgrpc.v1." + module.name)
from kfpgrpc.v1 import run_pb2
assert run_pb2.Run.FromString(run_pb2.Run(display_name="x").SerializeToString()).display_name == "x"
print(google.protobuf.__version__)
"""


def test_generated_code_imports_without_warnings_on_this_protobuf() -> None:
    result = subprocess.run([sys.executable, "-W", "error", "-c", IMPORT_ALL], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("6."), "the test environment (kfp 2.16) runs protobuf 6"


@pytest.mark.skipif(not os.environ.get("KFPGRPC_PROTOBUF7_PATH"), reason="set KFPGRPC_PROTOBUF7_PATH to a `pip install --target` of protobuf 7 (.ci/run does)")
def test_generated_code_imports_without_warnings_on_protobuf_7() -> None:
    env = {**os.environ, "PYTHONPATH": os.environ["KFPGRPC_PROTOBUF7_PATH"]}
    result = subprocess.run([sys.executable, "-W", "error", "-c", IMPORT_ALL], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("7.")
