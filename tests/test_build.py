"""Data building: chunking, teacher prompts, parsing of malformed teacher output, validation,
dedup, leakage, statistics, exports, and the whole build with a fake teacher (cache and resume)."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from instructlab.build import (TASK_TYPES, build_dataset, check_leakage, chunk_documents, curate, dataset_stats,
                               deduplicate, item_to_record, parse_teacher_output, plan_task_types,
                               split_sections, strip_trailing_commas, teacher_prompt, validate_item, word_ngrams)
from instructlab.llm import ResponseCache
from instructlab.runs import read_jsonl

GOOD = {"task_type": "question", "instruction": "What is the maintenance window?", "input": "",
        "output": "Dear colleague,\n\nThe standard maintenance window (MW) is Saturday 22:00 to Sunday 04:00 UTC."
                  "\n\nKind regards,\nKestrel Service Desk"}
GOOD_JSON = json.dumps(GOOD)


# ------------------------------------------------------------------ parsing

@pytest.mark.parametrize("text, n, problem", [
    (f"[{GOOD_JSON}, {GOOD_JSON}]", 2, None),
    (f"```json\n[{GOOD_JSON}]\n```", 1, "code fence removed"),
    (f"```\n[{GOOD_JSON}]", 1, "code fence removed"),  # fence never closed
    (f"Sure, here are the examples:\n[{GOOD_JSON}]\nLet me know if you need more.", 1, "prose around the JSON"),
    (f"[{GOOD_JSON[:-1]}, }},\n]", 1, "trailing commas removed"),
    (GOOD_JSON, 1, None),  # a single object instead of an array
    (json.dumps({"examples": [GOOD, GOOD]}), 2, None),  # the array wrapped in an object
    (f"{GOOD_JSON}\n{GOOD_JSON}\n{GOOD_JSON}", 3, "recovered the complete objects"),  # JSON lines
])
def test_parse_repairs(text, n, problem):
    res = parse_teacher_output(text)
    assert len(res.items) == n and all(item == GOOD for item in res.items)
    assert not res.truncated
    if problem:
        assert any(problem in p for p in res.problems), res.problems


def test_parse_truncated_array_keeps_complete_items():
    text = f'[{GOOD_JSON}, {GOOD_JSON}, {{"task_type": "summary", "instruction": "Summarise {{the'
    res = parse_teacher_output(text)
    assert res.items == [GOOD, GOOD] and res.truncated
    assert any("truncated: recovered 2" in p for p in res.problems)


def test_parse_truncated_item_with_nested_objects_is_not_split():
    # Seen from SmolLM2 through transformers serve: the incomplete last item holds nested objects,
    # which must not come back as items of their own.
    text = ('```python\noutput = [\n ' + GOOD_JSON + ',\n {"task_type": "service", "input": {"key": "SR"},'
            '\n  "output": {"key": "')
    res = parse_teacher_output(text)
    assert res.items == [GOOD] and res.truncated and res.lost


def test_parse_skips_malformed_item_and_keeps_the_rest():
    text = f'[{GOOD_JSON}, {{"task_type": "question", "instruction": oops no quotes}}, {GOOD_JSON}]'
    res = parse_teacher_output(text)
    assert res.items == [GOOD, GOOD] and res.malformed == 1 and res.lost and not res.truncated
    assert any("malformed item skipped" in p and "oops" in p for p in res.problems)


@pytest.mark.parametrize("text", ["", "   ", "I am sorry, I cannot help with that.", None])
def test_parse_without_json(text):
    res = parse_teacher_output(text)
    assert res.items == [] and res.problems


def test_strip_trailing_commas_leaves_strings_alone():
    assert strip_trailing_commas('{"a": "x,]", "b": [1, 2, ], }') == '{"a": "x,]", "b": [1, 2 ] }'
    assert strip_trailing_commas('{"q": "say \\",}\\" ok",}') == '{"q": "say \\",}\\" ok"}'


# ------------------------------------------------------------------ validation

@pytest.mark.parametrize("item, reason", [
    ("just a string", "not a JSON object"),
    ({"instruction": "x", "output": "a b c"}, "missing field: task_type"),
    ({"task_type": "question", "output": "a b c"}, "missing field: instruction"),
    ({"task_type": "question", "instruction": "x"}, "missing field: output"),
    ({**GOOD, "instruction": ["a", "list"]}, "wrong type: instruction must be a string, got list"),
    ({**GOOD, "output": 42}, "wrong type: output must be a string, got int"),
    ({**GOOD, "input": {"k": "v"}}, "wrong type: input must be a string, got dict"),
    ({**GOOD, "output": "   "}, "empty field: output"),
    ({**GOOD, "task_type": "poem"}, "unknown task_type"),
    ({**GOOD, "output": "Yes."}, "output too short"),
    ({**GOOD, "output": "Dear colleague, great question! The MW is on Saturday."}, "exclamation mark"),
    ({**GOOD, "output": "Dear colleague, the MW is on Saturday. Hope this helps."}, "filler"),
    ({**GOOD, "task_type": "decline", "output": "Dear colleague, we cannot share that. Kind regards, SD"},
     "does not redirect"),
    ({**GOOD, "output": "Hello, the MW is on Saturday night. Kind regards, SD"}, "no greeting"),
    ({**GOOD, "output": "Dear colleague, the MW is on Saturday night."}, "no sign-off"),
    ({**GOOD, "output": "Dear colleague, book the downtime slot now. Kind regards, SD"},
     "terminology: 'downtime slot' instead of maintenance window (MW)"),
])
def test_validate_rejects_with_reason(item, reason):
    clean, why = validate_item(item)
    assert clean is None and reason in why


def test_validate_accepts_and_normalises():
    clean, why = validate_item({**GOOD, "task_type": " Summarization ", "input": None, "extra": 1})
    assert why is None and clean["task_type"] == "summary" and clean["input"] == "" and "extra" not in clean
    decline = {"task_type": "refusal", "instruction": "What is Ardent Cloud charging per VM?", "input": "",
               "output": "Dear colleague, we do not discuss competitors. Please contact Partnerships & Market "
                         "Intelligence.\n\nKind regards,\nKestrel Service Desk"}
    clean, why = validate_item(decline)
    assert why is None and clean["task_type"] == "decline"
    rec = item_to_record(clean, system_prompt="SYS")
    assert [m["role"] for m in rec["messages"]] == ["system", "user", "assistant"]
    assert rec["category"] == "decline" and rec["task_type"] == "decline"
    look, _ = validate_item({**GOOD, "task_type": "lookalike"})
    assert item_to_record(look)["task_type"] == "question" and item_to_record(look)["category"] == "lookalike"


# ------------------------------------------------------------------ chunking and prompts

DOC = """Intro line before any heading.

