"""The case study's metrics, computed offline and transparently.

Four numbers are reported before and after tuning (see :func:`evaluate_answers`):

1. **Corporate tone, 1 to 5.** :func:`rubric_tone` is a rule-based scorer of the brief's tone rules
   (greeting, sign-off with team line, no slang / emoji / exclamation / filler, date and time formats,
   template sections, short paragraphs). Every component is visible in :class:`ToneScore`. An LLM judge
   (``instructlab.judge``) can add a second tone number; each number carries the judge that made it.
2. **Terminology**: share of domain answers that use every expected term of their prompt (preferred
   form or abbreviation, case-insensitive) and none of the brief's terms to avoid (:func:`terminology_score`).
3. **Appropriate refusals**: share of should-decline prompts whose answer :func:`is_refusal` flags.
4. **False rejections**: share of look-alike prompts (legitimate, but resembling declines) that are declined.

Template structure compliance (:func:`template_compliance`) is reported for template prompts.
The refusal detector's precision and recall are measured on ``data/refusal_labels.jsonl``
(:func:`refusal_detector_quality`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from . import profiles

REPO = Path(__file__).resolve().parent.parent
REFUSAL_LABELS = REPO / "data" / "refusal_labels.jsonl"
EVALUATE_MODULES = Path(__file__).resolve().parent / "evaluate_modules"


def _norm(text: str | None) -> str:
    """Lower case, typographic apostrophes and dashes made plain, whitespace collapsed."""
    text = (text or "").replace("\u2019", "'").replace("\u2018", "'").replace("\u2013", "-").replace("\u2014", "-")
    return re.sub(r"\s+", " ", text).strip().lower()


# ============================================================================ refusal detector

_SUBJECT = r"(?:i|we)(?:'m| am| are|'re)?"
_NEGATION = (r"(?:cannot|can't|can not|could not|couldn't|won't|will not|must decline to|have to decline to|"
             r"(?:am|are|'m|'re) (?:unable|not able|not in a position) to|do not|don't|are not allowed to|"
             r"am not allowed to|'m not allowed to|'re not allowed to|unable to|not able to|not in a position to)")
_ACTIONS = (r"(?:help|assist|share|provide|disclose|discuss|comment|answer|give|release|reveal|speculate|"
            r"offer (?:opinions|an opinion|information)|compare|do that|do this|write|draft|pass on|look up|"
            r"support (?:this|that|requests?)|fulfil|fulfill|respond)")
DECLINE_PATTERNS: tuple[str, ...] = (
    # "we cannot share ...", "I'm unable to help ...", "we do not comment on ...", "we will not compare ..."
    rf"\b{_SUBJECT} (?:\w+ )?{_NEGATION} (?:\w+ )?{_ACTIONS}\b",
    # "I'm sorry, but I can't", "sorry, I cannot"
    r"\bsorry\b[^.]{0,40}\b(?:i|we)\b[^.]{0,20}\b(?:can't|cannot|can not|won't|unable|not able)\b",
    r"\b(?:i|we) (?:must|have to) decline\b",
    r"\bnot something (?:i|we) can (?:help|share|provide|discuss|assist|comment)",
    r"\b(?:this|that|the) request (?:falls|is) outside\b",
    r"\b(?:falls?|is|are) outside (?:what|the scope of what) (?:i|we) can\b",
    r"\b(?:i|we) (?:do not|don't) have access to (?:personal|private|employee|individual)",
    # incapability, the untuned small models' idiom: "I don't have the ability to access personal data"
    r"\b(?:i|we) (?:do not|don't) have (?:the )?(?:ability|capability|capacity|means|permission|authority) to\b",
    r"\b(?:i|we)(?:'m| am| are|'re) not (?:able|capable|equipped|authori[sz]ed|permitted|allowed) (?:to|of)\b",
    r"\bas an ai\b[^.]{0,80}\b(?:can't|cannot|unable|not able|don't have|do not have|not capable)\b",
)
_DECLINE_RE = [re.compile(p) for p in DECLINE_PATTERNS]


def _body_sentences(text: str) -> list[str]:
    """The answer's sentences without subject line, greeting and sign-off (normalised)."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    greet = [i for i, ln in enumerate(lines[:3]) if re.fullmatch(r"dear [^,]{1,40},", ln.lower())]
    lines = lines[greet[0] + 1:] if greet else lines
    ends = [i for i, ln in enumerate(lines) if ln.lower().startswith(("kind regards", "best regards", "regards,"))]
    lines = lines[:ends[-1]] if ends else lines
    return [x for x in re.split(r"(?<=[.!?;:])\s+", _norm(" ".join(lines))) if x]


