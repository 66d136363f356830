"""Judges: score parsing failures, position swapping, caching, agreement with hand scores."""

import re

import pytest

from instructlab import judge as J
from instructlab.llm import ResponseCache


class FakeBackend:
    """Answers from a function of the prompt text; counts calls; optional failures."""

    def __init__(self, reply, fail_on=None):
        self.reply, self.fail_on, self.calls = reply, fail_on, 0

    def settings(self):
        return {"backend": "fake", "model": "fake-judge", "temperature": 0.0}

    def complete(self, messages):
        self.calls += 1
        text = messages[-1]["content"]
        if self.fail_on and self.fail_on in text:
            raise ValueError("HTTP 400 bad request")
        return self.reply(text)


def _answer_in(prompt):
    return re.search(r"<answer>\n(.*)\n</answer>", prompt, re.S).group(1)


@pytest.mark.parametrize("text,expected", [
    ("Formal and complete.\nScore: 5", 5), ("**Score:** 4", 4), ('{"score": 3}', 3), ("Rating: 2/5", 2),
    ("I would give it 4 out of 5.", 4), ("1", 1),
    ("", None), (None, None), ("The answer is excellent.", None), ("Score: 7", None), ("Score: 0", None),
    ("Score: 4.5", None), ("Score: 4\nOn reflection, Score: 2", None), ("Score: 8/10", None),
])
def test_parse_score(text, expected):
    assert J.parse_score(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("Winner: A", "A"), ("winner: b", "B"), ("**Winner:** tie", "tie"), ("Answer B is better.", "B"),
    ("Winner: A\nWinner: B", None), ("Both have merits.", None), ("", None),
])
def test_parse_preference(text, expected):
    assert J.parse_preference(text) == expected


def test_unparseable_verdicts_are_failures_not_scores(tmp_path):
    def reply(prompt):
        ans = _answer_in(prompt)
        return "Score: 5" if ans.startswith("Dear") else ("no idea" if ans == "???" else "Score: 2")

    judge = J.ToneJudge(FakeBackend(reply, fail_on="BOOM"), cache=ResponseCache(tmp_path / "c.jsonl"))
    res = judge.score(["q"] * 4, ["Dear colleague, fine", "hey!", "???", "BOOM"])
    assert res.scores == [5, 2, None, None]
    assert res.n_failed == 2 and res.n_unparseable == 1 and res.errors[3].startswith("ValueError")
    assert res.mean == 3.5
    s = res.summary()
    assert s["n_scored"] == 2 and s["n_request_errors"] == 1 and s["mean_answer_words"] == pytest.approx(1.5)
    assert "fake-judge" in res.label


def test_judge_uses_the_cache(tmp_path):
    backend = FakeBackend(lambda p: "Score: 4")
    cache = ResponseCache(tmp_path / "c.jsonl")
    J.ToneJudge(backend, cache=cache).score(["q", "q"], ["a", "b"])
    J.ToneJudge(backend, cache=cache).score(["q", "q"], ["a", "b"])
    assert backend.calls == 2


def _pair_backend(rule):
    def reply(prompt):
        a = re.search(r"<answer_a>\n(.*)\n</answer_a>", prompt, re.S).group(1)
        b = re.search(r"<answer_b>\n(.*)\n</answer_b>", prompt, re.S).group(1)
        return rule(a, b)
    return FakeBackend(reply)


def test_pairwise_consistent_judge_keeps_verdicts():
    # Prefers the answer starting with "Dear", whichever position it is in.
    backend = _pair_backend(lambda a, b: "Winner: A" if a.startswith("Dear") else "Winner: B")
    res = J.PairwiseJudge(backend).compare(["q1", "q2"], ["Dear colleague, x", "hey"], ["hey", "Dear colleague, y"])
    assert res.outcomes == ["A", "B"]
    assert res.summary()["n_inconsistent"] == 0 and backend.calls == 4


