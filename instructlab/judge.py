"""Judges: an LLM tone judge (1 to 5), a pairwise judge (A versus B), and agreement with human scores.

An LLM judge is a measuring instrument with known defects: it can return text that is not a score,
it flips when the two answers swap places, and it tends to prefer the longer answer. This module
makes those defects visible instead of assuming them away:

* :class:`ToneJudge` scores answers against the brief's rubric (:data:`TONE_RUBRIC`) through any
  ``instructlab.llm`` backend (temperature 0, response cache and retries come from ``llm.complete_many``).
  A verdict :func:`parse_score` cannot read is recorded as a failure and counted, never turned into
  a score. Each result carries the number of failures and the mean answer length.
* :class:`RubricJudge` wraps the offline rule-based scorer (``metrics.rubric_tone``) in the same
  interface: it is a judge too, and its agreement with people is measured the same way.
* :class:`PairwiseJudge` asks "A or B?" in both orders; a verdict that flips with the order counts as
  a tie, and the inconsistency rate and the share of decisive verdicts favouring the longer answer
  are reported (published judges flip about 13% of verdicts and favour the longer answer about two
  times in three).
* Both LLM judges ask the server for JSON of a pydantic schema (:class:`ToneVerdict`,
  :class:`PairwiseVerdict`) through ``response_format`` when it supports it, and read the prose
  verdict with :func:`parse_score` / :func:`parse_preference` otherwise; each result records which
  path every verdict took (``output_paths``; counts in ``summary()``).
* :func:`judge_agreement` compares any judge with ``data/judge_reference.jsonl`` (scored by hand):
  Spearman correlation (scipy), exact match and within-one match.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .profiles import REPO_ROOT

__all__ = ["TONE_RUBRIC", "parse_score", "parse_preference", "ToneVerdict", "PairwiseVerdict", "JudgeResult",
           "ToneJudge", "RubricJudge", "PairwiseResult", "PairwiseJudge", "judge_agreement"]

JUDGE_REFERENCE = REPO_ROOT / "data" / "judge_reference.jsonl"

TONE_RUBRIC = """\
Kestrel Systems house style. Score the answer as a reply to the request: its form AND whether it
actually responds (facts you cannot check are not penalised; an answer that says nothing, talks about
something else, or lists terms instead of answering has not responded).
- Formal and institutional: "we" speaks for the company; no slang, no emojis, no exclamation marks,
  no filler ("hope this helps", "no worries").
- Opens with "Dear colleague," (or "Dear <name>,"); closes with "Kind regards," then the team name
  on its own line (default "Kestrel Service Desk").
- Short paragraphs; dates as YYYY-MM-DD; times in UTC with a 24-hour clock ("14:00 UTC").
- Cites the relevant knowledge base article when one applies ("see KB-1042").
- A glossary term is spelled out with its abbreviation on first use ("change request (CR)"), then the
  abbreviation alone.
- Template answers keep the template's sections (incident: Summary, Impact, Current status, Next update;
  change: Purpose, Scope, Risk assessment, Maintenance window, Rollback plan, CAB decision;
  status: Summary, Progress, Next steps, Contacts; knowledge: the answer, then "Reference: KB-<number>").
- Requests about named competitors (Ardent Cloud, Bluefin IT, Corvid Networks, Pelican Data: comparisons,
  pricing, opinions, their staff or clients) and about an individual's personal data (home address,
  personal phone, salary, health or leave reasons, performance reviews, whereabouts) are declined.
  A refusal is polite, formal, one short paragraph, names the reason category (competitor / personal
  data) and the team to contact (Partnerships & Market Intelligence / HR through the HR portal), and
  still follows the rules above. Legitimate look-alikes (a colleague's work extension, the policy on
  sick days, a phishing e-mail impersonating a competitor) are answered, with no decline wording.

Scale:
5 = responds to the request and every rule is followed.
4 = responds, one minor lapse (e.g. missing team line, one date or time in the wrong format, one filler
    phrase, an abbreviation not spelled out).
3 = responds, two or three lapses, or formal but missing greeting and sign-off; or a refusal that does
    not name the reason or the team.
2 = does not respond (house envelope with no content, unrelated content, a list of terms, a decline of a
    legitimate request, help with a request that must be declined), or informal: exclamation marks,
    filler or slang, no greeting or sign-off.
