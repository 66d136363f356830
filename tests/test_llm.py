"""Chat backends: retries (5xx / timeouts yes, 4xx no), the response cache, resume, concurrency,
and the API key never leaving the environment. HTTP behaviour is tested against a small local
fake OpenAI-compatible server, called through the official openai client."""

from __future__ import annotations

import json
import pickle
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest

from instructlab.llm import (Completion, LocalChat, MissingAPIKeyError, OpenAIChat, ResponseCache, cache_key,
                             complete_many, is_transient, retry_call)

SECRET = "sk-test-DO-NOT-STORE-7f3a9c"


class FakeOpenAIServer:
    """A scripted /v1/chat/completions endpoint: each request pops the next (status, delay, body)."""

    def __init__(self, script):
        self.script = list(script)
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"auth": self.headers.get("Authorization"), "body": body})
                status, delay, text = server.script.pop(0) if server.script else (200, 0, "ok")
                time.sleep(delay)
                if status == 200:
                    payload = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": text}}]}
                else:
                    payload = {"error": {"message": text, "type": "test", "code": status}}
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class FakeBackend:
    """Counts calls; ``fail_on(i, messages)`` may raise to simulate failures."""

    def __init__(self, fail_on=None, delay=0.0):
        self.calls = 0
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        self.fail_on, self.delay = fail_on, delay

    def settings(self):
        return {"backend": "fake", "model": "echo", "temperature": 0.0, "timeout": 5}

    def complete(self, messages):
        with self.lock:
            self.calls += 1
            n = self.calls
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.delay)
            if self.fail_on:
                self.fail_on(n, messages)
            return "echo: " + messages[-1]["content"]
        finally:
            with self.lock:
                self.in_flight -= 1


def prompts(n):
    return [[{"role": "user", "content": f"prompt {i}"}] for i in range(n)]


@pytest.fixture
def key_env(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)


# ------------------------------------------------------------------ retries over HTTP

def test_retries_5xx_then_succeeds(key_env):
    with FakeOpenAIServer([(503, 0, "busy"), (500, 0, "oops"), (200, 0, "hello")]) as srv:
        chat = OpenAIChat(srv.url, "m", backoff=0.01)
        assert chat.complete([{"role": "user", "content": "hi"}]) == "hello"
        assert len(srv.requests) == 3
        assert srv.requests[0]["auth"] == f"Bearer {SECRET}"  # the key is used, read from the environment


def test_no_retry_on_4xx(key_env):
    with FakeOpenAIServer([(400, 0, "Server is pinned to another model"), (200, 0, "never")]) as srv:
        chat = OpenAIChat(srv.url, "m", backoff=0.01)
        with pytest.raises(openai.BadRequestError):
            chat.complete([{"role": "user", "content": "hi"}])
        assert len(srv.requests) == 1


def test_retries_exhausted_raise_last_error(key_env):
    with FakeOpenAIServer([(502, 0, "bad gateway")] * 5) as srv:
        chat = OpenAIChat(srv.url, "m", max_retries=2, backoff=0.01)
        with pytest.raises(openai.InternalServerError):
            chat.complete([{"role": "user", "content": "hi"}])
        assert len(srv.requests) == 3  # 1 try + 2 retries


def test_timeout_is_retried(key_env):
    with FakeOpenAIServer([(200, 1.5, "late"), (200, 0, "on time")]) as srv:
        chat = OpenAIChat(srv.url, "m", timeout=0.5, backoff=0.01)
        assert chat.complete([{"role": "user", "content": "hi"}]) == "on time"
        assert len(srv.requests) == 2


def test_backoff_doubles_and_classification():
    delays, attempts = [], []

    def flaky():
        attempts.append(1)
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError):
        retry_call(flaky, max_retries=3, backoff=0.5, sleep=delays.append)
    assert len(attempts) == 4
    assert [round(d / b, 1) <= 1.1 and d >= b for d, b in zip(delays, [0.5, 1.0, 2.0])] == [True] * 3
    assert not is_transient(ValueError("x"))
    assert is_transient(TimeoutError())

    class Status(Exception):
        def __init__(self, code):
            self.status_code = code

    assert is_transient(Status(503)) and is_transient(Status(429))
    assert not is_transient(Status(404)) and not is_transient(Status(401))


# ------------------------------------------------------------------ the API key

def test_api_key_never_stored(key_env, tmp_path):
    with FakeOpenAIServer([(200, 0, "fine")] * 3) as srv:
        chat = OpenAIChat(srv.url, "m", backoff=0.01)
        cache = ResponseCache(tmp_path / "cache.jsonl")
        res = complete_many(chat, prompts(3), cache=cache, progress=False)
        assert [r.text for r in res] == ["fine"] * 3
        assert all(r["auth"] == f"Bearer {SECRET}" for r in srv.requests)
    blob = pickle.dumps(chat) + repr(chat).encode() + json.dumps(chat.settings()).encode()
    assert SECRET.encode() not in blob
    assert all(SECRET not in str(v) for v in vars(chat).values())
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), f"API key written to {path}"


