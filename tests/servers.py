"""Helpers for tests that start a server: a real process (JupyterLab, transformers serve) or an in-process
OpenAI-compatible stub on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from http.server import ThreadingHTTPServer
import urllib.request
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, proc: subprocess.Popen, log: Path, timeout: float, name: str) -> None:
    """Poll ``url`` until it answers 200; raise with the server's log tail if it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{name}: no 200 from {url} after {timeout} s:\n{log.read_text()[-3000:]}")


def chat_completion(content: str, finish: str = "stop", model: str = "m") -> dict:
    """A minimal ``chat.completion`` response body with one assistant message."""
    return {"id": "x", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": content}}]}


class LoopbackStub:
    """An HTTP server on 127.0.0.1 (a free port) serving ``handler`` in threads, for ``with`` blocks.

    Subclasses build their request handler and call ``self._serve(Handler)``; ``url`` is the ``/v1`` base.
    """

    def _serve(self, handler) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def send_json(handler, status: int, data: bytes | dict, headers: dict | None = None) -> None:
    """Answer one request with ``data`` (bytes as they are, a dict as JSON); a client that already gave
    up (timed out) is not an error."""
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)
    except (BrokenPipeError, ConnectionResetError):
        pass