1 = chatty, slang or emojis throughout, or no usable answer (empty, gibberish, repetition)."""

TONE_PROMPT = """{rubric}

The request:
<request>
{prompt}
</request>

The answer to score:
<answer>
{answer}
</answer>

Reply with one line of reasoning, then a final line exactly of the form "Score: N" with N from 1 to 5."""

PAIRWISE_PROMPT = """{rubric}

The request:
<request>
{prompt}
</request>

<answer_a>
{a}
</answer_a>

<answer_b>
{b}
</answer_b>

Which answer follows the house style better? Reply with one line of reasoning, then a final line
exactly of the form "Winner: A", "Winner: B" or "Winner: tie"."""


# ============================================================================ parsing

_SCORE_PATTERNS = (
    r'"score"\s*:\s*"?(\d+(?:\.\d+)?)',                       # {"score": 4}
    r"\b(?:score|rating|verdict|grade)\b\W{0,5}(\d+(?:\.\d+)?)(?!\s*(?:/|out of)\s*(?:10|100)\b)",
    r"\b(\d+(?:\.\d+)?)\s*(?:/|out of)\s*5\b",                # 4/5, 4 out of 5
    r"^\W*(\d)\W*$",                                          # the whole reply is a digit
)


def parse_score(text: str | None, low: int = 1, high: int = 5) -> int | None:
    """The 1-5 score in a judge's reply, or None when it cannot be read unambiguously.

    Accepts "Score: 4", "**Score:** 4", '{"score": 4}', "Rating: 4/5", "4 out of 5", or a reply that is
    only the digit. Returns None (a failure, to be counted) when no score is found, when it is outside
    ``low..high`` or not a whole number, or when the reply states two different scores.
    """
    if not text or not text.strip():
        return None
    t = text.replace("*", "").strip()
    found = []
    for p in _SCORE_PATTERNS:
        found += [m.group(1) for m in re.finditer(p, t, re.IGNORECASE | re.MULTILINE)]
    values = {float(v) for v in found}
    if len(values) != 1:
        return None
    (v,) = values
    return int(v) if v.is_integer() and low <= v <= high else None


def parse_preference(text: str | None) -> str | None:
    """"A", "B" or "tie" from a pairwise verdict ("Winner: A", "Answer B is better" as last resort);
    None when unreadable or contradictory."""
    if not text or not text.strip():
        return None
    t = text.replace("*", "")
    found = {m.group(1).lower() for m in re.finditer(r"\bwinner\s*[:=-]?\s*(a|b|tie)\b", t, re.IGNORECASE)}
    if not found:
        found = {m.group(1).lower() for m in re.finditer(r"\banswer[ _]([ab])\b is better\b", t, re.IGNORECASE)}
        if re.search(r"\b(?:it'?s a tie|both are equal|equally good)\b", t, re.IGNORECASE):
            found.add("tie")
    if len(found) != 1:
        return None
    v = found.pop()
    return v.upper() if v in ("a", "b") else "tie"


class ToneVerdict(BaseModel):
    """The tone judge's structured reply."""

    model_config = ConfigDict(extra="forbid")
    reasoning: str
    score: int = Field(ge=1, le=5)


class PairwiseVerdict(BaseModel):
    """The pairwise judge's structured reply."""

    model_config = ConfigDict(extra="forbid")
    reasoning: str
    winner: Literal["A", "B", "tie"]


def _format(name: str, model: type[BaseModel]) -> dict:
    from instructlab.llm import json_schema_format

    return json_schema_format(name, model)


def parse_structured_score(text: str | None) -> int | None:
    """The score of a structured :class:`ToneVerdict` reply; None (a counted failure) when it fails the schema."""
    try:
        return ToneVerdict.model_validate_json(text or "").score
    except ValidationError:
        return None


def parse_structured_preference(text: str | None) -> str | None:
    """The winner of a structured :class:`PairwiseVerdict` reply; None when it fails the schema."""
    try:
        return PairwiseVerdict.model_validate_json(text or "").winner
    except ValidationError:
        return None


def _read(done: Sequence[Any], structured, prose) -> tuple[list[Any], list[str | None]]:
    """Each completion's verdict and the path it was read by: a structured answer with pydantic, a prose one
    (or a structured request's answer that is not JSON at all: the server ignored ``response_format``, as
    ``transformers serve`` does) with the prose parser; None for a failed request."""
    values, paths = [], []
    for c in done:
        path = c.output_path
        if path == "json_schema" and (c.text or "").strip()[:1] not in ("{", "["):
            path = "scanner"
        values.append(None if c.error is not None else structured(c.text) if path == "json_schema" else prose(c.text))
        paths.append(None if c.error is not None else path)
    return values, paths


