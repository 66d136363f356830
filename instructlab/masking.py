"""Response-only loss masking that works for any chat template.

The labels of a training example are -100 everywhere except the assistant contents and the
end-of-turn marker that closes each assistant turn (``<|im_end|>``, ``<|eot_id|>``, ``</s>``,
``<end_of_turn>`` ...), so the model learns to answer *and to stop*.

How, without searching for a response-template string:

1. Render the whole conversation once with the tokenizer's chat template.
2. Learn the template's end-of-turn marker once (cached) from a probe conversation with sentinel
   contents: the literal text a template writes after an assistant message.
3. Find each assistant content in the render, in order, each search starting after the previous
   assistant turn and after the user/system contents that precede it (so a user turn quoting
   the answer is never mistaken for it). Templates that trim content, inject a default system
   prompt or a date, fold the system prompt into the first user turn, or drop ``<think>`` blocks
   from earlier assistant turns are handled (see :func:`_locate`).
4. Tokenize the render once with offsets; a token is trained when its characters overlap an
   assistant span. ``input_ids`` are therefore exactly :func:`rendered_ids` of the render.

One rule decides what token ids a rendered conversation becomes, for training and generation alike
(:func:`rendered_ids`): the render's tokens without any special tokens added, preceded by the
tokenizer's BOS when the tokenizer adds one by default (Gemma, Llama) and the render does not
already start with it. So a template that writes ``bos_token`` gets no second BOS, a template that
does not (ChatML, Phi-3, Zephyr on a Gemma tokenizer) still gets one, and a tokenizer that would
also append EOS never ends a generation prompt with it. Training (:func:`tokenize_with_mask`,
:func:`mask_dataset`, hence the eval loss), generation (``generate``, ``models.complete_text``) and
the local chat backend (``llm.LocalChat``) all call it, so the model is asked to answer after
exactly the prefix it was trained on.

Templates whose assistant turns end differently by position (gpt-oss harmony: ``<|end|>`` when
more turns follow, ``<|return|>`` after the final one) are probed per position, and each turn
trains the marker it actually ends with.

:func:`verify_mask` checks an example independently (decodes the trained tokens);
:func:`show_mask` shows trained vs masked tokens in colour.
"""

from __future__ import annotations

import html as _html
import os
import re
import weakref
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from .formats import to_messages

__all__ = ["IGNORE_INDEX", "TRAIN_ON", "MaskingError", "TruncatedAwayError", "rendered_ids", "prompt_ids",
           "tokenize_with_mask", "verify_mask", "MaskReport", "MaskedDataset", "mask_dataset", "MaskedCollator",
           "token_pieces", "MaskView", "show_mask"]

IGNORE_INDEX = -100
TRAIN_ON = ("assistant", "last_assistant", "all")
_PROBE = {"system": "ZQXSYSPROBE0", "u1": "ZQXUSERPROBE1", "a1": "ZQXASSISTPROBE1",
          "u2": "ZQXUSERPROBE2", "a2": "ZQXASSISTPROBE2"}
_INFO_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # tokenizer -> {template: info}


class MaskingError(ValueError):
    """The labels of an example could not be built or do not match the conversation."""


class TruncatedAwayError(MaskingError):
    """Every trained token of the example lies beyond ``max_length`` (it would train with zero loss)."""


@dataclass(frozen=True)
class TemplateInfo:
    """What the probe learned about a tokenizer's chat template.

    ``end_marker``: text written after an assistant content that closes the turn (trained).
    ``tokenizer_adds_bos``: whether the tokenizer adds BOS by default (:func:`rendered_ids` then
    puts it in front of renders that lack it). ``headers``: render text before the first content,
    for conversations starting with a user / a system message (None when unknown).
    ``final_marker``: the marker after the conversation's final assistant message when it differs
    from ``end_marker`` (gpt-oss: ``<|return|>`` vs ``<|end|>``); None when they are the same.
    """

    end_marker: str
    tokenizer_adds_bos: bool
    headers: dict
    direct_backend: bool = False
    final_marker: str | None = None

    def marker(self, last: bool) -> str:
        """The end marker of an assistant turn that is (``last``) or is not the conversation's final message."""
        return self.final_marker if last and self.final_marker is not None else self.end_marker


# --------------------------------------------------------------------------------------------
# rendering and the template probe
# --------------------------------------------------------------------------------------------

def render(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> str:
    """The chat template's text for ``messages``; MaskingError (with what to do) when it fails."""
    if not getattr(tokenizer, "chat_template", None):
        raise MaskingError("the tokenizer has no chat template. Load it with "
                           "instructlab.models.load_tokenizer (base models get a documented default "
                           "template) or set tokenizer.chat_template")
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False,
                                             add_generation_prompt=add_generation_prompt)
    except Exception as e:  # jinja raises its own exception types (e.g. roles must alternate)
        roles = [m.get("role") for m in messages]
        raise MaskingError(f"the chat template failed on a conversation with roles {roles}: "
                           f"{type(e).__name__}: {e}") from e


def _special_texts(tokenizer) -> list[str]:
    texts = set(getattr(tokenizer, "all_special_tokens", []) or [])
    for tok in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if getattr(tok, "special", False):
            texts.add(str(tok.content if hasattr(tok, "content") else tok))
    return sorted((t for t in texts if t), key=len, reverse=True)


