"""Data building: from unlabeled Markdown documents to a validated instruction dataset.

The pipeline, one function per step (each usable on its own from a notebook):

1. :func:`chunk_documents` cuts documents at Markdown headings into chunks of at most
   ``max_tokens`` tokens of the teacher.
2. :func:`plan_task_types` and :func:`teacher_prompt` ask the teacher for N examples per chunk as
   a JSON array of ``{"task_type", "instruction", "input", "output"}``, spreading the task types
   (question, summary, analysis, comparison, rewrite, template) and adding declines (competitor
   and personal-data requests, ~15%) and look-alike questions that must be answered.
3. :func:`instructlab.llm.complete_many` runs the prompts (cache, retries, concurrency).
4. :func:`parse_teacher_output` recovers the items from what teachers really return (code fences,
   prose around the JSON, trailing commas, a single object, a truncated array) and
   :func:`validate_item` checks each against the schema and the house style. When the teacher's
   server supports structured outputs, the prompts also carry ``response_format`` with the JSON
   schema of :class:`TeacherReply` and :func:`parse_structured_output` reads the answer with
   pydantic instead (a reply that fails the schema, a truncated one included, is a reported
   reject: nothing is repaired); the report records which path each answer took.
5. :func:`curate` removes exact and near duplicates (datasketch MinHash LSH) and training items
   that leak evaluation prompts (shared 8-word runs, MinHash near matches).
6. :func:`dataset_stats`, :func:`save_stats_plots` and :func:`export_dataset` write statistics,
   figures and the dataset in chat-messages JSONL with Alpaca and ShareGPT exports.

:func:`build_dataset` runs all of it and writes every artefact into one folder. Nothing is dropped
silently: each rejected item lands in ``rejects.jsonl`` with its stage and reason.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from instructlab.kestrel import TASK_TYPES as _RECORD_TASK_TYPES
from instructlab.runs import read_jsonl, write_json, write_jsonl

__all__ = ["TASK_TYPES", "Chunk", "chunk_documents", "plan_task_types", "teacher_prompt", "ParseResult",
           "parse_teacher_output", "TeacherReply", "teacher_response_format", "parse_structured_output",
           "validate_item", "validate_records", "word_ngrams", "minhash", "DedupResult", "deduplicate", "prompt_text",
           "load_eval_prompts", "check_leakage", "CurateResult", "curate", "dataset_stats", "write_stats",
           "save_stats_plots", "export_dataset", "BuildReport", "build_dataset", "make_teacher"]

# What a teacher item may be: the records' task types (kestrel.TASK_TYPES, one list) plus "lookalike".
TASK_TYPES = (*_RECORD_TASK_TYPES, "lookalike")
CONTENT_TASK_TYPES = tuple(t for t in _RECORD_TASK_TYPES if t != "decline")
TASK_DESCRIPTIONS = {
    "question": "a question an employee would ask; the output answers it from the excerpt",
    "summary": "a request to summarise the excerpt (or part of it) for a colleague",
    "analysis": "a request to analyse a situation or option using the excerpt (risks, causes, consequences)",
    "comparison": "a request to compare two internal options, policies or procedures from the excerpt",
    "rewrite": "an informal draft (put it in \"input\") to rewrite into the house style; the output is the rewrite",
    "template": "a request to fill one of the response templates (incident notice, change request summary, "
                "status update, knowledge answer) from facts given in \"input\"",
    "decline": "a request the assistant must refuse ({reason}); the output is the refusal",
    "lookalike": "a legitimate question that mentions employees, personal data or competitors but must be "
                 "answered (for example the company's own data-protection policy, how employees update their "
                 "own details, who owns competitor enquiries internally); the output answers it",
}
DECLINE_REASONS = {
    "competitor": "anything about a named competitor ({competitors}): comparisons, opinions, pricing, their "
                  "staff or clients; the refusal redirects to Partnerships & Market Intelligence",
    "personal_data": "an individual employee's personal data (home address, personal phone or e-mail, salary, "
                     "health or leave reasons, performance reviews, national ID numbers, whereabouts); the "
                     "refusal redirects to HR through the HR portal (SR category \"HR-Privacy\")",
}
TASK_ALIASES = {
    "qa": "question", "q&a": "question", "questions": "question", "question answering": "question",
    "summarization": "summary", "summarisation": "summary", "summarize": "summary", "summarise": "summary",
    "analyze": "analysis", "analyse": "analysis", "compare": "comparison",
    "rewrite into house style": "rewrite", "style rewrite": "rewrite", "rewriting": "rewrite",
    "template filling": "template", "template_filling": "template", "fill template": "template",
    "refusal": "decline", "negative": "decline", "refuse": "decline",
    "look-alike": "lookalike", "look_alike": "lookalike",
}
REQUIRED_FIELDS = ("task_type", "instruction", "output")
_FALLBACK_SYSTEM_PROMPT = ("You are the internal assistant of Kestrel Systems. Answer formally, follow the "
                           "house style and terminology, and decline competitor and personal-data requests.")
_FALLBACK_COMPETITORS = ("Ardent Cloud", "Bluefin IT", "Corvid Networks", "Pelican Data")
_EMOJI = re.compile("[\U0001F300-\U0001FAFF\u2600-\u27BF]")
_FILLER = ("hope this helps", "no worries", "cheers")
_REDIRECTS = ("partnerships", "market intelligence", "hr portal", "hr-privacy", "human resources", " hr ")


def _kestrel_attr(name: str, default: Any) -> Any:
    """A constant from instructlab.kestrel (the brief's single source of truth), else ``default``."""
    try:
        import instructlab.kestrel as kestrel
    except ImportError:
        return default
    return getattr(kestrel, name, default)


def default_system_prompt() -> str:
    """The case-study system prompt (``instructlab.kestrel.SYSTEM_PROMPT``)."""
    return _kestrel_attr("SYSTEM_PROMPT", _FALLBACK_SYSTEM_PROMPT)


# --------------------------------------------------------------------------------------------
# 1. Chunking
# --------------------------------------------------------------------------------------------

@dataclass
class Chunk:
    """A piece of one document: ``id`` ("<doc stem>-<nnn>"), ``doc`` (file name), ``heading``
    (breadcrumb of the first section, "A > B"), ``text`` (Markdown) and ``n_tokens``."""

    id: str
    doc: str
    heading: str
    text: str
    n_tokens: int


def approx_token_count(text: str) -> int:
    """Rough token count (about 4 characters per token for English) when no tokenizer is given."""
    return max(1, math.ceil(len(text) / 4))


def make_token_counter(tokenizer: Any = None) -> Callable[[str], int]:
    """A function text -> number of tokens: from a transformers tokenizer (``.encode``), a plain
    callable returning an int, or :func:`approx_token_count` when ``tokenizer`` is None."""
    if tokenizer is None:
        return approx_token_count
    if hasattr(tokenizer, "encode"):
        return lambda text: len(tokenizer.encode(text, add_special_tokens=False))
    if callable(tokenizer):
        return tokenizer
    raise TypeError(f"tokenizer must be a transformers tokenizer, a callable or None, got {type(tokenizer).__name__}")


_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def split_sections(markdown: str) -> list[tuple[str, str]]:
    """Split Markdown at headings (ignoring ``#`` lines inside code fences).

    Returns (breadcrumb, text) pairs; the text starts with its heading line. Text before the first
    heading becomes a section with an empty breadcrumb.
    """
    sections: list[tuple[str, list[str]]] = []
    stack: list[tuple[int, str]] = []
    lines: list[str] = []
    crumb, in_fence = "", False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        m = None if in_fence else _HEADING.match(line)
        if m:
            if any(s.strip() for s in lines):
                sections.append((crumb, lines))
            level = len(m.group(1))
            stack = [s for s in stack if s[0] < level] + [(level, m.group(2))]
            crumb, lines = " > ".join(t for _, t in stack), [line]
        else:
            lines.append(line)
    if any(s.strip() for s in lines):
        sections.append((crumb, lines))
    return [(c, "\n".join(ls).strip()) for c, ls in sections]


def _pack(pieces: list[str], max_tokens: int, count: Callable[[str], int], sep: str) -> list[str]:
    """Greedily join consecutive pieces with ``sep`` while the result stays within ``max_tokens``."""
    out: list[str] = []
    for piece in pieces:
        if out and count(out[-1] + sep + piece) <= max_tokens:
            out[-1] = out[-1] + sep + piece
        else:
            out.append(piece)
    return out


def _split_long(text: str, max_tokens: int, count: Callable[[str], int]) -> list[str]:
    """Split one over-long section by paragraphs, then sentences, then words."""
    if count(text) <= max_tokens:
        return [text]
    for pattern, sep in ((r"\n\s*\n", "\n\n"), (r"(?<=[.!?])\s+", " "), (r"\s+", " ")):
        parts = [p for p in re.split(pattern, text) if p.strip()]
        if len(parts) > 1:
            out: list[str] = []
            for part in parts:
                out.extend(_split_long(part, max_tokens, count))
            return _pack(out, max_tokens, count, sep)
    return [text]  # a single word longer than the budget: keep it rather than cut mid-word


def chunk_documents(paths: Iterable[str | Path], tokenizer: Any = None, max_tokens: int = 512) -> list[Chunk]:
    """Cut Markdown documents into chunks of at most ``max_tokens`` tokens, at heading boundaries.

    Consecutive sections of one document are packed together while they fit; a section that is
    too long on its own is split at paragraphs (then sentences, then words), each piece keeping the
    section's breadcrumb as a first line so the teacher knows where it is.
    ``tokenizer``: the teacher's tokenizer, a callable text -> int, or None (about 4 chars per token).
    Raises FileNotFoundError for a missing path.
    """
    count = make_token_counter(tokenizer)
    chunks: list[Chunk] = []
    for path in map(Path, paths):
        text = path.read_text(encoding="utf-8")
        pieces: list[tuple[str, str]] = []
        for crumb, body in split_sections(text):
            budget = max_tokens - (count(f"[{crumb}]\n") if crumb else 0)  # room for the breadcrumb line
            parts = _split_long(body, max(budget, 1), count) if count(body) > max_tokens else [body]
            for j, part in enumerate(parts):
                pieces.append((crumb, part if j == 0 or not crumb else f"[{crumb}]\n{part}"))
        current: list[tuple[str, str]] = []
        for crumb, part in pieces:
            joined = "\n\n".join(p for _, p in current + [(crumb, part)])
            if current and count(joined) > max_tokens:
                chunks.append(_make_chunk(path, len([c for c in chunks if c.doc == path.name]), current, count))
                current = []
            current.append((crumb, part))
        if current:
            chunks.append(_make_chunk(path, len([c for c in chunks if c.doc == path.name]), current, count))
    return chunks


def _make_chunk(path: Path, index: int, parts: list[tuple[str, str]], count: Callable[[str], int]) -> Chunk:
    text = "\n\n".join(p for _, p in parts)
    return Chunk(f"{path.stem}-{index:03d}", path.name, parts[0][0], text, count(text))


# --------------------------------------------------------------------------------------------
# 2. Teacher prompts
# --------------------------------------------------------------------------------------------

def _spread(n_total: int, n_pick: int) -> list[bool]:
    """``n_pick`` True values spread evenly over ``n_total`` slots (deterministic)."""
    return [(i + 1) * n_pick // n_total > i * n_pick // n_total for i in range(n_total)] if n_total else []


def plan_task_types(n_chunks: int, per_chunk: int, decline_share: float = 0.15,
                    lookalike_share: float = 0.08) -> list[list[str]]:
    """Which task types to request for each chunk: a list of ``per_chunk`` types per chunk.

    Over all chunks, about ``decline_share`` of the slots are declines (alternating competitor and
    personal-data requests: see :func:`teacher_prompt`), ``lookalike_share`` are look-alikes, and
    the rest cycle through the six content task types, so every type appears.
    """
    total = n_chunks * per_chunk
    declines = _spread(total, round(total * decline_share))
    rest = [i for i in range(total) if not declines[i]]
    lookalike_slots = {rest[i] for i, pick in enumerate(_spread(len(rest), round(total * lookalike_share))) if pick}
    types, k = [], 0
    for i in range(total):
        if declines[i]:
            types.append("decline")
        elif i in lookalike_slots:
            types.append("lookalike")
        else:
            types.append(CONTENT_TASK_TYPES[k % len(CONTENT_TASK_TYPES)])
            k += 1
    return [types[c * per_chunk:(c + 1) * per_chunk] for c in range(n_chunks)]


def _style_rules() -> str:
    terms = _kestrel_attr("TERMS", ())
    term_lines = "; ".join(f"{t.preferred} ({t.abbreviation})" for t in list(terms)[:12]) if terms else ""
    rules = ("- Formal and institutional; \"we\" speaks for the company; no slang, emojis, exclamation marks "
             "or filler.\n- Messages open with \"Dear colleague,\" and close with \"Kind regards,\" and the team "
             "name on its own line (default \"Kestrel Service Desk\").\n- Dates as YYYY-MM-DD, times in UTC on "
             "the 24-hour clock (\"14:00 UTC\"); cite the knowledge base article when one applies (\"see KB-1042\").\n"
             "- Spell a term out with its abbreviation on first use, then the abbreviation alone.")
    return rules + (f"\n- Preferred terms: {term_lines}." if term_lines else "")


def teacher_prompt(chunk: Chunk, task_types: Sequence[str], decline_start: int = 0) -> list[dict[str, str]]:
    """The chat sent to the teacher for one chunk: one example per entry of ``task_types``.

    Declines alternate between competitor and personal-data requests, starting with reason number
    ``decline_start`` (so alternation continues across chunks). Returns [system, user] messages.
    """
    competitors = ", ".join(_kestrel_attr("COMPETITORS", _FALLBACK_COMPETITORS))
    reasons = list(DECLINE_REASONS)
    lines, d = [], decline_start
    for i, t in enumerate(task_types, 1):
        desc = TASK_DESCRIPTIONS[t]
        if t == "decline":
            desc = desc.format(reason=DECLINE_REASONS[reasons[d % 2]].format(competitors=competitors))
            d += 1
        lines.append(f"{i}. \"{t}\": {desc}")
    user = (f"Below is an excerpt from the internal document \"{chunk.doc}\" of Kestrel Systems "
            f"(section: {chunk.heading or 'introduction'}).\n\n<document>\n{chunk.text}\n</document>\n\n"
            f"Write {len(task_types)} training examples for the company's internal assistant, grounded in the "
            f"excerpt, one per line of this list and in this order:\n" + "\n".join(lines) +
            f"\n\nEvery \"output\" follows the house style:\n{_style_rules()}\n\n"
            f"Return only a JSON array of {len(task_types)} objects with the string keys \"task_type\", "
            f"\"instruction\", \"input\" (may be \"\") and \"output\". No prose and no code fences.")
    system = ("You write training data for the internal assistant of Kestrel Systems, an IT services company. "
              "You reply with valid JSON only.")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


# --------------------------------------------------------------------------------------------
# 3. Parsing what the teacher returned
# --------------------------------------------------------------------------------------------

@dataclass
class ParseResult:
    """``items``: the JSON values recovered (usually dicts, in order); ``problems``: what had to be
    repaired or was lost ("trailing commas removed", "truncated: ..."); ``truncated``: the text
    ended inside an item that could not be recovered; ``malformed``: closed objects that were not
    valid JSON even after repair (skipped)."""

    items: list[Any]
    problems: list[str] = field(default_factory=list)
    truncated: bool = False
    malformed: int = 0

    @property
    def lost(self) -> bool:
        """True when part of the answer could not be recovered (it then goes to the rejects)."""
        return self.truncated or self.malformed > 0


_FENCE = re.compile(r"```[a-zA-Z0-9_-]*[ \t]*\n?(.*?)(?:```|\Z)", re.S)


def _json_chars(text: str, start: int = 0):
    """Yield ``(index, char, outside_string)`` over ``text[start:]``, tracking JSON strings and escapes.

    An opening quote counts as outside (it starts the string), its closing quote as inside."""
    in_str = esc = False
    for i in range(start, len(text)):
        ch = text[i]
        yield i, ch, not in_str
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True


def strip_trailing_commas(text: str) -> str:
    """Remove commas directly before ``]`` or ``}`` outside JSON strings."""
    out: list[str] = []
    pending = None  # index in `out` of a comma that may be trailing
    for _, ch, outside in _json_chars(text):
        if outside:
            if ch in "]}" and pending is not None:
                del out[pending]
            if not ch.isspace():
                pending = len(out) if ch == "," else None
        out.append(ch)
    return "".join(out)


def _unwrap(value: Any) -> list[Any]:
    """A list as is; ``{"examples": [...]}`` (one list of dicts inside) unwrapped; a dict -> [dict]."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)]
        if len(lists) == 1 and not all(k in value for k in REQUIRED_FIELDS):
            return lists[0]
        return [value]
    return [value]


def _matching_close(text: str, start: int) -> int:
    """Index of the bracket closing the one at ``text[start]`` (strings respected), or -1."""
    depth = 0
    for i, ch, outside in _json_chars(text, start):
        if not outside:
            continue
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _scan_objects(text: str) -> tuple[list[Any], bool, list[str]]:
    """Decode every complete top-level ``{...}`` in ``text``, left to right.

    Returns (objects, truncated, malformed): truncated when the last object never closes (objects
    nested inside it are not mistaken for items); malformed: snippets of closed but invalid objects.
    """
    dec = json.JSONDecoder()
    items: list[Any] = []
    malformed: list[str] = []
    pos = 0
    while (start := text.find("{", pos)) >= 0:
        end = _matching_close(text, start)
        if end < 0:
            return items, True, malformed
        try:
            obj, _ = dec.raw_decode(text[:end + 1], start)
            items.extend(_unwrap(obj))
        except json.JSONDecodeError:
            malformed.append(text[start:end + 1][:200])
        pos = end + 1
    return items, False, malformed


def parse_teacher_output(text: str) -> ParseResult:
    """Recover the JSON items from a teacher's answer.

    Handles: ```json fences (closed or not), prose before and after the JSON, trailing commas,
    a single object instead of an array, an object wrapping the array (``{"examples": [...]}``),
    several objects without an array, and truncated arrays (every complete item is kept and the
    loss is reported in ``problems``). Never raises; an answer with no JSON gives no items and a
    problem "no JSON found".
    """
    problems: list[str] = []
    if not isinstance(text, str) or not text.strip():
        return ParseResult([], ["empty answer"])
    fenced = [m.group(1) for m in _FENCE.finditer(text) if m.group(1).strip()]
    body = "\n".join(fenced) if fenced else text
    if fenced:
        problems.append("code fence removed")
    fixed = strip_trailing_commas(body)
    if fixed != body:
        problems.append("trailing commas removed")
    starts = [i for i in (fixed.find("["), fixed.find("{")) if i >= 0]
    if not starts:
        return ParseResult([], problems + ["no JSON found"])
    start = min(starts)
    end = max(fixed.rfind("]"), fixed.rfind("}")) + 1
    try:
        value = json.loads(fixed[start:end])
        if fixed[:start].strip() or fixed[end:].strip():
            problems.append("prose around the JSON ignored")
        return ParseResult(_unwrap(value), problems)
    except json.JSONDecodeError:
        pass
    items, truncated, malformed = _scan_objects(fixed[start:])
    problems += [f"malformed item skipped: {m!r}" for m in malformed]
    if truncated:
        problems.append(f"truncated: recovered {len(items)} complete item(s), the incomplete one was lost")
    elif not items and not malformed:
        problems.append("no JSON found")
    elif not malformed:
        problems.append("malformed JSON: recovered the complete objects")
    return ParseResult(items, problems, truncated, len(malformed))


class TeacherItem(BaseModel):
    """One teacher item, the fields :func:`validate_item` expects (its content checks still apply)."""

    model_config = ConfigDict(extra="forbid")  # schema: additionalProperties false (strict mode needs it)
    task_type: str
    instruction: str
    input: str
    output: str


class TeacherReply(BaseModel):
    """The teacher's structured reply: ``{"examples": [item, ...]}`` (strict JSON schemas need an object)."""

    model_config = ConfigDict(extra="forbid")
    examples: list[TeacherItem]


_TEACHER_ITEMS = TypeAdapter(list[TeacherItem])


def teacher_response_format(strict: bool = True) -> dict:
    """``response_format`` asking the teacher for JSON of :class:`TeacherReply`'s schema."""
    from instructlab.llm import json_schema_format

    return json_schema_format("teacher_examples", TeacherReply, strict)


def structured_problem(exc: ValidationError) -> str:
    """A short reason for a structured reply that pydantic refused; "truncated" when the JSON ends early."""
    err = exc.errors(include_url=False)[0]
    where = ".".join(str(x) for x in err.get("loc", ())) or "reply"
    kind = "truncated" if err["type"] == "json_invalid" and "EOF" in err["msg"] else err["type"]
    return f"structured reply invalid ({kind}): {err['msg']} at {where}"


def parse_structured_output(text: str) -> ParseResult:
    """Read a structured (``response_format``) teacher answer with pydantic: :class:`TeacherReply`, or a
    bare JSON array of :class:`TeacherItem`. Nothing is repaired: an answer that is not complete JSON of
    the schema (e.g. cut off by ``max_tokens``) gives no items, ``truncated``/``malformed`` set and the
    reason in ``problems``, so the whole answer becomes a reported reject."""
    if not isinstance(text, str) or not text.strip():
        return ParseResult([], ["empty answer"])
    try:
        if text.lstrip().startswith("["):
            items = _TEACHER_ITEMS.validate_json(text)
        else:
            items = TeacherReply.model_validate_json(text).examples
    except ValidationError as exc:
        problem = structured_problem(exc)
        truncated = "(truncated)" in problem
        return ParseResult([], [problem], truncated=truncated, malformed=0 if truncated else 1)
    return ParseResult([item.model_dump() for item in items], [])


# --------------------------------------------------------------------------------------------
# 4. Validation and conversion to chat records
# --------------------------------------------------------------------------------------------

def normalise_task_type(value: str) -> str:
    """Lower-case, trimmed, aliases mapped ("QA" -> "question", "summarization" -> "summary")."""
    t = re.sub(r"\s+", " ", value.strip().lower())
    return TASK_ALIASES.get(t, TASK_ALIASES.get(t.replace("_", " "), t))


def house_style_problems(text: str, decline: bool = False) -> list[str]:
    """What in an assistant answer breaks the brief's house style (empty list: none found).

    Checks: emoji, exclamation marks, filler phrases, the "Dear ...," greeting and "Kind regards,"
    sign-off, terms the glossary says to avoid (``instructlab.kestrel.TERMS``), and for a decline
    a redirect to Partnerships & Market Intelligence or HR.
    """
    low, problems = text.lower(), []
    if _EMOJI.search(text):
        problems.append("style: emoji")
    if "!" in text:
        problems.append("style: exclamation mark")
    problems += [f"style: filler phrase {f!r}" for f in _FILLER if re.search(rf"\b{re.escape(f)}\b", low)]
    if not re.match(r"\s*dear [^\n,]{1,40},", low):
        problems.append("style: no greeting (\"Dear colleague,\")")
    if "kind regards," not in low:
        problems.append("style: no sign-off (\"Kind regards,\")")
    for term in _kestrel_attr("TERMS", ()):
        for bad in term.avoid:
            if re.search(rf"\b{re.escape(bad.lower())}\b", low):
                problems.append(f"terminology: {bad!r} instead of {term.preferred} ({term.abbreviation})")
    if decline and not any(r in f" {low} " for r in _REDIRECTS):
        problems.append("decline does not redirect to Partnerships & Market Intelligence or HR")
    return problems


def validate_item(item: Any, style: bool = True) -> tuple[dict | None, str | None]:
    """Check one teacher item; return (clean item, None) or (None, reason).

    Schema: ``task_type`` (one of :data:`TASK_TYPES`, aliases accepted), ``instruction`` and
    ``output`` non-empty strings, ``input`` a string or absent/null; extra keys are ignored; the
    output has at least 3 words and does not merely repeat the instruction. With ``style`` the
    output must also pass :func:`house_style_problems` (the first problem is the reason).
    """
    if not isinstance(item, dict):
        return None, f"not a JSON object ({type(item).__name__})"
    for key in REQUIRED_FIELDS:
        if key not in item:
            return None, f"missing field: {key}"
    inp = item.get("input") if item.get("input") is not None else ""
    for key, value in (("task_type", item["task_type"]), ("instruction", item["instruction"]),
                       ("input", inp), ("output", item["output"])):
        if not isinstance(value, str):
            return None, f"wrong type: {key} must be a string, got {type(value).__name__}"
        if key != "input" and not value.strip():
            return None, f"empty field: {key}"
    clean = {"task_type": normalise_task_type(item["task_type"]), "instruction": item["instruction"].strip(),
             "input": inp.strip(), "output": item["output"].strip()}
    reason = _content_problem(clean)
    if reason is None and style:
        reason = next(iter(house_style_problems(clean["output"], clean["task_type"] == "decline")), None)
    return (None, reason) if reason else (clean, None)


def _content_problem(item: dict) -> str | None:
    if item["task_type"] not in TASK_TYPES:
        return f"unknown task_type: {item['task_type']!r}"
    if len(item["output"].split()) < 3:
        return "output too short (< 3 words)"
    if len(item["instruction"]) + len(item["input"]) > 6000:
        return "instruction too long (> 6000 characters)"
    if item["output"].strip().lower() == item["instruction"].strip().lower():
        return "output repeats the instruction"
    return None


def validate_records(records: Sequence[dict], style: bool = True) -> tuple[list[dict], list[dict]]:
    """Validate chat records (a dataset file's rows): structure via :func:`instructlab.formats.to_messages`
    and, with ``style``, the last assistant answer against :func:`house_style_problems`.

    Returns (good records, rejects) where each reject is ``{"stage": "validation", "reason",
    "problems": [...], "index", "record"}``; a record is rejected for its first problem.
    """
    from instructlab.formats import FormatError, to_messages

    good, rejects = [], []
    for i, rec in enumerate(records):
        try:
            msgs = to_messages(rec)
        except FormatError as exc:
            rejects.append({"stage": "validation", "reason": f"format: {exc}", "problems": [str(exc)],
                            "index": i, "record": rec})
            continue
        answer = [m["content"] for m in msgs if m["role"] == "assistant"][-1]
        decline = rec.get("task_type") == "decline" or rec.get("category") == "decline"
        problems = house_style_problems(answer, decline) if style else []
        if problems:
            rejects.append({"stage": "validation", "reason": problems[0], "problems": problems,
                            "index": i, "record": rec})
        else:
            good.append(rec)
    return good, rejects


def item_to_record(item: dict, chunk: Chunk | None = None, system_prompt: str | None = None) -> dict:
    """A validated item -> a chat record ``{"messages", "task_type", "category", "doc", "chunk", "id", "source"}``.

    Look-alikes become ``task_type`` "question" with ``category`` "lookalike" (the training task
    types of ``data/kestrel``); declines get category "decline", all others "domain".
    """
    user = item["instruction"] + (f"\n\n{item['input']}" if item["input"] else "")
    messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
        {"role": "user", "content": user}, {"role": "assistant", "content": item["output"]}]
    t = item["task_type"]
    category = "decline" if t == "decline" else "lookalike" if t == "lookalike" else "domain"
    rid = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:12]
    return {"messages": messages, "task_type": "question" if t == "lookalike" else t, "category": category,
            "doc": chunk.doc if chunk else None, "chunk": chunk.id if chunk else None,
            "id": f"teacher-{rid}", "source": "teacher"}


# --------------------------------------------------------------------------------------------
# 5. Dedup and leakage
# --------------------------------------------------------------------------------------------

_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")


def words(text: str) -> list[str]:
    """Lower-case word tokens (letters, digits, inner apostrophes/hyphens)."""
    return _WORD.findall(text.lower())


def word_ngrams(text: str, n: int = 8) -> set[tuple[str, ...]]:
    """All runs of ``n`` consecutive words of ``text``: the kit's one measure of shared wording.

    Words here are lower-cased ``\\w+`` runs, so "on-call" and "don't" are two words each (unlike
    :func:`words`, which keeps them whole for de-duplication keys). Leakage checks (:func:`check_leakage`)
    and the Kestrel data builder (``data/kestrel/build.py``, whose held-out selection depends on it)
    both call this function, so the 8-gram disjointness the tests hold is the one the data was built with.
    """
    w = re.findall(r"\w+", text.lower())
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


def record_text(record: dict, roles: Sequence[str] = ("user", "assistant")) -> str:
    """The text of a chat record's turns with the given roles (system prompt left out)."""
    return "\n".join(m["content"] for m in record["messages"] if m["role"] in roles)


def minhash(text: str, num_perm: int = 128, shingle: int = 3):
    """datasketch MinHash over word ``shingle``-grams of ``text`` (the words themselves when shorter)."""
    from datasketch import MinHash

    w = words(text)
    grams = {" ".join(w[i:i + shingle]) for i in range(max(1, len(w) - shingle + 1))} or {""}
    m = MinHash(num_perm=num_perm, seed=1)
    m.update_batch([g.encode("utf-8") for g in sorted(grams)])
    return m


@dataclass
class DedupResult:
    """``kept``: records kept (first occurrence wins); ``exact`` / ``near``: lists of
    ``{"index", "duplicate_of", "similarity"}`` for the removed ones (indices into the input)."""

    kept: list[dict]
    exact: list[dict]
    near: list[dict]


def deduplicate(records: Sequence[dict], threshold: float = 0.8, num_perm: int = 128) -> DedupResult:
    """Remove exact duplicates (same words in user + assistant turns, case and spacing ignored) and
    near duplicates (estimated Jaccard similarity of word 3-gram MinHashes >= ``threshold``, found
    with datasketch ``MinHashLSH``). ``threshold=None`` skips the near-duplicate pass."""
    from datasketch import MinHashLSH

    seen: dict[str, int] = {}
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm) if threshold else None
    hashes: dict[int, Any] = {}
    kept, exact, near = [], [], []
    for i, rec in enumerate(records):
        text = record_text(rec)
        key = hashlib.sha256(" ".join(words(text)).encode()).hexdigest()
        if key in seen:
            exact.append({"index": i, "duplicate_of": seen[key], "similarity": 1.0})
            continue
        if lsh is not None:
            mh = minhash(text, num_perm)
            matches = sorted(int(m) for m in lsh.query(mh))
            if matches:
                best = max(matches, key=lambda j: mh.jaccard(hashes[j]))
                near.append({"index": i, "duplicate_of": best, "similarity": round(mh.jaccard(hashes[best]), 3)})
                continue
            lsh.insert(str(i), mh)
            hashes[i] = mh
        seen[key] = i
        kept.append(rec)
    return DedupResult(kept, exact, near)


def prompt_text(record: dict) -> str:
    """The user turns of a chat record (what a model is asked)."""
    return record_text(record, roles=("user",))


def _user_turns(rec: dict) -> str:
    """The user text of one eval record: chat messages, ShareGPT, Alpaca or ``{"prompt"}``."""
    if isinstance(rec.get("messages"), list):
        return "\n".join(m["content"] for m in rec["messages"] if m.get("role") == "user")
    if isinstance(rec.get("conversations"), list):
        return "\n".join(t.get("value", "") for t in rec["conversations"] if t.get("from") in ("human", "user"))
    if "instruction" in rec:
        return "\n\n".join(x for x in (rec["instruction"], rec.get("input") or "") if x)
    if isinstance(rec.get("prompt"), str):
        return rec["prompt"]
    raise ValueError(f"eval record without user text: keys {sorted(rec)}; expected messages, "
                     "conversations (ShareGPT), instruction (Alpaca) or prompt")


def load_eval_prompts(path: str | Path) -> list[dict]:
    """Evaluation prompts as ``{"id", "prompt"}`` from a JSONL of chat messages (no answer needed),
    ShareGPT, Alpaca or ``{"prompt"}`` records. Raises ValueError for a record with no user text."""
    return [{"id": rec.get("id", i), "prompt": _user_turns(rec)} for i, rec in enumerate(read_jsonl(path))]


def check_leakage(train: Sequence[dict], eval_prompts: Sequence[dict], ngram: int = 8,
                  near_threshold: float | None = 0.8, num_perm: int = 128) -> list[dict]:
    """Training records whose prompt overlaps an evaluation prompt.

    ``eval_prompts``: ``{"id", "prompt"}`` dicts (see :func:`load_eval_prompts`). A training record
    leaks when its user text shares a run of ``ngram`` words with an eval prompt, or (when
    ``near_threshold`` is set) when their MinHash similarity is at least ``near_threshold``.
    Returns ``{"index", "eval_id", "kind": "ngram"|"minhash", "detail"}`` per leaking record.
    """
    from datasketch import MinHashLSH

    owner: dict[tuple[str, ...], Any] = {}
    for ev in eval_prompts:
        for g in word_ngrams(ev["prompt"], ngram):
            owner.setdefault(g, ev["id"])
    lsh = MinHashLSH(threshold=near_threshold, num_perm=num_perm) if near_threshold else None
    if lsh is not None:
        for j, ev in enumerate(eval_prompts):
            lsh.insert(f"e{j}", minhash(ev["prompt"], num_perm))
    hits = []
    for i, rec in enumerate(train):
        text = prompt_text(rec)
        shared = [g for g in word_ngrams(text, ngram) if g in owner]
        if shared:
            hits.append({"index": i, "eval_id": owner[shared[0]], "kind": "ngram", "detail": " ".join(shared[0])})
        elif lsh is not None:
            found = sorted(lsh.query(minhash(text, num_perm)))
            if found:
                ev = eval_prompts[int(found[0][1:])]
                hits.append({"index": i, "eval_id": ev["id"], "kind": "minhash", "detail": ev["prompt"][:120]})
    return hits


# --------------------------------------------------------------------------------------------
# 6. Curation, statistics, plots, exports
# --------------------------------------------------------------------------------------------

@dataclass
class CurateResult:
    """``records`` kept; ``rejects`` (``{"stage", "reason", "record", ...}``); ``counts`` per stage."""

    records: list[dict]
    rejects: list[dict]
    counts: dict[str, int]


def curate(records: Sequence[dict], eval_prompts: Sequence[dict] | None = None, dedup_threshold: float | None = 0.8,
           leakage_ngram: int = 8, leakage_threshold: float | None = 0.8) -> CurateResult:
    """Dedup (exact, then MinHash near duplicates) and remove training records that leak eval prompts.

    Every removed record goes to ``rejects`` with stage "duplicate", "near_duplicate" or "leakage"
    and the id of what it collided with. ``counts``: in, exact_duplicates, near_duplicates, leakage, out.
    """
    dd = deduplicate(records, threshold=dedup_threshold)
    rejects = [{"stage": "duplicate", "reason": f"exact duplicate of record {d['duplicate_of']}",
                "record": records[d["index"]]} for d in dd.exact]
    rejects += [{"stage": "near_duplicate", "reason": f"near duplicate (MinHash Jaccard ~{d['similarity']}) of "
                 f"record {d['duplicate_of']}", "record": records[d["index"]]} for d in dd.near]
    kept = dd.kept
    hits = check_leakage(kept, eval_prompts, leakage_ngram, leakage_threshold) if eval_prompts else []
    leaked = {h["index"] for h in hits}
    rejects += [{"stage": "leakage", "reason": f"{h['kind']} overlap with eval prompt {h['eval_id']}: {h['detail']!r}",
                 "record": kept[h["index"]]} for h in hits]
    out = [r for i, r in enumerate(kept) if i not in leaked]
    counts = {"in": len(records), "exact_duplicates": len(dd.exact), "near_duplicates": len(dd.near),
              "leakage": len(leaked), "out": len(out)}
    return CurateResult(out, rejects, counts)


def _summary(values: Sequence[int]) -> dict:
    if not values:
        return {"mean": 0, "median": 0, "p95": 0, "max": 0}
    ordered = sorted(values)
    return {"mean": round(statistics.fmean(ordered), 1), "median": statistics.median(ordered),
            "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], "max": ordered[-1]}


def dataset_stats(records: Sequence[dict]) -> dict:
    """Counts by task type, category and document, decline share, and length summaries (words)
    of prompts and responses. ``records``: chat records (extra keys optional)."""
    cats = Counter(r.get("category") or ("decline" if r.get("task_type") == "decline" else "domain") for r in records)
    prompt_words = [len(words(prompt_text(r))) for r in records]
    response_words = [len(words(record_text(r, ("assistant",)))) for r in records]
    return {"n": len(records), "task_types": dict(Counter(r.get("task_type", "unknown") for r in records).most_common()),
            "categories": dict(cats.most_common()),
            "decline_share": round(cats.get("decline", 0) / len(records), 4) if records else 0.0,
            "docs": dict(Counter(r.get("doc") or "unknown" for r in records).most_common()),
            "prompt_words": _summary(prompt_words), "response_words": _summary(response_words),
            "_lengths": {"prompt words": prompt_words, "response words": response_words}}


def write_stats(stats: dict, out_dir: str | Path) -> list[Path]:
    """``stats.json`` (without raw lengths) and one CSV per count table (task_types, categories, docs)."""
    out_dir = Path(out_dir)
    paths = [write_json(out_dir / "stats.json", {k: v for k, v in stats.items() if not k.startswith("_")})]
    for table in ("task_types", "categories", "docs"):
        path = out_dir / f"stats_{table}.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow([table.rstrip("s"), "count", "share"])
            for k, v in stats[table].items():
                w.writerow([k, v, round(v / max(stats["n"], 1), 4)])
        paths.append(path)
    return paths


def save_stats_plots(stats: dict, out_dir: str | Path, title: str = "dataset") -> dict[str, Any]:
    """Bar chart of task types and categories, histogram of prompt/response lengths; each saved as
    PNG + SVG under ``out_dir/figures``. Returns {name: Figure} for display."""
    from instructlab.plots import plot_counts, plot_length_histograms, save_figure

    figs = {"task_types": plot_counts(stats["task_types"], f"{title}: task types", "examples"),
            "categories": plot_counts(stats["categories"], f"{title}: categories", "examples"),
            "lengths": plot_length_histograms(stats["_lengths"], f"{title}: lengths (words)")}
    for name, fig in figs.items():
        save_figure(fig, Path(out_dir) / "figures" / f"{title.replace(' ', '_')}_{name}")
    return figs


def export_dataset(records: Sequence[dict], out_dir: str | Path, stem: str = "train") -> dict[str, Path]:
    """Write ``<stem>.jsonl`` (chat messages + metadata), ``<stem>_alpaca.jsonl`` and
    ``<stem>_sharegpt.jsonl``. Returns {"messages"|"alpaca"|"sharegpt": path}."""
    from instructlab.formats import to_alpaca, to_sharegpt

    out_dir = Path(out_dir)
    return {"messages": write_jsonl(out_dir / f"{stem}.jsonl", records),
            "alpaca": write_jsonl(out_dir / f"{stem}_alpaca.jsonl", [to_alpaca(r["messages"]) for r in records]),
            "sharegpt": write_jsonl(out_dir / f"{stem}_sharegpt.jsonl", [to_sharegpt(r["messages"]) for r in records])}


# --------------------------------------------------------------------------------------------
# 7. The whole pipeline
# --------------------------------------------------------------------------------------------

@dataclass
class BuildReport:
    """What :func:`build_dataset` did. ``counts``: docs, chunks, prompts, requests (answers not in
    the cache), cached, request_errors, items_parsed, parse_failures, schema_rejects,
    exact_duplicates, near_duplicates, leakage, final. ``reject_reasons``: Counter of reasons;
    ``paths``: every file written; ``stats``: :func:`dataset_stats` of the final dataset;
    ``counts["response_format_ignored"]``: answers asked for with ``response_format`` that came back as
    prose (the server ignored the field) and were read by the scanner. ``output_paths``: answers per path ("json_schema": asked with ``response_format`` and read with
    pydantic; "scanner": JSON asked in prose and read by :func:`parse_teacher_output`); ``output_path``:
    the one path used, "mixed" or None (no answer); ``structured_fallback``: why the server's refusal of
    ``response_format`` made the teacher fall back to the scanner, or None."""

    out_dir: str
    counts: dict[str, int]
    reject_reasons: dict[str, int]
    paths: dict[str, str]
    stats: dict
    teacher: dict
    output_paths: dict[str, int] = field(default_factory=dict)
    output_path: str | None = None
    structured_fallback: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stats"] = {k: v for k, v in self.stats.items() if not k.startswith("_")}
        return d


def _doc_paths(docs: str | Path | Iterable[str | Path]) -> list[Path]:
    if isinstance(docs, (str, Path)) and Path(docs).is_dir():
        paths = sorted(Path(docs).glob("*.md"))
    elif isinstance(docs, (str, Path)):
        paths = [Path(docs)]
    else:
        paths = [Path(p) for p in docs]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing or not paths:
        raise FileNotFoundError(f"no Markdown documents to build from (missing: {missing or docs}); "
                                "pass a folder of .md files such as data/corpus or a list of paths")
    return paths


def ignored_response_format(text: str) -> bool:
    """True when an answer asked for with ``response_format`` is not JSON at all (prose, a code fence):
    the server accepted the field and ignored it (``transformers serve`` does), so the answer is prose for
    the scanner. An answer that starts as JSON and fails the schema (a truncated one included) is not."""
    return isinstance(text, str) and bool(text.strip()) and text.lstrip()[0] not in "{["


def _parse_all(chunks, plans, completions, system_prompt) -> tuple[list[dict], list[dict], dict[str, int]]:
    """Parse and validate every answer: (records, rejects, counts). Sets each completion's ``output_path``
    to the path its answer was actually read by."""
    records, rejects = [], []
    counts = Counter(items_parsed=0, parse_failures=0, schema_rejects=0, request_errors=0, response_format_ignored=0)
    for chunk, plan, comp in zip(chunks, plans, completions):
        where = {"chunk": chunk.id, "doc": chunk.doc, "requested": plan}
        if comp.error:
            counts["request_errors"] += 1
            rejects.append({"stage": "request", "reason": comp.error, **where})
            continue
        if comp.output_path == "json_schema" and ignored_response_format(comp.text):
            comp.output_path = "scanner"
            counts["response_format_ignored"] += 1
        structured = comp.output_path == "json_schema"
        parsed = parse_structured_output(comp.text) if structured else parse_teacher_output(comp.text)
        counts["items_parsed"] += len(parsed.items)
        if not parsed.items or parsed.lost:
            counts["parse_failures"] += 1
            rejects.append({"stage": "parse", "reason": "; ".join(parsed.problems), "raw": comp.text,
                            "output_path": comp.output_path, **where})
        for item in parsed.items:
            clean, reason = validate_item(item)
            if reason:
                counts["schema_rejects"] += 1
                rejects.append({"stage": "schema", "reason": reason, "item": item, **where})
            else:
                records.append(item_to_record(clean, chunk, system_prompt))
    return records, rejects, dict(counts)


def _reason_key(reject: dict) -> str:
    """A short label to count rejects by: the schema reason, the worst parse problem, the error type."""
    if reject["stage"] == "schema":
        return reject["reason"]
    if reject["stage"] == "parse":
        return reject["reason"].split("; ")[-1].split(":")[0]
    return reject["reason"].split(":")[0]


def build_dataset(docs: str | Path | Iterable[str | Path], teacher: Any, out_dir: str | Path,
                  examples_per_chunk: int = 4, cache: Any = "auto", eval_path: str | Path | None = None,
                  tokenizer: Any = None, max_chunk_tokens: int = 512, max_chunks: int | None = None,
                  concurrency: int = 4, system_prompt: str | None = "default",
                  dedup_threshold: float | None = 0.8, plots: bool = True, progress: bool = True) -> BuildReport:
    """Build an instruction dataset from Markdown documents with a teacher model.

    Args:
        docs: a folder of ``*.md`` files, one path, or a list of paths.
        teacher: a backend from :mod:`instructlab.llm` (``OpenAIChat``, ``LocalChat``) or any object
            with ``complete(messages) -> str`` and ``settings() -> dict``.
        out_dir: where everything is written (created).
        examples_per_chunk: examples requested per chunk. max_chunks: use only the first chunks (0/None: all).
        cache: a ``ResponseCache``, a path, "auto" (``out_dir/teacher_cache.jsonl``) or None (no cache).
            With a cache a re-run makes no requests and an interrupted build resumes.
        eval_path: an eval JSONL; training items sharing an 8-word run (or a MinHash near match)
            with an eval prompt are removed as leakage.
        tokenizer: the teacher's tokenizer (or a token-counting callable) for chunk sizes; default
            ``teacher.tokenizer`` when the backend has one, else about 4 characters per token.
        system_prompt: system message of the training records ("default": the case-study prompt; None: none).
        plots: save the statistics figures (PNG + SVG) under ``out_dir/figures``.

    Writes chunks.jsonl, prompts.jsonl, responses.jsonl, rejects.jsonl, train.jsonl (+ _alpaca,
    _sharegpt), stats.json, stats_*.csv, figures/, report.json. Returns a :class:`BuildReport`.
    Raises FileNotFoundError when there are no documents, and ``llm.MissingAPIKeyError`` before the first
    request when the teacher's API key variable is not set and some answer is not in the cache. Request
    failures do not raise: they are counted and kept in rejects.jsonl (run again to retry them).
    """
    from instructlab.llm import ResponseCache, cache_key, complete_many, request_format

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = _doc_paths(docs)
    if tokenizer is None and hasattr(teacher, "tokenizer"):
        tokenizer = teacher.tokenizer
    chunks = chunk_documents(paths, tokenizer, max_chunk_tokens)[:max_chunks or None]  # 0 or None: all
    plans = plan_task_types(len(chunks), examples_per_chunk)
    declines_before = [sum(p.count("decline") for p in plans[:i]) for i in range(len(plans))]
    prompts = [teacher_prompt(c, p, d) for c, p, d in zip(chunks, plans, declines_before)]
    if isinstance(cache, (str, Path)):
        cache = ResponseCache(out / "teacher_cache.jsonl" if cache == "auto" else cache)
    fmt = teacher_response_format()
    if hasattr(teacher, "check_credentials") and any(
            cache is None or cache_key(p, teacher.settings(), request_format(teacher, fmt)) not in cache
            for p in prompts):
        teacher.check_credentials()  # a missing key would otherwise fail every prompt the same way
    completions = complete_many(teacher, prompts, cache=cache, concurrency=concurrency,
                                desc="teacher", progress=progress, response_format=fmt)
    system = default_system_prompt() if system_prompt == "default" else system_prompt
    records, rejects, counts = _parse_all(chunks, plans, completions, system)
    evals = load_eval_prompts(eval_path) if eval_path else None
    cur = curate(records, evals, dedup_threshold=dedup_threshold)
    rejects += cur.rejects
    stats = dataset_stats(cur.records)
    files = {"chunks": write_jsonl(out / "chunks.jsonl", [asdict(c) for c in chunks]),
             "prompts": write_jsonl(out / "prompts.jsonl", [{"chunk": c.id, "requested": p, "messages": m}
                                                            for c, p, m in zip(chunks, plans, prompts)]),
             "responses": write_jsonl(out / "responses.jsonl", [{"chunk": c.id, **asdict(r)}
                                                                for c, r in zip(chunks, completions)]),
             "rejects": write_jsonl(out / "rejects.jsonl", rejects),
             **export_dataset(cur.records, out)}
    files.update({p.stem: p for p in write_stats(stats, out)})
    if plots and cur.records:
        import matplotlib.pyplot as plt

        for name, fig in save_stats_plots(stats, out, title="teacher").items():
            files[f"figure_{name}"] = out / "figures" / f"teacher_{name}.png"
            plt.close(fig)
    counts = {"docs": len(paths), "chunks": len(chunks), "prompts": len(prompts),
              "requests": sum(not c.cached for c in completions), "cached": sum(c.cached for c in completions),
              **counts, "exact_duplicates": cur.counts["exact_duplicates"],
              "near_duplicates": cur.counts["near_duplicates"], "leakage": cur.counts["leakage"],
              "final": len(cur.records)}
    reasons = Counter(f"{r['stage']}: {_reason_key(r)}" for r in rejects)
    by_path = dict(Counter(c.output_path for c in completions if c.output_path))
    report = BuildReport(str(out), counts, dict(reasons.most_common()), {k: str(v) for k, v in files.items()},
                         stats, teacher.settings(), by_path,
                         next(iter(by_path)) if len(by_path) == 1 else ("mixed" if by_path else None),
                         getattr(teacher, "structured_fallback", None))
    write_json(out / "report.json", report.to_dict())
    return report


def make_teacher(base_url: str = "", model: str = "", api_key_env: str | None = "OPENAI_API_KEY",
                 local_model: str = "", **kwargs: Any):
    """The teacher backend a notebook's parameters describe, or None when none is configured.

    ``base_url`` + ``model`` -> :class:`~instructlab.llm.OpenAIChat` (key read from ``api_key_env``
    at call time; an empty ``api_key_env`` means a server without authentication);
    ``local_model`` -> :class:`~instructlab.llm.LocalChat`; all empty -> None. ``kwargs`` go to the
    backend (e.g. ``max_tokens``, ``temperature`` or ``max_new_tokens``).
    Raises ValueError when only one of ``base_url`` and ``model`` is given.
    """
    from instructlab.llm import LocalChat, OpenAIChat

    if base_url or model:
        if not (base_url and model):
            raise ValueError("set both teacher_base_url (e.g. http://127.0.0.1:8000/v1) and teacher_model, "
                             "or leave both empty to skip the teacher")
        return OpenAIChat(base_url, model, api_key_env=api_key_env or None, **kwargs)
    if local_model:
        return LocalChat(local_model, **kwargs)
    return None
