"""A real `chroma run` server on 127.0.0.1 over a folder (tests of STUDIO_CHROMA_URL, bench/scale.py --server)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CHROMA = Path(sys.executable).with_name("chroma")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ChromaServer:
    """start() waits for the heartbeat; stop(kill=True) is a crash; restart() is a fresh process (indexes not
    in memory) over the same files and the same port, so a client's URL stays valid."""

    def __init__(self, path: Path, port: int | None = None) -> None:
        self.path = Path(path)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: Any = None

    def start(self, timeout: float = 60.0) -> "ChromaServer":
        import httpx

        self.path.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([str(CHROMA), "run", "--path", str(self.path), "--host", "127.0.0.1", "--port",
                                      str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/api/v2/heartbeat", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop(kill=True)
        raise RuntimeError(f"chroma run over {self.path} did not answer within {timeout:.0f} s")

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        self.proc.kill() if kill else self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> "ChromaServer":
        self.stop()
        return self.start()
