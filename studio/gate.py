"""LoginGate: with a password set, every request but the login page's own needs the login cookie (Gradio
itself leaves /gradio_api/cancel, /reset, /heartbeat, /stream and more open), and wrong passwords are
rate-limited per client: a few free tries, then a wait that doubles with each further miss. The client is the
socket's peer; a proxy's X-Forwarded-For names it only for the proxies the user trusts (trust_forwarded_from)."""

from __future__ import annotations

import ipaddress
import json
import os
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
FORWARDED_ENV = "STUDIO_FORWARDED_ALLOW_IPS"


def trust_forwarded_from(proxies: str) -> str:
    """Trust X-Forwarded-For only from these proxies (comma-separated addresses or networks; "" none), for the
    whole server: uvicorn, which Gradio starts, rewrites a request's client from that header when the socket's
    peer is in its FORWARDED_ALLOW_IPS, and by default it trusts 127.0.0.1, so any local client (or one behind
    a local tunnel) could name a new address on every try and never be rate-limited. Call before launch()."""
    names = [p.strip() for p in proxies.split(",") if p.strip()]
    for name in names:
        try:
            ipaddress.ip_network(name, strict=False)
        except ValueError:
            raise SystemExit(f"{FORWARDED_ENV} / --forwarded-allow-ips: {name!r} is not an IP address or network. "
                             "Name your reverse proxy's address as the studio sees it (e.g. 127.0.0.1 or "
                             "10.0.0.0/8), comma-separated; leave it empty when nothing proxies the studio.") from None
    os.environ["FORWARDED_ALLOW_IPS"] = ",".join(names)  # "": uvicorn trusts no proxy; client = the socket's peer
    return ",".join(names)


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
        # The socket's peer: uvicorn sets it from X-Forwarded-For only for trust_forwarded_from's proxies.
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
