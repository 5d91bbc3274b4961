"""The kfp SDK versions that compile the control-flow tests' pipelines, and whose kfp.Client
drives the REST API (tests/test_http_sdks.py runs tests/kfp_client_session.py with `python`).

The issue asks for pipelines "compiled by 2.16 and 2.17". The test environment has one kfp (the
`test` extra's); every other version lives in an interpreter of its own, listed in the environment
variable KFPGRPC_TEST_KFP_PYTHONS (paths separated by os.pathsep; .ci/run sets it to a kfp 2.16
venv). A test that takes the `kfp_sdk` fixture runs once per SDK, with ids such as `kfp-2.17.3`;
without the variable the other versions are one skipped case that says how to enable them.

An extra interpreter compiles a pipeline module in a subprocess that imports the module's file
alone, so such a module may import only the standard library and kfp (+ kfp-kubernetes).
"""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kfp
import pytest

from kfpgrpc.client.messages import load_pipeline_spec

PYTHONS_VARIABLE = "KFPGRPC_TEST_KFP_PYTHONS"
SKIP_REASON = (
    f"kfp versions other than this environment's kfp {kfp.__version__} are not tested: set "
    f"{PYTHONS_VARIABLE} to interpreters that have them (.ci/run sets it to a kfp 2.16 venv, .ci-kfp216/)"
)

# Run by an extra interpreter: argv = module file, output directory. Writes <pipeline name>.yaml.
_COMPILE = """
import importlib.util, sys
from kfp import compiler
path, out = sys.argv[1], sys.argv[2]
spec = importlib.util.spec_from_file_location("compiled_module", path)
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
for pipeline in module.PIPELINES:
    compiler.Compiler().compile(pipeline, f"{out}/{pipeline.name}.yaml")
"""

# The spec of a pipeline as our API receives it: the bare PipelineSpec, or the
# {"pipeline_spec", "platform_spec"} pair when the SDK wrote a platform document.
Spec = dict[str, Any]


@dataclass(frozen=True)
class KfpSdk:
    """One kfp version: `python` None = this interpreter's kfp (compiled in-process)."""

    version: str
    python: str | None = None

    @property
    def id(self) -> str:
        return f"kfp-{self.version}"

    def compile_module(self, module: Any, out: Path) -> dict[str, Spec]:
        """Every pipeline of `module.PIPELINES`, compiled to YAML in `out` by this SDK and read back,
        by pipeline name. An SDK that refuses a pipeline fails the test with the SDK's error."""
        out.mkdir(parents=True, exist_ok=True)
        if self.python is None:
            from kfp import compiler

            for pipeline in module.PIPELINES:
                compiler.Compiler().compile(pipeline, str(out / f"{pipeline.name}.yaml"))
        else:
            compiled = subprocess.run(
                [self.python, "-c", _COMPILE, module.__file__, str(out)], capture_output=True, text=True, timeout=300
            )
            assert compiled.returncode == 0, f"kfp {self.version} ({self.python}) cannot compile {module.__file__}:\n{compiled.stderr}"
        return {pipeline.name: load_pipeline_spec(out / f"{pipeline.name}.yaml") for pipeline in module.PIPELINES}


@functools.cache
def extra_sdks() -> tuple[KfpSdk, ...]:
    """The SDKs of the interpreters in KFPGRPC_TEST_KFP_PYTHONS (each asked for its kfp version)."""
    found = []
    for python in filter(None, os.environ.get(PYTHONS_VARIABLE, "").split(os.pathsep)):
        asked = subprocess.run(
            [python, "-c", "import kfp; print(kfp.__version__)"], capture_output=True, text=True, timeout=120
        )
        if asked.returncode != 0:
            raise pytest.UsageError(f"{PYTHONS_VARIABLE}: {python} cannot import kfp: {asked.stderr.strip()}")
        found.append(KfpSdk(asked.stdout.strip(), python))
    return tuple(found)


def sdk_params() -> list[Any]:
    """pytest params for the `kfp_sdk` fixture: this environment's kfp, then the extra ones (or a
    skipped placeholder when none are configured)."""
    here = KfpSdk(kfp.__version__)
    params = [pytest.param(here, id=here.id)]
    extras = extra_sdks()
    if not extras:
        return [*params, pytest.param(None, id="kfp-other", marks=pytest.mark.skip(reason=SKIP_REASON))]
    return [*params, *(pytest.param(sdk, id=sdk.id) for sdk in extras if sdk.version != here.version)]


class CompiledModules:
    """Pipeline modules compiled once per SDK for the whole session."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._compiled: dict[tuple[str, KfpSdk], dict[str, Spec]] = {}

    def get(self, module: Any, sdk: KfpSdk) -> dict[str, Spec]:
        key = (module.__name__, sdk)
        if key not in self._compiled:
            self._compiled[key] = sdk.compile_module(module, Path(tempfile.mkdtemp(dir=self._root, prefix=sdk.id)))
        return self._compiled[key]
