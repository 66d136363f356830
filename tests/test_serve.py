"""End to end against a real OpenAI-compatible server: ``transformers serve`` on 127.0.0.1 serving
the embedded SmolLM2 from its converted folder, called through the official openai client by
:class:`instructlab.llm.OpenAIChat`, driven by :func:`instructlab.build.build_dataset`.

SmolLM2-135M is a weak teacher: the test checks the plumbing (request, answer, parsing, rejects,
cache), not the quality of the examples. The server is stopped by its PID in the fixture teardown.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import openai
import pytest

from instructlab.build import build_dataset
from instructlab.llm import OpenAIChat
from instructlab.runs import read_jsonl
from servers import free_port, wait_for_http

pytestmark = [pytest.mark.real_model, pytest.mark.slow]

SECRET = "sk-serve-test-NOT-TO-BE-STORED-41c2"
DOC = """# Maintenance windows

## Standard window

The standard maintenance window (MW) is Saturday 22:00 to Sunday 04:00 UTC. Every change request (CR)
scheduled in the MW needs approval by the Change Advisory Board (CAB).

## Emergency changes

An emergency change (ECR) outside the MW needs approval by the emergency CAB (ECAB).
"""


def _stop(proc: subprocess.Popen) -> None:
    """SIGINT (clean uvicorn shutdown), then kill if it does not exit within 15 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from instructlab.models import resolve_model_path

    model_dir = resolve_model_path("smollm2-135m-instruct")  # the converted HF folder
    port, tmp = free_port(), tmp_path_factory.mktemp("serve")
    (tmp / "hf_hub").mkdir()
    log = tmp / "serve.log"
    # One thread: on a small shared CPU box, torch's worker threads spin against each other
    # (measured: 1.2 s/token with the default, 0.28 s/token with OMP_NUM_THREADS=1 under load).
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp / "hf_hub"), "OMP_NUM_THREADS": "1"}
    exe = Path(sys.executable).with_name("transformers")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "transformers.cli.transformers"]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd + ["serve", model_dir, "--host", "127.0.0.1", "--port", str(port),
                                       "--device", "cpu"], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", proc, log, 240, "transformers serve")
        yield SimpleNamespace(base_url=f"http://127.0.0.1:{port}/v1", model=model_dir, proc=proc, log=log)
    finally:
        _stop(proc)
    assert proc.poll() is not None, f"transformers serve (pid {proc.pid}) is still running"


class Counting:
    """Wraps a backend and counts the requests it makes."""

    def __init__(self, backend):
        self.backend, self.calls = backend, 0

    def settings(self):
        return self.backend.settings()

    def complete(self, messages):
        self.calls += 1
        return self.backend.complete(messages)


def test_wrong_model_name_is_a_4xx_and_not_retried(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    start = time.monotonic()
    with pytest.raises(openai.BadRequestError):
        OpenAIChat(server.base_url, "not-the-served-model", max_retries=4, backoff=2.0).complete(
            [{"role": "user", "content": "Hello"}])
    assert time.monotonic() - start < 2.0, "a 4xx must fail at once, without backoff"


def test_build_dataset_through_transformers_serve(server, tmp_path, monkeypatch):
    from instructlab.models import load_tokenizer

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)  # the server ignores it; it must still never be written
    doc = tmp_path / "maintenance.md"
    doc.write_text(DOC)
    teacher = Counting(OpenAIChat(server.base_url, server.model, max_tokens=120, timeout=300, max_retries=1))
    out = tmp_path / "build"
    kwargs = dict(examples_per_chunk=2, max_chunks=1, max_chunk_tokens=400, tokenizer=load_tokenizer(server.model),
                  concurrency=1, progress=False)
    report = build_dataset([doc], teacher, out, **kwargs)

    c = report.counts
    assert teacher.calls == 1 and c["requests"] == 1 and c["request_errors"] == 0, read_jsonl(out / "rejects.jsonl")
    answer = read_jsonl(out / "responses.jsonl")[0]
    assert isinstance(answer["text"], str) and answer["text"].strip() and answer["error"] is None
    # Nothing is dropped silently: every parsed item is either kept, a duplicate, or a schema reject.
    rejects = read_jsonl(out / "rejects.jsonl")
    assert c["items_parsed"] == c["schema_rejects"] + c["final"] + c["exact_duplicates"] + c["near_duplicates"]
    if c["items_parsed"] == 0 or c["parse_failures"]:
        parse = [r for r in rejects if r["stage"] == "parse"]
        assert len(parse) == 1 and parse[0]["raw"] == answer["text"]
    assert len(read_jsonl(out / "train.jsonl")) == len(read_jsonl(out / "train_alpaca.jsonl")) == c["final"]
    assert json.loads((out / "report.json").read_text())["teacher"]["model"] == server.model

    again = Counting(OpenAIChat(server.base_url, server.model, max_tokens=120, timeout=300, max_retries=1))
    report2 = build_dataset([doc], again, out, **kwargs)
    assert again.calls == 0 and report2.counts["cached"] == 1 and report2.counts["requests"] == 0
    assert report2.counts["final"] == c["final"]

    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), f"API key written to {path}"
