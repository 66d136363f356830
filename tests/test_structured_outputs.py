"""Structured outputs (issue 14): the teacher and the LLM judges ask for ``response_format`` with a JSON
schema built from pydantic models when the server supports it, fall back to prose + the scanner when it
refuses it (HTTP 400), record which path was used, and never repair a truncated structured reply.
Against a local OpenAI-compatible stub on 127.0.0.1."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler

import pytest

from instructlab import build
from instructlab.judge import PairwiseJudge, ToneJudge
from instructlab.llm import OpenAIChat, ResponseCache, cache_key, complete_many
from instructlab.runs import read_jsonl
from servers import LoopbackStub, chat_completion, send_json

ID = re.compile(r"ZQID(\d+)")


def _item(k: int) -> dict:
    return {"task_type": "question", "input": "",
            "instruction": f"What does handbook section {k} say about change request CR-{k}?",
            "output": f"Dear colleague,\n\nSection {k} sets out how change request CR-{k} is approved "
                      f"and logged (see KB-{1000 + k}).\n\nKind regards,\nKestrel Service Desk"}


class Stub(LoopbackStub):
    """``/v1/chat/completions``; ``mode``: "accept" (honours response_format), "reject" (400 on any request
    with response_format, as servers without structured outputs do) or "ignore" (never looks at it).
    ``truncate``: prompt numbers whose structured reply is cut off mid-item. Records every request body."""

    def __init__(self, mode: str, truncate: frozenset = frozenset()):
        self.mode, self.truncate = mode, truncate
        self.bodies: list[dict] = []
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    stub.bodies.append(body)
                send_json(self, *stub.answer(body))

        self._serve(Handler)

    def answer(self, body):
        fmt = body.get("response_format")
        text = body["messages"][-1]["content"]
        if fmt and self.mode == "reject":
            return 400, {"error": {"message": "response_format is not supported by this server",
                                   "type": "invalid_request_error", "code": 400}}
        structured = bool(fmt) and self.mode == "accept"
        name = fmt["json_schema"]["name"] if structured else None
        if "<answer_a>" in text:  # pairwise judge
            return 200, chat_completion(json.dumps({"reasoning": "A is formal.", "winner": "A"}) if structured
                                    else "A is formal.\nWinner: A")
        if "<answer>" in text:    # tone judge
            return 200, chat_completion(json.dumps({"reasoning": "Formal.", "score": 4}) if structured
                                    else "Formal.\nScore: 4")
        k = int(ID.search(text).group(1))
        if structured:
            assert name == "teacher_examples"
            reply = json.dumps({"examples": [_item(k)]})
            if k in self.truncate:
                return 200, chat_completion(reply[:len(reply) // 2], finish="length")
            return 200, chat_completion(reply)
        if self.mode == "ignore":  # what a local model writes when nothing constrains it
            return 200, chat_completion("Here are the examples:\n```json\n" + json.dumps([_item(k)]) + "\n```")
        return 200, chat_completion(json.dumps([_item(k)]))

    def structured_requests(self) -> int:
        return sum("response_format" in b for b in self.bodies)


def _docs(tmp_path, n: int):
    folder = tmp_path / "docs"
    folder.mkdir()
    sections = [f"## Section ZQID{k}\n\nNotes on topic {k}: the change request CR-{k} is logged." for k in range(n)]
    (folder / "doc.md").write_text("# Handbook\n\n" + "\n\n".join(sections) + "\n")
    return folder


def _build(docs, teacher, out, **kw):
    return build.build_dataset(docs, teacher, out, examples_per_chunk=1, max_chunk_tokens=30, plots=False,
                               progress=False, dedup_threshold=None, **kw)


def _chat(stub, **kw):
    return OpenAIChat(stub.url, "m", api_key_env=None, **{"backoff": 0.01, "timeout": 5, "max_retries": 1, **kw})


def _chunk_number(out):
    return {c["id"]: int(ID.search(c["text"]).group(1)) for c in read_jsonl(out / "chunks.jsonl")}


# ------------------------------------------------------------------ the teacher

def test_a_server_with_structured_outputs_gets_the_schema_and_the_run_records_it(tmp_path):
    out = tmp_path / "out"
    with Stub("accept") as stub:
        report = _build(_docs(tmp_path, 6), _chat(stub), out)
        assert len(stub.bodies) == 6 and stub.structured_requests() == 6
        fmt = stub.bodies[0]["response_format"]
        assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
        schema = fmt["json_schema"]["schema"]
        assert schema == build.TeacherReply.model_json_schema() and schema["additionalProperties"] is False
        item_schema = schema["$defs"]["TeacherItem"]
        assert set(item_schema["required"]) == {"task_type", "instruction", "input", "output"}
        assert report.counts["final"] == 6 and report.counts["parse_failures"] == 0
        assert report.output_path == "json_schema" and report.output_paths == {"json_schema": 6}
        assert report.structured_fallback is None
        saved = json.loads((out / "report.json").read_text())
        assert saved["output_path"] == "json_schema" and saved["output_paths"] == {"json_schema": 6}
        assert {r["output_path"] for r in read_jsonl(out / "responses.jsonl")} == {"json_schema"}
        # a re-run answers from the cache and still knows the answers were structured
        stub.bodies.clear()
        again = _build(tmp_path / "docs", _chat(stub), out)
    assert stub.bodies == [] and again.counts["cached"] == 6 and again.output_paths == {"json_schema": 6}


def test_a_server_that_refuses_response_format_falls_back_to_the_scanner_and_the_run_records_it(tmp_path):
    out = tmp_path / "out"
    with Stub("reject") as stub:
        teacher = _chat(stub)
        report = _build(_docs(tmp_path, 6), teacher, out, concurrency=1)
    # asked once with the schema, refused, then every prompt in prose: nothing lost
    assert stub.structured_requests() == 1 and len(stub.bodies) == 7
    assert report.counts["final"] == 6 and report.counts["request_errors"] == 0
    assert report.output_path == "scanner" and report.output_paths == {"scanner": 6}
    assert "BadRequestError" in report.structured_fallback and "response_format" in report.structured_fallback
    saved = json.loads((out / "report.json").read_text())
    assert saved["output_path"] == "scanner" and saved["structured_fallback"] == report.structured_fallback
    assert {r["output_path"] for r in read_jsonl(out / "responses.jsonl")} == {"scanner"}


def test_a_server_that_ignores_response_format_is_read_by_the_scanner_and_recorded(tmp_path):
    # transformers serve accepts the field and ignores it: prose comes back, not JSON of the schema
    out = tmp_path / "out"
    with Stub("ignore") as stub:
        report = _build(_docs(tmp_path, 4), _chat(stub), out)
    assert stub.structured_requests() == 4 and report.counts["response_format_ignored"] == 4
    assert report.counts["final"] == 4 and report.output_path == "scanner" and report.output_paths == {"scanner": 4}
    assert {r["output_path"] for r in read_jsonl(out / "responses.jsonl")} == {"scanner"}


def test_structured_on_does_not_fall_back_and_off_never_sends_the_schema(tmp_path):
    with Stub("reject") as stub:
        report = _build(_docs(tmp_path, 3), _chat(stub, structured="on"), tmp_path / "on", cache=None)
    assert report.counts["request_errors"] == 3 and report.counts["final"] == 0
    assert all(r["reason"].startswith("BadRequestError") for r in read_jsonl(tmp_path / "on" / "rejects.jsonl"))
    with Stub("accept") as stub:
        report = _build(tmp_path / "docs", _chat(stub, structured="off"), tmp_path / "off", cache=None)
    assert stub.structured_requests() == 0 and report.output_path == "scanner" and report.counts["final"] == 3
    with pytest.raises(ValueError, match="structured"):
        OpenAIChat("http://127.0.0.1:9/v1", "m", structured="yes")


def test_a_truncated_structured_reply_is_a_reported_reject_never_repaired(tmp_path):
    out = tmp_path / "out"
    with Stub("accept", truncate=frozenset({2})) as stub:
        report = _build(_docs(tmp_path, 5), _chat(stub), out)
    assert stub.structured_requests() == 5
    assert report.counts["final"] == 4 and report.counts["parse_failures"] == 1
    assert report.counts["response_format_ignored"] == 0
    rejects = read_jsonl(out / "rejects.jsonl")
    assert len(rejects) == 1 and rejects[0]["stage"] == "parse" and rejects[0]["output_path"] == "json_schema"
    assert _chunk_number(out)[rejects[0]["chunk"]] == 2
    assert "structured reply invalid (truncated)" in rejects[0]["reason"]
    assert "CR-2" not in " ".join(r["messages"][-1]["content"] for r in read_jsonl(out / "train.jsonl"))
    # the scanner would have found nothing either, and pydantic does not close the item
    parsed = build.parse_structured_output(rejects[0]["raw"])
    assert parsed.items == [] and parsed.truncated and parsed.lost


def test_a_structured_reply_that_fails_the_schema_is_a_reject_with_its_reason():
    bad = json.dumps({"examples": [{"task_type": "question", "instruction": "x", "output": "y y y"}]})
    parsed = build.parse_structured_output(bad)
    assert parsed.items == [] and parsed.lost and not parsed.truncated
    assert "missing" in parsed.problems[0] and "examples.0.input" in parsed.problems[0]
    ok = build.parse_structured_output(json.dumps([_item(1)]))  # a bare array of items is accepted
    assert ok.items == [_item(1)] and not ok.lost


# ------------------------------------------------------------------ the cache key

def test_the_cache_key_includes_the_response_format(tmp_path):
    msgs, settings = [{"role": "user", "content": "hi ZQID1"}], OpenAIChat("http://127.0.0.1:9/v1", "m").settings()
    fmt = build.teacher_response_format()
    assert cache_key(msgs, settings) != cache_key(msgs, settings, fmt)
    assert cache_key(msgs, settings, fmt) != cache_key(msgs, settings, {**fmt, "json_schema": {
        **fmt["json_schema"], "name": "other"}})
    cache = ResponseCache(tmp_path / "c.jsonl")
    with Stub("accept") as stub:
        settings = _chat(stub).settings()
        plain = complete_many(_chat(stub), [msgs], cache=cache, progress=False)
        structured = complete_many(_chat(stub), [msgs], cache=cache, progress=False, response_format=fmt)
    # the prose answer in the cache is not served to a structured request: both were asked
    assert len(stub.bodies) == 2 and not structured[0].cached
    assert plain[0].output_path == "scanner" and structured[0].output_path == "json_schema"
    rows = read_jsonl(tmp_path / "c.jsonl")
    assert [r["output_path"] for r in rows] == ["scanner", "json_schema"]
    reloaded = ResponseCache(tmp_path / "c.jsonl")
    assert reloaded.output_path(cache_key(msgs, settings, fmt)) == "json_schema"


# ------------------------------------------------------------------ the judges

def test_the_judges_use_structured_outputs_and_record_the_path():
    with Stub("accept") as stub:
        res = ToneJudge(_chat(stub)).score(["Where is KB-1?"] * 2, ["Dear colleague, ...", "hi"])
        pair = PairwiseJudge(_chat(stub)).compare(["q"], ["a a"], ["b"])
    assert res.scores == [4, 4] and res.output_paths == ["json_schema"] * 2
    assert res.summary()["output_paths"] == {"json_schema": 2}
    assert pair.outcomes == ["tie"] and pair.summary()["output_paths"] == {"json_schema": 2}  # A first, then B
    names = {b["response_format"]["json_schema"]["name"] for b in stub.bodies}
    assert names == {"tone_verdict", "pairwise_verdict"}
    tone = next(b for b in stub.bodies if b["response_format"]["json_schema"]["name"] == "tone_verdict")
    assert tone["response_format"]["json_schema"]["schema"]["properties"]["score"]["maximum"] == 5


def test_the_judges_fall_back_to_the_prose_parser_when_the_server_refuses():
    with Stub("reject") as stub:
        judge = ToneJudge(_chat(stub), concurrency=1)
        res = judge.score(["q1", "q2", "q3"], ["a", "b", "c"])
    assert res.scores == [4, 4, 4] and res.output_paths == ["scanner"] * 3
    assert res.summary()["output_paths"] == {"scanner": 3} and stub.structured_requests() == 1
    assert judge.backend.structured_fallback.startswith("BadRequestError")


def test_a_judge_whose_server_ignores_response_format_reads_the_prose_verdict():
    with Stub("ignore") as stub:
        res = ToneJudge(_chat(stub)).score(["q1", "q2"], ["a", "b"])
    assert stub.structured_requests() == 2 and res.scores == [4, 4] and res.output_paths == ["scanner"] * 2


def test_an_invalid_structured_verdict_is_a_counted_failure_not_a_score():
    from instructlab.judge import parse_structured_preference, parse_structured_score

    assert parse_structured_score('{"reasoning": "x", "score": 4}') == 4
    assert parse_structured_score('{"reasoning": "x", "score": 7}') is None
    assert parse_structured_score('{"reasoning": "x", "sco') is None
    assert parse_structured_preference('{"reasoning": "x", "winner": "B"}') == "B"
    assert parse_structured_preference('{"reasoning": "x", "winner": "C"}') is None
