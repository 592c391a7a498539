"""Served beyond this machine with a password: every endpoint needs the login (Gradio's own /cancel,
/reset and /heartbeat included), wrong passwords are rate-limited, and the Library reads server paths only
under STUDIO_HOME, models/ and data/. The real launch.py on 0.0.0.0, called over HTTP and gradio_client."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterator

import httpx
import pytest

from studio.gate import FREE_TRIES
from tests.appserver import serve, stop
from tests.conftest import SAMPLE

USER, PASSWORD = "artist", "correct horse battery staple"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path) -> Iterator[str]:
    base = tmp_path_factory.mktemp("guarded")
    proc, url = serve(base / "home", str(tiny_clip_dir), base / "models", args=("--host", "0.0.0.0", "--no-sample"),
                      env_extra={"STUDIO_AUTH": f"{USER}:{PASSWORD}"})
    yield url
    stop(proc)


def test_every_endpoint_needs_the_login(guarded: str):
    open_paths = {"gradio_api/cancel": {"session_hash": "x", "fn_index": 0, "event_id": "y"},
                  "gradio_api/reset": {"session_hash": "x", "fn_index": 0, "event_id": "y"},
                  "gradio_api/queue/join": {}, "gradio_api/upload": None}
    for path, body in open_paths.items():
        response = httpx.post(guarded + path, json=body, timeout=10)
        assert response.status_code == 401, (path, response.status_code, response.text[:200])
    for path in ("gradio_api/heartbeat/x", "gradio_api/info", "monitoring/x",
                 "gradio_api/file=/etc/passwd"):
        assert httpx.get(guarded + path, timeout=10).status_code == 401, path
    page = httpx.get(guarded, timeout=10)
    assert page.status_code == 200  # the login page itself


def test_wrong_passwords_are_rate_limited_then_the_right_one_gets_in(guarded: str):
    codes = []
    started = time.perf_counter()
    for _ in range(20):
        codes.append(httpx.post(guarded + "login", data={"username": USER, "password": "guess"}, timeout=10).status_code)
    # On a loaded machine a guess can take longer than a short wait, so a later miss may be tried (and
    # doubles the wait): the free tries, then a refusal at once, then refusals nearly always.
    assert codes[:FREE_TRIES] == [400] * FREE_TRIES and codes[FREE_TRIES] == 429, codes
    assert codes.count(429) >= 12, codes
    locked = httpx.post(guarded + "login", data={"username": USER, "password": PASSWORD}, timeout=10)
    assert locked.status_code == 429 and "wait" in locked.json()["detail"]  # a lock holds for the right one too
    time.sleep(int(locked.headers["retry-after"]))
    with httpx.Client(base_url=guarded, timeout=10) as client:
        assert client.post("login", data={"username": USER, "password": PASSWORD}).status_code == 200
        assert client.get("gradio_api/info").status_code == 200
        assert client.post("gradio_api/cancel", json={"session_hash": "x", "fn_index": 0, "event_id": "y"}
                           ).status_code != 401
    assert time.perf_counter() - started > 1.5  # 20 guesses could not go through in 0.5 s


def test_the_library_reads_server_paths_only_in_our_folders(guarded: str, tmp_path: Path):
    from gradio_client import Client

    client = Client(guarded, auth=(USER, PASSWORD), verbose=False)
    outside = tmp_path / "elsewhere.csv"
    outside.write_text("prompt\na secret prompt from another folder\n")
    with pytest.raises(Exception, match="reads server files only under"):
        client.predict(str(outside), None, 0, api_name="/ingest")
    with pytest.raises(Exception, match="reads server files only under"):
        client.predict(str(SAMPLE / ".." / ".." / "README.md"), None, 0, api_name="/ingest")
    message = client.predict(str(SAMPLE / "metadata-fullparams-promptsdvis-first99.csv"), None, 5,
                             api_name="/ingest")[0]
    assert "5 rows" in message


def test_an_artist_logs_in_through_the_page(guarded: str):
    """The login page renders through the gate and, once logged in, the studio's tabs load."""
    from playwright.sync_api import expect, sync_playwright

    from tests.appserver import ARTIFACTS, browser, needs_chromium

    if needs_chromium.args[0]:
        pytest.skip(needs_chromium.kwargs["reason"])
    time.sleep(3)  # a lock left by the rate-limit test above has run out
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = browser(p)
        page = b.new_page(viewport={"width": 1366, "height": 900})
        failed: list[str] = []
        page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 500 else None)
        page.goto(guarded)
        page.get_by_label("username").fill(USER)
        page.get_by_label("password").fill(PASSWORD)
        page.screenshot(path=str(ARTIFACTS / "gate-login.png"))
        page.get_by_role("button", name="Login").click()
        expect(page.locator("#explore-idea")).to_be_visible(timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "gate-after-login.png"))
        b.close()
    assert not failed, failed