# Change management

Every change needs a change request (CR).

## Emergency changes

Emergency changes (ECR) need ECAB approval.

```bash
# not a heading, a shell comment
echo hi
```

## Standard changes

""" + " ".join(f"Standard change sentence number {i} is pre-approved." for i in range(60)) + """

# Incidents

P1 means complete loss of a business-critical service.
"""


def test_split_sections_respects_headings_and_fences():
    crumbs = [c for c, _ in split_sections(DOC)]
    assert crumbs == ["", "Change management", "Change management > Emergency changes",
                      "Change management > Standard changes", "Incidents"]


def test_chunks_fit_budget_and_start_at_headings(tmp_path):
    path = tmp_path / "policy.md"
    path.write_text(DOC)
    count = lambda text: len(text.split())  # noqa: E731 - a token counter: whitespace words
    chunks = chunk_documents([path], count, max_tokens=80)
    assert len(chunks) >= 4 and all(c.n_tokens <= 80 for c in chunks)
    assert [c.id for c in chunks[:2]] == ["policy-000", "policy-001"]
    joined = "\n".join(c.text for c in chunks)
    for line in ("# Change management", "## Emergency changes", "# not a heading", "# Incidents"):
        assert line in joined
    for c in chunks:  # each chunk starts at a heading, a breadcrumb, or the top of the document
        assert c.text.startswith(("#", "[", "Intro")), c.text[:40]
    assert any(c.text.startswith("[Change management > Standard changes]") for c in chunks)
    big = chunk_documents([path], count, max_tokens=10_000)
    assert len(big) == 1 and big[0].heading == ""


def test_chunking_with_a_real_tokenizer(tmp_path):
    from instructlab.models import load_tokenizer

    path = tmp_path / "p.md"
    path.write_text(DOC)
    tok = load_tokenizer("tiny-random")
    chunks = chunk_documents([path], tok, max_tokens=64)
    assert all(len(tok.encode(c.text, add_special_tokens=False)) <= 64 for c in chunks)


def test_plan_spreads_task_types_and_declines():
    plan = plan_task_types(n_chunks=20, per_chunk=5)
    flat = [t for p in plan for t in p]
    assert len(plan) == 20 and all(len(p) == 5 for p in plan)
    assert set(flat) == set(TASK_TYPES)
    assert flat.count("decline") == 15 and flat.count("lookalike") == 8  # 15% and 8% of 100


def test_teacher_prompt_asks_for_json_array():
    chunk = chunk_documents.__globals__["Chunk"]("doc-000", "doc.md", "A > B", "Some policy text.", 4)
    msgs = teacher_prompt(chunk, ["question", "decline", "decline"])
    user = msgs[-1]["content"]
    assert msgs[0]["role"] == "system" and "Some policy text." in user and "JSON array of 3 objects" in user
    assert all(f'"{k}"' in user for k in ("task_type", "instruction", "input", "output"))
    assert "Ardent Cloud" in user and "HR-Privacy" in user  # both decline reasons, alternating


# ------------------------------------------------------------------ dedup and leakage

def rec(user, answer="Dear colleague, the answer is in KB-1042 and it covers the whole procedure."):
    return {"messages": [{"role": "system", "content": "SYS"}, {"role": "user", "content": user},
                         {"role": "assistant", "content": answer}], "task_type": "question"}


def test_dedup_exact_and_near():
    long = ("How do I raise an emergency change request for a failing core switch in the Frankfurt data centre "
            "outside the standard maintenance window on a Saturday night")
    records = [rec(long), rec("  " + long.upper() + "  "),  # exact (case and spacing ignored)
               rec(long.replace("Frankfurt", "Madrid")),    # near duplicate: one word differs
               rec("What is the recovery time objective for the hosting platform?",
                   "Dear colleague, the RTO for the hosting platform is four hours; see KB-2001.")]
    res = deduplicate(records, threshold=0.7)
    assert len(res.kept) == 2 and res.kept[0] is records[0] and res.kept[1] is records[3]
    assert [d["index"] for d in res.exact] == [1] and [d["index"] for d in res.near] == [2]
    assert res.near[0]["duplicate_of"] == 0 and res.near[0]["similarity"] >= 0.7


def test_leakage_eight_word_runs():
    evals = [{"id": "e1", "prompt": "Please explain how the emergency change advisory board approves a change"}]
    leaky = rec("Tell me: please explain how the emergency change advisory board approves urgent work")
    safe = rec("Explain how the emergency change advisory board works")  # shares 7 words at most
    hits = check_leakage([safe, leaky], evals, ngram=8, near_threshold=None)
    assert [(h["index"], h["eval_id"], h["kind"]) for h in hits] == [(1, "e1", "ngram")]
    assert ("the", "emergency", "change", "advisory", "board", "approves", "a", "change") in \
        word_ngrams(evals[0]["prompt"])


def test_curate_reports_every_removal():
    a = rec("What is the standard maintenance window for hosted customers in Europe?")
    leak = rec("Which team owns competitor enquiries inside the company and how do I reach them")
    evals = [{"id": "ev-7", "prompt": "which team owns competitor enquiries inside the company and how"}]
    cur = curate([a, a, leak], evals)
    assert cur.counts == {"in": 3, "exact_duplicates": 1, "near_duplicates": 0, "leakage": 1, "out": 1}
    assert sorted(r["stage"] for r in cur.rejects) == ["duplicate", "leakage"]
    assert "ev-7" in [r for r in cur.rejects if r["stage"] == "leakage"][0]["reason"]


def test_dataset_stats():
    records = [rec("q1"), rec("q2"), {**rec("d"), "task_type": "decline", "category": "decline"}]
    stats = dataset_stats(records)
    assert stats["n"] == 3 and stats["task_types"] == {"question": 2, "decline": 1}
    assert stats["decline_share"] == round(1 / 3, 4) and stats["prompt_words"]["max"] == 1


# ------------------------------------------------------------------ the whole build with a fake teacher

class FakeTeacher:
    """Answers like a sloppy teacher: fenced JSON with a trailing comma, one good item per chunk
    (unique), one item repeated in every chunk (a duplicate), one item missing its output."""

    def __init__(self, fail_from=None):
        self.calls, self.fail_from = 0, fail_from

    def settings(self):
        return {"backend": "fake-teacher", "model": "sloppy"}

    def complete(self, messages):
        self.calls += 1
        if self.fail_from and self.calls >= self.fail_from:
            raise ConnectionError("teacher went away")
        doc = re.search(r'internal document "([^"]+)"', messages[-1]["content"]).group(1)
        excerpt = re.search(r"<document>(.*?)</document>", messages[-1]["content"], re.S).group(1)
        section = hashlib.sha256(excerpt.encode()).hexdigest()[:8]  # unique per chunk
        unique = {"task_type": "question", "instruction": f"What does {doc}, section {section}, say?", "input": "",
                  "output": f"Dear colleague, {doc} ({section}) sets out the rules we follow.\n\nKind regards,\nSD"}
        shared = {"task_type": "summary", "instruction": "Summarise the incident policy for the service desk team in three sentences.",
                  "output": "Dear colleague, incidents (INC) are prioritised P1 to P4.\n\nKind regards,\nSD"}
        broken = {"task_type": "analysis", "instruction": "Analyse the risk."}
        return "Here you go:\n```json\n" + json.dumps([unique, shared, broken])[:-1] + ",]\n```"


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name in ("change", "incident", "privacy"):
        body = "\n\n".join(f"## Section {i}\n\n" + f"The {name} rule number {i} applies to every team. " * 12
                           for i in range(3))
        (folder / f"{name}.md").write_text(f"# {name.title()} policy\n\n{body}\n")
    return folder


def test_build_dataset_end_to_end(corpus, tmp_path):
    out = tmp_path / "build"
    teacher = FakeTeacher()
    report = build_dataset(corpus, teacher, out, examples_per_chunk=3, max_chunk_tokens=150, progress=False)
    c = report.counts
    assert c["docs"] == 3 and c["chunks"] == c["prompts"] == teacher.calls and c["chunks"] >= 6
    assert c["requests"] == c["chunks"] and c["cached"] == 0 and c["request_errors"] == 0
    assert c["items_parsed"] == 3 * c["chunks"] and c["schema_rejects"] == c["chunks"]
    assert c["exact_duplicates"] == c["chunks"] - 1 and c["final"] == c["chunks"] + 1
    rejects = read_jsonl(out / "rejects.jsonl")
    assert len(rejects) == c["schema_rejects"] + c["exact_duplicates"] + c["near_duplicates"]
    assert {r["reason"] for r in rejects if r["stage"] == "schema"} == {"missing field: output"}
    train = read_jsonl(out / "train.jsonl")
    alpaca, sharegpt = read_jsonl(out / "train_alpaca.jsonl"), read_jsonl(out / "train_sharegpt.jsonl")
    assert len(train) == len(alpaca) == len(sharegpt) == c["final"]
    assert alpaca[0]["output"] == train[0]["messages"][-1]["content"] and "conversations" in sharegpt[0]
    assert train[0]["messages"][0]["role"] == "system" and train[0]["source"] == "teacher"
    assert (out / "figures" / "teacher_task_types.png").exists() and (out / "figures" / "teacher_lengths.svg").exists()
    assert json.loads((out / "report.json").read_text())["counts"] == c
    assert (out / "stats_task_types.csv").read_text().startswith("task_type,count,share")

    again = FakeTeacher()
    report2 = build_dataset(corpus, again, out, examples_per_chunk=3, max_chunk_tokens=150, progress=False)
    assert again.calls == 0 and report2.counts["cached"] == c["chunks"] and report2.counts["final"] == c["final"]


def test_build_resumes_after_teacher_failure(corpus, tmp_path):
    cache = tmp_path / "teacher_cache.jsonl"
    flaky = FakeTeacher(fail_from=4)
    r1 = build_dataset(corpus, flaky, tmp_path / "b1", examples_per_chunk=3, max_chunk_tokens=150,
                       cache=ResponseCache(cache), concurrency=1, plots=False, progress=False)
    n = r1.counts["chunks"]
    assert r1.counts["request_errors"] == n - 3 and r1.counts["requests"] == n
    errors = [r for r in read_jsonl(tmp_path / "b1" / "rejects.jsonl") if r["stage"] == "request"]
    assert len(errors) == n - 3 and "ConnectionError: teacher went away" in errors[0]["reason"]
    healthy = FakeTeacher()
    r2 = build_dataset(corpus, healthy, tmp_path / "b2", examples_per_chunk=3, max_chunk_tokens=150,
                       cache=cache, plots=False, progress=False)
    assert healthy.calls == n - 3 and r2.counts["cached"] == 3 and r2.counts["request_errors"] == 0


def test_build_removes_eval_leakage(corpus, tmp_path):
    eval_path = tmp_path / "eval.jsonl"
    eval_path.write_text(json.dumps({"id": "ev-1", "category": "domain", "messages": [
        {"role": "user", "content": "Please summarise the incident policy for the service desk team, briefly."}]}) + "\n")
    report = build_dataset(corpus, FakeTeacher(), tmp_path / "b", examples_per_chunk=3, max_chunk_tokens=150,
                           eval_path=eval_path, dedup_threshold=None, plots=False, progress=False)
    assert report.counts["leakage"] == 1  # the one shared summary item left after exact dedup
    leaks = [r for r in read_jsonl(tmp_path / "b" / "rejects.jsonl") if r["stage"] == "leakage"]
    assert len(leaks) == 1 and "ev-1" in leaks[0]["reason"]


def test_build_needs_documents(tmp_path):
    with pytest.raises(FileNotFoundError, match="data/corpus"):
        build_dataset(tmp_path / "empty", FakeTeacher(), tmp_path / "out", progress=False)


def test_validate_records_flags_house_style_and_format():
    from instructlab.build import validate_records

    ok = {"messages": [{"role": "user", "content": "When is the MW?"},
                       {"role": "assistant", "content": GOOD["output"]}], "task_type": "question"}
    slangy = {"messages": [{"role": "user", "content": "When is the MW?"},
                           {"role": "assistant", "content": "Hey! Saturday night, no worries."}]}
    broken = {"messages": [{"role": "user", "content": "only a question"}]}
    good, rejects = validate_records([ok, slangy, broken])
    assert good == [ok] and [r["index"] for r in rejects] == [1, 2]
    assert rejects[0]["reason"] == "style: exclamation mark" and len(rejects[0]["problems"]) >= 4
    assert rejects[1]["reason"].startswith("format:")