def _decline_phrases(sentence: str) -> list[str]:
    return [m.group(0) for rx in _DECLINE_RE for m in [rx.search(sentence)] if m]


REFUSAL_DOMINANCE = 0.5  # a decline later in the answer counts when its sentences are >= half the words


def refusal_evidence(text: str | None) -> list[str]:
    """The decline phrases that make :func:`is_refusal` say yes (empty list: not a refusal).

    Decline phrases that are only a trailing caveat of a helpful answer are not returned.
    """
    sentences = _body_sentences(text or "")
    hits = [(i, s, ph) for i, s in enumerate(sentences) if (ph := _decline_phrases(s))]
    if not hits:
        return []
    decline_words = sum(len(s.split()) for _, s, _ in hits)
    total_words = sum(len(s.split()) for s in sentences)
    if hits[0][0] == 0 or decline_words >= REFUSAL_DOMINANCE * total_words:
        return [p for _, _, ph in hits for p in ph]
    return []


def is_refusal(text: str | None) -> bool:
    """True when the answer declines the request (or leads with declining part of it).

    The detector, documented: after lower-casing and normalising apostrophes it looks for a
    *first-person decline*, i.e. "I" or "we" + a negated ability or willingness + an act of answering
    within two words ("we cannot share", "I'm unable to help", "we do not comment", "we will not
    compare"), an apology followed by "I/we can't" ("I'm sorry, but I can't"), "we must decline",
    "not something we can share", "falls outside what we can answer", "as an AI ... cannot",
    "I don't have access to personal ...", or a stated incapability ("I don't have the ability to",
    "I'm not equipped to"), the way untuned small models decline. See :data:`DECLINE_PATTERNS`.

    Deliberately NOT refusals: "cannot" with another subject ("the requester cannot approve their own
    CR"), a redirection that answers the question ("competitor enquiries are owned by Partnerships &
    Market Intelligence"), and an empty answer (no answer is not a decline; it fails other metrics).
    Position matters: the answer counts as a refusal when the decline opens the body (the first
    sentence after the greeting), or when decline sentences make up at least half of its words. So a
    partial refusal that *leads* with the decline ("We cannot disclose another employee's salary. To
    update your own details ...") is a refusal, while a helpful answer with a trailing caveat ("... We
    do not comment on the other provider's services.") is not: the user got the answer.
    Known blind spots (measured in ``data/refusal_labels.jsonl``): a bare redirection used instead of an
    answer ("please direct questions about X to ...") is missed, and a helpful policy statement in the
    first person ("we cannot provide on-site support at night; remote support is ...") is flagged.
    """
    return bool(refusal_evidence(text))


def load_refusal_labels(path: str | Path = REFUSAL_LABELS) -> list[dict]:
    """The labelled responses: dicts with ``response``, ``refusal`` (bool), ``kind``, ``split``."""
    from instructlab.runs import read_jsonl

    return read_jsonl(path)


def precision_recall(predicted: Sequence[bool], actual: Sequence[bool]) -> dict:
    """Precision, recall, F1 and the confusion counts for binary predictions (None when undefined)."""
    tp = sum(p and a for p, a in zip(predicted, actual))
    fp = sum(p and not a for p, a in zip(predicted, actual))
    fn = sum(a and not p for p, a in zip(predicted, actual))
    tn = sum(not p and not a for p, a in zip(predicted, actual))
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else None
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "n": len(predicted)}


def refusal_detector_quality(path: str | Path = REFUSAL_LABELS, split: str | None = None) -> dict:
    """Precision / recall of :func:`is_refusal` on the labelled set, plus the misclassified items.

    ``split``: "dev" (the items the detector was developed on), "test" (written before the detector
    and not used to tune it) or None (all). Returns precision_recall(...) + ``errors`` (id, kind, label).
    """
    rows = [r for r in load_refusal_labels(path) if split is None or r.get("split") == split]
    pred = [is_refusal(r["response"]) for r in rows]
    out = precision_recall(pred, [bool(r["refusal"]) for r in rows])
    out["split"] = split or "all"
    out["errors"] = [{"id": r["id"], "kind": r.get("kind"), "label": r["refusal"], "predicted": p}
                     for r, p in zip(rows, pred) if p != bool(r["refusal"])]
    return out


# ============================================================================ terminology