def _trim_marker(text: str, specials: list[str]) -> str:
    """Cut the common tail after an assistant turn down to the end-of-turn marker itself."""
    ends = [text.find(s) + len(s) for s in specials if s in text]
    if ends:
        return text[:max(ends)]
    for open_, close in (("<", ">"), ("[", "]")):  # drop a dangling '<|' of the next header
        cut = text.rfind(open_)
        if cut >= 0 and close not in text[cut:]:
            text = text[:cut]
    return text.rstrip()


_ANSWER_PROBE = "Answer"  # what an answer usually starts with: a word (see rendered_ids)
_TAG = re.compile(r"\s*(<\|[^<>|\s]+\|>|</?[A-Za-z_][\w.-]*>|\[/?[A-Z_]+\])")


def _first_marker(tail: str, specials: list[str]) -> str:
    """The text up to and including the first special token or tag of ``tail`` (whitespace before it
    allowed): the end marker when the turn's two positions close differently."""
    ends = [tail.find(s) + len(s) for s in specials if s in tail and not tail[:tail.find(s)].strip()]
    tag = _TAG.match(tail)
    ends += [tag.end()] if tag else []
    return tail[:min(ends)] if ends else ""


def tokenizer_adds_bos(tokenizer) -> bool:
    """Whether ``tokenizer(text)`` starts with BOS by default (Gemma, Llama: yes; SmolLM2, Qwen: no)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None or not getattr(tokenizer, "bos_token", None):
        return False
    with_special = tokenizer("x", add_special_tokens=True)["input_ids"]
    return with_special[:1] == [bos] and tokenizer("x", add_special_tokens=False)["input_ids"][:1] != [bos]


def _needs_bos(tokenizer, text: str, adds_bos: bool) -> bool:
    return adds_bos and not text.lstrip().startswith(tokenizer.bos_token)


def rendered_ids(tokenizer, text: str, info: TemplateInfo | None = None,
                 generation_prompt: bool = False) -> list[int]:
    """The token ids a rendered conversation (or generation prompt) becomes: the one rule that
    training and generation share.

    Args:
        tokenizer: a Hugging Face tokenizer.
        text: the chat template's render (:func:`render`, with or without the generation prompt).
        info: the tokenizer's :class:`TemplateInfo` when already known (saves one lookup).
        generation_prompt: ``text`` ends where an answer starts. It is then tokenized as it is in
            training, followed by an answer: a word-initial probe is appended and only the tokens
            that end before it are kept. Without this, a pre-tokenizer may merge the prompt's trailing
            whitespace differently (Llama-3's ``"\n\n"`` header end on SmolLM2: one token alone, two
            before a word), and the model would be asked to answer after a prefix it never saw.
    Returns:
        the tokens of ``text`` with no special tokens added, preceded by BOS when the tokenizer adds
        BOS by default and ``text`` does not already start with it. Never a second BOS, never an EOS.
    """
    adds = info.tokenizer_adds_bos if info is not None else _adds_bos_cached(tokenizer)
    if generation_prompt and getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text + _ANSWER_PROBE, add_special_tokens=False, return_offsets_mapping=True)
        ends = [e for _, e in enc["offset_mapping"]]
        keep = next((k for k, e in enumerate(ends) if e > len(text)), len(ends))
        ids = enc["input_ids"][:keep]
    else:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [tokenizer.bos_token_id] + ids if _needs_bos(tokenizer, text, adds) else ids


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """Generation-prompt ids for ``messages``: :func:`render` with the generation prompt, then
    :func:`rendered_ids`. They equal the first ids of the training example of the same
    conversation with its answer (``tokenize_with_mask``), up to the answer's first token.

    Args:
        tokenizer: a tokenizer with a chat template.
        messages: the conversation to answer (``[{"role", "content"}]``, ending with a user turn).
    Returns:
        the prompt's token ids (a list of int).
    Raises:
        MaskingError: the tokenizer has no chat template or the template fails on ``messages``.
    """
    return rendered_ids(tokenizer, render(tokenizer, messages, add_generation_prompt=True), generation_prompt=True)


_BOS_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _adds_bos_cached(tokenizer) -> bool:
    try:
        if tokenizer not in _BOS_CACHE:
            _BOS_CACHE[tokenizer] = tokenizer_adds_bos(tokenizer)
        return _BOS_CACHE[tokenizer]
    except TypeError:  # not weak-referenceable
        return tokenizer_adds_bos(tokenizer)


def _probe(tokenizer) -> TemplateInfo:
    try:
        return _probe_template(tokenizer)
    except MaskingError:
        raise
    except ValueError as e:  # a sentinel went missing: the template rewrites or drops contents
        raise MaskingError("could not learn the chat template's turn structure from a probe "
                           f"conversation (user, assistant, user, assistant): {e}. The template must "
                           "render each message's content; check tokenizer.chat_template") from e


def _probe_template(tokenizer) -> TemplateInfo:
    """Render sentinel conversations and read off the end marker, headers and BOS handling."""
    p = _PROBE
    one = [{"role": "user", "content": p["u1"]}, {"role": "assistant", "content": p["a1"]}]
    two = one + [{"role": "user", "content": p["u2"]}, {"role": "assistant", "content": p["a2"]}]
    single, multi = render(tokenizer, one), render(tokenizer, two)
    cut = single.index(p["a1"]) + len(p["a1"])
    tail_single = single[cut:]
    start = multi.index(p["a1"]) + len(p["a1"])
    tail_multi = multi[start:multi.index(p["u2"], start)]
    specials = _special_texts(tokenizer)
    marker = _trim_marker(os.path.commonprefix([tail_single, tail_multi]), specials)
    final = None
    if not marker:  # the two positions close differently (harmony: <|end|> before more turns, <|return|> last)
        marker, final = _first_marker(tail_multi, specials), _first_marker(tail_single, specials)
        marker, final = (marker, final) if marker and final else ("", None)
    headers = {"user": single[:single.index(p["u1"])]}
    try:
        sys_render = render(tokenizer, [{"role": "system", "content": p["system"]}] + one)
        headers["system"] = sys_render[:sys_render.index(p["system"])] if p["system"] in sys_render else None
    except MaskingError:  # some templates refuse system messages; those conversations fail later anyway
        headers["system"] = None
    backend = getattr(tokenizer, "backend_tokenizer", None)
    direct = backend is not None and getattr(tokenizer, "is_fast", False) and (
        backend.encode(multi, add_special_tokens=False).ids
        == tokenizer(multi, add_special_tokens=False)["input_ids"])
    return TemplateInfo(marker, tokenizer_adds_bos(tokenizer), headers, direct, final)


def template_info(tokenizer) -> TemplateInfo:
    """Probe (once per tokenizer object and template; cached) the end-of-turn marker and BOS handling."""
    template = str(getattr(tokenizer, "chat_template", None))
    try:
        per_tokenizer = _INFO_CACHE.setdefault(tokenizer, {})
    except TypeError:  # not weak-referenceable: no caching
        return _probe(tokenizer)
    if template not in per_tokenizer:
        per_tokenizer[template] = _probe(tokenizer)
    return per_tokenizer[template]


# --------------------------------------------------------------------------------------------
# locating assistant spans in the rendered text
# --------------------------------------------------------------------------------------------

def _post_think(content: str) -> str:
    return content.rsplit("</think>", 1)[-1].strip() if "</think>" in content else ""


def _flexible(content: str) -> re.Pattern:
    """The content with any whitespace (and whitespace around <think> tags) made optional/free."""
    parts = [p for p in re.split(r"(\s+|</?think>)", content.strip()) if p and not p.isspace()]
    return re.compile(r"\s*".join(re.escape(p) for p in parts))


def _find_content(full: str, content: str, start: int) -> tuple[int, int] | None:
    """Where ``content`` was rendered at or after ``start``: exact (trimmed or not), whitespace-
    reformatted (reasoning templates), or only the answer after ``</think>`` (earlier turns of
    reasoning templates). Returns the character span or None."""
    core = content.strip()
    pos = full.find(core, start)
    if pos >= 0:
        lead, trail = content[:len(content) - len(content.lstrip())], content[len(content.rstrip()):]
        s = pos - len(lead) if lead and full[pos - len(lead):pos] == lead and pos - len(lead) >= start else pos
        e = pos + len(core)
        return s, e + len(trail) if trail and full.startswith(trail, e) else e
    match = _flexible(content).search(full, start)
    if match:
        return match.span()
    answer = _post_think(content)
    pos = full.find(answer, start) if answer else -1
    return (pos, pos + len(answer)) if pos >= 0 else None


def _after(full: str, texts: Sequence[str], start: int) -> int:
    """Position after the chained occurrences of ``texts`` (each searched after the previous)."""
    for text in texts:
        text = text.strip()
        pos = full.find(text, start) if text else -1
        if pos >= 0:
            start = pos + len(text)
    return start


def _locate(full: str, content: str, prev_end: int, before: list[str]) -> tuple[int, int] | None:
    """Find an assistant content after the previous assistant turn and after the messages that
    precede it. Tries the full chain of preceding messages, then only the closest one, then none
    (templates may move a system prompt, e.g. to the last user turn)."""
    starts = [_after(full, before, prev_end), _after(full, before[-1:], prev_end), prev_end]
    for start in dict.fromkeys(starts):
        span = _find_content(full, content, start)
        if span:
            return span
    return None


def _with_marker(full: str, end: int, marker: str) -> int | None:
    if full.startswith(marker, end):
        return end + len(marker)
    core = marker.strip()
    pos = full.find(core, end) if core else -1
    if pos >= 0 and not full[end:pos].strip():
        return pos + len(core)
    return None


def _marker_end(full: str, end: int, markers: Iterable[str]) -> int | None:
    """The end of the first of ``markers`` that follows position ``end`` (None when none does)."""
    return next((e for e in (_with_marker(full, end, mk) for mk in markers) if e is not None), None)


def mark_spans(text: str, spans: Iterable[tuple[int, int]], left: str = "⟦", right: str = "⟧") -> str:
    """``text`` with each character span wrapped in ``left``/``right`` (for error messages)."""
    out, last = [], 0
    for s, e in sorted(spans):
        out += [text[last:s], left, text[s:e], right]
        last = e
    return "".join(out + [text[last:]])


def assistant_spans(tokenizer, messages: list[dict], full: str | None = None,
                    info: TemplateInfo | None = None) -> list[tuple[int, int]]:
    """Character spans (content + end-of-turn marker) of every assistant turn in the render.

    Raises MaskingError, showing the rendering with the spans found so far, when a content or its
    end marker cannot be found.
    """
    info = info or template_info(tokenizer)
    full = render(tokenizer, messages) if full is None else full
    first = "system" if messages[0]["role"] == "system" else "user"
    header = info.headers.get(first)
    prev_end = len(header) if header and full.startswith(header) else 0
    spans, before = [], []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            before.append(m["content"])
            continue
        span = _locate(full, m["content"], prev_end, before)
        if span is None:
            raise MaskingError(f"assistant message {i} ({m['content'][:60]!r}) was not found in the "
                               "rendered conversation: the chat template changes assistant text in a way "
                               "the kit cannot follow. Rendering (spans found so far in ⟦ ⟧):\n"
                               + mark_spans(full, spans))
        # train whichever marker the turn really ends with (the position's own marker first)
        markers = dict.fromkeys([info.marker(i == len(messages) - 1), info.marker(i != len(messages) - 1)])
        first_span, end = span, _marker_end(full, span[1], markers)
        while end is None and span is not None:
            # A short content can also occur inside template text before the real turn (a one-letter
            # answer "a" inside "assistant"): its real occurrence is the next one that a marker follows.
            span = _find_content(full, m["content"], span[0] + 1)
            end = _marker_end(full, span[1], markers) if span else None
        span = span or first_span
        if end is None:
            raise MaskingError(f"the end-of-turn marker {' or '.join(map(repr, markers))} does not follow assistant "
                               f"message {i}; the model would not learn to stop. Rendering:\n"
                               + mark_spans(full, spans + [span]))
        spans.append((span[0], end))
        prev_end, before = end, []
    return spans


# --------------------------------------------------------------------------------------------
# tokenization with labels
# --------------------------------------------------------------------------------------------

def _check_args(train_on: str, max_length: int | None) -> None:
    if train_on not in TRAIN_ON:
        raise ValueError(f"train_on={train_on!r}; choose one of {TRAIN_ON}")
    if max_length is not None and max_length < 1:
        raise ValueError(f"max_length={max_length}; use a positive number or None")


def _spans(tokenizer, messages: list[dict], full: str, train_on: str, info: TemplateInfo):
    """Trained character spans of one rendered conversation."""
    if train_on == "all":
        return [(0, len(full))]
    if not info.end_marker:
        raise MaskingError("the chat template writes nothing after an assistant message, so no "
                           "end-of-turn token could be trained and the model would never learn to "
                           "stop. Add the EOS token after assistant content in the template, e.g. "
                           "{{ message['content'] + eos_token }}")
    spans = assistant_spans(tokenizer, messages, full, info)
    return spans[-1:] if train_on == "last_assistant" else spans


def _render_many(tokenizer, conversations: list[list[dict]]) -> list:
    """Render many conversations in one template call; per conversation (keeping each error as
    the value) when the batch fails."""
    try:
        return list(tokenizer.apply_chat_template(conversations, tokenize=False))
    except Exception:
        out = []
        for msgs in conversations:
            try:
                out.append(render(tokenizer, msgs))
            except MaskingError as e:
                out.append(e)
        return out


class _OffsetRanges:
    """Token ranges from an offset mapping (the public tokenizer call)."""

    def __init__(self, offsets):
        self.off = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)

    def __call__(self, s: int, e: int) -> tuple[int, int]:
        hit = np.flatnonzero((self.off[:, 0] < e) & (self.off[:, 1] > s))
        return (int(hit[0]), int(hit[-1]) + 1) if len(hit) else (0, 0)


class _EncodingRanges:
    """Token ranges from a Rust ``Encoding`` (char_to_token; no offset list is materialised);
    ``shift``: tokens put in front of the encoding (a BOS from :func:`rendered_ids`)."""

    def __init__(self, encoding, shift: int = 0):
        self.enc, self.shift = encoding, shift

    def _first(self, chars) -> int | None:
        for c in chars:
            t = self.enc.char_to_token(c)
            if t is not None:
                return t
        return None

    def __call__(self, s: int, e: int) -> tuple[int, int]:
        first, last = self._first(range(s, e)), self._first(range(e - 1, s - 1, -1))
        return (first + self.shift, last + 1 + self.shift) if first is not None else (0, 0)


def _labels(ids: list[int], ranges, spans, max_length: int | None, train_on: str) -> dict:
    """The example dict. A token is trained when its characters overlap a span (``ranges(s, e)``
    gives the [first, last+1) token range overlapping characters [s, e))."""
    total = len(ids)
    n = total if max_length is None else min(total, max_length)
    ids = list(ids[:n])
    if train_on == "all":
        return {"input_ids": ids, "attention_mask": [1] * n, "labels": list(ids)}
    labels = [IGNORE_INDEX] * n
    for s, e in spans:
        i0, i1 = ranges(s, e)
        labels[i0:min(i1, n)] = ids[i0:min(i1, n)]
    if labels.count(IGNORE_INDEX) == n:
        if n < total:
            raise TruncatedAwayError(f"all trained tokens lie beyond max_length={max_length}")
        raise MaskingError("no token overlaps the assistant text (tokenizer offsets are unusable?)")
    return {"input_ids": ids, "attention_mask": [1] * n, "labels": labels}


def _encode_many(tokenizer, texts: list[str], info: TemplateInfo) -> list[tuple[list, Any]]:
    """(ids, token-range function) per text. Uses the Rust tokenizer directly (skipping the Python
    conversion of every offset) when that is equivalent to ``tokenizer(texts)``, i.e. no padding or
    truncation is configured on it; otherwise the public call with ``return_offsets_mapping``."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    bos = [[tokenizer.bos_token_id] if _needs_bos(tokenizer, t, info.tokenizer_adds_bos) else [] for t in texts]
    if info.direct_backend and backend is not None and backend.padding is None and backend.truncation is None:
        encs = backend.encode_batch(texts, add_special_tokens=False)
        return [(b + e.ids, _EncodingRanges(e, len(b))) for b, e in zip(bos, encs)]
    enc = _encode(tokenizer, texts)
    return [(b + ids, _OffsetRanges([(0, 0)] * len(b) + list(off)))
            for b, ids, off in zip(bos, enc["input_ids"], enc["offset_mapping"])]


