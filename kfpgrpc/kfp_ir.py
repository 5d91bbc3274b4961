"""`pipeline_spec_pb2`, KFP's IR protos, from the kfp-pipeline-spec distribution alone.

`from kfp.pipeline_spec import pipeline_spec_pb2` first runs the package `kfp/__init__.py`,
which, when the kfp SDK is installed too (as it often is next to a server: users compile
there), imports the SDK's client and with it the Kubernetes client: about 1,700 modules,
60 MiB and 1.5 s of start-up, for a server that only needs the IR's message classes. So the
module is loaded from its file under a private name when the SDK is not imported already;
the protobuf descriptor pool holds each message type once, so its classes are the very ones
`kfp.pipeline_spec.pipeline_spec_pb2` has if the SDK is imported later in the same process.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
from types import ModuleType

_NAME = "kfp.pipeline_spec.pipeline_spec_pb2"


def _load() -> ModuleType:
    if _NAME in sys.modules:
        return sys.modules[_NAME]
    try:
        files = importlib.metadata.distribution("kfp-pipeline-spec").files or []
        path = next(f for f in files if f.as_posix().endswith("kfp/pipeline_spec/pipeline_spec_pb2.py"))
        spec = importlib.util.spec_from_file_location("kfpgrpc._pipeline_spec_pb2", path.locate())
    except (importlib.metadata.PackageNotFoundError, StopIteration):
        spec = None
    if spec is None or spec.loader is None:  # installed some other way: the plain import
        return importlib.import_module(_NAME)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pipeline_spec_pb2 = _load()