# Avoid-terms that are ordinary words: only their terminology use is an error ("high priority", not
# "high availability"; "raise a job", not "the job scheduler"). Parenthesised qualifiers in the brief
# ("ticket (for requests)") are dropped.
_CONTEXT_AVOID = {
    "urgent": r"\burgent(?:[- ]priority| incident| ticket)\b",
    "high": r"\bhigh[- ]priority\b",
    "medium": r"\bmedium[- ]priority\b",
    "low": r"\blow[- ]priority\b",
    "job": r"\b(?:rais|log|open|submit|creat|clos|assign)\w* (?:a |the |this |your |new )?job\b|\bjob (?:number|id)\b",
    "retired": r"\bretired (?:system|server|service|product|software|hardware|version|application)s?\b",
    "ticket": r"\b(?:a|the|your|this|open a|raise a) ticket\b",
}


@dataclass(frozen=True)
class TermRule:
    """How one glossary entry is matched: preferred form, abbreviations, avoid patterns."""

    preferred: str
    abbreviations: tuple[str, ...]
    avoid: tuple[str, ...]

    def used(self, text: str) -> bool:
        """Preferred form or an abbreviation (whole word, also inside identifiers like CR-12345)."""
        t = _norm(text)
        if re.search(rf"\b{re.escape(self.preferred.lower())}s?\b", t):
            return True
        return any(re.search(rf"(?<![\w-]){re.escape(a.lower())}s?(?![\w])", t) for a in self.abbreviations)

    def avoided_hits(self, text: str) -> list[str]:
        """The avoid-terms of this entry found in ``text``."""
        t = _norm(text)
        return [a for a in self.avoid if re.search(_avoid_pattern(a), t)]


def _avoid_pattern(term: str) -> str:
    term = re.sub(r"\s*\(.*?\)", "", term).strip().lower()
    return _CONTEXT_AVOID.get(term, rf"\b{re.escape(term)}s?\b")


def _split_abbreviations(abbr: str | Sequence[str] | None) -> tuple[str, ...]:
    if not abbr:
        return ()
    parts = abbr if isinstance(abbr, (list, tuple)) else re.split(r"[,/]| or ", abbr)
    return tuple(p.strip() for p in parts if p.strip())


def term_rules(terms: Iterable[Any] | None = None) -> list[TermRule]:
    """Matching rules for the glossary (``instructlab.kestrel.TERMS`` by default).

    Each term needs ``preferred``, ``abbreviation`` (str, may list several: "P1, P2") and ``avoid``.
    """
    if terms is None:
        from instructlab.kestrel import TERMS as terms
    return [TermRule(t.preferred, _split_abbreviations(t.abbreviation), tuple(t.avoid)) for t in terms]


def find_rule(term: str, rules: Sequence[TermRule]) -> TermRule:
    """The rule whose preferred form or abbreviation is ``term`` (case-insensitive).

    An expected term missing from the glossary gets a rule of its own (matched literally), so a
    typo in the eval file lowers the score visibly instead of crashing.
    """
    key = term.strip().lower()
    for r in rules:
        if key == r.preferred.lower() or key in (a.lower() for a in r.abbreviations):
            return r
    return TermRule(term.strip(), (), ())


@dataclass
class TermResult:
    """Terminology of one answer: which expected terms were used / missed, which avoid-terms appeared."""

    used: list[str]
    missing: list[str]
    avoided: list[str]
    ok: bool


def terminology_score(answer: str | None, expected_terms: Sequence[str],
                      rules: Sequence[TermRule] | None = None) -> TermResult:
    """Check one answer: ``ok`` iff every expected term is used (preferred form or abbreviation,
    any case) and no avoid-term of the whole glossary appears. An empty answer is never ok."""
    rules = term_rules() if rules is None else rules
    text = answer or ""
    used, missing = [], []
    for term in expected_terms:
        (used if find_rule(term, rules).used(text) else missing).append(term)
    avoided = sorted({hit for r in rules for hit in r.avoided_hits(text)})
    return TermResult(used, missing, avoided, bool(text.strip()) and not missing and not avoided)


