"""The API contract's tooling: buf lint, reproducible generated code and reference, protobuf 6 and 7."""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import kfpgrpc.v1

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


def test_the_reference_has_every_rpc_of_every_service_with_its_messages() -> None:
    """docs/reference.md is checked fresh above; this checks that its rendering leaves nothing out."""
    reference = (REPO / "docs" / "reference.md").read_text()
    names = [m.name for m in pkgutil.iter_modules(kfpgrpc.v1.__path__) if m.name.endswith("_pb2")]
    services = [s for n in names for s in importlib.import_module(f"kfpgrpc.v1.{n}").DESCRIPTOR.services_by_name.values()]
    assert len(services) >= 5
    for service in services:
        assert f"\n### {service.name}\n" in reference, service.name
        section = reference.split(f"\n### {service.name}\n", 1)[1].split("\n### ", 1)[0]
        for method in service.methods:
            assert f"\n#### {method.name}\n" in section, method.full_name
            rpc = section.split(f"\n#### {method.name}\n", 1)[1].split("\n#### ", 1)[0]
            for message in (method.input_type, method.output_type):
                assert message.full_name.removeprefix("kfpgrpc.v1.") in rpc, (method.full_name, message.full_name)


def test_every_link_of_the_reference_leads_to_a_heading() -> None:
    reference = (REPO / "docs" / "reference.md").read_text()
    # GitHub's heading anchors: lower case, punctuation other than - and _ dropped, spaces as hyphens.
    anchors = [re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", reference, re.M)]
    assert len(anchors) == len(set(anchors)), "GitHub numbers repeated anchors, so links would reach the first only"
    targets = set(re.findall(r"\]\(#([^)]+)\)", reference))
    assert targets and targets <= set(anchors), targets - set(anchors)


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
    assert result.stdout.startswith("6."), "the test environment (kfp 2.17) runs protobuf 6"


@pytest.mark.skipif(not os.environ.get("KFPGRPC_PROTOBUF7_PATH"), reason="set KFPGRPC_PROTOBUF7_PATH to a `pip install --target` of protobuf 7 (.ci/run does)")
def test_generated_code_imports_without_warnings_on_protobuf_7() -> None:
    env = {**os.environ, "PYTHONPATH": os.environ["KFPGRPC_PROTOBUF7_PATH"]}
    result = subprocess.run([sys.executable, "-W", "error", "-c", IMPORT_ALL], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("7.")
