"""Formats: Alpaca / ShareGPT / chat messages in and out, and every bad-input case."""

import json

import pytest

from instructlab.formats import (BadRecord, FormatError, detect_format, load_messages, load_records,
                                 messages_from_dataset, save_jsonl, to_alpaca, to_messages, to_sharegpt)

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"}]


def write_jsonl(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


# ---------------------------------------------------------------- conversions

def test_alpaca_with_and_without_input():
    assert to_messages({"instruction": "Summarise.", "input": "", "output": "Done."}) == [
        {"role": "user", "content": "Summarise."}, {"role": "assistant", "content": "Done."}]
    msgs = to_messages({"instruction": "Summarise.", "input": "Long text", "output": "Short.",
                        "system": "Be brief."})
    assert msgs == [{"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Summarise.\n\nLong text"},
                    {"role": "assistant", "content": "Short."}]


@pytest.mark.parametrize("names", [("system", "human", "gpt"), ("system", "user", "assistant")])
def test_sharegpt_role_names(names):
    rec = {"conversations": [{"from": n, "value": v} for n, v in zip(names, ["Be brief.", "Hi", "Hello!"])]}
    assert detect_format(rec) == "sharegpt"
    assert to_messages(rec) == CHAT


def test_messages_and_round_trips():
    assert to_messages({"messages": CHAT}) == CHAT
    assert to_messages(CHAT) == CHAT  # a bare list is a conversation
    assert to_messages(to_sharegpt(CHAT)) == CHAT
    assert to_sharegpt(CHAT)["conversations"][1] == {"from": "human", "value": "Hi"}
    alpaca = to_alpaca(CHAT)
    assert alpaca == {"instruction": "Hi", "input": "", "output": "Hello!", "system": "Be brief."}
    assert to_messages(alpaca) == CHAT


def test_to_alpaca_refuses_multi_turn():
    multi = CHAT + [{"role": "user", "content": "Again"}, {"role": "assistant", "content": "Hello again"}]
    with pytest.raises(FormatError, match="Alpaca holds a single instruction"):
        to_alpaca(multi)
    assert len(to_sharegpt(multi)["conversations"]) == 5


# ---------------------------------------------------------------- every bad-input case

BAD = [
    ({"instruction": "Hi"}, "output", "missing field 'output'"),
    ({"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]}, "messages[0].content",
     "missing field 'content'"),
    ({"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt"}]}, "conversations[1].value",
     "missing field 'value'"),
    ({"messages": [{"role": "customer", "content": "Hi"}, {"role": "assistant", "content": "x"}]},
     "messages[0].role", "unknown role 'customer'"),
    ({"conversations": [{"from": "bot", "value": "Hi"}]}, "conversations[0].from", "unknown role 'bot'"),
    ({"messages": [{"role": "user", "content": ["a", "b"]}, {"role": "assistant", "content": "x"}]},
     "messages[0].content", "content is list"),
    ({"instruction": "Hi", "output": 42}, "output", "content is int"),
    ({"messages": [{"role": "user", "content": "Hi"}]}, "messages", "no assistant turn"),
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "  \n"}]},
     "messages[1]", "empty response"),
    ({"instruction": "Hi", "output": ""}, "output", "empty response"),
    ({"text": "hello"}, None, "unknown record format"),
]


@pytest.mark.parametrize("record,field,problem", BAD)
def test_bad_records_name_field_and_problem(record, field, problem):
    with pytest.raises(FormatError) as info:
        to_messages(record)
    assert info.value.field == field
    assert problem in str(info.value)
    assert "Expected" in str(info.value)


def test_load_jsonl_error_names_file_line_field(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"messages": CHAT}, "",
                                              {"messages": [{"role": "robot", "content": "x"}]}])
    with pytest.raises(FormatError) as info:
        load_messages(path)
    err = info.value
    assert (err.path, err.line, err.field) == (str(path), 3, "messages[0].role")
    assert str(err).startswith(f"{path}:3: field 'messages[0].role': unknown role 'robot'")
    assert "system/user/assistant" in str(err)  # what to do


def test_malformed_json_line(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"messages": CHAT}, '{"messages": [}'])
    with pytest.raises(FormatError, match=r"d.jsonl:2: malformed JSON line") as info:
        load_messages(path)
    assert info.value.line == 2


def test_skip_bad_returns_every_bad_record_with_reason(tmp_path):
    rows = [{"messages": CHAT}, '{"broken', {"instruction": "x", "output": ""},
            {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}]},
            {"messages": [{"role": "user", "content": "only a question"}]}]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    good, bad = load_messages(path, skip_bad=True)
    assert len(good) == 2 and len(bad) == 3  # nothing dropped silently
    assert all(isinstance(b, BadRecord) for b in bad)
    assert [b.line for b in bad] == [2, 3, 5]
    assert "malformed JSON" in bad[0].reason and bad[0].record == '{"broken'
    assert "empty response" in bad[1].reason and bad[1].field == "output"
    assert "no assistant turn" in bad[2].reason


