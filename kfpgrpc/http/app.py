"""The ASGI application of KFP's REST API (Starlette): routes, bearer token, healthz."""

from __future__ import annotations

import hmac

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from kfpgrpc.config import ServerConfig
from kfpgrpc.core.events import Events
from kfpgrpc.core.experiments import Experiments
from kfpgrpc.core.pipelines import Pipelines
from kfpgrpc.core.recurring import RecurringRuns
from kfpgrpc.core.runs import Runs
from kfpgrpc.errors import Unauthenticated
from kfpgrpc.http.errors import error_response, handle_http_exception
from kfpgrpc.http.events import EventRoutes
from kfpgrpc.http.experiments import ExperimentRoutes
from kfpgrpc.http.pipelines import PipelineRoutes
from kfpgrpc.http.recurring_runs import RecurringRunRoutes
from kfpgrpc.http.runs import RunRoutes

HEALTHZ = "/apis/v2beta1/healthz"


async def healthz(request: Request) -> Response:
    """KFP's GetHealthzResponse: `{"multi_user": false}` (kfpgrpc has no namespaces). It answers
    while the HTTP server runs, as KFP's does; the store's health is gRPC's health check.
    kfp.Client calls it when it is constructed."""
    return JSONResponse({"multi_user": False})


class BearerToken:
    """Requires `Authorization: Bearer <token>` on every path but healthz (open like gRPC's
    health check, and kfp.Client retries it for 25 s when refused). A request without it is
    answered UNAUTHENTICATED (401) from its headers: its body is never read."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self._app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != HEALTHZ:
            presented = Headers(scope=scope).get("authorization", "")
            if not hmac.compare_digest(presented.encode(), self._expected):
                await error_response(Unauthenticated("missing or invalid bearer token"))(scope, receive, send)
                return
        await self._app(scope, receive, send)


def build_app(
    config: ServerConfig, experiments: Experiments, pipelines: Pipelines, runs: Runs, recurring_runs: RecurringRuns,
    events: Events,
) -> ASGIApp:
    app = Starlette(
        routes=[
            Route(HEALTHZ, healthz, methods=["GET"]),
            *ExperimentRoutes(experiments, config.max_message_bytes).routes(),
            *PipelineRoutes(pipelines, config.max_message_bytes, config.max_spec_bytes).routes(),
            *RunRoutes(runs, config.max_message_bytes, config.max_spec_bytes).routes(),
            *RecurringRunRoutes(recurring_runs, config.max_message_bytes, config.max_spec_bytes).routes(),
            *EventRoutes(events).routes(),
        ],
        exception_handlers={HTTPException: handle_http_exception},
    )
    return BearerToken(app, config.auth_token) if config.auth_token else app
