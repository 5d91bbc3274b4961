"""Pipeline executors: the interface (`base`) and the `local` subprocess executor."""

from kfpgrpc.executor.base import (
    ArtifactOutput,
    Executor,
    RunObserver,
    RunOutcome,
    TaskResult,
    TaskState,
    TaskUpdate,
)
from kfpgrpc.executor.local import LocalExecutor, unsupported_features

__all__ = [
    "ArtifactOutput",
    "Executor",
    "LocalExecutor",
    "RunObserver",
    "RunOutcome",
    "TaskResult",
    "TaskState",
    "TaskUpdate",
    "unsupported_features",
]