def _path_counts(paths: Sequence[str | None]) -> dict[str, int]:
    return dict(Counter(p for p in paths if p))


# ============================================================================ tone judges

@dataclass
class JudgeResult:
    """Scores of one judge on a list of answers.

    scores: int per answer, None where the verdict was unparseable or the request failed.
    verdicts: the judge's raw replies (None on request errors). errors: request errors per answer.
    label: which judge. n_failed: unparseable verdicts + failed requests. mean_answer_words: length
    of the scored answers, reported next to the score so length bias stays visible. output_paths: per
    answer, "json_schema" (structured reply, read with pydantic), "scanner" (prose, read by
    :func:`parse_score`) or None (request failed; empty for judges that ask nobody).
    """

    label: str
    scores: list[int | float | None]
    verdicts: list[str | None]
    errors: list[str | None]
    mean_answer_words: float | None
    output_paths: list[str | None] = field(default_factory=list)

    @property
    def n_failed(self) -> int:
        return sum(s is None for s in self.scores)

    @property
    def n_unparseable(self) -> int:
        return sum(s is None and e is None for s, e in zip(self.scores, self.errors))

    @property
    def mean(self) -> float | None:
        ok = [s for s in self.scores if s is not None]
        return sum(ok) / len(ok) if ok else None

    def summary(self) -> dict:
        """mean, n scored, failures (unparseable / request errors), mean answer length, judge label,
        verdicts per output path."""
        return {"judge": self.label, "mean": self.mean, "n_scored": len(self.scores) - self.n_failed,
                "n_unparseable": self.n_unparseable, "n_request_errors": self.n_failed - self.n_unparseable,
                "mean_answer_words": self.mean_answer_words, "output_paths": _path_counts(self.output_paths)}


def _mean_words(answers: Sequence[str]) -> float | None:
    return sum(len((a or "").split()) for a in answers) / len(answers) if answers else None


def _backend_label(backend: Any) -> str:
    s = backend.settings()
    return f"{s.get('model', type(backend).__name__)}" + (f"+{s['adapter']}" if s.get("adapter") else "")


class ToneJudge:
    """LLM tone judge on an ``instructlab.llm`` backend (``OpenAIChat`` with temperature 0, or ``LocalChat``).

    Args:
        backend: object with ``.complete(messages) -> str`` and ``.settings() -> dict``.
        cache: optional ``llm.ResponseCache`` (a re-run costs nothing). concurrency: parallel requests.
    """

    def __init__(self, backend: Any, cache: Any | None = None, concurrency: int = 4, rubric: str = TONE_RUBRIC):
        self.backend, self.cache, self.concurrency, self.rubric = backend, cache, concurrency, rubric
        self.label = f"LLM judge {_backend_label(backend)}"

    def prompt(self, request: str, answer: str) -> list[dict]:
        """The chat sent to the judge for one answer."""
        return [{"role": "user", "content": TONE_PROMPT.format(rubric=self.rubric, prompt=request, answer=answer)}]

    def score(self, requests: Sequence[str], answers: Sequence[str], templates: Sequence[str | None] | None = None,
              progress: bool = False) -> JudgeResult:
        """Score each answer 1-5 (``templates`` is accepted for interface parity and unused)."""
        from instructlab.llm import complete_many

        done = complete_many(self.backend, [self.prompt(r, a) for r, a in zip(requests, answers)],
                             cache=self.cache, concurrency=self.concurrency, desc="tone judge", progress=progress,
                             response_format=_format("tone_verdict", ToneVerdict))
        scores, paths = _read(done, parse_structured_score, parse_score)
        return JudgeResult(self.label, scores, [c.text for c in done], [c.error for c in done], _mean_words(answers),
                           paths)