def guesses(url: str, n: int, forwarded_for: Callable[[int], str]) -> list[int]:
    """n wrong passwords, each with the X-Forwarded-For header forwarded_for(i) gives."""
    return [httpx.post(url + "login", data={"username": USER, "password": "guess"},
                       headers={"X-Forwarded-For": forwarded_for(i)}, timeout=10).status_code for i in range(n)]


def test_a_new_forwarded_for_on_each_try_does_not_escape_the_limit(tmp_path: Path, tiny_clip_dir: Path):
    """The limit keys on the socket's peer: a client naming a new X-Forwarded-For address on every try (uvicorn
    trusted it from 127.0.0.1 by default) is refused after the free tries, and so is the right password."""
    proc, url = serve(tmp_path / "home", str(tiny_clip_dir), tmp_path / "models", args=("--host", "0.0.0.0", "--no-sample"),
                      env_extra={"STUDIO_AUTH": f"{USER}:{PASSWORD}", "STUDIO_FORWARDED_ALLOW_IPS": "",
                                 "FORWARDED_ALLOW_IPS": "127.0.0.1"})  # uvicorn's own setting does not reopen it
    try:
        codes = guesses(url, 40, lambda i: f"203.0.113.{i + 1}")
        assert codes[:FREE_TRIES] == [400] * FREE_TRIES and codes[FREE_TRIES] == 429, codes
        # Each wait doubles (2, 4, 8 s ...): however slow this machine, few tries get past it (before: all 40).
        assert codes.count(400) <= FREE_TRIES + 5, codes
        # A wait long enough that the right password surely falls inside it, whatever the load: it is refused too.
        while True:
            last = httpx.post(url + "login", data={"username": USER, "password": "guess"}, timeout=10)
            if last.status_code == 429 and int(last.headers["retry-after"]) >= 30:
                break
            time.sleep(0.5 if last.status_code == 429 else 0)
        right = httpx.post(url + "login", data={"username": USER, "password": PASSWORD},
                           headers={"X-Forwarded-For": "198.51.100.1"}, timeout=10)
        assert right.status_code == 429, right.status_code
    finally:
        stop(proc)


def test_a_named_proxy_is_trusted_to_say_who_the_client_is(tmp_path: Path, tiny_clip_dir: Path):
    """--forwarded-allow-ips 127.0.0.1 (a reverse proxy on this machine): each client it names has its own
    count, so one client's misses lock that client and not the next."""
    proc, url = serve(tmp_path / "home", str(tiny_clip_dir), tmp_path / "models",
                      args=("--host", "0.0.0.0", "--no-sample", "--forwarded-allow-ips", "127.0.0.1"),
                      env_extra={"STUDIO_AUTH": f"{USER}:{PASSWORD}"})
    try:
        codes = guesses(url, FREE_TRIES + 1, lambda i: "203.0.113.9")
        assert codes[-1] == 429, codes
        assert guesses(url, 1, lambda i: "203.0.113.10") == [400]  # another client behind the proxy: free tries
        with httpx.Client(base_url=url, timeout=10, headers={"X-Forwarded-For": "203.0.113.11"}) as client:
            assert client.post("login", data={"username": USER, "password": PASSWORD}).status_code == 200
    finally:
        stop(proc)


def test_a_forwarded_allow_ips_that_is_no_address_says_what_to_write():
    from studio.gate import trust_forwarded_from

    with pytest.raises(SystemExit, match="not an IP address or network.*reverse proxy"):
        trust_forwarded_from("my-proxy.local")
