"""LoginGate: with a password set, every request but the login page's own needs the login cookie (Gradio
itself leaves /gradio_api/cancel, /reset, /heartbeat, /stream and more open), and wrong passwords are
rate-limited per client: a few free tries, then a wait that doubles with each further miss."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any, Awaitable, Callable

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]

FREE_TRIES = 5  # wrong passwords before the first wait
FIRST_WAIT_S = 2.0
MAX_WAIT_S = 300.0
# What the login page needs before anyone has logged in; Gradio answers /config with 401 (its login form).
PUBLIC = frozenset({"/", "/login", "/login/", "/logout", "/config", "/config/", "/favicon.ico", "/theme.css",
                    "/robots.txt", "/manifest.json", "/gradio_api/login_check", "/gradio_api/login_check/",
                    "/gradio_api/theme.css", "/gradio_api/app_id", "/gradio_api/app_id/",
                    "/gradio_api/startup-events"})  # launch() calls it itself; it runs startup once
PUBLIC_PREFIXES = ("/assets/", "/static/", "/svelte/", "/pwa_icon")


@dataclass
class _Misses:
    count: int = 0
    until: float = 0.0  # monotonic time before which this client may not try again


class LoginGate:
    """ASGI middleware for Gradio's App (scope["app"] holds its tokens and cookie id). Without a password
    configured on the app it lets everything through."""

    def __init__(self, app: ASGIApp, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.clock = clock
        self._misses: dict[str, _Misses] = {}
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        gradio_app = scope.get("app")
        if scope["type"] not in ("http", "websocket") or getattr(gradio_app, "auth", None) is None:
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if path in ("/login", "/login/") and scope.get("method") == "POST":
            return await self._login(scope, receive, send)
        if path in PUBLIC or path.startswith(PUBLIC_PREFIXES) or self._logged_in(scope, gradio_app):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        await _json(send, 401, {"detail": "Not authenticated: log in first."})

    @staticmethod
    def _logged_in(scope: Scope, gradio_app: Any) -> bool:
        cookies = SimpleCookie()
        for name, value in scope.get("headers", []):
            if name == b"cookie":
                try:
                    cookies.load(value.decode("latin-1"))
                except Exception:  # a malformed cookie header is no login
                    return False
        cid = getattr(gradio_app, "cookie_id", "")
        tokens = getattr(gradio_app, "tokens", {})
        return any((m := cookies.get(f"{prefix}{cid}")) is not None and m.value in tokens
                   for prefix in ("access-token-", "access-token-unsecure-"))

    async def _login(self, scope: Scope, receive: Callable, send: Callable) -> None:
        client = (scope.get("client") or ("?", 0))[0]
        now = self.clock()
        with self._lock:
            misses = self._misses.setdefault(client, _Misses())
            wait = misses.until - now
        if wait > 0:
            return await _json(send, 429, {"detail": f"Too many wrong passwords: wait {wait:.0f} s and try again."},
                               [(b"retry-after", str(int(wait) + 1).encode())])
        status: list[int] = []

        async def watch(message: dict) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, receive, watch)
        with self._lock:
            if status and status[0] < 300:
                self._misses.pop(client, None)
            elif status and status[0] in (400, 401, 403):
                misses.count += 1
                if misses.count >= FREE_TRIES:
                    misses.until = self.clock() + min(MAX_WAIT_S, FIRST_WAIT_S * 2 ** (misses.count - FREE_TRIES))


async def _json(send: Callable, status: int, body: dict, headers: list | None = None) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": data})