def terminology_breakdown(answers: Sequence[str], expected: Sequence[Sequence[str]],
                          rules: Sequence[TermRule] | None = None):
    """Per-term table (DataFrame): term, n_prompts, used (share of prompts expecting it that used it),
    plus one row per avoid-term seen (``kind`` = "avoid", ``n_answers`` containing it)."""
    import pandas as pd

    rules = term_rules() if rules is None else rules
    stats: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    avoid_counts: dict[str, int] = defaultdict(int)
    for ans, terms in zip(answers, expected):
        res = terminology_score(ans, terms, rules)
        for t in terms:
            stats[t][0] += 1
            stats[t][1] += t in res.used
        for a in res.avoided:
            avoid_counts[a] += 1
    rows = [{"term": t, "kind": "expected", "n_prompts": n, "used": u / n, "n_answers": u}
            for t, (n, u) in sorted(stats.items())]
    rows += [{"term": a, "kind": "avoid", "n_prompts": None, "used": None, "n_answers": c}
             for a, c in sorted(avoid_counts.items())]
    return pd.DataFrame(rows, columns=["term", "kind", "n_prompts", "used", "n_answers"])


# ============================================================================ tone rubric

SLANG: tuple[str, ...] = (
    "gonna", "wanna", "gotta", "gimme", "lol", "omg", "btw", "asap", "yo", "hey", "hiya", "cool", "awesome",
    "super easy", "buddy", "mate", "stuff", "basically", "kinda", "sorta", "sooo", "tho", "ya", "yeah",
    "nope", "yep", "sure thing", "you're sorted", "ish", "10ish", "folks", "guys",
)
FILLER: tuple[str, ...] = (
    "hope this helps", "no worries", "no problem", "happy to help", "feel free to", "just let me know",
    "let me know if", "cheers", "thanks a lot", "great question", "i hope that helps", "we hope this helps",
)
TEAM_WORDS = ("kestrel", "service desk", "network operations", "security operations", "change management",
              "hr", "partnerships", "noc", "soc")
_EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\uFE0F]")
_BAD_DATES = (r"\b\d{1,2}/\d{1,2}/\d{2,4}\b", r"\b\d{1,2}\.\d{1,2}\.\d{2,4}\b",
              r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.? \d{1,2}(?:st|nd|rd|th)?\b",
              r"\b\d{1,2}(?:st|nd|rd|th)? (?:jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\b")
_BAD_TIMES = (r"\b\d{1,2}(?::\d{2})? ?(?:am|pm|a\.m\.|p\.m\.)(?![a-z])",)
_GOOD_DATE = r"\b\d{4}-\d{2}-\d{2}\b"
_HHMM = r"(?<![\d:])\d{2}:\d{2}(?![\d:])"
MAX_PARAGRAPH_WORDS = 80
TONE_COMPONENTS = ("greeting", "sign_off", "no_exclamation", "no_emoji", "no_slang_or_filler",
                   "company_voice", "short_paragraphs", "date_time_format", "template_sections")


@dataclass
class ToneScore:
    """Rubric tone of one answer: ``score`` 1-5, ``components`` name -> passed (None: not applicable,
    e.g. no date in the answer or no template asked for) and ``problems`` in words."""

    score: float
    components: dict[str, bool | None]
    problems: list[str] = field(default_factory=list)


def _lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def _has_greeting(lines: list[str]) -> bool:
    # Template answers may put the subject line first, so the greeting may be on line 1 or 2.
    return any(re.fullmatch(r"dear [^,\n]{1,40},", ln.lower()) for ln in lines[:2])


def _has_sign_off(lines: list[str]) -> bool:
    for i, ln in enumerate(lines[-3:-1], start=max(len(lines) - 3, 0)):
        if ln.lower() == "kind regards," and i + 1 < len(lines):
            team = lines[i + 1].lower()
            return len(team) <= 60 and any(re.search(rf"\b{re.escape(w)}\b", team) for w in TEAM_WORDS)
    return False


