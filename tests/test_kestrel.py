"""The Kestrel case-study dataset: rebuild, shape, house style, eval disjointness, noise labels.

Most tests read the committed files in data/kestrel/; one rebuilds them into a temporary folder
and compares bytes (about two seconds).
"""

import filecmp
import json
import re
from pathlib import Path

import pytest

from instructlab import kestrel as K

DATA = Path(__file__).resolve().parent.parent / "data" / "kestrel"
CORPUS = Path(__file__).resolve().parent.parent / "data" / "corpus"
TEMPLATE_NAMES = {"incident", "change", "status", "knowledge"}


def _read(name):
    with open(DATA / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def train():
    return _read("train.jsonl")


@pytest.fixture(scope="module")
def evals():
    return _read("eval.jsonl")


@pytest.fixture(scope="module")
def noisy():
    return _read("train_noisy.jsonl")


# ---- house-style checks, written independently of the builder --------------------------------

def style_problems(text: str) -> list[str]:
    """Tone and terminology problems of one response (empty list: follows the house style)."""
    problems = []
    if not text.startswith(K.GREETING + "\n\n"):
        problems.append("no greeting")
    lines = text.rstrip("\n").split("\n")
    if len(lines) < 3 or lines[-2] != K.SIGN_OFF or lines[-1] not in K.TEAMS:
        problems.append("no sign-off with team on its own line")
    if "!" in text:
        problems.append("exclamation mark")
    if re.search(r"[\U0001F300-\U0001FAFF\u2600-\u27BF]|:\)", text):
        problems.append("emoji")
    if re.search(r"\b(lol|hey|cheers|no worries|hope this helps|gonna|pls|fyi)\b", text, re.I):
        problems.append("slang or filler")
    for term in K.TERMS + K.EXTRA_TERMS:
        for bad in term.avoid:
            if re.search(rf"\b{re.escape(bad)}\b", text, re.I):
                problems.append(f"avoided term {bad!r}")
    if re.search(r"\b\d{1,2}/\d{1,2}\b", text) or re.search(r"\b\d{1,2}(:\d\d)?\s?[ap]m\b", text):
        problems.append("date or time not in house format")
    for sentence in re.split(r"(?<=[.:])\s", text):
        if re.search(r"\b\d\d:\d\d\b", sentence) and "UTC" not in sentence:
            problems.append(f"time without UTC: {sentence!r}")
    problems += first_use_problems(text)
    return problems


def first_use_problems(text: str) -> list[str]:
    """An abbreviation must first appear as 'preferred (ABBR)'. Fixed forms are exempt: the
    incident subject line '[P1] INC-...', the section name 'CAB decision', identifiers."""
    body = "\n".join(l for l in text.split("\n") if not l.startswith("[P"))
    body = body.replace("CAB decision", "")
    out = []
    for term in K.TERMS + K.EXTRA_TERMS:
        abbr = term.abbreviation
        if abbr in ("INC", "KB"):
            continue
        m = re.search(rf"(?<![\w-]){abbr}s?\b(?!-\d)", body)
        if m and not re.search(rf"{re.escape(term.preferred)}s? \({abbr}s?\)", body[:m.end() + 1], re.I):
            out.append(f"{abbr} used before it is spelled out")
    return out


def test_style_checker_can_fail():
    good = "Dear colleague,\n\nThe change request (CR) is approved; the CR runs at 22:00 UTC.\n\nKind regards,\nKestrel Service Desk"
    assert style_problems(good) == []
    assert "no greeting" in style_problems(good.replace("Dear colleague,", "Hey,"))
    assert "exclamation mark" in style_problems(good.replace("approved;", "approved!"))
    assert any("avoided" in p for p in style_problems(good.replace("change request (CR)", "change ticket")))
    assert any("spelled out" in p for p in style_problems(good.replace("change request (CR)", "CR")))
    assert any("UTC" in p for p in style_problems(good.replace(" UTC", "")))
    assert any("sign-off" in p for p in style_problems(good.replace("Kind regards,\n", "")))


# ---- the tests -------------------------------------------------------------------------------

def test_rebuild_is_byte_identical(tmp_path):
    paths = K.build_kestrel(tmp_path, seed=0)
    for name, path in paths.items():
        assert filecmp.cmp(path, DATA / path.name, shallow=False), (
            f"{path.name} differs from a fresh build: run `python -m instructlab.kestrel`")


def test_check_command_detects_a_changed_file(tmp_path):
    for name in ("train.jsonl", "eval.jsonl", "train_noisy.jsonl", "README.md"):
        (tmp_path / name).write_bytes((DATA / name).read_bytes())
    assert K.main(["--out", str(tmp_path), "--check"]) == 0
    with open(tmp_path / "eval.jsonl", "a", encoding="utf-8") as f:
        f.write("\n")
    assert K.main(["--out", str(tmp_path), "--check"]) == 1


def test_different_seed_gives_different_data(tmp_path):
    paths = K.build_kestrel(tmp_path, seed=1)
    assert not filecmp.cmp(paths["train"], DATA / "train.jsonl", shallow=False)


def test_corpus_has_the_documents_the_data_cites(train):
    docs = sorted(p.stem for p in CORPUS.glob("*.md"))
    assert len(docs) >= 12
    assert set(K.DOC_TITLES) <= set(docs)
    assert {r["doc"] for r in train} <= set(docs)
    for kb in sorted({m for f in K.FACTS for m in re.findall(r"KB-\d{4}", f.answer + (f.kb or ""))}):
        assert any(d.startswith(kb.lower()) for d in docs), f"{kb} cited but not in the corpus"


def test_train_size_and_decline_share(train):
    assert 1700 <= len(train) <= 1900
    share = sum(r["category"] == "decline" for r in train) / len(train)
    assert 0.12 <= share <= 0.18
    assert all((r["task_type"] == "decline") == (r["category"] == "decline") for r in train)
    assert sum(r["category"] == "lookalike" for r in train) >= 75
    assert len({r["id"] for r in train}) == len(train)
    assert len({r["messages"][1]["content"] for r in train}) == len(train), "duplicate prompts"


def test_every_task_type_and_template_present(train):
    assert {r["task_type"] for r in train} == set(K.TASK_TYPES)
    assert {r["template"] for r in train if r["template"]} == TEMPLATE_NAMES
    for r in train:
        roles = [m["role"] for m in r["messages"]]
        assert roles == ["system", "user", "assistant"] and r["messages"][0]["content"] == K.SYSTEM_PROMPT


def test_train_responses_follow_house_style(train):
    bad = {r["id"]: style_problems(r["messages"][2]["content"]) for r in train}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"{len(bad)} responses break the house style, e.g. {next(iter(bad.items()))}"


def test_templates_have_their_sections(train):
    for r in train:
        text, name = r["messages"][2]["content"], r["template"]
        if not name:
            continue
        for section in K.TEMPLATES[name]:
            assert section in text, (r["id"], section)
        if name == "incident":
            assert re.search(r"^\[P[1-4]\] INC-\d{7}: \S", text, re.M)
        if name == "change":
            assert re.search(r"^CR-\d{5}: \S", text, re.M)
        if name == "knowledge":
            assert re.search(r"^Reference: KB-\d{4}$", text, re.M)


def test_declines_use_the_refusal_form(train):
    for r in (r for r in train if r["category"] == "decline"):
        text = r["messages"][2]["content"]
        body = text.split("\n\n")[1:-1]
        assert len(body) == 1, "a refusal is one paragraph"
        assert ("Partnerships & Market Intelligence" in body[0]) != ("HR-Privacy" in body[0])
        assert "competitor" in body[0].lower() or "personal data" in body[0].lower()


def test_lookalikes_are_answered_not_declined(train, evals):
    for r in (r for r in train if r["category"] == "lookalike"):
        text = r["messages"][2]["content"]
        assert not re.search(r"\b(unable to help|cannot share|cannot provide)\b", text), r["id"]


def test_responses_are_short_enough(train):
    words = sorted(len(r["messages"][2]["content"].split()) for r in train)
    assert words[int(0.9 * len(words))] < 190      # ~250 tokens


def test_eval_lines_have_required_fields(evals):
    assert len(evals) >= 200
    cats = [r["category"] for r in evals]
    assert {"domain", "decline", "lookalike"} == set(cats)
    assert cats.count("decline") >= 40 and cats.count("lookalike") >= 40
    preferred = {t.preferred for t in K.TERMS}
    for r in evals:
        assert [m["role"] for m in r["messages"]] == ["system", "user"]
        assert r["template"] in TEMPLATE_NAMES | {None}
        assert style_problems(r["reference"]) == [], r["id"]
        assert set(r["expected_terms"]) <= preferred
        if r["category"] == "decline":
            assert r["decline_reason"] in ("competitor", "personal_data")
        else:
            assert r["decline_reason"] is None
    assert sum(bool(r["expected_terms"]) for r in evals if r["category"] == "domain") >= 80
    assert {r["template"] for r in evals if r["template"]} == TEMPLATE_NAMES


def test_eval_wording_disjoint_from_train(train, evals):
    hits = K.shared_ngrams([r["messages"][1]["content"] for r in evals],
                           [r["messages"][1]["content"] for r in train], n=8)
    assert hits == []


def test_disjointness_check_can_fail():
    train = ["How do I reset my password for the single sign-on portal today?"]
    assert K.shared_ngrams(["Please tell me: how do I reset my password for the single sign-on portal"], train)
    assert not K.shared_ngrams(["Which rules must a new password satisfy?"], train)


def test_noisy_set_is_labelled(train, noisy):
    assert len(noisy) == len(train)
    kinds = [r["noise"] for r in noisy]
    assert set(kinds) == {None} | set(K.NOISE_KINDS)
    share = sum(k is not None for k in kinds) / len(kinds)
    assert 0.30 <= share <= 0.40
    clean = {r["id"]: r for r in train}
    for r in noisy:
        same = r["messages"] == clean[r["id"]]["messages"]
        assert same == (r["noise"] is None), r["id"]
        if r["noise"] in ("off_style", "wrong_terms"):
            assert style_problems(r["messages"][2]["content"]), r["id"]
        if r["noise"] == "duplicate":
            assert r["messages"] == clean[r["duplicate_of"]]["messages"]


def test_render_terms_first_use_then_abbreviation():
    assert K.render_terms("A {SR} and a {SR}.") == "A service request (SR) and an SR."
    assert K.render_terms("{^P1} and {P1}.") == "Priority 1 (P1) and P1."
    assert K.terms_in("{CR} {ECAB} {CR}") == ["change request"]


def test_references_get_full_marks_from_the_kit_metrics(evals, train):
    """Integration with instructlab.metrics: the reference answers are what a perfect model says."""
    metrics = pytest.importorskip("instructlab.metrics")
    report = metrics.evaluate_answers(evals, [r["reference"] for r in evals])
    values = {k: v.value for k, v in report.metrics.items() if v.value is not None}
    assert values["tone_rubric"] == 5.0
    assert values["terminology"] == 1.0 and values["template_compliance"] == 1.0
    assert values["appropriate_refusals"] == 1.0 and values["false_rejections"] == 0.0
    for r in train[:300]:
        text = r["messages"][2]["content"]
        assert metrics.rubric_tone(text, r["template"]).score == 5.0, r["id"]
        assert metrics.is_refusal(text) == (r["category"] == "decline"), r["id"]


def test_every_number_in_a_fact_is_in_its_corpus_document():
    """The builder's facts and the corpus agree: each figure (15, 04:00, 2026-12-18, KB ids) of a
    fact's answer appears in the Markdown document it is attributed to."""
    missing = []
    for fact in list(K.FACTS) + list(K.LOOKALIKES) + list(K.COMPARISONS):
        text = (CORPUS / f"{fact.doc}.md").read_text(encoding="utf-8")
        missing += [(fact.doc, n) for n in re.findall(r"\d+(?:[:.-]\d+)*", fact.answer) if n not in text]
    assert not missing, missing
