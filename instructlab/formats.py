"""Instruction-data formats: Alpaca, ShareGPT and chat ``messages``, to and from one shape.

Every conversation inside the kit is a list of ``{"role": "system"|"user"|"assistant",
"content": str}`` dicts. This module converts the three common on-disk formats into that shape,
checks them, and writes them back:

* Alpaca:   ``{"instruction", "input" (optional), "output", "system" (optional)}``
* ShareGPT: ``{"conversations": [{"from": "system"|"human"|"gpt"|"user"|"assistant", "value"}]}``
* chat:     ``{"messages": [{"role", "content"}]}``

Bad input never disappears silently: it raises :class:`FormatError` naming the file, line, field,
what was expected and what to do, or (with ``skip_bad=True``) comes back as :class:`BadRecord`
entries with the reason.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from .runs import write_jsonl

__all__ = ["FormatError", "Records", "BadRecord", "detect_format", "to_messages", "to_alpaca", "to_sharegpt",
           "load_messages", "load_records", "messages_from_dataset", "save_jsonl", "DATASET_FIELDS",
           "EMBEDDED_DATASETS", "DatasetNotAvailableError", "load_dataset_messages"]

ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                  "assistant": "assistant"}
SHAREGPT_NAMES = {"system": "system", "user": "human", "assistant": "gpt"}
FORMAT_KEYS = {"alpaca": ("instruction", "input", "output", "system"),
               "sharegpt": ("conversations", "system"), "messages": ("messages",)}
_FORMAT_NAMES = {"messages": "chat ('messages')", "sharegpt": "ShareGPT ('conversations')",
                 "alpaca": "Alpaca ('instruction'/'output')"}


class FormatError(ValueError):
    """A record that cannot be read as a conversation.

    Attributes: ``path`` (file or None), ``line`` (1-based line or row, or None), ``field``
    (e.g. ``"messages[2].role"`` or None), ``problem``, ``expected`` and ``hint`` (what to do).
    """

    def __init__(self, problem: str, *, path=None, line=None, field=None, expected=None, hint=None):
        self.path, self.line, self.field = (str(path) if path else None), line, field
        self.problem, self.expected, self.hint = problem, expected, hint
        where = ":".join(str(x) for x in (self.path, self.line) if x is not None)
        head = f"{where}: " if where else ""
        text = f"{head}{f'field {field!r}: ' if field else ''}{problem}"
        if expected:
            text += f". Expected {expected}"
        if hint:
            text += f". {hint}"
        super().__init__(text)

    def at(self, path=None, line=None) -> "FormatError":
        """A copy of this error located in ``path`` at ``line``."""
        return FormatError(self.problem, path=path or self.path, line=line or self.line,
                           field=self.field, expected=self.expected, hint=self.hint)


class Records(list):
    """The records of :func:`load_records` / :func:`load_messages`: a list, plus ``sources``, where each
    record came from (``"<file>:<line>"``), so later steps can name a record by its place in the file."""

    sources: list[str]

    def __init__(self, items: Iterable = (), sources: Iterable[str] = ()):
        super().__init__(items)
        self.sources = list(sources)


@dataclass
class BadRecord:
    """A record skipped by ``skip_bad=True``: where it was, which field, why, and the raw record."""

    path: str | None
    line: int | None
    field: str | None
    reason: str
    record: Any


def detect_format(record: Any) -> str:
    """``"messages"``, ``"sharegpt"`` or ``"alpaca"`` for one record; FormatError otherwise."""
    if not isinstance(record, dict):
        raise FormatError(f"record is a {type(record).__name__}, not a JSON object",
                          expected="an object such as {\"messages\": [...]}")
    found = [name for name, present in (("messages", "messages" in record),
                                        ("sharegpt", "conversations" in record),
                                        ("alpaca", "instruction" in record or "output" in record)) if present]
    if len(found) > 1:
        # Picking one would train on it and silently drop the other's conversation.
        raise FormatError(f"record has the keys of {len(found)} formats: " + " and ".join(
                              f"{_FORMAT_NAMES[f]}" for f in found),
                          expected="the keys of one format per record",
                          hint="Keep one format's keys (or split the record into one record per format)")
    if found:
        return found[0]
    raise FormatError(f"unknown record format with keys {sorted(record)}",
                      expected="'messages' (chat), 'conversations' (ShareGPT) or "
                               "'instruction'/'output' (Alpaca)",
                      hint="Rename the keys or convert the file to one of these formats")


def _text(value: Any, field: str, *, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise FormatError(f"content is {type(value).__name__} ({str(value)[:40]!r}), not a string",
                          field=field, expected="a string",
                          hint="Join multi-part content into one string before loading")
    if not allow_empty and not value.strip():
        raise FormatError("empty response", field=field, expected="a non-empty assistant answer",
                          hint="Remove the record or fill in the response")
    return value


def _turns(items: Any, name: str, role_key: str, text_key: str, role_map: dict) -> list[dict]:
    if not isinstance(items, list) or not items:
        raise FormatError(f"{name!r} is {type(items).__name__ if items != [] else 'empty'}",
                          field=name, expected="a non-empty list of turns")
    out = []
    for i, turn in enumerate(items):
        field = f"{name}[{i}]"
        if not isinstance(turn, dict):
            raise FormatError(f"turn is a {type(turn).__name__}", field=field,
                              expected=f"an object with {role_key!r} and {text_key!r}")
        for key in (role_key, text_key):
            if key not in turn:
                raise FormatError(f"missing field {key!r} (keys: {sorted(turn)})", field=f"{field}.{key}",
                                  expected=f"an object with {role_key!r} and {text_key!r}")
        role = turn[role_key]
        if not isinstance(role, str) or role.lower() not in role_map:
            raise FormatError(f"unknown role {role!r}", field=f"{field}.{role_key}",
                              expected=f"one of {sorted(role_map)}",
                              hint="Map this role to system/user/assistant before loading")
        out.append({"role": role_map[role.lower()], "content": _text(turn[text_key], f"{field}.{text_key}")})
    return out


def _alpaca(record: dict) -> list[dict]:
    for key in ("instruction", "output"):
        if key not in record:
            raise FormatError(f"missing field {key!r} (keys: {sorted(record)})", field=key,
                              expected="an Alpaca record with 'instruction', optional 'input', 'output'")
    instruction = _text(record["instruction"], "instruction")
    if not instruction.strip():
        raise FormatError("empty instruction", field="instruction", expected="a non-empty instruction")
    extra = _text(record.get("input") or "", "input")
    user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    msgs = [{"role": "user", "content": user},
            {"role": "assistant", "content": _text(record["output"], "output", allow_empty=False)}]
    if record.get("system"):
        msgs.insert(0, {"role": "system", "content": _text(record["system"], "system")})
    return msgs


def _check_conversation(msgs: list[dict], name: str, require_response: bool = True) -> list[dict]:
    assistants = [i for i, m in enumerate(msgs) if m["role"] == "assistant"]
    if not assistants and require_response:
        raise FormatError("no assistant turn", field=name,
                          expected="at least one assistant (ShareGPT: gpt) turn to learn from",
                          hint="Add the response or drop the record")
    for i in assistants:
        if not msgs[i]["content"].strip():
            raise FormatError("empty response", field=f"{name}[{i}]",
                              expected="a non-empty assistant answer",
                              hint="Remove the record or fill in the response")
    return msgs


def to_messages(record: Any, require_response: bool = True) -> list[dict]:
    """Convert one Alpaca, ShareGPT or chat record into ``[{"role", "content"}, ...]``.

    Alpaca ``input`` is appended to the instruction after a blank line; a top-level ``system``
    string (Alpaca or ShareGPT) becomes the first message. A bare list of role/content dicts is
    accepted as a conversation. Raises FormatError (missing fields, unknown roles, non-string
    content, no assistant turn, empty response) with ``.field`` set; ``.path``/``.line`` are
    filled in by the loaders. ``require_response=False`` accepts prompt-only chat records
    (evaluation prompts: system/user turns with no assistant answer yet).
    """
    if isinstance(record, list):
        record = {"messages": record}
    fmt = detect_format(record)
    if fmt == "alpaca":
        return _alpaca(record)
    if fmt == "sharegpt":
        turns = record["conversations"]
        keys = ("role", "content") if _uses_role_keys(turns) else ("from", "value")
        msgs = _turns(turns, "conversations", *keys, SHAREGPT_ROLES)
        if isinstance(record.get("system"), str) and record["system"] and msgs[0]["role"] != "system":
            msgs.insert(0, {"role": "system", "content": record["system"]})
        return _check_conversation(msgs, "conversations", require_response)
    msgs = _turns(record["messages"], "messages", "role", "content", {r: r for r in ROLES})
    return _check_conversation(msgs, "messages", require_response)


def _uses_role_keys(turns: Any) -> bool:
    """ShareGPT files sometimes use role/content inside 'conversations'; accept both spellings."""
    return (isinstance(turns, list) and bool(turns) and isinstance(turns[0], dict)
            and "from" not in turns[0] and "role" in turns[0])


def to_alpaca(messages: list[dict]) -> dict:
    """One instruction/response conversation (optionally with a system message) as an Alpaca record.

    Returns ``{"instruction", "input": "", "output"}`` plus ``"system"`` when present. Raises
    FormatError for anything Alpaca cannot hold (several turns); use :func:`to_sharegpt` then.
    """
    msgs = to_messages(messages)
    body = msgs[1:] if msgs[0]["role"] == "system" else msgs
    if [m["role"] for m in body] != ["user", "assistant"]:
        raise FormatError(f"conversation has roles {[m['role'] for m in msgs]}",
                          field="messages", expected="[system?], user, assistant for Alpaca",
                          hint="Alpaca holds a single instruction and response; save multi-turn "
                               "conversations as 'messages' or 'sharegpt'")
    out = {"instruction": body[0]["content"], "input": "", "output": body[1]["content"]}
    if body is not msgs:
        out["system"] = msgs[0]["content"]
    return out


def to_sharegpt(messages: list[dict]) -> dict:
    """A conversation as ``{"conversations": [{"from": "system"|"human"|"gpt", "value"}]}``."""
    msgs = to_messages(messages)
    return {"conversations": [{"from": SHAREGPT_NAMES[m["role"]], "value": m["content"]} for m in msgs]}


def _records_json(text: str, path: Path) -> list[tuple[int, Any]]:
    """(line, record) pairs of a JSON array file; line numbers point at each record's start."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise FormatError(f"malformed JSON: {e.msg} (column {e.colno})", path=path, line=e.lineno,
                          expected="a JSON array of records", hint="Fix the file (or save it as .jsonl)")
    if not isinstance(data, list):
        raise FormatError(f"top level is a {type(data).__name__}", path=path, line=1,
                          expected="a JSON array of records",
                          hint="Wrap the records in [...] or save one record per line as .jsonl")
    decoder, pos, lines = json.JSONDecoder(), text.index("[") + 1, []
    for _ in data:  # walk the array once more to learn where each record starts
        while text[pos] in " \t\r\n,":
            pos += 1
        lines.append(text.count("\n", 0, pos) + 1)
        pos = decoder.raw_decode(text, pos)[1]
    return list(zip(lines, data))