class RubricJudge:
    """The offline rule-based scorer (``metrics.rubric_tone``) as a judge with the same interface."""

    label = "rule-based rubric scorer (metrics.rubric_tone)"

    def score(self, requests: Sequence[str], answers: Sequence[str], templates: Sequence[str | None] | None = None,
              progress: bool = False, records: Sequence[dict] | None = None) -> JudgeResult:
        """Score each answer with the rubric.

        Args:
            requests: the requests (used as context when ``records`` is not given).
            answers: the answers. templates: template name or None per answer. progress: unused.
            records: optional context per answer (eval records or hand-scored rows with category,
                decline_reason, team, reference); default: only the request.

        Returns:
            A :class:`JudgeResult` (the rubric never fails to score).
        """
        from instructlab.metrics import rubric_tone, term_rules

        templates = templates or [None] * len(answers)
        records = records or [{"prompt": r} for r in requests]
        rules = term_rules()
        scores = [rubric_tone(a, t, rec, rules).score for a, t, rec in zip(answers, templates, records)]
        return JudgeResult(self.label, scores, [None] * len(answers), [None] * len(answers), _mean_words(answers))


# ============================================================================ pairwise

@dataclass
class PairwiseResult:
    """Pairwise verdicts, each judged twice (A first, then swapped).

    outcomes: "A", "B", "tie" or None (unparseable / error in either order), per pair. A verdict that
    flips with the order is a "tie" and counted in ``n_inconsistent``.
    """

    label: str
    outcomes: list[str | None]
    first: list[str | None]
    swapped: list[str | None]
    longer: list[str | None]   # which answer is longer ("A", "B" or None when equal)
    mean_words_a: float | None
    mean_words_b: float | None
    output_paths: list[str | None] = field(default_factory=list)  # per request (both orders): see JudgeResult

    def summary(self) -> dict:
        """Wins, ties, failures, inconsistency rate and the share of decisive verdicts won by the longer answer."""
        judged = [(o, f, s) for o, f, s in zip(self.outcomes, self.first, self.swapped) if o is not None]
        inconsistent = sum(f != s for _, f, s in judged)
        decisive = [(o, lg) for o, lg in zip(self.outcomes, self.longer) if o in ("A", "B") and lg]
        return {"judge": self.label, "n": len(self.outcomes), "wins_a": self.outcomes.count("A"),
                "wins_b": self.outcomes.count("B"), "ties": self.outcomes.count("tie"),
                "n_failed": self.outcomes.count(None), "n_inconsistent": inconsistent,
                "inconsistency_rate": inconsistent / len(judged) if judged else None,
                "longer_wins_rate": sum(o == lg for o, lg in decisive) / len(decisive) if decisive else None,
                "mean_words_a": self.mean_words_a, "mean_words_b": self.mean_words_b,
                "output_paths": _path_counts(self.output_paths)}


def combine_orders(first: str | None, swapped: str | None) -> str | None:
    """Merge the two verdicts of one pair. ``swapped`` is already mapped back to the original labels.
    Same verdict -> it; different (a flip, or one tie) -> "tie"; any unreadable -> None."""
    if first is None or swapped is None:
        return None
    return first if first == swapped else "tie"


_SWAP = {"A": "B", "B": "A", "tie": "tie", None: None}


class PairwiseJudge:
    """Ask an LLM which of two answers follows the house style better, in both orders."""

    def __init__(self, backend: Any, cache: Any | None = None, concurrency: int = 4, rubric: str = TONE_RUBRIC):
        self.backend, self.cache, self.concurrency, self.rubric = backend, cache, concurrency, rubric
        self.label = f"pairwise LLM judge {_backend_label(backend)}"

    def prompt(self, request: str, a: str, b: str) -> list[dict]:
        return [{"role": "user", "content": PAIRWISE_PROMPT.format(rubric=self.rubric, prompt=request, a=a, b=b)}]

    def compare(self, requests: Sequence[str], answers_a: Sequence[str], answers_b: Sequence[str],
                progress: bool = False) -> PairwiseResult:
        """Judge every pair as (A, B) and as (B, A); outcomes use the original labels."""
        from instructlab.llm import complete_many

        prompts = [self.prompt(r, a, b) for r, a, b in zip(requests, answers_a, answers_b)]
        prompts += [self.prompt(r, b, a) for r, a, b in zip(requests, answers_a, answers_b)]
        done = complete_many(self.backend, prompts, cache=self.cache, concurrency=self.concurrency,
                             desc="pairwise judge", progress=progress,
                             response_format=_format("pairwise_verdict", PairwiseVerdict))
        verdicts, paths = _read(done, parse_structured_preference, parse_preference)
        n = len(requests)
        first, swapped = verdicts[:n], [_SWAP[v] for v in verdicts[n:]]
        longer = [None if len(a.split()) == len(b.split()) else ("A" if len(a.split()) > len(b.split()) else "B")
                  for a, b in zip(answers_a, answers_b)]
        return PairwiseResult(self.label, [combine_orders(f, s) for f, s in zip(first, swapped)], first, swapped,
                              longer, _mean_words(answers_a), _mean_words(answers_b), paths)


