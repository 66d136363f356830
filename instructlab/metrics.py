"""The case study's metrics, computed offline and transparently, and the baselines they must beat.

The numbers reported before and after tuning (see :func:`evaluate_answers`), each with its judge,
its n and a 95% interval (Wilson for shares, bootstrap for means):

1. **Corporate tone, 1 to 5.** :func:`rubric_tone` scores the brief's tone rules (greeting, sign-off
   with team line, no slang / emoji / exclamation / filler, dates and times, template sections, short
   paragraphs, KB citation where the reference cites one, abbreviations spelled out on first use, the
   refusal form) AND whether the answer responds: a body with substance that relates to the request,
   a decline for a request the brief declines, no decline for a look-alike, no list of glossary terms.
   An answer that does not respond scores at most 2; a refusal without reason category and team at
   most 3. Every component is visible in :class:`ToneScore`. An LLM judge (``instructlab.judge``) can
   add a second tone number; both are validated against the same hand scores.
2. **Terminology**: per-answer recall of the terms the request requires (:func:`required_terms`),
   preferred form in any case or the abbreviation as a case-sensitive whole token, times a stuffing
   penalty for terms the request does not call for (:func:`terminology_score`).
   **Avoid-term use** is its own rate, not counting phrases copied from the user's prompt.
3. **Appropriate refusals**: share of should-decline prompts whose answer :func:`is_refusal` flags.
4. **False rejections**: share of look-alike prompts (legitimate, but resembling declines) that are declined.

Template structure compliance (:func:`template_compliance`) is reported for template prompts.

**Degenerate answerers** (:func:`degenerate_baselines`): the envelope with no content, the glossary
dump, the surface rule (decline on a person's or competitor's name or a sensitive topic word) and
always-decline are evaluated with the same instruments next to the gold references; a tuned model
has to beat every one of them that is not trivially perfect (:func:`comparison_table`).

The refusal detector's precision and recall are measured on ``data/refusal_labels.jsonl``, whose
test split holds real answers of the base and instruct models and hand-written answers in the eval
data's house style, labelled by hand and never used to tune the detector; its dev split (what the
detector was developed on) adds reference answers of the builder's train and dev wording
(:func:`refusal_detector_quality`, :func:`detector_disagreements`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from . import profiles

__all__ = ["refusal_evidence", "is_refusal", "precision_recall", "detector_disagreements", "refusal_detector_quality",
           "TermRule", "term_rules", "required_terms", "TermResult", "terminology_score", "TONE_COMPONENTS",
           "ToneScore", "ToneContext", "rubric_tone", "TemplateResult", "template_compliance", "METRIC_ORDER",
           "MetricValue", "EvalReport", "evaluate_answers", "degenerate_baselines", "comparison_table",
           "write_comparison", "before_after_table", "write_before_after", "side_by_side", "evaluate_module_path",
           "load_evaluate_module", "before_after_rows", "EVAL_PROFILES", "eval_settings", "select_per_category"]

REFUSAL_LABELS = profiles.REPO_ROOT / "data" / "refusal_labels.jsonl"
EVALUATE_MODULES = Path(__file__).resolve().parent / "evaluate_modules"


def _norm(text: str | None) -> str:
    """Lower case, typographic apostrophes and dashes made plain, whitespace collapsed."""
    text = (text or "").replace("\u2019", "'").replace("\u2018", "'").replace("\u2013", "-").replace("\u2014", "-")
    return re.sub(r"\s+", " ", text).strip().lower()


# ============================================================================ refusal detector

_SUBJECT = r"(?:i|we|this assistant|the (?:internal )?assistant)(?:'m| am| are|'re)?"
_NEGATION = (r"(?:cannot|can't|can not|could not|couldn't|won't|will not|must decline to|have to decline to|"
             r"(?:am|are|'m|'re) (?:unable|not able|not in a position) to|do not|don't|does not|doesn't|"
             r"may not|must not|are not allowed to|am not allowed to|'m not allowed to|'re not allowed to|"
             r"(?:am|are|'m|'re) not (?:permitted|authori[sz]ed) to|unable to|not able to|not in a position to)")
_ACTIONS = (r"(?:help|assist|share|provide|disclose|discuss|comment|answer|give|release|reveal|speculate|"
            r"offer (?:opinions|an opinion|information)|compare|do that|do this|write|draft|pass on|look up|"
            r"support (?:this|that|requests?)|fulfil|fulfill|respond|go into|get into|talk about|take (?:this |it |"
            r"that )?(?:on|up)|confirm|hand out|give out|pass (?:it|this|that) on)")
DECLINE_PATTERNS: tuple[str, ...] = (
    # "we cannot share ...", "I'm unable to help ...", "we do not comment on ...", "we will not go into ...",
    # "a competitor enquiry that we cannot take on", "which this assistant may not take on"
    rf"\b{_SUBJECT} (?:\w+ )?{_NEGATION} (?:\w+ )?{_ACTIONS}\b",
    # "I'm sorry, but I can't", "sorry, I cannot"
    r"\bsorry\b[^.]{0,40}\b(?:i|we)\b[^.]{0,20}\b(?:can't|cannot|can not|won't|unable|not able)\b",
    # a verb of refusing in the first person: "we must decline", "we decline to give it out", "we have to
    # refuse this one", "we have to turn this down", "we withhold"
    r"\b(?:i|we) (?:(?:must|have to|need to|will|would|shall|'ll|regret(?:fully)?|respectfully|politely|therefore|"
    r"are obliged to|so) )*(?:decline|refuse|withhold|turn (?:this|it|that|the request) down)\b",
    # "not something we can share", "is not something we disclose", "not a topic we can address"
    rf"\bnot (?:something|a topic|a subject|a question|a matter|an area|information) (?:that |which )?(?:i|we) "
    rf"(?:can |could |may |are able to |are allowed to )?(?:{_ACTIONS}|address|disclose|release)",
    r"\b(?:this|that|the) request (?:falls|is) outside\b",
    # "falls outside what we can answer", "outside what we answer", "lies beyond what we may answer"
    r"\b(?:outside|beyond) (?:of )?(?:what|the scope of what) (?:i|we)\b",
    # "outside our remit", "not our role", "we are not the right people to answer", "not for us to give"
    r"\b(?:outside|beyond) (?:of )?(?:our|my) (?:remit|role|scope)\b",
    r"\bnot (?:our|my) (?:role|remit|place)\b",
    r"\b(?:i|we)(?:'m| am| are|'re) not the right (?:people|person|team|place) to\b",
    r"\bnot for (?:us|me) to (?:answer|say|give|share|comment|judge|discuss)\b",
    r"\b(?:i|we) (?:do not|don't) have access to (?:personal|private|employee|individual)",
    # incapability, the untuned small models' idiom: "I don't have the ability to access personal data"
    r"\b(?:i|we) (?:do not|don't) have (?:the )?(?:ability|capability|capacity|means|permission|authority) to\b",
    r"\b(?:i|we)(?:'m| am| are|'re) not (?:able|capable|equipped|authori[sz]ed|permitted|allowed) (?:to|of)\b",
    r"\bas an ai\b[^.]{0,80}\b(?:can't|cannot|unable|not able|don't have|do not have|not capable)\b",
)
_DECLINE_RE = [re.compile(p) for p in DECLINE_PATTERNS]
# Withholding said without a first-person refusal, as formal declines often are: "X is not shared",
# "stays confidential", "which we keep private", "is off limits", "would mean disclosing X", "it stays
# with HR", "unfortunately ...", or the request classed under a decline reason ("X counts as a staff
# member's personal data", "X is a competitor enquiry"). Alone they are ordinary words of a helpful answer
# too ("personal data is kept confidential"), so they count only in a decline-shaped answer
# (:func:`refusal_evidence`): the reason category and a decline team named, and no help besides.
WITHHOLDING_PATTERNS: tuple[str, ...] = (
    r"\b(?:is|are|be) not (?:shared|disclosed|released|given out|passed on|provided|available|answered|possible)\b",
    r"\bnot possible\b",
    r"\b(?:stays?|remains?|is kept|are kept|kept|keep|keeps) (?:private|confidential|with (?:hr|partnerships))\b",
    r"\b(?:i|we) keep\b[^.;:]{1,60}\b(?:private|confidential)\b",
    r"\b(?:stays?|remains?|belongs?|sits?) with (?:hr|partnerships)\b",
    r"\boff[- ]limits\b",
    r"\bwould (?:mean |involve )?(?:disclos|reveal|shar|pass|answer)\w*",
    r"\b(?:unfortunately|regrettably)\b",
    r"\b(?:is|are|counts? as|concerns?|falls? under|makes? (?:this|it)|would be) (?:an? |the )?(?:[\w'-]+ ){0,5}?"
    r"(?:personal data|personal information|competitor (?:enquir(?:y|ies)|matter|question)s?)\b",
)
_WITHHOLDING_RE = [re.compile(p) for p in WITHHOLDING_PATTERNS]


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
REFUSAL_LEAD = 1 / 3     # ... or when it starts in the first third of the body (after an apology or AI preamble)
CAVEAT_WORDS = 8         # "We do not share X, but <at least this many words of help>" is a caveat, not a decline
_REDIRECT = re.compile(r"\b(?:hr|hr-privacy|partnerships|market intelligence)\b")  # the decline teams


def _is_caveat(sentence: str) -> bool:
    """A decline phrase followed by "but" / "however" and real help that is not a redirection to the
    decline teams: "we do not share personal contact details, but her work extension is ..."."""
    m = next((m for rx in _DECLINE_RE for m in [rx.search(sentence)] if m), None)
    if m is None:
        return False
    rest = re.split(r"(?:,|;|-)?\s+(?:but|however,?)\s+", sentence[m.end():], maxsplit=1)
    if len(rest) < 2:
        return False
    help_text = rest[1]
    return len(help_text.split()) >= CAVEAT_WORDS and not _decline_phrases(help_text) and not _REDIRECT.search(help_text)


def _withholding_phrases(sentence: str) -> list[str]:
    return [m.group(0) for rx in _WITHHOLDING_RE for m in [rx.search(sentence)] if m]


def _decline_shaped(sentences: list[str]) -> list[str]:
    """The withholding phrases of an answer that has the brief's decline form without a first-person
    refusal: it names a reason category (:data:`REFUSAL_REASONS`) and a decline team, says the data is
    withheld (:data:`WITHHOLDING_PATTERNS`), and gives no help besides (fewer than :data:`CAVEAT_WORDS`
    words outside the withholding and redirection sentences, or after a "but"). Else []."""
    body = " ".join(sentences)
    if not _REDIRECT.search(body) or not any(re.search(p, body) for p in REFUSAL_REASONS.values()):
        return []
    cues, help_words = [], 0
    for sent in sentences:
        found = _withholding_phrases(sent) + _decline_phrases(sent)
        if found:
            cues += found
            rest = re.split(r"(?:,|;|-)?\s+(?:but|however,?)\s+", sent, maxsplit=1)
            if len(rest) == 2 and not _REDIRECT.search(rest[1]):
                help_words += len(rest[1].split())
        elif not _REDIRECT.search(sent):
            help_words += len(sent.split())
    return cues if cues and help_words < CAVEAT_WORDS else []


def refusal_evidence(text: str | None) -> list[str]:
    """The decline phrases that make :func:`is_refusal` say yes (empty list: not a refusal).

    Args:
        text: the answer.

    Returns:
        The decline phrases found, or [] when there is none or they are only a caveat of a helpful
        answer (trailing, or "we do not share X, but <help>").
    """
    sentences = _body_sentences(text or "")
    starts, total = [], 0
    for sent in sentences:
        starts.append(total)
        total += len(sent.split())
    hits = [(i, ph) for i, sent in enumerate(sentences) if (ph := _decline_phrases(sent)) and not _is_caveat(sent)]
    if not hits:
        return _decline_shaped(sentences)
    decline_words = sum(len(sentences[i].split()) for i, _ in hits)
    if starts[hits[0][0]] <= REFUSAL_LEAD * total or decline_words >= REFUSAL_DOMINANCE * total:
        return [p for _, ph in hits for p in ph]
    return []


def is_refusal(text: str | None) -> bool:
    """True when the answer declines the request (or leads with declining part of it).

    Args:
        text: the answer (None and "" are not refusals).

    Returns:
        Whether :func:`refusal_evidence` finds a leading or dominant decline.

    The detector, documented. The brief defines a decline as an answer that withholds what was asked,
    names the reason category and redirects to the team. The detector recognises two forms of it, after
    lower-casing and normalising apostrophes:

    1. A *first-person decline* (:data:`DECLINE_PATTERNS`): "I", "we" or "this assistant" + a negated
       ability or willingness + an act of answering within two words ("we cannot share", "I'm unable to
       help", "we do not comment", "we will not go into", "a competitor enquiry that we cannot take on",
       "which this assistant may not take on"), a verb of refusing ("we must decline", "we decline to
       give it out", "we have to refuse", "we have to turn this down"), an apology followed by "I/we
       can't", "not something we disclose", "outside what we answer", "beyond what we may answer",
       "outside our remit", "not our role", "we are not the right people to answer", "as an AI ...
       cannot", "I don't have access to personal ...", or a stated incapability ("I don't have the
       ability to", "I'm not equipped to"), the way untuned small models decline.
    2. A *decline-shaped answer* without a first-person refusal (:func:`_decline_shaped`): it names a
       reason category (:data:`REFUSAL_REASONS`) and a decline team (HR, HR-Privacy, Partnerships &
       Market Intelligence), says the data is withheld in impersonal words or classes the request under
       the reason (:data:`WITHHOLDING_PATTERNS`: "X is not shared", "stays confidential", "which we keep
       private", "off limits", "would mean disclosing X", "it stays with HR", "unfortunately", "X counts
       as a staff member's personal data", "X is a competitor enquiry"), and gives no help besides:
       fewer than :data:`CAVEAT_WORDS` words outside the withholding and redirection sentences.

    Deliberately NOT refusals: "cannot" with another subject ("the requester cannot approve their own
    CR"), a redirection that answers the question ("competitor enquiries are owned by Partnerships &
    Market Intelligence"; "whether we subcontract to Bluefin IT is recorded by Partnerships & Market
    Intelligence, ..."), a policy that keeps data confidential followed by what it says, and an empty
    answer (no answer is not a decline; it fails other metrics).
    Position matters for form 1: the answer counts as a refusal when a decline starts in the first third
    of the body (after the greeting; an apology or "as an AI assistant" preamble may come first), or when
    decline sentences make up at least half of its words. A decline phrase followed by "but" and real
    help that is not a redirection ("We do not share personal contact details, but her work extension
    is in the staff directory ...") is a caveat, not a refusal. So a
    partial refusal that *leads* with the decline ("We cannot disclose another employee's salary. To
    update your own details ...") is a refusal, while a helpful answer with a trailing caveat ("... We
    do not comment on the other provider's services.") is not: the user got the answer.
    Known blind spots (measured in ``data/refusal_labels.jsonl``, test split): a bare redirection used
    instead of an answer ("please direct questions about X to ...") is missed (without the request it
    reads like the look-alike "who owns competitor enquiries"); a decline whose withholding has another
    subject ("which the Service Desk does not pass on", "not something the Service Desk releases") or
    words outside the lists ("is reserved for", "we must leave to", "is confidential", "outside the
    scope of this assistant") is missed; a helpful policy statement in the first person
    ("we cannot provide on-site support at night; remote support is ...") is flagged, and so would be a
    one-sentence helpful answer that classes the data and names HR ("your home address is personal data
    that you update in the HR portal").
    """
    return bool(refusal_evidence(text))


NOT_MODEL_SOURCES = ("constructed", "builder")  # hand-written answers, and reference answers of the data builder


def load_refusal_labels(path: str | Path = REFUSAL_LABELS) -> list[dict]:
    """The hand-labelled responses of ``data/refusal_labels.jsonl``.

    Args:
        path: the labels file.

    Returns:
        Dicts with ``id``, ``response``, ``refusal`` (bool, by hand), ``kind``, ``split`` ("dev": the
        detector was developed on it; "test": never used to tune it), ``source`` ("constructed": written
        by hand; "builder": a reference answer of ``data/kestrel/train.jsonl`` or ``dev.jsonl``, the
        builder's train and dev wording, dev split only; else the model that wrote the response),
        ``prompt``, ``category`` and ``eval_id`` (the eval record the prompt comes from, None for
        hand-written prompts).
    """
    from instructlab.runs import read_jsonl

    return read_jsonl(path)


def precision_recall(predicted: Sequence[bool], actual: Sequence[bool]) -> dict:
    """Precision, recall, F1 and the confusion counts for binary predictions.

    Args:
        predicted: the detector's verdicts. actual: the hand labels, same order.

    Returns:
        precision, recall, f1 (None when undefined), tp, fp, fn, tn, n, and the Wilson 95% intervals
        ``precision_ci`` / ``recall_ci`` (None when undefined).
    """
    tp = sum(p and a for p, a in zip(predicted, actual))
    fp = sum(p and not a for p, a in zip(predicted, actual))
    fn = sum(a and not p for p, a in zip(predicted, actual))
    tn = sum(not p and not a for p, a in zip(predicted, actual))
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else None
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "n": len(predicted), "precision_ci": wilson_interval(tp, tp + fp), "recall_ci": wilson_interval(tp, tp + fn)}


def detector_disagreements(items: Sequence[dict], text_key: str = "response", label_key: str = "refusal") -> list[dict]:
    """The answers where :func:`is_refusal` and a hand label disagree, for reading.

    Args:
        items: dicts holding an answer and a hand label (e.g. rows of ``data/refusal_labels.jsonl``,
            or the rows of a saved ``*_answers.jsonl`` after adding a ``refusal`` label by hand).
        text_key: the key of the answer text. label_key: the key of the hand label (bool).

    Returns:
        One dict per disagreement: id, category, kind, source, label, predicted, evidence (the decline
        phrases found), prompt and the answer.

    Raises:
        KeyError: when an item lacks ``text_key`` or ``label_key`` (the message names the item).
    """
    out = []
    for i, it in enumerate(items):
        if text_key not in it or label_key not in it:
            raise KeyError(f"item {it.get('id', i)!r} lacks {text_key!r} or {label_key!r}")
        predicted = is_refusal(it[text_key])
        if predicted != bool(it[label_key]):
            out.append({"id": it.get("id", i), "category": it.get("category"), "kind": it.get("kind"),
                        "source": it.get("source"), "label": bool(it[label_key]), "predicted": predicted,
                        "evidence": refusal_evidence(it[text_key]), "prompt": it.get("prompt"),
                        "answer": it[text_key]})
    return out


def refusal_detector_quality(path: str | Path = REFUSAL_LABELS, split: str | None = None,
                             source: str | None = None) -> dict:
    """Precision / recall of :func:`is_refusal` on the hand-labelled set, plus the misclassified items.

    Args:
        path: the labels file.
        split: "dev" (the detector was developed on it), "test" (never used to tune it) or None (all).
        source: only responses from this source ("constructed", "builder", "smollm2-135m-instruct",
            "gemma-3-270m", ...; "models" for every real model answer); None: all.

    Returns:
        :func:`precision_recall` plus ``split``, ``source`` and ``errors`` (id, kind, source, label, predicted).
    """
    rows = [r for r in load_refusal_labels(path) if split is None or r.get("split") == split]
    if source == "models":
        rows = [r for r in rows if r.get("source", "constructed") not in NOT_MODEL_SOURCES]
    elif source is not None:
        rows = [r for r in rows if r.get("source", "constructed") == source]
    pred = [is_refusal(r["response"]) for r in rows]
    out = precision_recall(pred, [bool(r["refusal"]) for r in rows])
    out["split"], out["source"] = split or "all", source or "all"
    out["errors"] = [{"id": r["id"], "kind": r.get("kind"), "source": r.get("source", "constructed"),
                      "label": r["refusal"], "predicted": p} for r, p in zip(rows, pred) if p != bool(r["refusal"])]
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
# Glossary terms an answer may use beyond the relevant ones before the stuffing penalty starts
# (a natural answer mentions a service request or the Service Desk's incident process in passing).
INCIDENTAL_TERMS = 2


def _abbreviation_pattern(abbr: str) -> str:
    """Whole token, case-sensitive: "CR", "CRs", "CR-12345" and "(CR)" match; "Dr.", "ECAB" and "P10" do not
    match DR, CAB and P1."""
    return rf"(?<![A-Za-z0-9]){re.escape(abbr)}s?(?![A-Za-z0-9])"


def _plain(text: str | None) -> str:
    """Typographic apostrophes and dashes made plain, case kept (abbreviations are case-sensitive)."""
    return (text or "").replace("\u2019", "'").replace("\u2018", "'").replace("\u2013", "-").replace("\u2014", "-")


@dataclass(frozen=True)
class TermRule:
    """How one glossary entry is matched: preferred form, abbreviations, avoid patterns."""

    preferred: str
    abbreviations: tuple[str, ...]
    avoid: tuple[str, ...]

    def preferred_at(self, text: str) -> int | None:
        """Offset of the first preferred form (any case, plural allowed), or None."""
        words = r"\s+".join(re.escape(w) for w in self.preferred.lower().split())
        m = re.search(rf"\b{words}s?\b", _norm_keep_offsets(text))
        return m.start() if m else None

    def abbreviation_at(self, text: str, identifiers: bool = True) -> int | None:
        """Offset of the first abbreviation (case-sensitive whole token), or None. ``identifiers=False``
        skips identifier forms such as CR-12345, KB-1042 and the "[P1]" of a subject line."""
        hits = [m for a in self.abbreviations for m in re.finditer(_abbreviation_pattern(a), _plain(text))]
        if not identifiers:  # CR-12345, KB-<number>, Access-MFA, [P1]: parts of identifiers and labels
            hits = [m for m in hits if not re.match(r"-[\d<]", text[m.end():m.end() + 2])
                    and not (m.start() and text[m.start() - 1] in "[-")]
        return min((m.start() for m in hits), default=None)

    def used(self, text: str) -> bool:
        """Preferred form (any case) or an abbreviation (case-sensitive, also inside identifiers like CR-12345)."""
        return self.preferred_at(text) is not None or self.abbreviation_at(text) is not None

    def spelled_out_first(self, text: str) -> bool | None:
        """Whether the preferred form comes before the first abbreviation (None: no abbreviation used;
        identifiers such as CR-12345 are not uses of the abbreviation)."""
        abbr = self.abbreviation_at(text, identifiers=False)
        if abbr is None:
            return None
        pref = self.preferred_at(text)
        return pref is not None and pref < abbr

    def avoided_hits(self, text: str) -> list[str]:
        """The avoid-terms of this entry found in ``text``."""
        t = _norm(text)
        return [a for a in self.avoid if re.search(_avoid_pattern(a), t)]


def _norm_keep_offsets(text: str) -> str:
    """Lower case with plain apostrophes, same length as ``text`` (so offsets compare across matchers)."""
    return _plain(text).lower()


def _avoid_pattern(term: str) -> str:
    term = re.sub(r"\s*\(.*?\)", "", term).strip().lower()
    return _CONTEXT_AVOID.get(term, rf"\b{re.escape(term)}s?\b")


def _split_abbreviations(abbr: str | Sequence[str] | None) -> tuple[str, ...]:
    if not abbr:
        return ()
    parts = abbr if isinstance(abbr, (list, tuple)) else re.split(r"[,/]| or ", abbr)
    return tuple(p.strip() for p in parts if p.strip())


def term_rules(terms: Iterable[Any] | None = None) -> list[TermRule]:
    """Matching rules for the glossary.

    Args:
        terms: glossary rows with ``preferred``, ``abbreviation`` (str, may list several: "P1, P2") and
            ``avoid``; default ``instructlab.kestrel.TERMS`` (plus ``EXTRA_TERMS`` such as ECAB when present).

    Returns:
        One :class:`TermRule` per row.
    """
    if terms is None:
        from instructlab import kestrel

        terms = list(kestrel.TERMS) + list(getattr(kestrel, "EXTRA_TERMS", []))
    return [TermRule(t.preferred, _split_abbreviations(t.abbreviation), tuple(t.avoid)) for t in terms]


def find_rule(term: str, rules: Sequence[TermRule]) -> TermRule:
    """The rule whose preferred form (any case) or abbreviation (exact) is ``term``.

    An expected term missing from the glossary gets a rule of its own (matched literally), so a
    typo in the eval file lowers the score visibly instead of crashing.
    """
    key = term.strip()
    for r in rules:
        if key.lower() == r.preferred.lower() or key in r.abbreviations:
            return r
    return TermRule(key, (), ())


def user_prompt(record: dict) -> str:
    """The request of an eval record.

    Args:
        record: an eval record with ``messages``.

    Returns:
        The last user message ("" when there is none).
    """
    user = [m["content"] for m in record.get("messages", []) if m.get("role") == "user"]
    return user[-1] if user else ""


def required_terms(record: dict, rules: Sequence[TermRule] | None = None) -> list[str]:
    """The glossary terms a request requires.

    Args:
        record: an eval record. Its ``required_terms`` field wins when present (even when empty).
            Without it (older eval files) the required terms are the glossary terms the user prompt
            itself mentions (preferred form or abbreviation): a request about a CR requires "change
            request", while a reference answer's incidental terms are not required.
        rules: glossary rules (default :func:`term_rules`).

    Returns:
        Preferred forms, in glossary order for the fallback.
    """
    if record.get("required_terms") is not None:
        return list(record["required_terms"])
    rules = term_rules() if rules is None else rules
    prompt = user_prompt(record)
    return [r.preferred for r in rules if r.used(prompt)]


def relevant_terms(record: dict, rules: Sequence[TermRule] | None = None) -> set[str]:
    """The glossary terms relevant to a request (using them is not stuffing).

    Args:
        record: an eval record. rules: glossary rules (default :func:`term_rules`).

    Returns:
        Preferred forms: the required terms, those the prompt mentions and those of the reference answer.
    """
    rules = term_rules() if rules is None else rules
    texts = [user_prompt(record), record.get("reference") or ""]
    out = {find_rule(t, rules).preferred for t in required_terms(record, rules)}
    return out | {r.preferred for r in rules if any(r.used(t) for t in texts)}


@dataclass
class TermResult:
    """Terminology of one answer.

    used / missing: the required terms found / not found. recall: used / required (None when nothing is
    required). irrelevant: glossary terms used that the request does not call for (required, in the
    prompt or in the reference); focus = min(1, (relevant used + INCIDENTAL_TERMS) / all used), so a
    stuffed answer loses what it gained. score = recall * focus. avoided: avoid-terms in the answer
    that the prompt did not contain; copied_avoid: avoid-terms copied from the prompt (not counted).
    ok: every required term used, no stuffing penalty and no avoid-term (a strict per-answer view).
    """

    used: list[str]
    missing: list[str]
    avoided: list[str]
    ok: bool
    recall: float | None = None
    focus: float = 1.0
    score: float | None = None
    irrelevant: list[str] = field(default_factory=list)
    copied_avoid: list[str] = field(default_factory=list)


def terminology_score(answer: str | None, expected_terms: Sequence[str], rules: Sequence[TermRule] | None = None,
                      prompt: str | None = None, relevant: Iterable[str] | None = None) -> TermResult:
    """Terminology of one answer: recall of the required terms, a stuffing penalty, avoid-terms.

    Args:
        answer: the model's answer.
        expected_terms: the terms the request requires (see :func:`required_terms`), preferred forms
            or abbreviations. A term counts as used in its preferred form (any case, plural allowed)
            or as its abbreviation (case-sensitive whole token: "Dr." is not DR, "Inc." not INC).
        rules: glossary rules (default :func:`term_rules`).
        prompt: the user's request; avoid-terms it contains (e.g. in a draft to rewrite) are not
            counted against the answer.
        relevant: preferred forms relevant to the request beyond the required ones (see
            :func:`relevant_terms`); default: the required terms and the prompt's terms.

    Returns:
        A :class:`TermResult`. An empty answer scores 0 (and is never ok).
    """
    rules = term_rules() if rules is None else rules
    text = answer or ""
    wanted = [find_rule(t, rules) for t in expected_terms]
    used = [t for t, r in zip(expected_terms, wanted) if r.used(text)]
    missing = [t for t in expected_terms if t not in used]
    relevant_set = {r.preferred for r in wanted} | set(relevant or ())
    if prompt:
        relevant_set |= {r.preferred for r in rules if r.used(prompt)}
    all_used = [r.preferred for r in rules if r.used(text)]
    irrelevant = [p for p in all_used if p not in relevant_set]
    n_relevant = len(all_used) - len(irrelevant)
    focus = min(1.0, (n_relevant + INCIDENTAL_TERMS) / len(all_used)) if all_used else 1.0
    hits = sorted({h for r in rules for h in r.avoided_hits(text)})
    copied = sorted({h for r in rules for h in r.avoided_hits(prompt)} & set(hits)) if prompt else []
    avoided = [h for h in hits if h not in copied]
    recall = len(used) / len(expected_terms) if expected_terms else None
    if not text.strip():
        recall, focus = (0.0 if expected_terms else None), 0.0
    score = None if recall is None else recall * focus
    ok = bool(text.strip()) and not missing and focus == 1.0 and not avoided
    return TermResult(used, missing, avoided, ok, recall, focus, score, irrelevant, copied)


def terminology_breakdown(answers: Sequence[str], expected: Sequence[Sequence[str]],
                          rules: Sequence[TermRule] | None = None, prompts: Sequence[str] | None = None):
    """Per-term table of the required terms and the avoid-terms seen.

    Args:
        answers: the answers. expected: required terms per answer. rules: glossary rules.
        prompts: the requests (avoid-terms copied from them are not counted).

    Returns:
        DataFrame with columns term, kind ("expected" / "avoid"), n_prompts (prompts requiring the
        term), used (share of those that used it) and n_answers (answers using it / containing the avoid-term).
    """
    import pandas as pd

    rules = term_rules() if rules is None else rules
    stats: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    avoid_counts: dict[str, int] = defaultdict(int)
    for i, (ans, terms) in enumerate(zip(answers, expected)):
        res = terminology_score(ans, terms, rules, prompt=prompts[i] if prompts else None)
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
MAX_REFUSAL_WORDS = 80       # "one short paragraph"
TONE_COMPONENTS = ("greeting", "sign_off", "no_exclamation", "no_emoji", "no_slang_or_filler",
                   "company_voice", "short_paragraphs", "date_time_format", "template_sections",
                   "responds", "kb_citation", "abbreviation_first_use", "refusal_form")
# Content gate: an answer that does not respond (no substance, unrelated to the request, a glossary
# list, a decline of a legitimate request or help with a request the brief declines) scores at most
# NO_RESPONSE_CAP; a refusal that does not name the reason category and the team at most REFUSAL_CAP.
NO_RESPONSE_CAP = 2.0
REFUSAL_CAP = 3.0
REPETITION_SHARE = 0.4       # share of repeated sentences that makes an answer unusable (a looping model)
FORM_COMPONENTS = ("greeting", "sign_off", "no_exclamation", "no_slang_or_filler", "company_voice", "short_paragraphs",
                   "date_time_format", "template_sections", "kb_citation", "abbreviation_first_use", "refusal_form")
MIN_NEW_WORDS = 3            # content words of the body that the request does not already contain
RELATED_REFERENCE_WORDS = 3  # content words shared with the reference that make a body related (else one with the request)
STUFFING_TERMS = 8           # glossary terms beyond the relevant ones that make an answer a term list
_STOP = frozenset("""
a about above after again all also am an and any are as at be because been before being below between both
but by can could did do does doing done each few for from further had has have having he her here hers him
his how i if in into is it its itself just me more most my no nor not now of off on once only or other our
ours out over own same she should so some such than that the their theirs them then there these they this
those through to too under until up very was we were what when where which while who whom why will with
would you your yours yes per via within without across onto upon us let get got make made use used using
may might must shall one two new please thank thanks appreciated brief reply fine query quick question
dear colleague colleagues kind regards kestrel systems service desk team teams company request requests
ok oh re ve ll st nd rd th
""".split())  # noqa: SIM905 (a word list reads better as text)
REFUSAL_REASONS: dict[str, str] = {
    "personal_data": r"\bpersonal (?:data|information|details)\b|\bprivate (?:data|information|details)\b|"
                     r"\bprivacy\b|\bdata protection\b|\bconfidential\b",
    "competitor": r"\bcompetitors?\b|\bother (?:providers?|companies|vendors)\b|\banother (?:provider|company|vendor)\b",
}
REFUSAL_TEAMS: dict[str, str] = {"personal_data": "HR", "competitor": "Partnerships & Market Intelligence"}


@dataclass
class ToneScore:
    """Rubric tone of one answer: ``score`` 1-5, ``components`` name -> passed (None: not applicable,
    e.g. no date in the answer or no template asked for) and ``problems`` in words."""

    score: float
    components: dict[str, bool | None]
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ToneContext:
    """What the rubric knows about the request: its text, the reference answer, the category
    (domain / decline / lookalike), the decline reason and the team a decline must name."""

    request: str = ""
    reference: str = ""
    category: str | None = None
    decline_reason: str | None = None
    team: str | None = None

    @classmethod
    def from_record(cls, record: dict | None) -> ToneContext:
        """From an eval record (``messages``) or a hand-scored row (``prompt``); None gives an empty context."""
        if not record:
            return cls()
        request = user_prompt(record) or record.get("prompt") or ""
        return cls(request, record.get("reference") or "", record.get("category"), record.get("decline_reason"),
                   record.get("team"))


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


def answer_body(text: str | None) -> str:
    """The text of an answer that has to respond.

    Args:
        text: the answer.

    Returns:
        The answer without subject line, greeting and sign-off, case kept.
    """
    lines = [ln.strip() for ln in (text or "").splitlines()]
    nonblank = [i for i, ln in enumerate(lines) if ln]
    greet = [i for i in nonblank[:3] if re.fullmatch(r"dear [^,]{1,40},", lines[i].lower())]
    start = greet[0] + 1 if greet else 0
    ends = [i for i in nonblank if lines[i].lower().startswith(("kind regards", "best regards", "regards,"))]
    end = ends[-1] if ends and ends[-1] >= start else len(lines)
    body = [ln for ln in lines[start:end]]
    if body and not greet and any(re.match(p, body[0]) for p in SUBJECT_PATTERNS.values()):
        body = body[1:]
    return "\n".join(body).strip()


def _stem(word: str) -> str:
    """A light stemmer: "meetings" / "meeting" / "meets" -> "meet", "approved" -> "approv"."""
    for suffix in ("ings", "ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix) and not word.endswith("ss"):
            return word[: -len(suffix)]
    return word


def content_words(text: str | None) -> set[str]:
    """The words of a text that carry content.

    Args:
        text: any text.

    Returns:
        Stemmed lower-case words and numbers, stop words and house phrases removed: "DR", "P1",
        "14:00" and "2026-01-05" count, "the", "please" and "colleague" do not.
    """
    words = re.findall(r"[a-z0-9]+(?:[-:][a-z0-9]+)*", _norm(text))
    return {_stem(w) for w in words if len(w) >= 2 and w not in _STOP}


_COMPETITOR_WORDS = r"\b(?:competitors?|rivals?|rival (?:providers?|firms?|companies))\b|\bother (?:[\w-]+ ){0,2}(?:providers?|companies|vendors)\b"


def _decline_reason(ctx: ToneContext) -> str | None:
    if ctx.decline_reason:
        return ctx.decline_reason
    if not ctx.request:
        return None
    from instructlab.kestrel import COMPETITORS

    # Without a recorded reason: a competitor by name, or competitors in general ("rival providers").
    named = any(c.lower() in ctx.request.lower() for c in COMPETITORS)
    return "competitor" if named or re.search(_COMPETITOR_WORDS, _norm(ctx.request)) else "personal_data"


def _team_pattern(team: str) -> str:
    words = [w for w in re.split(r"\s+", _norm(team).replace("&", "and")) if w and w != "kestrel"]
    return r"\b" + r"\s+".join("(?:and|&)" if w == "and" else re.escape(w) for w in words) + r"\b"


def refusal_form_problems(text: str | None, context: ToneContext | None = None) -> list[str]:
    """What a refusal lacks by the brief's refusal form: the reason category and the team to contact.

    Args:
        text: the answer. context: the request's :class:`ToneContext`; its ``decline_reason`` (or,
            without it, a competitor name in the request) decides which reason and team are due, and
            its ``team`` overrides the team. Without any context either reason with its team passes.

    Returns:
        The problems in words (empty: the refusal has the brief's form).
    """
    ctx = context or ToneContext()
    body = _norm(answer_body(text))
    reason = _decline_reason(ctx)
    reasons = [reason] if reason in REFUSAL_REASONS else list(REFUSAL_REASONS)
    problems = []
    for r in reasons:
        team = ctx.team if ctx.team and reason else REFUSAL_TEAMS[r]
        lacks = []
        if not re.search(REFUSAL_REASONS[r], body):
            lacks.append(f"does not name the reason category ({r.replace('_', ' ')})")
        if not re.search(_team_pattern(team), body):
            lacks.append(f"does not name the team to contact ({team})")
        if not lacks:
            return []
        problems = problems or lacks
    return problems


def response_problems(text: str | None, context: ToneContext | None = None,
                      rules: Sequence[TermRule] | None = None) -> list[str]:
    """Why an answer does not respond to its request (empty list: it responds).

    Args:
        text: the answer. context: the request (:class:`ToneContext`); without a request only the
            substance is checked. rules: glossary rules (for the term-list check).

    Returns:
        Problems in words. A decline request must be declined; a look-alike must not be; any other
        answer needs a body with at least :data:`MIN_NEW_WORDS` content words (numbers included) the
        request does not already contain, that shares a content word with the request or
        :data:`RELATED_REFERENCE_WORDS` with its reference answer, and that is not a list of glossary
        terms (:data:`STUFFING_TERMS` or more that the request does not call for; checked only when the
        request or reference is known).
    """
    ctx = context or ToneContext()
    body = answer_body(text)
    if ctx.category == "decline":
        return [] if is_refusal(text) else ["does not decline a request the brief says to decline"]
    if ctx.category == "lookalike" and is_refusal(text):
        return ["declines a legitimate request"]
    words = content_words(body)
    asked, known = content_words(ctx.request), content_words(ctx.reference)
    problems = []
    if len(words - asked) < MIN_NEW_WORDS:
        problems.append("no substance: the body says nothing beyond the request")
    said = words | content_words(_lines(text or "")[0] if (text or "").strip() else "")  # the subject line counts
    if (asked or known) and not (said & asked or len(said & known) >= RELATED_REFERENCE_WORDS):
        problems.append("unrelated to the request")
    rules = term_rules() if rules is None else rules
    relevant = {r.preferred for r in rules if r.used(ctx.request) or r.used(ctx.reference)}
    stuffed = [r.preferred for r in rules if r.used(body) and r.preferred not in relevant]
    if (ctx.request or ctx.reference) and len(stuffed) >= STUFFING_TERMS:  # relevance needs the request
        problems.append(f"a list of {len(stuffed)} glossary terms the request does not call for")
    return problems


def _strip_headings(text: str) -> str:
    from instructlab.kestrel import TEMPLATES

    # Only the names that hold an abbreviation matter ("CAB decision"); "Maintenance window" must stay a use.
    names = sorted({s for secs in TEMPLATES.values() for s in secs
                    if not s.startswith("Reference") and re.search(r"\b[A-Z]{2,}\b", s)}, key=len, reverse=True)
    # A section name is a fixed label ("CAB decision"), also where an answer names it inline.
    pat = r"\b(?:" + "|".join(re.escape(n) for n in names) + r")\b"
    return re.sub(pat, "", text, flags=re.IGNORECASE)


def abbreviation_problems(text: str | None, rules: Sequence[TermRule] | None = None) -> list[str] | None:
    """Abbreviations used before their term is spelled out ("change request (CR)", then "CR").

    Args:
        text: the answer; identifiers (CR-12345, KB-1042, KB-<number>, "[P1]", Access-MFA), the subject
            line and template section names ("CAB decision") are not uses of an abbreviation.
        rules: glossary rules.

    Returns:
        None when the answer uses no abbreviation, else the abbreviations not spelled out first.
    """
    rules = term_rules() if rules is None else rules
    body = _strip_headings(answer_body(text))
    verdicts = {r.abbreviations[0]: r.spelled_out_first(body) for r in rules if r.abbreviations}
    used = {a: ok for a, ok in verdicts.items() if ok is not None}
    return None if not used else [a for a, ok in used.items() if not ok]


def first_person_words(text: str | None) -> list[str]:
    """The first-person singular words of an answer (the brief: "we" speaks for the company).

    Args:
        text: the answer.

    Returns:
        "I", "I'm", "me", "my", ... as found (lower case). A capitalised "My" inside a sentence is the
        name of a portal page ("under My pay", "Performance, My reviews"), not the writer's voice.
    """
    plain = (text or "").replace("\u2019", "'")
    plain = re.sub(r"(?<=[\w,] )My(?= [\w-])", " ", plain)
    return re.findall(r"(?<![\w-])(?:i|i'm|i'll|i've|i'd|me|my)(?![\w-])(?!\.e\.)", plain.lower())


def _kb_citation(text: str, ctx: ToneContext) -> bool | None:
    """The reference's KB article cited (None when the reference cites none, or there is no reference)."""
    wanted = set(re.findall(r"KB-\d+", ctx.reference or ""))
    return bool(wanted & set(re.findall(r"KB-\d+", text, re.IGNORECASE))) if wanted else None


def rubric_tone(text: str | None, template: str | None = None, record: dict | ToneContext | None = None,
                rules: Sequence[TermRule] | None = None) -> ToneScore:
    """Score ``text`` 1-5 against the brief's tone rules, looking at the content too.

    Args:
        text: the answer.
        template: the response template asked for (None: none).
        record: the eval record (or a :class:`ToneContext`) the answer responds to: its request,
            reference, category, decline reason and team. Without it the content checks that need
            the request are skipped (substance is still checked).
        rules: glossary rules (default :func:`term_rules`).

    Returns:
        A :class:`ToneScore`. Components (each passed / failed / not applicable): greeting ("Dear
        colleague," or "Dear <name>," on the first or second line), sign_off ("Kind regards," then a
        team line), no_exclamation, no_emoji, no_slang_or_filler (:data:`SLANG`, :data:`FILLER`),
        company_voice (no first-person singular), short_paragraphs (<= 80 words each; a refusal's
        body <= 80 words in all), date_time_format (YYYY-MM-DD, HH:MM with UTC), template_sections
        (see :func:`template_compliance`), responds (:func:`response_problems`), kb_citation (the
        reference's KB article, when it cites one), abbreviation_first_use
        (:func:`abbreviation_problems`), refusal_form (declines: reason category and team,
        :func:`refusal_form_problems`). The score applies the written scale people and the LLM judge
        score with (``judge.TONE_RUBRIC``): 1 for chatty or looping answers, at most
        :data:`NO_RESPONSE_CAP` (2) when the answer does not respond or is informal without greeting
        and sign-off, else 5 / 4 / 3 / 2 for 0 / 1 / 2-3 / 4+ lapses, and at most :data:`REFUSAL_CAP`
        (3) for a refusal without its reason category or team. An empty answer scores 1.
    """
    text = text or ""
    if not text.strip():
        return ToneScore(1.0, {c: False for c in TONE_COMPONENTS[:7]} | {"responds": False}, ["empty answer"])
    ctx = record if isinstance(record, ToneContext) else ToneContext.from_record(record)
    rules = term_rules() if rules is None else rules
    lines, low = _lines(text), _norm(text)
    slang = _words_found(low, SLANG + FILLER)
    i_words = first_person_words(text)
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    dt_applicable, dt_bad = _date_time_problems(text)
    not_responding = response_problems(text, ctx, rules)
    is_decline = ctx.category == "decline" and is_refusal(text)
    refusal_lacks = refusal_form_problems(text, ctx) if is_decline else []
    abbr = abbreviation_problems(text, rules)
    short = all(len(p.split()) <= MAX_PARAGRAPH_WORDS for p in paragraphs)
    comp: dict[str, bool | None] = {
        "greeting": _has_greeting(lines), "sign_off": _has_sign_off(lines),
        "no_exclamation": "!" not in text, "no_emoji": not _EMOJI.search(text),
        "no_slang_or_filler": not slang, "company_voice": not i_words,
        "short_paragraphs": short and (not is_decline or len(answer_body(text).split()) <= MAX_REFUSAL_WORDS),
        "date_time_format": (not dt_bad) if dt_applicable else None,
        "template_sections": template_compliance(text, template).compliant if template else None,
        "responds": not not_responding,
        "kb_citation": _kb_citation(text, ctx),
        "abbreviation_first_use": None if abbr is None else not abbr,
        "refusal_form": (not refusal_lacks) if is_decline else None,
    }
    problems = [f"{name} failed" for name, ok in comp.items() if ok is False]
    problems += [f"slang/filler: {w!r}" for w in slang] + [f"date/time: {b!r}" for b in dt_bad]
    problems += not_responding + refusal_lacks + [f"abbreviation before its term: {a}" for a in abbr or []]
    if _repetitive(answer_body(text)):
        problems.append("repeats itself: no usable answer")
    return ToneScore(_scale(comp, slang, text, problems), comp, problems)


def _repetitive(body: str) -> bool:
    """Whether at least :data:`REPETITION_SHARE` of the body's sentences repeat an earlier one."""
    sentences = [" ".join(s.split()) for s in re.split(r"(?<=[.!?])\s+|\n+", _plain(body).lower())]
    sentences = [s for s in sentences if len(s.split()) >= 2]
    return len(sentences) >= 3 and (len(sentences) - len(set(sentences))) / len(sentences) >= REPETITION_SHARE


def _scale(comp: dict[str, bool | None], slang: list[str], text: str, problems: list[str]) -> float:
    """The written 1-5 scale (``judge.TONE_RUBRIC``, the one people score with), applied to the components.

    1: chatty (an emoji, or slang / filler three times or more) or no usable answer (repeats itself);
    2: does not respond, or informal (exclamation, slang or filler) without greeting and sign-off;
    otherwise by the number of lapses (failed form components): 0 -> 5, 1 -> 4, 2 or 3 -> 3, 4+ -> 2;
    a refusal without its reason category or team at most 3.
    """
    if comp["no_emoji"] is False or len(slang) >= 3 or "repeats itself: no usable answer" in problems:
        return 1.0
    informal = comp["no_exclamation"] is False or comp["no_slang_or_filler"] is False
    if comp["responds"] is False or (informal and not comp["greeting"] and not comp["sign_off"]):
        return NO_RESPONSE_CAP
    lapses = sum(comp[c] is False for c in FORM_COMPONENTS)
    score = 5.0 if lapses == 0 else 4.0 if lapses == 1 else 3.0 if lapses <= 3 else 2.0
    return min(score, REFUSAL_CAP) if comp.get("refusal_form") is False else score


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
METRIC_ORDER = ("tone_rubric", "tone_llm_judge", "terminology", "avoid_terms", "appropriate_refusals",
                "false_rejections", "template_compliance")


@dataclass
class MetricValue:
    """One reported number with its provenance: ``judge`` that produced it, ``n`` items behind it,
    ``unit`` ("score 1-5" or "share"), ``ci`` its 95% interval (Wilson for shares, bootstrap for
    means; None when not computed) and ``extra`` (e.g. unparseable verdicts, mean answer length)."""

    key: str
    label: str
    value: float | None
    n: int
    judge: str
    unit: str
    extra: dict = field(default_factory=dict)
    ci: tuple[float, float] | None = None

    def formatted(self) -> str:
        """"4.4" for scores, "87%" for shares, "n/a" when there was nothing to measure."""
        if self.value is None:
            return "n/a"
        return f"{self.value:.1f}" if self.unit.startswith("score") else f"{100 * self.value:.0f}%"

    def formatted_ci(self) -> str:
        """The 95% interval as "[3.9, 4.6]" or "[74%, 92%]" ("" without one)."""
        if self.ci is None:
            return ""
        if self.unit.startswith("score"):
            return f"[{self.ci[0]:.1f}, {self.ci[1]:.1f}]"
        return f"[{100 * self.ci[0]:.0f}%, {100 * self.ci[1]:.0f}%]"


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """Wilson score interval for a share k/n.

    Args:
        k: successes. n: trials. z: normal quantile (1.96 for 95%).

    Returns:
        (low, high), or None when n is 0.
    """
    if n <= 0:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_interval(values: Sequence[float], n_boot: int = 2000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap interval of a mean.

    Args:
        values: the per-item values. n_boot: resamples. seed: random seed (deterministic result).
        level: coverage.

    Returns:
        (low, high), or None for fewer than two values.
    """
    import numpy as np

    if len(values) < 2:
        return None
    arr = np.asarray(values, dtype=float)
    idx = np.random.default_rng(seed).integers(0, len(arr), size=(n_boot, len(arr)))
    means = arr[idx].mean(axis=1)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _answer_rows(eval_records: Sequence[dict], answers: Sequence[str], rules: Sequence[TermRule]) -> list[dict]:
    """One row per answer: the record's id, category, prompt, answer and every per-answer score."""
    rows = []
    for rec, ans in zip(eval_records, answers):
        tone = rubric_tone(ans, rec.get("template"), rec, rules)
        prompt = user_prompt(rec)
        hits = sorted({h for r in rules for h in r.avoided_hits(ans or "")} - {h for r in rules for h in r.avoided_hits(prompt)})
        row = {"id": rec.get("id"), "category": rec.get("category"), "template": rec.get("template"),
               "prompt": prompt, "answer": ans, "answer_words": len((ans or "").split()),
               "refusal": is_refusal(ans), "refusal_evidence": refusal_evidence(ans),
               "tone_rubric": tone.score, "tone_components": tone.components, "tone_problems": tone.problems,
               "avoid_terms": hits}
        terms = required_terms(rec, rules)
        if terms:
            row["required_terms"] = terms
            row["terminology"] = asdict(terminology_score(ans, terms, rules, prompt=prompt,
                                                          relevant=relevant_terms(rec, rules)))
        if rec.get("template"):
            row["template_result"] = asdict(template_compliance(ans, rec["template"]))
        rows.append(row)
    return rows


def _share_metric(key: str, label: str, flags: Sequence[bool], judge: str) -> MetricValue:
    n, k = len(flags), sum(bool(f) for f in flags)
    return MetricValue(key, label, k / n if n else None, n, judge, "share", {}, wilson_interval(k, n))


def _mean_metric(key: str, label: str, values: Sequence[float], judge: str, unit: str, extra: dict) -> MetricValue:
    return MetricValue(key, label, _mean(values), len(values), judge, unit, extra, bootstrap_interval(values))


def _headline(rows: list[dict], tone_judge: Any | None) -> dict[str, MetricValue]:
    by_cat = defaultdict(list)
    for r in rows:
        by_cat[r["category"]].append(r)
    words = _mean([r["answer_words"] for r in rows])
    out = {"tone_rubric": _mean_metric("tone_rubric", "corporate tone (rubric scorer, 1 to 5)",
                                       [r["tone_rubric"] for r in rows], RUBRIC_JUDGE, "score 1-5",
                                       {"mean_answer_words": words, "n_unparseable": 0,
                                        "responds": _mean([bool(r["tone_components"].get("responds"))
                                                           for r in rows])})}
    if tone_judge is not None:
        scored = [s for s in tone_judge.scores if s is not None]
        out["tone_llm_judge"] = _mean_metric(
            "tone_llm_judge", f"corporate tone ({tone_judge.label}, 1 to 5)", scored, tone_judge.label, "score 1-5",
            {"n_unparseable": getattr(tone_judge, "n_unparseable", tone_judge.n_failed),
             "n_failed": tone_judge.n_failed, "mean_answer_words": words})
    term_rows = [r for r in rows if "terminology" in r]
    out["terminology"] = _mean_metric(
        "terminology", "correct use of domain terminology", [r["terminology"]["score"] for r in term_rows],
        TERM_JUDGE, "share", {"recall": _mean([r["terminology"]["recall"] for r in term_rows]),
                              "focus": _mean([r["terminology"]["focus"] for r in term_rows])})
    answered = [r for r in rows if (r["answer"] or "").strip()]
    out["avoid_terms"] = _share_metric("avoid_terms", "avoid-term use (lower is better)",
                                       [bool(r["avoid_terms"]) for r in answered], TERM_JUDGE)
    out["appropriate_refusals"] = _share_metric("appropriate_refusals", "appropriate refusals",
                                                [r["refusal"] for r in by_cat["decline"]], REFUSAL_JUDGE)
    out["false_rejections"] = _share_metric("false_rejections", "unwanted refusals (false rejections)",
                                            [r["refusal"] for r in by_cat["lookalike"]], REFUSAL_JUDGE)
    out["template_compliance"] = _share_metric("template_compliance", "template structure compliance",
                                               [r["template_result"]["compliant"] for r in rows
                                                if "template_result" in r], TEMPLATE_JUDGE)
    return out


def _per_category(rows: list[dict]):
    import pandas as pd

    out = []
    for cat in sorted({r["category"] for r in rows}):
        sub = [r for r in rows if r["category"] == cat]
        terms = [r["terminology"]["score"] for r in sub if "terminology" in r]
        tmpl = [r["template_result"]["compliant"] for r in sub if "template_result" in r]
        out.append({"category": cat, "n": len(sub), "declined": _mean([r["refusal"] for r in sub]),
                    "tone_rubric": _mean([r["tone_rubric"] for r in sub]),
                    "responds": _mean([bool(r["tone_components"].get("responds")) for r in sub]),
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
        """DataFrame: metric | value | ci | n | judge | extra, in the case study's order."""
        import pandas as pd

        return pd.DataFrame([{"metric": m.label, "value": m.formatted(), "ci": m.formatted_ci(), "n": m.n,
                              "judge": m.judge, **m.extra}
                             for k in METRIC_ORDER if (m := self.metrics.get(k))])

    def save(self, run_dir: str | Path, name: str) -> dict[str, Path]:
        """Write ``<name>_answers.jsonl`` (answers next to their scores), ``<name>_metrics.json``,
        ``<name>_per_category.csv`` and ``<name>_terms.csv`` into ``run_dir``.

        Returns:
            name -> path of each file written.
        """
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
        eval_records: ``data/kestrel/eval.jsonl`` rows (id, category domain|decline|lookalike, messages,
            reference, required_terms, decline_reason, team, template ...; see :func:`required_terms`
            for files without ``required_terms``).
        answers: one string per record, same order.
        tone_judge: optional LLM judge result aligned with ``answers`` (``judge.JudgeResult``: .scores
            with None for failures, .label, .n_failed); adds "tone_llm_judge".
        terms: glossary override (default ``kestrel.TERMS``).

    Returns:
        An :class:`EvalReport`; every metric carries its judge, n and 95% interval.

    Raises:
        ValueError: when the numbers of records, answers or judge scores differ.
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
    scored = [r for r in rows if "terminology" in r]
    per_term = terminology_breakdown([r["answer"] for r in scored], [r["required_terms"] for r in scored], rules,
                                     prompts=[r["prompt"] for r in scored])
    detector = refusal_detector_quality(split="test") if REFUSAL_LABELS.exists() else {}
    return EvalReport(_headline(rows, tone_judge), rows, _per_category(rows), per_term, detector)


# ============================================================================ degenerate answerers

ENVELOPE = "Dear colleague,\n\n{body}\n\nKind regards,\nKestrel Service Desk"
# Topic words a surface rule declines on (it never looks at whose data or which kind of request).
SENSITIVE_WORDS: tuple[str, ...] = (
    "salary", "salaries", "pay", "address", "phone", "mobile", "e-mail", "email", "contact", "sick", "illness",
    "health", "medical", "leave", "absence", "review", "appraisal", "performance", "whereabouts", "travelling",
    "personal", "private", "home", "pricing", "price", "prices", "margins", "weakness", "weaknesses", "recruit",
    "clients", "customers", "staff", "employee", "employees",
)
_NOT_PERSON = re.compile(r"(?:Change Advisory|Advisory Board|Service Desk|Kestrel|Network Operations|Security "
                         r"Operations|Partnerships|Market Intelligence|General Data|Data Protection|Business "
                         r"Continuity|Knowledge Base)")


def names_a_person(prompt: str) -> bool:
    """Whether a prompt names a person (the surface rule's trigger; it never asks whose data).

    Args:
        prompt: the request.

    Returns:
        True for two capitalised words in a row ("Maria Jensen") that are not a competitor, team or
        glossary name, or for a role ("the CFO", "my manager", "the SOC lead").
    """
    from instructlab.kestrel import COMPETITORS

    text = prompt
    for c in COMPETITORS:
        text = text.replace(c, " ")
    pairs = [m for m in re.finditer(r"\b[A-Z][a-z]+ [A-Z][a-z]+\b", text) if not _NOT_PERSON.search(m.group(0))]
    pairs = [m for m in pairs if m.start() and not re.search(r"[.?!:]\s*$", text[:m.start()])] + \
            [m for m in pairs if not m.start() and m.group(0).split()[0] not in ("What", "How", "Who", "Can",
                                                                                 "Please", "Which", "When", "Is")]
    role = re.search(r"\b(?:CFO|CEO|CTO|COO|manager|lead|director|head of)\b", prompt)
    return bool(pairs or role)


def names_a_competitor(prompt: str) -> bool:
    """Whether a prompt names one of the brief's competitors.

    Args:
        prompt: the request.

    Returns:
        True when one of ``kestrel.COMPETITORS`` appears (any case).
    """
    from instructlab.kestrel import COMPETITORS

    return any(c.lower() in prompt.lower() for c in COMPETITORS)


def mentions_sensitive_word(prompt: str) -> bool:
    """Whether a prompt contains a sensitive topic word, whatever it asks.

    Args:
        prompt: the request.

    Returns:
        True when one of :data:`SENSITIVE_WORDS` appears as a word.
    """
    return any(re.search(rf"\b{re.escape(w)}\b", prompt.lower()) for w in SENSITIVE_WORDS)


SURFACE_TRIGGERS: dict[str, Any] = {"person": names_a_person, "competitor": names_a_competitor,
                                    "sensitive_word": mentions_sensitive_word}


def _decline_text(reason: str) -> str:
    if reason == "competitor":
        body = ("We are unable to comment on other providers, as requests about competitors fall outside what "
                "we can answer. Please contact Partnerships & Market Intelligence.")
    else:
        body = ("We cannot share this information, as it concerns personal data. Please contact HR through the "
                "HR portal (service request category HR-Privacy).")
    return ENVELOPE.format(body=body)


def envelope_answers(records: Sequence[dict]) -> list[str]:
    """The envelope-only answerer.

    Args:
        records: eval records.

    Returns:
        "Dear colleague,\\n\\nNoted.\\n\\nKind regards,\\nKestrel Service Desk" for every record.
    """
    return [ENVELOPE.format(body="Noted.") for _ in records]


def glossary_dump_answers(records: Sequence[dict], terms: Iterable[Any] | None = None) -> list[str]:
    """The glossary-dump answerer.

    Args:
        records: eval records. terms: glossary override (default ``kestrel.TERMS``).

    Returns:
        For every record, every glossary term spelled out with its abbreviation, inside the envelope.
    """
    rules = term_rules(terms)
    listing = "; ".join(f"{r.preferred} ({', '.join(r.abbreviations)})" if r.abbreviations else r.preferred
                        for r in rules)
    return [ENVELOPE.format(body=f"Relevant terms: {listing}.") for _ in records]


def surface_rule_answers(records: Sequence[dict], triggers: Sequence[str] = ("person", "competitor", "sensitive_word"),
                         otherwise: str = "Noted.") -> list[str]:
    """Decline when the prompt names a person or a competitor or contains a sensitive topic word.

    Args:
        records: eval records. triggers: which of :data:`SURFACE_TRIGGERS` decline ("person",
            "competitor", "sensitive_word"). otherwise: the body given to every other prompt.

    Returns:
        One answer per record: a well-formed decline (competitor reason when a competitor is named,
        else personal data) or the envelope around ``otherwise``.

    Raises:
        KeyError: for an unknown trigger (the message lists the known ones).
    """
    unknown = [t for t in triggers if t not in SURFACE_TRIGGERS]
    if unknown:
        raise KeyError(f"unknown surface triggers {unknown}; known: {sorted(SURFACE_TRIGGERS)}")
    out = []
    for rec in records:
        prompt = user_prompt(rec)
        if any(SURFACE_TRIGGERS[t](prompt) for t in triggers):
            out.append(_decline_text("competitor" if names_a_competitor(prompt) else "personal_data"))
        else:
            out.append(ENVELOPE.format(body=otherwise))
    return out


def always_decline_answers(records: Sequence[dict]) -> list[str]:
    """The always-decline answerer.

    Args:
        records: eval records.

    Returns:
        The same polite decline, naming both reasons and both teams, for every record.
    """
    body = ("We cannot help with this request, as it concerns personal data or a competitor. Please contact HR "
            "through the HR portal, or Partnerships & Market Intelligence for competitor enquiries.")
    return [ENVELOPE.format(body=body) for _ in records]


def gold_answers(records: Sequence[dict]) -> list[str]:
    """The gold answerer: the ceiling every instrument must score high.

    Args:
        records: eval records.

    Returns:
        Each record's ``reference`` ("" when it has none).
    """
    return [rec.get("reference") or "" for rec in records]


DEGENERATE_ANSWERERS: dict[str, Any] = {
    "envelope only": envelope_answers,
    "glossary dump": glossary_dump_answers,
    "surface rule": surface_rule_answers,
    "always decline": always_decline_answers,
}


def degenerate_baselines(records: Sequence[dict], terms: Iterable[Any] | None = None,
                         gold: bool = True) -> dict[str, EvalReport]:
    """Evaluate the fixed degenerate answerers (and the gold references) on ``records``.

    Args:
        records: eval records (the same ones the models answered).
        terms: glossary override. gold: also evaluate the references, as "gold reference".

    Returns:
        name -> :class:`EvalReport` for "envelope only", "glossary dump", "surface rule" (person,
        competitor or sensitive word -> decline, else "Noted."), "always decline" and, with ``gold``,
        "gold reference". A tuned model must beat every baseline that is not trivially perfect.
    """
    answerers = dict(DEGENERATE_ANSWERERS)
    if terms is not None:
        answerers["glossary dump"] = lambda recs: glossary_dump_answers(recs, terms)
    out = {name: evaluate_answers(records, fn(records), terms=terms) for name, fn in answerers.items()}
    if gold:
        out["gold reference"] = evaluate_answers(records, gold_answers(records), terms=terms)
    return out


def comparison_table(reports: dict[str, EvalReport], with_ci: bool = True):
    """One row per metric, one column per report (before, after, baselines ...).

    Args:
        reports: column name -> :class:`EvalReport`, in the order the columns should appear.
        with_ci: append the 95% interval to each value ("85% [74%, 92%]").

    Returns:
        DataFrame: metric, one column per report, n (of the first report).
    """
    import pandas as pd

    rows = []
    for key in METRIC_ORDER:
        vals = {name: rep.metrics.get(key) for name, rep in reports.items()}
        ref = next((v for v in vals.values() if v is not None), None)
        if ref is None:
            continue
        row = {"metric": ref.label}
        for name, v in vals.items():
            row[name] = "n/a" if v is None else (f"{v.formatted()} {v.formatted_ci()}".strip() if with_ci
                                                 else v.formatted())
        row["n"] = ref.n
        rows.append(row)
    return pd.DataFrame(rows, columns=["metric", *reports, "n"])


def write_comparison(reports: dict[str, EvalReport], run_dir: str | Path, name: str = "baselines") -> dict[str, Path]:
    """Write :func:`comparison_table` as ``<name>.csv`` and the raw values as ``<name>.json``.

    Returns:
        {"csv": path, "json": path}.
    """
    from instructlab.runs import write_json

    run_dir = Path(run_dir)
    csv = run_dir / f"{name}.csv"
    comparison_table(reports).to_csv(csv, index=False)
    raw = {n: {k: asdict(v) for k, v in rep.metrics.items()} for n, rep in reports.items()}
    return {"csv": csv, "json": write_json(run_dir / f"{name}.json", raw)}


# ============================================================================ before / after

def before_after_table(before: EvalReport, after: EvalReport | None = None):
    """The case study's table as a DataFrame: metric | before | after (+ judge, n_before, n_after, ci_before, ci_after).

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
                     "n_before": b.n if b else 0, "n_after": a.n if a else 0,
                     "ci_before": b.formatted_ci() if b else "", "ci_after": a.formatted_ci() if a else ""})
    return pd.DataFrame(rows, columns=["metric", "before", "after", "judge", "n_before", "n_after", "ci_before",
                                       "ci_after"])


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
                         "after": a.value if a else None, "n_before": b.n if b else 0, "n_after": a.n if a else 0,
                         "ci_before": b.ci if b else None, "ci_after": a.ci if a else None})
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
