"""The web UI's server side (docs/ui.md): its static files under `/ui/`, `/` sending browsers
there, and the login that turns the bearer token into a cookie, since a browser cannot put an
Authorization header on an EventSource.

    GET  /                 -> 307 to /ui/
    GET  /ui/...           the single-page app (kfpgrpc/web/static/, hash routing: no fallback)
    GET  /ui/login         the login form (served without a token)
    POST /ui/login         form `token` -> 303 to /ui/ with the cookie set; a wrong token: 401, the form
                           (login.js puts the opened link's fragment on the form's action, and
                           the browser keeps it through the 303: the user lands where they were)
    POST /ui/logout        -> 303 to /ui/login with the cookie cleared
    GET  /ui/session.json  {"auth": bool}: whether the server asks for a token (the app shows "Log out")
"""

from __future__ import annotations

import base64
import hmac
import html
from pathlib import Path
from urllib.parse import parse_qs

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kfpgrpc.http.errors import answers_errors
from kfpgrpc.http.messages import read_body

STATIC = Path(__file__).resolve().parent.parent / "web" / "static"
COOKIE = "kfpgrpc_token"
LOGIN = "/ui/login"
# What a browser without the token may fetch: the login form, the style sheet it uses and its
# script (login.js: keeps the link opened, its fragment, through the login).
OPEN_PAGES = frozenset({LOGIN, "/ui/style.css", "/ui/login.js"})
# A login form's body: a token and a button, far below this.
MAX_LOGIN_BYTES = 16 * 1024


# On every UI response: the browser itself refuses anything from elsewhere (scripts, styles,
# images, connections), inline scripts, and framing by other sites (clickjacking).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class SecureHeaders:
    """`app` with SECURITY_HEADERS added to its responses."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self._app(scope, receive, with_headers)


def cookie_value(token: str) -> str:
    """The cookie that stands for `token`: its URL-safe base64, since a token may hold
    characters a cookie cannot (`;`, `,`, spaces)."""
    return base64.urlsafe_b64encode(token.encode()).decode()


def same_origin(scope: Scope) -> bool:
    """Whether a browser says the request comes from a page of this server: `Sec-Fetch-Site:
    same-origin`, or an `Origin` equal to scheme://Host. A request saying neither is refused
    by the caller (a cookie-only state change): every current browser sends one of them."""
    headers = Headers(scope=scope)
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site == "same-origin"
    origin = headers.get("origin")
    return origin is not None and origin == f"{scope['scheme']}://{headers.get('host', '')}"


def login_page(error: str = "", status_code: int = 200) -> HTMLResponse:
    """The login form, posting to /ui/login; `error` is shown above it."""
    message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    page = HTMLResponse(
        f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>kfpgrpc · log in</title><link rel="stylesheet" href="/ui/style.css"><script type="module" src="/ui/login.js"></script></head>
<body class="login"><main class="login-box"><h1>kfpgrpc</h1>{message}
<form method="post" action="{LOGIN}"><label>Token <input type="password" name="token" autocomplete="current-password" required autofocus></label>
<button type="submit">Log in</button></form>
<p class="hint">The server's bearer token (<code>--auth-token</code> or <code>--auth-token-file</code>).</p></main></body></html>
""",
        status_code=status_code,
    )
    page.headers.update(SECURITY_HEADERS)
    return page


class UiRoutes:
    """The UI's routes; `token` is the server's bearer token ("" when it has none)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.root, methods=["GET", "HEAD"]),
            Route(LOGIN, self.login_form, methods=["GET", "HEAD"]),
            Route(LOGIN, answers_errors(self.login), methods=["POST"]),
            Route("/ui/logout", self.logout, methods=["POST"]),
            Route("/ui/session.json", self.session, methods=["GET"]),
            Mount("/ui", SecureHeaders(StaticFiles(directory=STATIC, html=True))),
        ]

    async def root(self, request: Request) -> Response:
        return RedirectResponse("/ui/", status_code=307)

    async def login_form(self, request: Request) -> Response:
        return login_page()

    async def login(self, request: Request) -> Response:
        if not self._token:
            return RedirectResponse("/ui/", status_code=303)
        if not same_origin(request.scope):
            return login_page("Log in from this server's own page.", 403)
        form = parse_qs((await read_body(request, MAX_LOGIN_BYTES)).decode("utf-8", "replace"))
        presented = (form.get("token") or [""])[0]
        if not hmac.compare_digest(presented.encode(), self._token.encode()):
            return login_page("Wrong token.", 401)
        response = RedirectResponse("/ui/", status_code=303)
        response.set_cookie(
            COOKIE, cookie_value(self._token), path="/", httponly=True, samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(self, request: Request) -> Response:
        response = RedirectResponse(LOGIN, status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return response

    async def session(self, request: Request) -> Response:
        return JSONResponse({"auth": bool(self._token)})