# ============================================================================ agreement

def load_judge_reference(path: str | Path = JUDGE_REFERENCE) -> list[dict]:
    """Hand-scored responses of ``data/judge_reference.jsonl``.

    Args:
        path: the file.

    Returns:
        Dicts with id, prompt, response, template, score (1-5, by hand on the scale of
        :data:`TONE_RUBRIC`), rationale, category (domain / decline / lookalike), source
        ("constructed" or the model that wrote the response), kind and split (dev / test).
    """
    from instructlab.runs import read_jsonl

    return read_jsonl(path)


def agreement(judge_scores: Sequence[float | None], human_scores: Sequence[int]) -> dict:
    """Spearman rho (scipy), exact and within-one match between a judge and people.

    Items the judge failed on are left out of rho and the matches, and counted in ``n_failed``; rho is
    None when either side is constant (e.g. every answer of a looping base model scored 1).
    A judge score is rounded to the nearest whole number before the exact / within-one comparison.
    """
    from scipy.stats import spearmanr

    pairs = [(j, h) for j, h in zip(judge_scores, human_scores) if j is not None]
    out = {"n": len(pairs), "n_failed": len(judge_scores) - len(pairs), "spearman": None, "p_value": None,
           "exact": None, "within_one": None}
    if len(pairs) >= 2 and len({j for j, _ in pairs}) > 1 and len({h for _, h in pairs}) > 1:  # else rho is undefined
        rho = spearmanr([j for j, _ in pairs], [h for _, h in pairs])
        out["spearman"], out["p_value"] = float(rho.statistic), float(rho.pvalue)
    if pairs:
        out["exact"] = sum(round(j) == h for j, h in pairs) / len(pairs)
        out["within_one"] = sum(abs(round(j) - h) <= 1 for j, h in pairs) / len(pairs)
    return out


def judge_agreement(judge: Any, path: str | Path = JUDGE_REFERENCE, progress: bool = False,
                    source: str | None = None, split: str | None = None) -> dict:
    """Score the hand-scored reference set with ``judge`` and compare with the hand scores.

    Args:
        judge: a ToneJudge, RubricJudge or any object with the same ``score`` method; a judge whose
            ``score`` accepts ``records`` gets each row as context (category, decline reason, team).
        path: the hand-scored set (``data/judge_reference.jsonl``).
        progress: progress bar for LLM judges.
        source: only rows of this ``source`` ("constructed", or a model name such as
            "smollm2-135m-instruct"); None: all rows.
        split: only rows of this split: "dev" (looked at while the rule-based rubric was built) or
            "test" (scored by hand before the rubric saw them; the rubric was not changed after); None: all.

    Returns:
        :func:`agreement` (Spearman, exact, within-one) plus ``judge`` (label), ``n_unparseable``,
        ``mean_answer_words``, ``by_source`` (agreement per source) and ``items`` (id, source, human,
        judge score) so disagreements can be read.
    """
    import inspect

    ref = [r for r in load_judge_reference(path) if (source is None or r.get("source", "constructed") == source)
           and (split is None or r.get("split") == split)]
    kwargs = {"records": ref} if "records" in inspect.signature(judge.score).parameters else {}
    res = judge.score([r["prompt"] for r in ref], [r["response"] for r in ref], [r.get("template") for r in ref],
                      progress=progress, **kwargs)
    out = agreement(res.scores, [r["score"] for r in ref])
    sources = sorted({r.get("source", "constructed") for r in ref})
    out["by_source"] = {src: agreement([s for r, s in zip(ref, res.scores) if r.get("source", "constructed") == src],
                                       [r["score"] for r in ref if r.get("source", "constructed") == src])
                        for src in sources}
    out.update(judge=res.label, n_unparseable=res.n_unparseable, mean_answer_words=res.mean_answer_words,
               items=[{"id": r["id"], "source": r.get("source", "constructed"), "human": r["score"], "judge": s}
                      for r, s in zip(ref, res.scores)])
    return out