def _records_jsonl(text: str, path: Path) -> Iterable[tuple[int, Any, FormatError | None]]:
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as e:
            yield n, raw, FormatError(f"malformed JSON line: {e.msg} (column {e.colno})", path=path,
                                      line=n, expected="one JSON object per line",
                                      hint="Fix or delete this line")
            continue
        if isinstance(value, list) and not all(isinstance(t, dict) and "role" in t for t in value):
            # A list of role/content turns is a conversation; any other array is several records on one line.
            yield n, value, FormatError(f"the line is a JSON array of {len(value)} item(s), not one record",
                                        path=path, line=n, expected="one JSON object per line",
                                        hint="Put each record on its own line (or save the array as a .json file)")
            continue
        yield n, value, None


def _read(path: str | Path) -> list[tuple[int, Any, FormatError | None]]:
    path = Path(path)
    if path.is_dir():
        raise FormatError("is a folder, not a file", path=path, expected="a .json or .jsonl file",
                          hint="Pass the data file inside it (e.g. data/kestrel/train.jsonl)")
    try:  # utf-8-sig: a byte-order mark (Windows editors write one) is not part of line 1
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[:e.start].count(b"\n") + 1
        raise FormatError(f"not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start})", path=path,
                          line=line, expected="a UTF-8 encoded file",
                          hint="Re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
    if not text.strip():
        raise FormatError("the file is empty", path=path, expected="at least one record",
                          hint="Check that the right file was given and that it was written completely")
    if path.suffix == ".jsonl":
        return list(_records_jsonl(text, path))
    if path.suffix == ".json":
        return [(n, r, None) for n, r in _records_json(text, path)]
    raise FormatError(f"unsupported file type {path.suffix!r}", path=path,
                      expected="a .json (array) or .jsonl (one record per line) file")


def _nonfinite(value: Any) -> bool:
    """True when ``value`` holds a NaN or infinity anywhere (JSON has neither; they cannot be written back)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_nonfinite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_nonfinite(v) for v in value)
    return False


def _convert(rows, path, skip_bad: bool, keep_extra: bool, require_response: bool = True):
    good, bad, sources = [], [], []
    for line, record, error in rows:
        try:
            if error is not None:
                raise error
            msgs = to_messages(record, require_response)
            if keep_extra:
                own = FORMAT_KEYS[detect_format(record)]
                msgs = {"messages": msgs, **{k: v for k, v in record.items() if k not in own}}
                bad_keys = [k for k, v in msgs.items() if k != "messages" and _nonfinite(v)]
                if bad_keys:
                    raise FormatError("NaN or Infinity is not a JSON value (the record could not be written "
                                      "back as valid JSON)", field=bad_keys[0], expected="a number, a string or null",
                                      hint="Write null for a missing value")
            good.append(msgs)
            sources.append(f"{path}:{line}")
        except FormatError as e:
            located = e.at(path, line)
            if not skip_bad:
                raise located from None
            bad.append(BadRecord(located.path, line, located.field, str(located), record))
    good = Records(good, sources)
    return (good, bad) if skip_bad else good


def load_messages(path: str | Path, skip_bad: bool = False):
    """Read a .json (array) or .jsonl file of Alpaca, ShareGPT or chat records (mixed is fine).

    Returns a list of conversations (lists of role/content dicts). With ``skip_bad=True`` returns
    ``(good, bad)`` where ``bad`` lists :class:`BadRecord` (path, line, field, reason, record).
    Raises FormatError naming file, line and field for the first bad record otherwise.
    """
    return _convert(_read(path), path, skip_bad, keep_extra=False)


def load_records(path: str | Path, skip_bad: bool = False, require_response: bool = True):
    """Like :func:`load_messages` but each item is ``{"messages": [...], **extra}`` keeping the
    record's other fields (``category``, ``task_type``, ``expected_terms``, ``id`` ...).
    ``require_response=False`` reads prompt-only files such as ``data/kestrel/eval.jsonl``."""
    return _convert(_read(path), path, skip_bad, keep_extra=True, require_response=require_response)


def messages_from_dataset(ds, skip_bad: bool = False, keep_extra: bool = False):
    """Conversations from a Hugging Face ``datasets.Dataset`` (or any iterable of dict rows).

    Rows may be in any of the three formats; ``line`` in errors is the 1-based row number.
    ``keep_extra=True`` returns records like :func:`load_records`. A ``DatasetDict`` raises
    FormatError asking for a split.
    """
    if type(ds).__name__ in ("DatasetDict", "IterableDatasetDict") or isinstance(ds, dict):
        raise FormatError(f"got a {type(ds).__name__} with splits {list(ds.keys())}",
                          expected="a single split", hint="Pass ds['train'] (or another split)")
    name = f"<dataset {getattr(ds, 'info', None) and ds.info.dataset_name or type(ds).__name__}>"
    rows = ((i, row, None) for i, row in enumerate(ds, start=1))
    return _convert(rows, name, skip_bad, keep_extra)


def save_jsonl(path: str | Path, conversations: Iterable, fmt: str = "messages") -> Path:
    """Write conversations (message lists or records with ``"messages"`` and extra fields) as JSONL.

    ``fmt``: ``"messages"``, ``"alpaca"`` or ``"sharegpt"``; extra fields are kept. Raises
    FormatError when a conversation cannot be expressed in ``fmt``. Written atomically.
    """
    if fmt not in FORMAT_KEYS:
        raise FormatError(f"unknown format {fmt!r}", expected=f"one of {sorted(FORMAT_KEYS)}")
    convert = {"messages": lambda m: {"messages": m}, "alpaca": to_alpaca, "sharegpt": to_sharegpt}[fmt]
    rows = []
    for i, conv in enumerate(conversations, start=1):
        extra = {k: v for k, v in conv.items() if k != "messages"} if isinstance(conv, dict) else {}
        bad_keys = [k for k, v in extra.items() if _nonfinite(v)]
        if bad_keys:  # json.dumps would write NaN, which no JSON reader accepts
            raise FormatError("NaN or Infinity is not a JSON value", path=path, field=bad_keys[0],
                              expected="a number, a string or null",
                              hint=f"conversation {i}: write None for a missing value")
        msgs = conv["messages"] if isinstance(conv, dict) else conv
        try:
            rows.append({**convert(to_messages(msgs)), **extra})
        except FormatError as e:
            raise FormatError(e.problem, path=path, field=e.field, expected=e.expected,
                              hint=f"conversation {i}: {e.hint or 'fix it or choose another fmt'}") from None
    return write_jsonl(path, rows)


# --------------------------------------------------------------------------------------------
# Hugging Face datasets as inputs: an in-memory Dataset, a save_to_disk folder, or a Hub id
# --------------------------------------------------------------------------------------------

# The kit's names a dataset column can be mapped to (``columns=``): the three formats' fields, plus
# TRL's prompt/completion and the common prompt/response spelling of single-turn data.
DATASET_FIELDS = ("messages", "conversations", "instruction", "input", "output", "system",
                  "prompt", "completion", "response")
EMBEDDED_DATASETS = ("data/kestrel/train.jsonl", "data/kestrel/train_noisy.jsonl", "data/kestrel/eval.jsonl")


class DatasetNotAvailableError(FileNotFoundError):
    """A dataset source is neither a Dataset, nor a local folder, nor reachable on the Hub (e.g. offline)."""


def _hub_error(source: str, err: Exception) -> DatasetNotAvailableError:
    import os

    offline = any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
                  for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    how = ("HF_HUB_OFFLINE=1 is set: go online and run with HF_HUB_OFFLINE=0 to download it" if offline
           else "the Hub could not be reached: check the network connection and the id")
    return DatasetNotAvailableError(
        f"dataset {source!r} is not a local folder and could not be loaded from the Hugging Face Hub ({how}; "
        f"{type(err).__name__}: {err}). Embedded data that works offline: {', '.join(EMBEDDED_DATASETS)} "
        "(formats.load_records), or a folder written by Dataset.save_to_disk")


def _open_dataset(source: Any, split: str):
    """A single-split dataset from a Dataset / DatasetDict, a local folder, or a Hub id."""
    import datasets

    if isinstance(source, (str, Path)) and Path(source).exists():
        folder = Path(source)
        is_saved = (folder / "dataset_info.json").is_file() or (folder / "dataset_dict.json").is_file()
        source = datasets.load_from_disk(str(folder)) if is_saved else datasets.load_dataset(str(folder))
    elif isinstance(source, (str, Path)):
        try:
            source = datasets.load_dataset(str(source), split=split)
        except (ConnectionError, FileNotFoundError, OSError) as err:  # offline, unknown id, no network
            raise _hub_error(str(source), err) from err
    if isinstance(source, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if split not in source:
            raise FormatError(f"the dataset has no split {split!r}", field="split",
                              expected=f"one of {sorted(source)}", hint=f"pass split={min(source)!r}")
        source = source[split]
    return source


def _check_columns(columns: dict[str, str] | None, names: list[str]) -> dict[str, str]:
    columns = dict(columns or {})
    wrong = sorted(set(columns) - set(DATASET_FIELDS))
    if wrong:
        raise ValueError(f"columns={columns}: {wrong} are not fields the kit knows; map the dataset's columns to "
                         f"{list(DATASET_FIELDS)}, e.g. columns={{'prompt': 'question', 'response': 'answer'}}")
    missing = sorted(c for c in columns.values() if c not in names)
    if names and missing:  # (a streamed dataset may not know its columns)
        raise ValueError(f"columns={columns}: the dataset has no column {missing}; its columns are {names}")
    return columns


def _turn_list(value: Any, role: str) -> Any:
    return value if isinstance(value, list) else [{"role": role, "content": value}]


def dataset_record(row: dict, columns: dict[str, str] | None = None) -> dict:
    """One dataset row as a record the format readers know, its columns renamed by ``columns``.

    Args:
        row: a dataset row (a dict of column -> value).
        columns: kit field -> the dataset's column, e.g. ``{"prompt": "question", "response": "answer"}``;
            unmapped columns are kept as they are (extra fields such as ``category``).
    Returns:
        a chat, ShareGPT or Alpaca record: ``prompt``/``completion`` (strings or message lists, as in TRL)
        and ``prompt``/``response`` become ``messages``, with ``system`` first when given.
    """
    columns = columns or {}
    used = set(columns.values())
    rec = {**{k: v for k, v in row.items() if k not in used}, **{kit: row[col] for kit, col in columns.items()}}
    if "prompt" in rec and ("completion" in rec or "response" in rec):
        answer = rec.pop("completion") if "completion" in rec else rec.pop("response")
        system = [{"role": "system", "content": rec.pop("system")}] if isinstance(rec.get("system"), str) else []
        rec["messages"] = system + _turn_list(rec.pop("prompt"), "user") + _turn_list(answer, "assistant")
    return rec


def load_dataset_messages(source: Any, columns: dict[str, str] | None = None, split: str = "train",
                          skip_bad: bool = False, keep_extra: bool = True):
    """Conversations from a Hugging Face dataset: in memory, saved locally, or on the Hub.

    Args:
        source: a ``datasets.Dataset`` or ``DatasetDict``; a local folder written by ``save_to_disk``
            (or any folder ``datasets.load_dataset`` reads, e.g. of .jsonl / .parquet files); or a Hub
            id such as ``"HuggingFaceH4/no_robots"`` (needs the network).
        columns: which dataset column holds which field, as ``{kit field: column}``; kit fields are
            DATASET_FIELDS. ``None``: the rows already use the chat (``messages``), ShareGPT
            (``conversations``), Alpaca or prompt/completion names.
        split: the split to read when the source has several (default ``"train"``).
        skip_bad: return ``(good, bad)`` instead of raising at the first bad row (see :func:`load_messages`).
        keep_extra: records ``{"messages", **other columns}`` (as :func:`load_records`, what
            ``train.train_lora`` takes) rather than bare message lists.
    Returns:
        the conversations (or ``(good, bad)``); errors and bad rows name the 1-based row.
    Raises:
        DatasetNotAvailableError: a Hub id that cannot be loaded (offline); the message names the embedded data.
        ValueError: ``columns`` names an unknown kit field or a column the dataset lacks (both listed).
        FormatError: a row that is not a conversation, or a split the dataset does not have.
    """
    ds = _open_dataset(source, split)
    names = list(getattr(ds, "column_names", None) or [])
    mapping = _check_columns(columns, names)
    label = f"<dataset {source if isinstance(source, (str, Path)) else type(source).__name__}>"
    rows = ((i, dataset_record(dict(row), mapping), None) for i, row in enumerate(ds, start=1))
    return _convert(rows, label, skip_bad, keep_extra)