def test_key_echoed_in_error_is_masked(key_env):
    with FakeOpenAIServer([(401, 0, f"Incorrect API key provided: {SECRET}")]) as srv:
        res = complete_many(OpenAIChat(srv.url, "m", backoff=0.01), prompts(1), progress=False)
    assert res[0].error and "***" in res[0].error and SECRET not in res[0].error


def test_missing_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("MY_TEACHER_KEY", raising=False)
    chat = OpenAIChat("http://127.0.0.1:9/v1", "m", api_key_env="MY_TEACHER_KEY")
    with pytest.raises(MissingAPIKeyError, match="MY_TEACHER_KEY"):
        chat.complete([{"role": "user", "content": "hi"}])
    res = complete_many(chat, prompts(2), progress=False)  # recorded, not raised
    assert all(r.text is None and "MissingAPIKeyError" in r.error for r in res)


def test_settings_hide_credentials_in_url():
    chat = OpenAIChat("https://user:pa55@example.org:8443/v1", "m")
    assert "pa55" not in json.dumps(chat.settings()) and "pa55" not in repr(chat)
    assert chat.settings()["base_url"] == "https://example.org:8443/v1"


# ------------------------------------------------------------------ cache, resume, concurrency

def test_cache_hit_on_rerun(tmp_path):
    backend = FakeBackend()
    cache = ResponseCache(tmp_path / "c.jsonl")
    first = complete_many(backend, prompts(5), cache=cache, progress=False)
    assert backend.calls == 5 and not any(r.cached for r in first)
    second = complete_many(backend, prompts(5), cache=ResponseCache(tmp_path / "c.jsonl"), progress=False)
    assert backend.calls == 5, "a re-run must not call the backend"
    assert all(r.cached for r in second) and [r.text for r in second] == [r.text for r in first]


def test_cache_key_depends_on_prompt_and_answer_settings_only():
    msgs = prompts(1)[0]
    base = {"backend": "openai", "model": "a", "temperature": 0.0, "timeout": 60, "max_retries": 4}
    assert cache_key(msgs, base) == cache_key(msgs, {**base, "timeout": 5, "max_retries": 0})
    assert cache_key(msgs, base) != cache_key(msgs, {**base, "temperature": 0.7})
    assert cache_key(msgs, base) != cache_key(prompts(2)[1], base)


def test_failures_are_recorded_and_retried_next_run(tmp_path):
    def fail_some(n, messages):
        if messages[-1]["content"] in ("prompt 1", "prompt 3"):
            raise RuntimeError("teacher fell over")

    cache = ResponseCache(tmp_path / "c.jsonl")
    res = complete_many(FakeBackend(fail_some), prompts(5), cache=cache, concurrency=2, progress=False)
    assert [r.ok for r in res] == [True, False, True, False, True]
    assert res[1].error == "RuntimeError: teacher fell over"
    healthy = FakeBackend()
    res2 = complete_many(healthy, prompts(5), cache=ResponseCache(tmp_path / "c.jsonl"), progress=False)
    assert healthy.calls == 2 and all(r.ok for r in res2)
    assert [r.cached for r in res2] == [True, False, True, False, True]


def test_resume_after_interruption(tmp_path):
    def interrupt(n, messages):
        if n == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        complete_many(FakeBackend(interrupt), prompts(8), cache=ResponseCache(tmp_path / "c.jsonl"),
                      concurrency=1, progress=False)
    cache = ResponseCache(tmp_path / "c.jsonl")
    assert len(cache) == 3
    resumed = FakeBackend()
    res = complete_many(resumed, prompts(8), cache=cache, concurrency=1, progress=False)
    assert resumed.calls == 5 and all(r.ok for r in res)
    assert [r.text for r in res] == [f"echo: prompt {i}" for i in range(8)]


def test_torn_cache_line_is_skipped(tmp_path):
    path = tmp_path / "c.jsonl"
    cache = ResponseCache(path)
    cache.put("k1", "one")
    with path.open("a") as f:
        f.write('{"key": "k2", "text": "tw')  # the process died mid-write
    again = ResponseCache(path)
    assert again.get("k1") == "one" and "k2" not in again and again.skipped_lines == 1


def test_order_kept_and_concurrency_bounded():
    backend = FakeBackend(delay=0.02)
    res = complete_many(backend, prompts(12), concurrency=3, progress=False)
    assert [r.text for r in res] == [f"echo: prompt {i}" for i in range(12)]
    assert 1 < backend.max_in_flight <= 3
    assert isinstance(res[0], Completion)


def test_local_chat_tiny_random():
    chat = LocalChat("tiny-random", max_new_tokens=4)
    text = chat.complete([{"role": "user", "content": "Hello"}])
    assert isinstance(text, str)
    settings = {k: v for k, v in chat.settings().items() if k != "dtype"}  # dtype: tests/test_precision.py
    assert settings == {"backend": "local", "model": "tiny-random", "adapter": None,
                        "max_new_tokens": 4, "do_sample": False}
    res = complete_many(chat, prompts(2), concurrency=4, progress=False)
    assert all(r.ok for r in res)
