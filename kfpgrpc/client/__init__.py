"""Python client of kfpgrpc: `Client` (blocking) and `AsyncClient` (asyncio), the same API.

    from kfpgrpc.client import Client, kfp_filter

    with Client() as client:                         # $KFPGRPC_SERVER or 127.0.0.1:8887
        version = client.upload_pipeline("pipeline.yaml", name="add-numbers")
        run = client.create_run("add-numbers", {"a": 5})
        print(client.wait_for_run(run.run_id).state)

Every failure raises KfpGrpcError (`.code`, `.message`, `.field_violations`). See docs/client.md.
"""

from kfpgrpc.client.aio import AsyncClient
from kfpgrpc.client.errors import KfpGrpcError, ServerUnreachable
from kfpgrpc.client.messages import RecurringRunChanges, RecurringRunOptions, kfp_filter
from kfpgrpc.client.plans import TERMINAL_STATES
from kfpgrpc.client.steps import ReconnectPolicy
from kfpgrpc.client.sync import Client

__all__ = [
    "AsyncClient",
    "Client",
    "KfpGrpcError",
    "ReconnectPolicy",
    "RecurringRunChanges",
    "RecurringRunOptions",
    "ServerUnreachable",
    "TERMINAL_STATES",
    "kfp_filter",
]