def test_json_array_with_line_numbers_and_mixed_formats(tmp_path):
    records = [{"messages": CHAT}, {"instruction": "Hi", "output": "Hello!"},
               {"conversations": [{"from": "human", "value": "Hi"}]}]
    path = tmp_path / "d.json"
    path.write_text(json.dumps(records, indent=2))
    with pytest.raises(FormatError) as info:
        load_messages(path)
    assert info.value.field == "conversations" and "no assistant turn" in str(info.value)
    starts = [n for n, line in enumerate(path.read_text().splitlines(), start=1) if line == "  {"]
    assert info.value.line == starts[2]  # the line where the third record begins
    good, bad = load_messages(path, skip_bad=True)
    assert good == [CHAT, CHAT[1:]] and len(bad) == 1


def test_json_file_level_errors(tmp_path):
    (tmp_path / "obj.json").write_text('{"messages": []}')
    with pytest.raises(FormatError, match="top level is a dict"):
        load_messages(tmp_path / "obj.json")
    (tmp_path / "bad.json").write_text('[{"messages": ]')
    with pytest.raises(FormatError, match="malformed JSON"):
        load_messages(tmp_path / "bad.json")
    (tmp_path / "d.csv").write_text("a,b")
    with pytest.raises(FormatError, match="unsupported file type"):
        load_messages(tmp_path / "d.csv")


def test_load_records_keeps_extra_fields(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [
        {"id": "a", "category": "domain", "expected_terms": ["CAB"], "messages": CHAT},
        {"id": "b", "task_type": "rewrite", "instruction": "Hi", "input": "", "output": "Hello!"}])
    recs = load_records(path)
    assert recs[0] == {"messages": CHAT, "id": "a", "category": "domain", "expected_terms": ["CAB"]}
    assert recs[1] == {"messages": CHAT[1:], "id": "b", "task_type": "rewrite"}


def test_messages_from_dataset():
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list([{"messages": CHAT}, {"messages": CHAT[:2]}])
    with pytest.raises(FormatError) as info:
        messages_from_dataset(ds)
    assert info.value.line == 2 and "no assistant turn" in str(info.value)
    good, bad = messages_from_dataset(ds, skip_bad=True)
    assert good == [CHAT] and bad[0].line == 2
    alpaca = datasets.Dataset.from_list([{"instruction": "Hi", "input": "", "output": "Hello!"}])
    assert messages_from_dataset(alpaca) == [CHAT[1:]]
    with pytest.raises(FormatError, match="ds\\['train'\\]"):
        messages_from_dataset(datasets.DatasetDict({"train": ds}))


@pytest.mark.parametrize("fmt", ["messages", "alpaca", "sharegpt"])
def test_save_jsonl_round_trip(tmp_path, fmt):
    path = save_jsonl(tmp_path / f"{fmt}.jsonl", [{"messages": CHAT, "id": "x1"}, CHAT[1:]], fmt=fmt)
    assert load_messages(path) == [CHAT, CHAT[1:]]
    assert load_records(path)[0]["id"] == "x1"
    first = json.loads(path.read_text().splitlines()[0])
    assert {"messages": "messages", "alpaca": "instruction", "sharegpt": "conversations"}[fmt] in first


def test_save_alpaca_refuses_multi_turn(tmp_path):
    multi = CHAT + [{"role": "user", "content": "Again"}, {"role": "assistant", "content": "Hi again"}]
    with pytest.raises(FormatError, match="conversation 1"):
        save_jsonl(tmp_path / "a.jsonl", [multi], fmt="alpaca")


def test_sharegpt_with_role_content_keys_and_top_level_system():
    rec = {"system": "Be brief.", "conversations": [{"role": "user", "content": "Hi"},
                                                      {"role": "assistant", "content": "Hello!"}]}
    assert to_messages(rec) == CHAT


def test_load_records_prompt_only_eval_file():
    from pathlib import Path
    path = Path(__file__).resolve().parent.parent / "data" / "kestrel" / "eval.jsonl"
    with pytest.raises(FormatError, match="no assistant turn"):
        load_records(path)
    recs = load_records(path, require_response=False)
    assert len(recs) >= 200 and all(r["messages"][-1]["role"] == "user" for r in recs)
    assert {r["category"] for r in recs} == {"domain", "decline", "lookalike"}
