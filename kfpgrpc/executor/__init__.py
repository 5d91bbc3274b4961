"""Running pipelines: the orchestrator (control flow, the driver's rules) and the launchers that
run container tasks (`local`: subprocesses of this machine)."""

from kfpgrpc.executor.base import (
    ArtifactOutput,
    RunContext,
    RunObserver,
    RunOutcome,
    TaskResult,
    TaskState,
    TaskUpdate,
)
from kfpgrpc.executor.local import LocalLauncher
from kfpgrpc.executor.orchestrator import (
    CachedExecution,
    ExecutionCache,
    Orchestrator,
    unsupported_features,
)

__all__ = [
    "ArtifactOutput",
    "CachedExecution",
    "ExecutionCache",
    "LocalLauncher",
    "Orchestrator",
    "RunContext",
    "RunObserver",
    "RunOutcome",
    "TaskResult",
    "TaskState",
    "TaskUpdate",
    "unsupported_features",
]
