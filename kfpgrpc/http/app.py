"""The ASGI application of KFP's REST API (Starlette): routes, bearer token, healthz, and the
web UI (kfpgrpc/http/ui.py)."""

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
from kfpgrpc.errors import PermissionDenied, Unauthenticated
from kfpgrpc.http import ui
from kfpgrpc.http.errors import error_response, handle_http_exception
from kfpgrpc.http.events import EventRoutes
from kfpgrpc.http.experiments import ExperimentRoutes
from kfpgrpc.http.pipelines import PipelineRoutes
from kfpgrpc.http.recurring_runs import RecurringRunRoutes
from kfpgrpc.http.runs import RunRoutes

API_PREFIX = "/apis/"
HEALTHZ = "/apis/v2beta1/healthz"


async def healthz(request: Request) -> Response:
    """KFP's GetHealthzResponse: `{"multi_user": false}` (kfpgrpc has no namespaces). It answers
    while the HTTP server runs, as KFP's does; the store's health is gRPC's health check.
    kfp.Client calls it when it is constructed."""
    return JSONResponse({"multi_user": False})


class BearerToken:
    """Requires the bearer token on every path but healthz (open like gRPC's health check, and
    kfp.Client retries it for 25 s when refused) and the UI's login form: `Authorization: Bearer
    <token>`, or the UI's cookie holding it (kfpgrpc/http/ui.py; a browser cannot set headers on
    an EventSource). A request that changes state (not GET/HEAD) with the cookie only must come
    from this server's own pages (CSRF): otherwise PERMISSION_DENIED (403). A request without
    either is answered from its headers, its body never read: UNAUTHENTICATED (401 JSON) under
    /apis/, the login form (HTML) elsewhere, so a browser opening the UI can log in."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self._app = app
        self._expected = f"Bearer {token}".encode()
        self._cookie = ui.cookie_value(token).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != HEALTHZ and scope["path"] not in ui.OPEN_PAGES:
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self._app(scope, receive, send)

    def _refusal(self, scope: Scope) -> Response | None:
        """The answer to a request that may not pass, or None."""
        headers = Headers(scope=scope)
        if hmac.compare_digest(headers.get("authorization", "").encode(), self._expected):
            return None
        cookie = Request(scope).cookies.get(ui.COOKIE, "")
        if hmac.compare_digest(cookie.encode(), self._cookie):
            if scope["method"] in ("GET", "HEAD") or ui.same_origin(scope):
                return None
            return error_response(PermissionDenied("a cross-origin request authenticated by the UI's cookie is refused"))
        if scope["path"].startswith(API_PREFIX):
            return error_response(Unauthenticated("missing or invalid bearer token"))
        return ui.login_page(status_code=401)


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
            *ui.UiRoutes(config.auth_token).routes(),
        ],
        exception_handlers={HTTPException: handle_http_exception},
    )
    return BearerToken(app, config.auth_token) if config.auth_token else app
