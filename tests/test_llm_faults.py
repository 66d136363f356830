"""The teacher under faults (issues 12 and 14), against a local OpenAI-compatible stub on 127.0.0.1:
429 with Retry-After / retry-after-ms, 500 and 503, hangs, truncated JSON, empty bodies, empty answers,
replies that are not chat completions, a missing API key, and a 220-prompt build with bounded
concurrency that is interrupted and resumed from its cache. Every request loop here is bounded."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest

from instructlab import build
from instructlab.llm import (BadResponseError, MissingAPIKeyError, OpenAIChat, ResponseCache, complete_many,
                             retry_after)
from instructlab.runs import read_jsonl
from servers import LoopbackStub, chat_completion, send_json

SECRET = "sk-fault-test-NEVER-ON-DISK-93be1"
KEY_ENV = "KIT_FAULT_TEST_KEY"
ID = re.compile(r"ZQID(\d+)")        # the prompt's number, in the document excerpt
ANSWER_ID = re.compile(r"CR-(\d+)")  # the same number, in the teacher's answer


def teacher_answer(k: int) -> str:
    """A valid teacher reply (one house-style item) unique to prompt ``k``."""
    return json.dumps([{"task_type": "question", "input": "",
                        "instruction": f"What does handbook section {k} say about change request CR-{k}?",
                        "output": f"Dear colleague,\n\nSection {k} sets out how change request CR-{k} is approved "
                                  f"and logged (see KB-{1000 + k}).\n\nKind regards,\nKestrel Service Desk"}])


class StubTeacher(LoopbackStub):
    """A /v1/chat/completions endpoint whose reply depends on the prompt's ZQID number and on how many
    times that prompt was asked: ``plan(k, attempt) -> fault``. Records every request with its time."""

    def __init__(self, plan, hang_s: float = 1.0):
        self.plan, self.hang_s = plan, hang_s
        self.lock = threading.Lock()
        self.attempts: dict[int, list[tuple[float, str]]] = {}
        self.auth: set[str] = set()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                found = ID.search(body.decode("utf-8"))
                k = int(found.group(1)) if found else -1
                with stub.lock:
                    tries = stub.attempts.setdefault(k, [])
                    fault = stub.plan(k, len(tries))
                    tries.append((time.monotonic(), fault))
                    stub.auth.add(self.headers.get("Authorization", ""))
                stub.reply(self, k, fault)

        self._serve(Handler)

    def reply(self, h, k, fault):
        headers, status = {}, 200
        if fault == "ok":
            data = json.dumps(chat_completion(teacher_answer(k))).encode()
        elif fault in ("429", "429ms"):
            status, data = 429, b'{"error": {"message": "rate limited", "code": 429}}'
            headers = {"Retry-After": "1"} if fault == "429" else {"retry-after-ms": "300"}
        elif fault in ("500", "503"):
            status, data = int(fault), b'{"error": {"message": "server error", "code": 500}}'
        elif fault == "hang":
            time.sleep(self.hang_s)  # longer than the client's timeout: it gives up and retries
            data = json.dumps(chat_completion(teacher_answer(k))).encode()
        elif fault == "truncated":
            data = json.dumps(chat_completion(teacher_answer(k))).encode()[:70]
        elif fault == "empty_body":
            data = b""
        elif fault == "empty_answer":
            data = json.dumps(chat_completion("")).encode()
        elif fault == "not_chat":
            data = b'{"object": "list", "data": []}'
        elif fault == "echo_key":
            status = 400
            data = json.dumps({"error": {"message": f"bad key {h.headers.get('Authorization')}"}}).encode()
        else:
            raise AssertionError(fault)
        send_json(h, status, data, headers)  # a client that timed out first is not an error


def _chat(stub, **kw):
    return OpenAIChat(stub.url, "m", api_key_env=KEY_ENV, **{"backoff": 0.01, "timeout": 5, **kw})


def _ask(k):
    return [{"role": "user", "content": f"prompt ZQID{k}"}]


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)


# ------------------------------------------------------------------ Retry-After (issue 14)

@pytest.mark.parametrize("fault, asked", [("429", 1.0), ("429ms", 0.3)])
def test_retry_after_from_a_429_is_honoured(fault, asked):
    with StubTeacher(lambda k, n: fault if n == 0 else "ok") as stub:
        text = _chat(stub, backoff=0.01).complete(_ask(1))  # own backoff alone would wait ~0.01 s
    (t0, _), (t1, _) = stub.attempts[1]
    assert "CR-1" in text and t1 - t0 >= asked * 0.95, (t1 - t0, asked)


def test_retry_after_header_forms():
    class Err(Exception):
        def __init__(self, headers):
            self.response = type("R", (), {"headers": headers})()

    assert retry_after(Err({"retry-after-ms": "250"})) == 0.25
    assert retry_after(Err({"retry-after": "3"})) == 3.0
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 < retry_after(Err({"retry-after": date})) <= 31
    assert retry_after(Err({})) is None and retry_after(ValueError()) is None


# ------------------------------------------------------------------ replies that are not answers

def test_an_empty_answer_is_retried_and_never_cached_as_a_success(tmp_path):
    cache = ResponseCache(tmp_path / "cache.jsonl")
    with StubTeacher(lambda k, n: "empty_answer") as stub:
        res = complete_many(_chat(stub, max_retries=2), [_ask(1)], cache=cache, progress=False)
    assert res[0].text is None and "BadResponseError: empty answer" in res[0].error
    assert len(stub.attempts[1]) == 3 and len(cache) == 0
    with StubTeacher(lambda k, n: "ok") as stub:  # the next run asks again and gets the answer
        res = complete_many(_chat(stub), [_ask(1)], cache=ResponseCache(tmp_path / "cache.jsonl"), progress=False)
    assert res[0].ok and not res[0].cached and len(stub.attempts[1]) == 1


@pytest.mark.parametrize("fault", ["not_chat"])
def test_a_reply_that_is_not_a_chat_completion_is_recorded_with_a_clear_reason(fault):
    with StubTeacher(lambda k, n: fault) as stub:
        res = complete_many(_chat(stub), [_ask(1)], progress=False)
    assert res[0].error.startswith("BadResponseError: the reply is not a chat completion")
    assert "base_url" in res[0].error and len(stub.attempts[1]) == 1  # a wrong URL is not retried
    assert "TypeError" not in res[0].error and "AttributeError" not in res[0].error


@pytest.mark.parametrize("fault", ["truncated", "empty_body"])
def test_a_torn_reply_is_retried(fault):
    with StubTeacher(lambda k, n: fault if n < 2 else "ok") as stub:
        assert "CR-1" in _chat(stub).complete(_ask(1))
    assert [f for _, f in stub.attempts[1]] == [fault, fault, "ok"]


def test_a_torn_reply_that_stays_torn_is_named():
    with StubTeacher(lambda k, n: "truncated") as stub, pytest.raises(BadResponseError, match="not complete JSON"):
        _chat(stub, max_retries=1).complete(_ask(1))


# ------------------------------------------------------------------ the API key

def _docs(tmp_path, n: int, per_doc: int = 55):
    folder = tmp_path / "docs"
    folder.mkdir()
    for d in range(0, n, per_doc):
        sections = [f"## Section ZQID{k}\n\nNotes on topic {k}: the change request CR-{k} is logged."
                    for k in range(d, min(n, d + per_doc))]
        (folder / f"doc{d:03d}.md").write_text(f"# Handbook part {d}\n\n" + "\n\n".join(sections) + "\n")
    return folder


def _build(docs, teacher, out, **kw):
    return build.build_dataset(docs, teacher, out, examples_per_chunk=1, max_chunk_tokens=30, plots=False,
                               progress=False, dedup_threshold=None, **kw)


def test_a_missing_api_key_stops_the_build_before_any_request(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with StubTeacher(lambda k, n: "ok") as stub, pytest.raises(MissingAPIKeyError, match=KEY_ENV):
        _build(_docs(tmp_path, 6), _chat(stub), tmp_path / "out")
    assert stub.attempts == {}


def test_a_value_that_is_not_a_variable_name_is_refused_without_echo():
    pasted = "sk-live-4f9aPASTED+key/="
    for value in (pasted, "MY KEY", "1ABC", "TEACHER_VAR\n"):
        with pytest.raises(ValueError, match="NAME of an environment variable") as err:
            OpenAIChat("http://127.0.0.1:9/v1", "m", api_key_env=value)
        assert value.strip() not in str(err.value)
    OpenAIChat("http://127.0.0.1:9/v1", "m", api_key_env="MY_TEACHER_KEY_2")
    OpenAIChat("http://127.0.0.1:9/v1", "m", api_key_env=None)


def test_no_file_a_build_writes_holds_the_key(tmp_path):
    # The key is used (every request carries it), a server that echoes it in an error is masked, and no
    # file of the build (cache, responses, rejects, report, data) contains it.
    with StubTeacher(lambda k, n: "echo_key" if k == 3 else "ok") as stub:
        report = _build(_docs(tmp_path, 12), _chat(stub), tmp_path / "out")
    assert stub.auth == {f"Bearer {SECRET}"}
    assert report.counts["final"] == 11 and report.counts["request_errors"] == 1
    rejects = read_jsonl(tmp_path / "out" / "rejects.jsonl")
    assert "***" in rejects[0]["reason"]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) >= 8
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), f"API key written to {path}"


# ------------------------------------------------------------------ 220 prompts under faults, interrupted, resumed

N_PROMPTS, CONCURRENCY = 220, 4


def fault_plan(k: int, attempt: int) -> str:
    """Prompt k's reply on its attempt-th request: most fail once or twice in some way, then answer;
    a few always fail (they must end as rejects with their reason)."""
    if k % 50 == 7:
        return "503"                     # exhausts the retries
    if k % 50 == 17:
        return "not_chat"                # not retried: a wrong endpoint
    first = ["ok", "429ms", "500", "hang", "truncated", "empty_body", "empty_answer", "ok", "429", "ok"][k % 10]
    if k % 10 == 8 and k % 40 != 8:
        first = "429ms"                  # few 1-second Retry-After waits keep the test short
    if attempt == 0:
        return first
    return "500" if attempt == 1 and k % 3 == 0 and first != "ok" else "ok"


class CountingChat(OpenAIChat):
    """OpenAIChat that counts requests in flight and can simulate Ctrl-C after some answers."""

    def __init__(self, *a, interrupt_after=None, **kw):
        super().__init__(*a, **kw)
        self.interrupt_after, self.done, self.in_flight, self.max_in_flight = interrupt_after, 0, 0, 0
        self._count = threading.Lock()

    def complete(self, messages):
        with self._count:
            if self.interrupt_after is not None and self.done >= self.interrupt_after:
                raise KeyboardInterrupt
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return super().complete(messages)
        finally:
            with self._count:
                self.in_flight -= 1
                self.done += 1


def test_a_220_prompt_build_under_faults_loses_nothing_and_resumes_from_its_cache(tmp_path):
    docs, out = _docs(tmp_path, N_PROMPTS), tmp_path / "out"
    assert len(build.chunk_documents(sorted(docs.glob("*.md")), max_tokens=30)) == N_PROMPTS
    kw = dict(base_url=None, model="m", api_key_env=KEY_ENV, timeout=0.4, max_retries=3, backoff=0.01)
    with StubTeacher(fault_plan, hang_s=1.0) as stub:
        kw["base_url"] = stub.url
        first = CountingChat(**kw, interrupt_after=90)
        before = set(threading.enumerate())
        with pytest.raises(KeyboardInterrupt):
            _build(docs, first, out, concurrency=CONCURRENCY)
        # Requests already sent finish and are cached. The pool's workers write the cache after the
        # request returns, so wait for those threads to end, not for the requests alone (a race CI hit).
        for worker in set(threading.enumerate()) - before:
            if worker.name.startswith("ThreadPoolExecutor"):
                worker.join(timeout=10)
                assert not worker.is_alive(), f"{worker.name} still running 10 s after the interrupt"
        cached = ResponseCache(out / "teacher_cache.jsonl")
        answered_first = {int(ANSWER_ID.search(cached.get(k)).group(1)) for k in cached._data}
        requests_first = {k: len(v) for k, v in stub.attempts.items()}
        second = CountingChat(**kw)
        report = _build(docs, second, out, concurrency=CONCURRENCY)
    counts = report.counts
    always_fail = {k for k in range(N_PROMPTS) if k % 50 in (7, 17)}
    # 1. Resumed from the cache: no prompt answered before the interruption was asked again.
    assert 0 < len(answered_first) < N_PROMPTS and counts["cached"] == len(answered_first)
    assert all(len(stub.attempts[k]) == requests_first[k] for k in answered_first)
    assert counts["requests"] == N_PROMPTS - len(answered_first)
    # 2. Nothing lost: every prompt ends as a record or as a reject with its reason.
    records = read_jsonl(out / "train.jsonl")
    rejects = read_jsonl(out / "rejects.jsonl")
    by_record = {int(ANSWER_ID.search(r["messages"][-1]["content"]).group(1)) for r in records}
    chunk_id = {c["id"]: int(ID.search(c["text"]).group(1)) for c in read_jsonl(out / "chunks.jsonl")}
    by_reject = {chunk_id[r["chunk"]]: r["reason"] for r in rejects}
    assert by_record | set(by_reject) == set(range(N_PROMPTS)) and not by_record & set(by_reject)
    assert set(by_reject) == always_fail and all(by_reject.values())
    assert all(by_reject[k].startswith("InternalServerError") for k in always_fail if k % 50 == 7)
    assert all(by_reject[k].startswith("BadResponseError: the reply is not a chat completion")
               for k in always_fail if k % 50 == 17)
    # 3. Bounded concurrency; Retry-After waited for on every 429.
    assert max(first.max_in_flight, second.max_in_flight) <= CONCURRENCY
    waits = []
    for k, tries in stub.attempts.items():
        for (t0, fault), (t1, _) in zip(tries, tries[1:]):
            if fault.startswith("429"):
                waits.append((t1 - t0, 1.0 if fault == "429" else 0.3))
    assert waits and all(gap >= asked * 0.95 for gap, asked in waits), waits
    faults = sorted({f for tries in stub.attempts.values() for _, f in tries})
    summary = {"prompts": N_PROMPTS, "answered_before_interrupt": len(answered_first),
               "requests_after_resume": counts["requests"], "cached_on_resume": counts["cached"],
               "records": len(records), "rejects": len(rejects), "http_requests": sum(map(len, stub.attempts.values())),
               "retry_after_waits": len(waits), "max_in_flight": max(first.max_in_flight, second.max_in_flight),
               "faults_served": faults}
    print("fault build:", json.dumps(summary))
    assert summary["records"] == N_PROMPTS - len(always_fail) == counts["final"]
    assert set(faults) >= {"429", "429ms", "500", "503", "hang", "truncated", "empty_body", "empty_answer", "not_chat"}


@pytest.mark.notebook
def test_no_file_a_notebook_run_writes_holds_the_key(tmp_path):
    # Notebook 01 end to end (papermill, smoke profile) with the stub as teacher and the key in the
    # environment, named by teacher_api_key_env: grep every file the run wrote.
    from instructlab import pipeline

    run = tmp_path / "run"
    with StubTeacher(lambda k, n: "ok") as stub:
        pipeline.run_notebook("01", {"profile": "smoke", "teacher_base_url": stub.url, "teacher_model": "m",
                                     "teacher_api_key_env": KEY_ENV}, run)
    assert stub.auth == {f"Bearer {SECRET}"} and sum(map(len, stub.attempts.values())) == 2
    files = [p for p in run.rglob("*") if p.is_file()]
    assert any(p.name == "responses.jsonl" for p in files) and any(p.suffix == ".ipynb" for p in files)
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), f"API key written to {path}"