def _encode(tokenizer, texts):
    """The public tokenizer call with offsets, no special tokens (:func:`rendered_ids` adds BOS)."""
    if not getattr(tokenizer, "is_fast", False):
        raise MaskingError("masking needs a fast tokenizer (offset mapping); load it with use_fast=True")
    return tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)


def _check_bos(tokenizer, ids: list[int]) -> None:
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is not None and len(ids) > 1 and ids[0] == bos and ids[1] == bos:
        # rendered_ids never adds a BOS to a render that has one, so the template wrote it twice
        raise MaskingError(f"double BOS at the start of input_ids: the chat template writes the BOS token "
                           f"{tokenizer.bos_token!r} twice (e.g. bos_token followed by a turn header that is "
                           "the same token); use a template written for this tokenizer")


def tokenize_with_mask(tokenizer, messages, max_length: int | None = None,
                       train_on: str = "assistant") -> dict:
    """Tokenize a conversation and build its labels.

    ``messages``: a conversation (or any record :func:`instructlab.formats.to_messages` accepts).
    ``train_on``: ``"assistant"`` (every assistant content + its end-of-turn marker),
    ``"last_assistant"`` (only the final assistant turn) or ``"all"`` (every token).
    ``max_length``: keep the first ``max_length`` tokens.
    Returns ``{"input_ids", "attention_mask", "labels"}`` (lists of int; -100 = masked);
    ``input_ids`` are exactly the tokenizer's tokens of the rendered conversation.
    Raises FormatError (bad conversation), MaskingError (template problem, showing the render) and
    TruncatedAwayError (a MaskingError) when truncation removed every trained token.
    """
    _check_args(train_on, max_length)
    info = template_info(tokenizer)
    messages = to_messages(messages)
    full = render(tokenizer, messages)
    spans = _spans(tokenizer, messages, full, train_on, info)
    [(ids, ranges)] = _encode_many(tokenizer, [full], info)
    _check_bos(tokenizer, ids)
    return _labels(ids, ranges, spans, max_length, train_on)