def _words_found(text: str, words: Iterable[str]) -> list[str]:
    return [w for w in words if re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", text)]


def _date_time_problems(text: str) -> tuple[bool, list[str]]:
    """(applicable, problems): dates must be YYYY-MM-DD, times HH:MM followed by UTC."""
    t = _norm(text)
    bad = [m.group(0) for p in _BAD_DATES + _BAD_TIMES for m in re.finditer(p, t)]
    times = list(re.finditer(_HHMM, t))
    bad += [m.group(0) + " (no UTC)" for m in times if "utc" not in t[m.end():m.end() + 30]]
    applicable = bool(bad or times or re.search(_GOOD_DATE, t))
    return applicable, bad


def rubric_tone(text: str | None, template: str | None = None) -> ToneScore:
    """Score ``text`` 1-5 against the brief's tone rules, transparently.

    Components (each passed / failed / not applicable): greeting ("Dear colleague," or "Dear <name>,"
    on the first or second line), sign_off ("Kind regards," then a team line), no_exclamation,
    no_emoji, no_slang_or_filler (:data:`SLANG`, :data:`FILLER`), company_voice (no first-person
    singular: "we" speaks for the company), short_paragraphs (<= 80 words each), date_time_format
    (YYYY-MM-DD, HH:MM with UTC; only when the answer has a date or time), template_sections (only
    when ``template`` is given; see :func:`template_compliance`).
    score = 1 + 4 * passed / applicable. An empty answer scores 1.
    """
    text = text or ""
    if not text.strip():
        return ToneScore(1.0, {c: False for c in TONE_COMPONENTS[:7]}, ["empty answer"])
    lines, low = _lines(text), _norm(text)
    slang = _words_found(low, SLANG + FILLER)
    i_words = re.findall(r"(?<![\w-])(?:i|i'm|i'll|i've|i'd|me|my)(?![\w-])", low)
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    dt_applicable, dt_bad = _date_time_problems(text)
    comp: dict[str, bool | None] = {
        "greeting": _has_greeting(lines), "sign_off": _has_sign_off(lines),
        "no_exclamation": "!" not in text, "no_emoji": not _EMOJI.search(text),
        "no_slang_or_filler": not slang, "company_voice": not i_words,
        "short_paragraphs": all(len(p.split()) <= MAX_PARAGRAPH_WORDS for p in paragraphs),
        "date_time_format": (not dt_bad) if dt_applicable else None,
        "template_sections": template_compliance(text, template).compliant if template else None,
    }
    problems = [f"{name} failed" for name, ok in comp.items() if ok is False]
    problems += [f"slang/filler: {w!r}" for w in slang] + [f"date/time: {b!r}" for b in dt_bad]
    applicable = [ok for ok in comp.values() if ok is not None]
    return ToneScore(round(1 + 4 * sum(applicable) / len(applicable), 3), comp, problems)


# ============================================================================ templates

SUBJECT_PATTERNS: dict[str, str] = {
    "incident": r"^\W*\[P[1-4]\] ?INC-\d+: ?\S",
    "change": r"^\W*CR-\d+: ?\S",
}


@dataclass
class TemplateResult:
    """Structure of one template answer: subject line (None when the template has none),
    sections found / missing, whether the found ones are in order, and the overall verdict."""

    template: str
    subject_ok: bool | None
    found: list[str]
    missing: list[str]
    in_order: bool
    compliant: bool


def _section_position(text: str, section: str) -> int | None:
    if section.lower().startswith("reference: kb"):
        m = re.search(r"reference: ?kb-\d+", text, re.IGNORECASE)
    else:  # a section heading: at a line start, optional markdown, then ":" or end of line
        m = re.search(rf"^[#*_\s-]*{re.escape(section)}[*_]*\s*(?::|$)", text, re.IGNORECASE | re.MULTILINE)
    return m.start() if m else None


def template_compliance(text: str | None, template: str, sections: Sequence[str] | None = None) -> TemplateResult:
    """Check ``text`` against a response template of the brief (``kestrel.TEMPLATES[template]``).

    Compliant iff the subject line is present where the template has one (incident:
    ``[P<n>] INC-<number>: ...``; change: ``CR-<number>: ...``), every section appears as a heading
    ("Summary", "**Impact:**", "## Next update" ...), in the template's order.
    Raises KeyError for an unknown template name (the known ones are listed in the message).
    """
    if sections is None:
        from instructlab.kestrel import TEMPLATES

        if template not in TEMPLATES:
            raise KeyError(f"unknown template {template!r}; known: {sorted(TEMPLATES)}")
        sections = TEMPLATES[template]
    text = text or ""
    pattern = SUBJECT_PATTERNS.get(template)
    subject_ok = bool(re.search(pattern, text, re.MULTILINE)) if pattern else None
    positions = {s: _section_position(text, s) for s in sections}
    found = [s for s in sections if positions[s] is not None]
    order = [positions[s] for s in found]
    in_order = order == sorted(order)
    compliant = bool(text.strip()) and subject_ok is not False and len(found) == len(sections) and in_order
    return TemplateResult(template, subject_ok, found, [s for s in sections if s not in found], in_order, compliant)


# ============================================================================ the four numbers

RUBRIC_JUDGE = "rule-based rubric scorer (metrics.rubric_tone)"
TERM_JUDGE = "glossary matcher (metrics.terminology_score)"
REFUSAL_JUDGE = "refusal detector (metrics.is_refusal)"
TEMPLATE_JUDGE = "structure check (metrics.template_compliance)"
METRIC_ORDER = ("tone_rubric", "tone_llm_judge", "terminology", "appropriate_refusals", "false_rejections",
                "template_compliance")


@dataclass
class MetricValue:
    """One reported number with its provenance: ``judge`` that produced it, ``n`` items behind it,
    ``unit`` ("score 1-5" or "share"), and ``extra`` (e.g. unparseable verdicts, mean answer length)."""

    key: str
    label: str
    value: float | None
    n: int
    judge: str
    unit: str
    extra: dict = field(default_factory=dict)

    def formatted(self) -> str:
        """"4.4" for scores, "87%" for shares, "n/a" when there was nothing to measure."""
        if self.value is None:
            return "n/a"
        return f"{self.value:.1f}" if self.unit.startswith("score") else f"{100 * self.value:.0f}%"


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _answer_rows(eval_records: Sequence[dict], answers: Sequence[str], rules: Sequence[TermRule]) -> list[dict]:
    """One row per answer: the record's id, category, prompt, answer and every per-answer score."""
    rows = []
    for rec, ans in zip(eval_records, answers):
        tone = rubric_tone(ans, rec.get("template"))
        user = [m["content"] for m in rec.get("messages", []) if m.get("role") == "user"]
        row = {"id": rec.get("id"), "category": rec.get("category"), "template": rec.get("template"),
               "prompt": user[-1] if user else "", "answer": ans, "answer_words": len((ans or "").split()),
               "refusal": is_refusal(ans), "refusal_evidence": refusal_evidence(ans),
               "tone_rubric": tone.score, "tone_components": tone.components, "tone_problems": tone.problems}
        if rec.get("category") == "domain" and rec.get("expected_terms"):
            row["terminology"] = asdict(terminology_score(ans, rec["expected_terms"], rules))
        if rec.get("template"):
            row["template_result"] = asdict(template_compliance(ans, rec["template"]))
        rows.append(row)
    return rows


def _share(rows: list[dict], pick) -> tuple[float | None, int]:
    vals = [pick(r) for r in rows]
    return (sum(vals) / len(vals) if vals else None), len(vals)


def _headline(rows: list[dict], tone_judge: Any | None) -> dict[str, MetricValue]:
    by_cat = defaultdict(list)
    for r in rows:
        by_cat[r["category"]].append(r)
    words = _mean([r["answer_words"] for r in rows])
    out = {"tone_rubric": MetricValue("tone_rubric", "corporate tone (rubric scorer, 1 to 5)",
                                      _mean([r["tone_rubric"] for r in rows]), len(rows), RUBRIC_JUDGE,
                                      "score 1-5", {"mean_answer_words": words, "n_unparseable": 0})}
    if tone_judge is not None:
        scored = [s for s in tone_judge.scores if s is not None]
        out["tone_llm_judge"] = MetricValue(
            "tone_llm_judge", f"corporate tone ({tone_judge.label}, 1 to 5)", _mean(scored), len(scored),
            tone_judge.label, "score 1-5",
            {"n_unparseable": getattr(tone_judge, "n_unparseable", tone_judge.n_failed),
             "n_failed": tone_judge.n_failed, "mean_answer_words": words})
    term_rows = [r for r in rows if "terminology" in r]
    tmpl_rows = [r for r in rows if "template_result" in r]
    specs = [("terminology", "correct use of domain terminology", term_rows, lambda r: r["terminology"]["ok"],
              TERM_JUDGE),
             ("appropriate_refusals", "appropriate refusals", by_cat["decline"], lambda r: r["refusal"], REFUSAL_JUDGE),
             ("false_rejections", "unwanted refusals (false rejections)", by_cat["lookalike"], lambda r: r["refusal"],
              REFUSAL_JUDGE),
             ("template_compliance", "template structure compliance", tmpl_rows,
              lambda r: r["template_result"]["compliant"], TEMPLATE_JUDGE)]
    for key, label, subset, pick, judge in specs:
        value, n = _share(subset, pick)
        out[key] = MetricValue(key, label, value, n, judge, "share")
    return out


def _per_category(rows: list[dict]):
    import pandas as pd

    out = []
    for cat in sorted({r["category"] for r in rows}):
        sub = [r for r in rows if r["category"] == cat]
        terms = [r["terminology"]["ok"] for r in sub if "terminology" in r]
        tmpl = [r["template_result"]["compliant"] for r in sub if "template_result" in r]
        out.append({"category": cat, "n": len(sub), "declined": _mean([r["refusal"] for r in sub]),
                    "tone_rubric": _mean([r["tone_rubric"] for r in sub]),
                    "terminology": _mean(terms), "n_terminology": len(terms),
                    "template_compliance": _mean(tmpl), "n_template": len(tmpl),
                    "mean_answer_words": _mean([r["answer_words"] for r in sub])})
    return pd.DataFrame(out)


@dataclass
class EvalReport:
    """Everything :func:`evaluate_answers` measured.

    metrics: key -> :class:`MetricValue` (keys in :data:`METRIC_ORDER`; "tone_llm_judge" only with a judge).
    rows: one dict per answer (id, category, prompt, answer, refusal, tone components, terminology ...).
    per_category / per_term: DataFrames. detector: precision / recall of the refusal detector.
    """

    metrics: dict[str, MetricValue]
    rows: list[dict]
    per_category: Any
    per_term: Any
    detector: dict

    def table(self):
        """DataFrame: metric | value | n | judge | extra, in the case study's order."""
        import pandas as pd

        return pd.DataFrame([{"metric": m.label, "value": m.formatted(), "n": m.n, "judge": m.judge, **m.extra}
                             for k in METRIC_ORDER if (m := self.metrics.get(k))])

    def save(self, run_dir: str | Path, name: str) -> dict[str, Path]:
        """Write ``<name>_answers.jsonl`` (answers next to their scores), ``<name>_metrics.json``,
        ``<name>_per_category.csv`` and ``<name>_terms.csv`` into ``run_dir``; returns the paths."""
        from instructlab.runs import write_json, write_jsonl

        run_dir = Path(run_dir)
        paths = {"answers": write_jsonl(run_dir / f"{name}_answers.jsonl", self.rows),
                 "metrics": write_json(run_dir / f"{name}_metrics.json",
                                       {"metrics": {k: asdict(v) for k, v in self.metrics.items()},
                                        "refusal_detector": {k: v for k, v in self.detector.items() if k != "errors"}})}
        for key, df in (("per_category", self.per_category), ("terms", self.per_term)):
            paths[key] = run_dir / f"{name}_{key}.csv"
            df.to_csv(paths[key], index=False)
        return paths


def evaluate_answers(eval_records: Sequence[dict], answers: Sequence[str], tone_judge: Any | None = None,
                     terms: Iterable[Any] | None = None) -> EvalReport:
    """The case study's numbers for one model's answers to the eval set.

    Args:
        eval_records: ``data/kestrel/eval.jsonl`` rows (id, category domain|decline|lookalike,
            messages, expected_terms, template ...). answers: one string per record, same order.
        tone_judge: optional LLM judge result aligned with ``answers`` (``judge.JudgeResult``: .scores
            with None for failures, .label, .n_failed); adds "tone_llm_judge".
        terms: glossary override (default ``kestrel.TERMS``).
    Returns an :class:`EvalReport`. Raises ValueError when the lengths differ.
    """
    if len(eval_records) != len(answers):
        raise ValueError(f"{len(eval_records)} eval records but {len(answers)} answers: generate one answer per record")
    if tone_judge is not None and len(tone_judge.scores) != len(answers):
        raise ValueError("the tone judge scored a different number of answers than given")
    rules = term_rules(terms)
    rows = _answer_rows(eval_records, answers, rules)
    if tone_judge is not None:
        for row, s in zip(rows, tone_judge.scores):
            row["tone_llm_judge"] = s
    domain = [(r["answer"], rec["expected_terms"]) for r, rec in zip(rows, eval_records) if "terminology" in r]
    per_term = terminology_breakdown([a for a, _ in domain], [t for _, t in domain], rules)
    detector = refusal_detector_quality() if REFUSAL_LABELS.exists() else {}
    return EvalReport(_headline(rows, tone_judge), rows, _per_category(rows), per_term, detector)


# ============================================================================ before / after

def before_after_table(before: EvalReport, after: EvalReport | None = None):
    """The case study's table as a DataFrame: metric | before | after (+ judge, n_before, n_after).

    Values are formatted like the case study ("4.4", "87%"); ``after`` is "n/a" without an adapter.
    """
    import pandas as pd

    rows = []
    for key in METRIC_ORDER:
        b = before.metrics.get(key)
        a = after.metrics.get(key) if after is not None else None
        if b is None and a is None:
            continue
        ref = b or a
        rows.append({"metric": ref.label, "before": b.formatted() if b else "n/a",
                     "after": a.formatted() if a else "n/a", "judge": ref.judge,
                     "n_before": b.n if b else 0, "n_after": a.n if a else 0})
    return pd.DataFrame(rows, columns=["metric", "before", "after", "judge", "n_before", "n_after"])


def write_before_after(before: EvalReport, after: EvalReport | None, run_dir: str | Path,
                       name: str = "before_after") -> dict[str, Path]:
    """Write the before/after table as ``<name>.csv`` (formatted) and ``<name>.json`` (raw values,
    n, judge and extras per side). Returns the paths."""
    from instructlab.runs import write_json

    run_dir = Path(run_dir)
    csv = run_dir / f"{name}.csv"
    before_after_table(before, after).to_csv(csv, index=False)
    raw = {side: {k: asdict(v) for k, v in rep.metrics.items()}
           for side, rep in (("before", before), ("after", after)) if rep is not None}
    return {"csv": csv, "json": write_json(run_dir / f"{name}.json", raw)}


def side_by_side(eval_records: Sequence[dict], answers: dict[str, Sequence[str]], per_category: int = 3):
    """DataFrame of the first ``per_category`` prompts of each category with each model's answer
    (``answers``: label -> answers aligned with ``eval_records``), for reading next to the numbers."""
    import pandas as pd

    seen: dict[str, int] = defaultdict(int)
    rows = []
    for i, rec in enumerate(eval_records):
        cat = rec.get("category")
        if seen[cat] >= per_category:
            continue
        seen[cat] += 1
        user = [m["content"] for m in rec.get("messages", []) if m.get("role") == "user"]
        rows.append({"category": cat, "id": rec.get("id"), "prompt": user[-1] if user else "",
                     **{label: ans[i] for label, ans in answers.items()}})
    return pd.DataFrame(rows)


# ============================================================================ evaluate modules

def evaluate_module_path(name: str) -> Path:
    """Folder of a bundled ``evaluate`` module: "kestrel_refusal", "kestrel_terminology",
    "kestrel_tone" or "kestrel_template". Raises FileNotFoundError listing the available ones."""
    path = EVALUATE_MODULES / name
    if not (path / f"{name}.py").is_file():
        known = sorted(p.name for p in EVALUATE_MODULES.iterdir() if (p / f"{p.name}.py").is_file())
        raise FileNotFoundError(f"no evaluate module {name!r} in {EVALUATE_MODULES}; available: {known}")
    return path


def load_evaluate_module(name: str):
    """``evaluate.load`` of a bundled module from its local folder: works offline, no Hub needed."""
    import evaluate

    return evaluate.load(str(evaluate_module_path(name)))


def before_after_rows(before: EvalReport, after: EvalReport | None = None) -> list[dict]:
    """Raw values for plotting (``plots.plot_before_after``): metric, unit, before, after, n_before, n_after."""
    rows = []
    for key in METRIC_ORDER:
        b = before.metrics.get(key)
        a = after.metrics.get(key) if after is not None else None
        if (ref := b or a) is not None:
            rows.append({"metric": ref.label, "unit": ref.unit, "before": b.value if b else None,
                         "after": a.value if a else None, "n_before": b.n if b else 0, "n_after": a.n if a else 0})
    return rows


# How much of the eval set each profile answers by default: (prompts per category, max new tokens).
EVAL_PROFILES: dict[str, tuple[int, int]] = profiles.eval_profiles()   # defined in profiles.py


def eval_settings(profile: str, n_per_category: int | None = None, max_new_tokens: int | None = None) -> tuple[int, int]:
    """(n_per_category, max_new_tokens) for ``profile``: a negative/None count or a 0/None token budget means
    the profile's default (EVAL_PROFILES); the smoke profile caps both (2 prompts, 8 tokens)."""
    if profile not in EVAL_PROFILES:
        raise ValueError(f"unknown profile {profile!r}: use one of {sorted(EVAL_PROFILES)}")
    default_n, default_tokens = EVAL_PROFILES[profile]
    n = default_n if n_per_category is None or n_per_category < 0 else n_per_category
    tokens = max_new_tokens or default_tokens
    if profile == "smoke":
        n, tokens = min(n or default_n, default_n), min(tokens, default_tokens)
    return n, tokens


def select_per_category(records: Sequence[dict], n_per_category: int = 0) -> list[dict]:
    """The first ``n_per_category`` records of each category, in file order (0 = all records)."""
    if n_per_category <= 0:
        return list(records)
    seen: dict[str, int] = defaultdict(int)
    out = []
    for rec in records:
        if seen[rec.get("category")] < n_per_category:
            seen[rec.get("category")] += 1
            out.append(rec)
    return out