def test_pairwise_position_bias_becomes_a_tie_and_is_counted():
    # Always says "A": the verdict flips when the answers swap places.
    res = J.PairwiseJudge(_pair_backend(lambda a, b: "Winner: A")).compare(["q"] * 3, ["x", "y", "z"], ["p", "q", "r"])
    assert res.outcomes == ["tie"] * 3
    s = res.summary()
    assert s["n_inconsistent"] == 3 and s["inconsistency_rate"] == 1.0 and s["ties"] == 3


def test_pairwise_length_bias_is_reported():
    longer = _pair_backend(lambda a, b: "Winner: A" if len(a) >= len(b) else "Winner: B")
    res = J.PairwiseJudge(longer).compare(["q"] * 2, ["short", "a much longer answer here"],
                                          ["a much longer answer here", "short"])
    assert res.outcomes == ["B", "A"] and res.summary()["longer_wins_rate"] == 1.0


def test_pairwise_unparseable_is_a_failure():
    res = J.PairwiseJudge(_pair_backend(lambda a, b: "hmm")).compare(["q"], ["x"], ["y"])
    assert res.outcomes == [None] and res.summary()["n_failed"] == 1


def test_combine_orders():
    assert J.combine_orders("A", "A") == "A"
    assert J.combine_orders("A", "B") == "tie"
    assert J.combine_orders("tie", "A") == "tie"
    assert J.combine_orders(None, "A") is None


def test_agreement_statistics():
    out = J.agreement([1, 2, 3, None, 5], [1, 2, 4, 3, 5])
    assert out["n"] == 4 and out["n_failed"] == 1
    assert out["exact"] == 0.75 and out["within_one"] == 1.0 and out["spearman"] == pytest.approx(1.0)
    constant = J.agreement([1, 1, 2], [1, 1, 1])
    assert constant["spearman"] is None and constant["exact"] == pytest.approx(2 / 3)


def test_reference_set_spans_the_scale_and_holds_real_model_outputs():
    ref = J.load_judge_reference()
    assert 80 <= len(ref) <= 140 and {r["score"] for r in ref} == {1, 2, 3, 4, 5}
    by_source = {src: [r for r in ref if r["source"] == src] for src in {r["source"] for r in ref}}
    assert len(by_source["smollm2-135m-instruct"]) >= 20 and len(by_source["gemma-3-270m"]) >= 20
    kinds = {r.get("kind") for r in by_source["constructed"]}
    assert {"envelope_only", "wrong_content", "glossary_dump", "refusal_without_team"} <= kinds
    assert all(r["category"] in ("domain", "decline", "lookalike") for r in ref)


def test_rubric_scorer_agrees_with_hand_scores():
    out = J.judge_agreement(J.RubricJudge())
    assert out["n"] == len(J.load_judge_reference()) and out["n_unparseable"] == 0
    # Exact and within-one agreement, not only rank correlation.
    assert out["spearman"] > 0.8 and out["exact"] >= 0.75 and out["within_one"] >= 0.95
    for model in ("smollm2-135m-instruct", "gemma-3-270m"):
        real = out["by_source"][model]
        assert real["n"] >= 20 and real["exact"] >= 0.4 and real["within_one"] >= 0.9, model
    # The held-out rows (scored by hand before the rubric saw them; the rubric was not changed after).
    held_out = J.judge_agreement(J.RubricJudge(), split="test")
    assert held_out["n"] >= 20 and held_out["within_one"] >= 0.9


def test_rubric_never_scores_a_non_answer_high():
    out = J.judge_agreement(J.RubricJudge(), source="constructed")
    ref = {r["id"]: r for r in J.load_judge_reference()}
    for item in out["items"]:
        if ref[item["id"]].get("kind") in ("envelope_only", "wrong_content", "glossary_dump", "wrong_side"):
            assert item["judge"] <= 2.0, item["id"]


def test_llm_judge_agreement_counts_failures():
    def reply(prompt):
        ans = _answer_in(prompt)
        return "cannot judge" if not ans.strip() else ("Score: 5" if ans.startswith("Dear") else "Score: 2")

    out = J.judge_agreement(J.ToneJudge(FakeBackend(reply)))
    assert out["n_unparseable"] == 1 and out["n"] == len(J.load_judge_reference()) - 1
    assert -1 <= out["spearman"] <= 1