# --------------------------------------------------------------------------------------------
# verification
# --------------------------------------------------------------------------------------------

def _norm(text: str) -> str:
    # U+2581 too: SentencePiece decoders (Gemma) turn a literal '▁' in the text into a space
    return re.sub(r"[\s\u2581]+", "", text)


def trained_runs(labels: Sequence[int]) -> list[tuple[int, int]]:
    """[start, end) index ranges of consecutive trained (label != -100) positions."""
    trained = np.asarray(labels) != IGNORE_INDEX
    edges = np.flatnonzero(np.diff(np.concatenate([[0], trained.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _run_matches(decoded: str, variants: list[str], partial: bool) -> bool:
    got = _norm(decoded)
    for v in map(_norm, variants):
        if got == v or (v in got and len(got) - len(v) <= 2) or (partial and got and v.startswith(got[:-2])):
            return True
    return False


def _match_runs(decoded: list[str], items: list[tuple[str, str]], truncated: bool) -> list[str]:
    """Problems found matching trained runs to expected turns, in order. A run may cover several
    consecutive turns when the template puts nothing between them (e.g. Mistral's ``</s>`` then
    the next answer); a truncated example may miss trailing turns."""
    problems, j = [], 0
    for k, text in enumerate(decoded):
        partial = truncated and k == len(decoded) - 1
        for m in range(1, len(items) - j + 1):
            combos = ["".join(it[v] for it in items[j:j + m]) for v in (0, 1)]
            if _run_matches(text, combos, partial):
                j += m
                break
        else:
            want = items[j][0] if j < len(items) else "nothing"
            return problems + [f"trained run {k} decodes to {text!r}, expected {want!r}"]
    if j < len(items) and not (truncated and decoded):
        problems.append(f"{len(decoded)} trained runs cover {j} of {len(items)} assistant turns")
    return problems


def verify_mask(tokenizer, messages, example: dict, train_on: str = "assistant") -> bool:
    """Check an example independently of how it was built; True, or MaskingError showing the
    rendering with the trained tokens in ⟦ ⟧.

    Checks: ``input_ids`` equal the tokenization of the render (a prefix when truncated); each run
    of trained tokens decodes to one assistant content plus the end-of-turn marker, in order; no
    user or system text is trained; ``"all"`` trains every token.
    """
    info = template_info(tokenizer)
    messages = to_messages(messages)
    full = render(tokenizer, messages)
    expected_ids = rendered_ids(tokenizer, full, info)
    ids, labels = list(example["input_ids"]), list(example["labels"])
    truncated = len(ids) < len(expected_ids)
    problems = []
    if ids != expected_ids[:len(ids)] or len(labels) != len(ids):
        problems.append("input_ids are not the tokenization of the rendered conversation")
    if train_on == "all":
        if labels != ids:
            problems.append("train_on='all' but some tokens are masked")
        return _verdict(tokenizer, example, problems)
    wanted = [m for m in messages if m["role"] == "assistant"]
    wanted = wanted[-1:] if train_on == "last_assistant" else wanted
    runs = trained_runs(labels)
    decoded = [tokenizer.decode(ids[a:b], skip_special_tokens=False) for a, b in runs]
    last = messages[-1] if messages[-1]["role"] == "assistant" else None
    items = [(m["content"] + info.marker(m is last), _post_think(m["content"]) + info.marker(m is last))
             for m in wanted]
    problems += _match_runs(decoded, items, truncated)
    answers = _norm(" ".join(m["content"] for m in messages if m["role"] == "assistant"))
    trained_text = _norm("".join(decoded))
    for m in messages:
        own = _norm(m["content"])
        if m["role"] != "assistant" and len(own) >= 4 and own not in answers and own in trained_text:
            problems.append(f"{m['role']} text {m['content'][:40]!r} is trained")
    return _verdict(tokenizer, example, problems)


def _verdict(tokenizer, example: dict, problems: list[str]) -> bool:
    if problems:
        raise MaskingError("mask check failed: " + "; ".join(problems) + "\nTrained tokens in ⟦ ⟧:\n"
                           + show_mask(tokenizer, example).marked)
    return True


# --------------------------------------------------------------------------------------------
# datasets
# --------------------------------------------------------------------------------------------

@dataclass
class MaskReport:
    """What :func:`mask_dataset` did: counts, drop reasons and token totals (kept examples)."""

    n_in: int = 0
    n_kept: int = 0
    n_dropped: int = 0
    reasons: Counter = field(default_factory=Counter)
    dropped: list = field(default_factory=list)  # (index, reason); (source, reason) when sources are given
    trained_tokens: int = 0
    total_tokens: int = 0
    n_truncated: int = 0  # kept, but cut by max_length (some trained tokens lost)
    n_verified: int = 0
    n_duplicates: int = 0  # conversations identical to an earlier one (trained again, as given)
    duplicates: list = field(default_factory=list)  # (record, the earlier record it repeats)
    n_whitespace_turns: int = 0  # turns whose content is empty or only whitespace
    sources: list | None = field(default=None, repr=False)  # one label per input conversation, for messages

    @property
    def trained_fraction(self) -> float:
        return self.trained_tokens / self.total_tokens if self.total_tokens else 0.0

    def to_dict(self) -> dict:
        return {"n_in": self.n_in, "n_kept": self.n_kept, "n_dropped": self.n_dropped,
                "reasons": dict(self.reasons), "dropped": [list(d) for d in self.dropped],
                "trained_tokens": self.trained_tokens, "total_tokens": self.total_tokens,
                "trained_fraction": round(self.trained_fraction, 4), "n_truncated": self.n_truncated,
                "n_verified": self.n_verified, "n_duplicates": self.n_duplicates,
                "duplicates": [list(d) for d in self.duplicates], "n_whitespace_turns": self.n_whitespace_turns}

    def __str__(self) -> str:
        text = (f"{self.n_kept}/{self.n_in} examples kept, {self.n_dropped} dropped; "
                f"{self.trained_tokens}/{self.total_tokens} tokens trained "
                f"({self.trained_fraction:.1%}); {self.n_truncated} truncated but kept")
        return text + "".join(f"\n  dropped {n}: {r}" for r, n in self.reasons.most_common())


@dataclass
class MaskedDataset:
    """Masked examples (dicts of input_ids / attention_mask / labels) plus the :class:`MaskReport`."""

    examples: list
    report: MaskReport

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i):
        return self.examples[i]

    def __iter__(self):
        return iter(self.examples)

    def to_dataset(self):
        """The examples as a ``datasets.Dataset`` (for Trainer / SFTTrainer)."""
        import datasets
        return datasets.Dataset.from_list(self.examples)


def _conversation(item: Any):
    return item["messages"] if isinstance(item, dict) and "messages" in item else item


def mask_dataset(tokenizer, conversations: Iterable, max_length: int | None = None,
                 train_on: str = "assistant", progress: bool = True, verify: int | bool = 8,
                 on_error: str = "raise", chunk_size: int = 512,
                 sources: Sequence[str] | None = None) -> MaskedDataset:
    """Mask many conversations fast (one render each, batched tokenization).

    ``conversations``: message lists or records with ``"messages"``. Examples whose trained tokens
    were all cut by ``max_length`` are dropped and counted in the report (never kept with zero
    loss). Other problems (bad records, template failures) raise with the index, or with
    ``on_error="drop"`` are dropped and reported too. ``verify``: run :func:`verify_mask` on the
    first N kept examples (True = all, False/0 = none). ``sources``: one label per conversation (e.g.
    ``"train.jsonl:12"``) that errors and ``report.dropped`` use instead of the position. Duplicate
    conversations and whitespace-only turns are counted in the report.
    Returns :class:`MaskedDataset` (``examples``, ``report``).
    """
    _check_args(train_on, max_length)
    if on_error not in ("raise", "drop"):
        raise ValueError(f"on_error={on_error!r}; use 'raise' or 'drop'")
    items = [_conversation(c) for c in conversations]
    if sources is not None and len(sources) != len(items):
        raise ValueError(f"sources has {len(sources)} labels for {len(items)} conversations")
    info = template_info(tokenizer)
    report = MaskReport(n_in=len(items), sources=list(sources) if sources is not None else None)
    valid = []
    for i, msgs in enumerate(items):
        try:
            valid.append((i, to_messages(msgs)))
        except ValueError as e:
            _drop_or_raise(report, i, e, on_error)
    _count_repeats(report, valid)
    examples, kept_msgs, bar = [], [], _progress(len(valid), progress)
    for c in range(0, len(valid), chunk_size):
        for msgs, ex in _mask_chunk(tokenizer, valid[c:c + chunk_size], info, max_length, train_on,
                                    on_error, report):
            examples.append(ex)
            kept_msgs.append(msgs)
        bar.update(len(valid[c:c + chunk_size]))
    bar.close()
    n_verify = len(examples) if verify is True else int(verify or 0)
    for msgs, ex in zip(kept_msgs[:n_verify], examples[:n_verify]):
        verify_mask(tokenizer, msgs, ex, train_on)
        report.n_verified += 1
    report.dropped.sort()
    if report.sources is not None:
        report.dropped = [(report.sources[i], reason) for i, reason in report.dropped]
    report.n_kept, report.n_dropped = len(examples), len(report.dropped)
    report.total_tokens = sum(len(e["input_ids"]) for e in examples)
    report.trained_tokens = sum(len(e["labels"]) - e["labels"].count(IGNORE_INDEX) for e in examples)
    return MaskedDataset(examples, report)


def _mask_chunk(tokenizer, chunk, info, max_length, train_on, on_error, report) -> list:
    """[(messages, example)] for a chunk of (index, messages): one batched render, one batched
    tokenization; problems are dropped into ``report`` or raised."""
    prepared = []
    for (i, msgs), full in zip(chunk, _render_many(tokenizer, [m for _, m in chunk])):
        try:
            if isinstance(full, Exception):
                raise full
            prepared.append((i, msgs, full, _spans(tokenizer, msgs, full, train_on, info)))
        except MaskingError as e:
            _drop_or_raise(report, i, e, on_error)
    out = []
    for (i, msgs, _, spans), (ids, ranges) in zip(prepared, _encode_many(tokenizer, [p[2] for p in prepared], info)):
        try:
            _check_bos(tokenizer, ids)
            ex = _labels(ids, ranges, spans, max_length, train_on)
        except MaskingError as e:
            _drop_or_raise(report, i, e, "drop" if isinstance(e, TruncatedAwayError) else on_error)
            continue
        report.n_truncated += len(ex["input_ids"]) < len(ids)
        out.append((msgs, ex))
    return out


def _label(report: MaskReport, index: int) -> str:
    """How messages name conversation ``index``: its source (file:line, id) when known, else its position."""
    return str(report.sources[index]) if report.sources is not None else f"conversation {index}"


def _count_repeats(report: MaskReport, valid: list) -> None:
    """Count duplicate conversations and whitespace-only turns into ``report`` (they are trained as given)."""
    import json

    first: dict[str, int] = {}
    for i, msgs in valid:
        report.n_whitespace_turns += sum(not m["content"].strip() for m in msgs)
        key = json.dumps(msgs, sort_keys=True, ensure_ascii=False)
        if key in first:
            report.n_duplicates += 1
            report.duplicates.append((_label(report, i), _label(report, first[key])))
        else:
            first[key] = i


def _drop_or_raise(report: MaskReport, index: int, error: Exception, on_error: str) -> None:
    reason = str(error).split("\n", 1)[0]
    if isinstance(error, TruncatedAwayError):
        reason = "all trained tokens truncated by max_length"
    if on_error == "raise":
        raise type(error)(f"{_label(report, index)}: {error}") from error
    report.dropped.append((index, reason))
    report.reasons[reason if isinstance(error, TruncatedAwayError) else type(error).__name__ + ": "
                   + reason[:120]] += 1


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def _progress(total: int, enabled: bool):
    if not enabled or total < 1000:
        return _NoBar()
    from tqdm.auto import tqdm
    return tqdm(total=total, desc="masking", unit="conv")


# --------------------------------------------------------------------------------------------
# collator
# --------------------------------------------------------------------------------------------

class MaskedCollator:
    """Pad masked examples into a batch of tensors.

    ``MaskedCollator(tokenizer_or_pad_token_id, pad_to_multiple_of=None, padding_side="right")``;
    calling it on a list of examples returns ``{"input_ids", "attention_mask", "labels"}`` (torch
    LongTensors). Labels are padded with -100 and otherwise taken from the examples, never derived
    from ``input_ids == pad``, so an EOS that doubles as the pad token is still trained.
    Extra keys in the examples are ignored.
    """

    def __init__(self, tokenizer_or_pad_token_id, pad_to_multiple_of: int | None = None,
                 padding_side: str = "right"):
        pad = tokenizer_or_pad_token_id
        if not isinstance(pad, int):
            pad = pad.pad_token_id if pad.pad_token_id is not None else pad.eos_token_id
        if pad is None:
            raise MaskingError("no pad token id: set tokenizer.pad_token (e.g. to eos) or pass an int")
        if padding_side not in ("right", "left"):
            raise ValueError("padding_side must be 'right' or 'left'")
        self.pad_token_id, self.pad_to_multiple_of, self.padding_side = pad, pad_to_multiple_of, padding_side

    def __call__(self, features: list[dict]) -> dict:
        import torch
        longest = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            longest = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch = {k: torch.full((len(features), longest), v, dtype=torch.long)
                 for k, v in (("input_ids", self.pad_token_id), ("attention_mask", 0), ("labels", IGNORE_INDEX))}
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            cols = slice(0, n) if self.padding_side == "right" else slice(longest - n, longest)
            batch["input_ids"][row, cols] = torch.as_tensor(f["input_ids"], dtype=torch.long)
            batch["attention_mask"][row, cols] = torch.as_tensor(f.get("attention_mask", [1] * n), dtype=torch.long)
            batch["labels"][row, cols] = torch.as_tensor(f.get("labels", f["input_ids"]), dtype=torch.long)
        return batch


# --------------------------------------------------------------------------------------------
# display
# --------------------------------------------------------------------------------------------

def token_pieces(tokenizer, input_ids: Sequence[int]) -> list[str]:
    """The text of each token, decoded next to its left neighbour so leading spaces survive.

    A character split over several byte tokens (emoji, CJK) is given to the first of them and the
    others get ``""``, so ``"".join(pieces)`` reads like the decoded text.
    """
    def dec(ids):
        return tokenizer.decode(ids, skip_special_tokens=False)

    pieces, group, left = [], [], []
    for k, i in enumerate(input_ids):
        group.append(i)
        lhs, both = dec(left), dec(left + group)
        text = both[len(lhs):] if both.startswith(lhs) else dec(group)
        if text.endswith("\ufffd") and k + 1 < len(input_ids) and len(group) < 4:
            continue  # an incomplete UTF-8 character: wait for the next byte token
        pieces += [text] + [""] * (len(group) - 1)
        left, group = group[-1:], []
    return pieces


@dataclass
class MaskView:
    """Trained vs masked tokens. In a notebook it shows as HTML, in a terminal (``print``) as ANSI
    colours; ``.marked`` is plain text with trained runs in ⟦ ⟧."""

    pieces: list
    trained: list
    prefer_html: bool = True

    @property
    def n_tokens(self) -> int:
        return len(self.pieces)

    @property
    def n_trained(self) -> int:
        return int(sum(self.trained))

    @property
    def trained_fraction(self) -> float:
        return self.n_trained / self.n_tokens if self.n_tokens else 0.0

    @property
    def summary(self) -> str:
        return f"{self.n_tokens} tokens, {self.n_trained} trained ({self.trained_fraction:.1%})"

    def _runs(self):
        start = 0
        for k in range(1, len(self.pieces) + 1):
            if k == len(self.pieces) or self.trained[k] != self.trained[start]:
                yield self.trained[start], "".join(self.pieces[start:k])
                start = k

    @property
    def marked(self) -> str:
        return "".join(f"⟦{t}⟧" if on else t for on, t in self._runs())

    @property
    def ansi(self) -> str:
        body = "".join((f"\x1b[30;42m{t}\x1b[0m" if on else f"\x1b[2m{t}\x1b[0m") for on, t in self._runs())
        return f"{self.summary}  [\x1b[30;42mtrained\x1b[0m / \x1b[2mmasked\x1b[0m]\n{body}"

    @property
    def html(self) -> str:
        spans = []
        for on, piece in zip(self.trained, self.pieces):
            text = _html.escape(piece).replace("\n", "↵\n")
            style = "background:#b7f0b1;color:#000" if on else "background:#eeeeee;color:#777"
            spans.append(f'<span style="{style};border-right:1px solid #fff">{text}</span>')
        legend = ('<span style="background:#b7f0b1">trained</span> / '
                  '<span style="background:#eeeeee;color:#777">masked</span>')
        return (f'<div><b>{_html.escape(self.summary)}</b> &nbsp; {legend}'
                f'<pre style="white-space:pre-wrap;font-size:12px">{"".join(spans)}</pre></div>')

    def _repr_html_(self):
        return self.html if self.prefer_html else None

    def __str__(self) -> str:
        return self.ansi

    __repr__ = __str__


def show_mask(tokenizer, example, html: bool | None = None, train_on: str = "assistant") -> MaskView:
    """Colour view of which tokens are trained.

    ``example``: a dict with ``input_ids`` and ``labels`` (from :func:`tokenize_with_mask`) or a
    conversation (masked here with ``train_on``). ``html``: None/True shows HTML in notebooks,
    False forces the ANSI text view everywhere. Returns a :class:`MaskView` (``.html``, ``.ansi``,
    ``.marked``, ``.n_tokens``, ``.trained_fraction``).
    """
    if not (isinstance(example, dict) and "input_ids" in example):
        example = tokenize_with_mask(tokenizer, example, train_on=train_on)
    trained = [x != IGNORE_INDEX for x in example["labels"]]
    return MaskView(token_pieces(tokenizer, example["input_ids"]), trained, prefer_html=html is not False)
