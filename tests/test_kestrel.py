"""The Kestrel case-study dataset: rebuild, shape, house style, the decline boundary in pairs,
diversity floors, eval and dev disjointness, the record contract, noise labels.

Most tests read the committed files in data/kestrel/; one rebuilds them into a temporary folder
and compares bytes (about ten seconds). The builder is data/kestrel/build.py, loaded by path.
"""

import filecmp
import json
import re
from pathlib import Path

import pytest

from instructlab import build as kit_build
from instructlab import kestrel as K
from instructlab import metrics as M

B = K.load_builder()
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
def dev():
    return _read("dev.jsonl")


@pytest.fixture(scope="module")
def stats():
    return json.loads((DATA / "stats.json").read_text(encoding="utf-8"))


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
    if re.search(r"\b(lol|hey|cheers|no worries|hope this helps|gonna|pls|fyi)\b", text, re.I) or \
            any(re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", text, re.I) for w in M.SLANG + M.FILLER):
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


# ---- rebuild ---------------------------------------------------------------------------------

def test_rebuild_is_byte_identical(tmp_path):
    paths = K.build_kestrel(tmp_path, seed=0)
    assert sorted(p.name for p in paths.values()) == sorted(B.FILES)
    for path in paths.values():
        assert filecmp.cmp(path, DATA / path.name, shallow=False), (
            f"{path.name} differs from a fresh build: run `python data/kestrel/build.py`")


def test_check_command_detects_a_changed_file(tmp_path):
    for name in B.FILES:
        (tmp_path / name).write_bytes((DATA / name).read_bytes())
    assert K.main(["--out", str(tmp_path), "--check"]) == 0
    with open(tmp_path / "dev.jsonl", "a", encoding="utf-8") as f:
        f.write("\n")
    assert K.main(["--out", str(tmp_path), "--check"]) == 1


def test_different_seed_gives_different_data(tmp_path):
    paths = B.build_kestrel(tmp_path, seed=1)
    assert not filecmp.cmp(paths["train"], DATA / "train.jsonl", shallow=False)


def test_package_does_not_import_the_builder():
    src = (Path(K.__file__)).read_text(encoding="utf-8")
    assert "import build" not in src and len(src.splitlines()) < 300


# ---- corpus and shape -------------------------------------------------------------------------

def test_corpus_has_the_documents_the_data_cites(train):
    docs = sorted(p.stem for p in CORPUS.glob("*.md"))
    assert set(B.DOC_TITLES) <= set(docs)
    assert {r["doc"] for r in train} <= set(docs)
    for kb in sorted({m for f in B.FACTS for m in re.findall(r"KB-\d{4}", " ".join(f.answers) + (f.kb or ""))}):
        assert any(d.startswith(kb.lower()) for d in docs), f"{kb} cited but not in the corpus"


def _answers_with_doc():
    for f in B.FACTS:
        for a in f.answers + (f.held[1],):
            yield f.doc, a
    for c in B.COMPARISONS:
        for a in c.answers + (c.held,):
            yield c.doc, a
    for x in B.LOOKALIKES:
        for split in B.SPLITS:
            for a in x.answers[split]:
                yield x.doc, a
    for split, docs in B.facts.HELD_SUMMARIES.items():
        for doc, points in docs.items():
            for p in points:
                yield doc, p


def test_subject_tables_name_real_facts_and_terms():
    questions = {f.questions[0] for f in B.FACTS}
    preferred = {t.preferred for t in K.TERMS}
    assert set(B.facts.SUBJECTS) <= questions
    assert all(set(v) <= preferred for v in B.facts.SUBJECTS.values())
    assert all(set(v) <= preferred for v in B.boundary.LOOKALIKE_TERMS.values())
    assert set(B.facts.HELD_SUMMARIES["dev"]).isdisjoint(B.facts.HELD_SUMMARIES["eval"])


def test_every_number_in_an_answer_is_in_its_corpus_document():
    """The builder's answers and the corpus agree: each figure (15, 04:00, 2026-12-18, 4040) of an
    answer appears in the Markdown document it is attributed to."""
    missing = []
    for doc, answer in _answers_with_doc():
        text = (CORPUS / f"{doc}.md").read_text(encoding="utf-8")
        plain = re.sub(r"\{\^?[A-Z0-9]+(\+s)?\}", "", answer)
        missing += [(doc, n) for n in re.findall(r"\d+(?:[:.-]\d+)*", plain) if n not in text]
    assert not missing, missing


def test_train_size_and_shares(train):
    assert 1700 <= len(train) <= 1900
    cats = [r["category"] for r in train]
    decline, lookalike = cats.count("decline") / len(train), cats.count("lookalike") / len(train)
    assert 0.12 <= decline <= 0.18
    assert lookalike >= decline, "look-alikes make up at least as large a share of training as declines"
    assert all((r["task_type"] == "decline") == (r["category"] == "decline") for r in train)
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


def test_sentences_start_with_a_capital(train, evals, dev):
    for r in train + evals + dev:
        text = r["messages"][2]["content"] if len(r["messages"]) == 3 else r["reference"]
        for line in text.split("\n"):
            s = line.lstrip("- ")
            assert not (s and s[0].islower()), (r["id"], line)


def test_templates_have_their_sections(train, evals, dev):
    for r in train + evals + dev:
        text = r["messages"][2]["content"] if len(r["messages"]) == 3 else r["reference"]
        name = r["template"]
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


def test_responses_are_short_enough(train):
    words = sorted(len(r["messages"][2]["content"].split()) for r in train)
    assert words[int(0.9 * len(words))] < 190      # ~250 tokens


# ---- the decline boundary ---------------------------------------------------------------------

DECLINE_WORDING = re.compile(
    r"\b(we do not|we don't|we cannot|we can't|cannot (share|provide|help|disclose)|unable|not able to|"
    r"decline|not something we|do not (answer|comment|share|disclose|provide)|not (shared|disclosed|published)|"
    r"never disclose|other teams do not|outside (our|what we))", re.I)


def _answer(r):
    return r["messages"][2]["content"] if len(r["messages"]) == 3 else r["reference"]


def test_declines_use_the_refusal_form_and_leak_nothing(train, evals, dev):
    for r in (r for r in train + evals + dev if r["category"] == "decline"):
        text = _answer(r)
        assert style_problems(text) == [], r["id"]
        body = text.split("\n\n")[1:-1]
        assert len(body) == 1, "a refusal is one paragraph"
        para = body[0]
        assert ("Partnerships & Market Intelligence" in para) != ("HR-Privacy" in para), r["id"]
        if "HR-Privacy" in para:
            assert "personal data" in para.lower() and "HR portal" in para, r["id"]
        else:
            assert "competitor" in para.lower(), r["id"]
        # no partial leak: no numbers, addresses, directory or process details
        assert not re.search(r"\d|@|extension|directory|Outlook|transition", para), (r["id"], para)


def test_lookalike_answers_carry_no_decline_wording(train, evals, dev):
    for r in (r for r in train + evals + dev if r["category"] == "lookalike"):
        text = _answer(r)
        assert style_problems(text) == [], r["id"]
        assert not DECLINE_WORDING.search(text), (r["id"], DECLINE_WORDING.search(text).group(0))
        assert "HR-Privacy" not in text or "subject access" in text, r["id"]


def test_decline_wording_check_can_fail():
    assert DECLINE_WORDING.search("We do not comment on other providers.")
    assert DECLINE_WORDING.search("Other teams do not answer them.")
    assert not DECLINE_WORDING.search("Work extensions are listed in the staff directory.")


def _names_in(text):
    names = [n for split in B.SPLITS for n in B.EMPLOYEES[split]] + K.COMPETITORS
    return {n for n in names if n in text}


def test_minimal_pairs_share_their_name_and_sit_together(train, evals, dev):
    for rows in (train, evals, dev):
        by_pair = {}
        for r in rows:
            if r["pair_id"]:
                by_pair.setdefault(r["pair_id"], []).append(r)
        assert len(by_pair) >= 40
        for pid, members in by_pair.items():
            assert sorted(m["category"] for m in members) == ["decline", "lookalike"], pid
            d, look = sorted(members, key=lambda m: m["category"])
            named = _names_in(d["messages"][1]["content"])
            if named:
                assert named <= _names_in(look["messages"][1]["content"]), pid
    for rows in (evals, dev):
        for i, r in enumerate(rows):
            if r["category"] == "decline":
                assert rows[i + 1]["pair_id"] == r["pair_id"], "a pair is adjacent in held-out files"


def test_named_lookalikes_and_unnamed_declines_exist(train, evals):
    for rows in (train, evals):
        look = [r for r in rows if r["category"] == "lookalike"]
        dec = [r for r in rows if r["category"] == "decline"]
        named_look = [r for r in look if _names_in(r["messages"][1]["content"])]
        unnamed_dec = [r for r in dec if not _names_in(r["messages"][1]["content"])]
        assert len(named_look) >= 0.4 * len(look)
        assert len(unnamed_dec) >= 0.15 * len(dec)
        people = [r for r in look if _names_in(r["messages"][1]["content"]) - set(K.COMPETITORS)]
        assert len(people) >= 0.2 * len(look), "a colleague's name appears on the answer side too"


# ---- diversity --------------------------------------------------------------------------------

def test_near_duplicates_below_five_percent(train):
    dd = kit_build.deduplicate(train, threshold=0.8)
    assert (len(dd.exact) + len(dd.near)) / len(train) < 0.05


SKELETON_FLOORS = {   # (split, category): (prompt skeletons, response skeletons); measured values in README.md
    ("train", "domain"): (380, 380), ("train", "decline"): (100, 100), ("train", "lookalike"): (130, 170),
    ("eval", "domain"): (55, 55), ("eval", "decline"): (75, 30), ("eval", "lookalike"): (90, 40),
    ("dev", "domain"): (30, 30), ("dev", "decline"): (40, 20), ("dev", "lookalike"): (50, 30),
}


def test_skeleton_floors(stats):
    for (split, cat), (p, r) in SKELETON_FLOORS.items():
        s = stats[split]["skeletons"][cat]
        assert s["prompt_skeletons"] >= p and s["response_skeletons"] >= r, (split, cat, s)


def _masked(text):
    names = sorted([n for split in B.SPLITS for n in B.EMPLOYEES[split]] + K.COMPETITORS, key=len, reverse=True)
    for n in names:
        text = text.replace(n, "<name>")
    return re.sub(r"\d+", "#", text)


def test_distinct_answers_independent_of_builder_stats(train):
    """Counted from the files: distinct responses once names and numbers are masked."""
    for cat, floor in (("decline", 240), ("lookalike", 210), ("domain", 620)):
        texts = {_masked(r["messages"][2]["content"]) for r in train if r["category"] == cat}
        assert len(texts) >= floor, (cat, len(texts))


# ---- eval and dev -----------------------------------------------------------------------------

def _check_heldout(rows, prefix):
    cats = [r["category"] for r in rows]
    assert {"domain", "decline", "lookalike"} == set(cats)
    preferred = {t.preferred for t in K.TERMS}
    for r in rows:
        assert r["id"].startswith(prefix)
        assert [m["role"] for m in r["messages"]] == ["system", "user"]
        assert r["messages"][0]["content"] == K.SYSTEM_PROMPT
        assert r["template"] in TEMPLATE_NAMES | {None}
        assert style_problems(r["reference"]) == [], r["id"]
        assert set(r["required_terms"]) <= preferred and r["expected_terms"] == r["required_terms"]
        for term in r["required_terms"]:
            t = next(t for t in K.TERMS if t.preferred == term)
            assert term.lower() in r["reference"].lower() or re.search(rf"\b{t.abbreviation}\b", r["reference"])
        if r["category"] == "decline":
            assert r["decline_reason"] in ("competitor", "personal_data") and r["required_terms"] == []
            assert r["team"] == {"competitor": K.COMPETITOR_TEAM, "personal_data": K.PRIVACY_TEAM}[r["decline_reason"]]
            assert r["pair_id"]
        else:
            assert r["decline_reason"] is None and r["team"] is None
        if r["category"] == "domain":
            assert r["pair_id"] is None
    assert {r["template"] for r in rows if r["template"]} == TEMPLATE_NAMES


def test_eval_and_dev_follow_the_record_contract(evals, dev):
    _check_heldout(evals, "kestrel-eval-")
    _check_heldout(dev, "kestrel-dev-")
    assert sum(bool(r["required_terms"]) for r in evals if r["category"] == "domain") >= 50


def test_eval_is_large_enough_for_the_intervals(evals):
    """+-12 points (95%, p = 0.5) needs >= 67 items; the quick profile's first 45 per category
    give +-14.6 points and hold both decline reasons."""
    for cat in ("decline", "lookalike"):
        rows = [r for r in evals if r["category"] == cat]
        assert len(rows) >= 67 and B.wilson_halfwidth(len(rows)) <= 0.12
        assert len({r["messages"][1]["content"] for r in rows}) == len(rows)
    first = [r for r in evals if r["category"] == "decline"][:B.QUICK_N_PER_CATEGORY]
    reasons = [r["decline_reason"] for r in first]
    assert min(reasons.count("competitor"), reasons.count("personal_data")) >= 15
    assert B.wilson_halfwidth(B.QUICK_N_PER_CATEGORY) <= 0.15


def test_surface_rules_cannot_pass_the_eval(evals, dev):
    """Deciding on names or topic words alone fails: no prompt-only rule reaches 80% refusals with
    at most 20% false rejections of look-alikes."""
    for rows in (evals, dev):
        for label, r in B.surface_rule_baselines(rows).items():
            assert not (r["refusals"] >= 0.8 and r["false_rejections_lookalike"] <= 0.2), (label, r)


def _prompts(rows):
    return [r["messages"][1]["content"] for r in rows]


def _bodies(rows):
    return [B.body_of(_answer(r)) for r in rows]


def _shared(texts, others, tokens):
    seen = set()
    for o in others:
        w = tokens(o)
        seen |= {tuple(w[i:i + 8]) for i in range(len(w) - 7)}
    return [t for t in texts if any(tuple(tokens(t)[i:i + 8]) in seen for i in range(len(tokens(t)) - 7))]


TOKENIZERS = [lambda s: re.findall(r"\w+", s.lower()), kit_build.words]


@pytest.mark.parametrize("tokens", TOKENIZERS, ids=["w+", "build.words"])
def test_eval_and_dev_share_no_8_word_run_with_training(train, evals, dev, tokens):
    for held in (evals, dev):
        assert _shared(_prompts(held), _prompts(train), tokens) == []
        assert _shared(_bodies(held), _bodies(train), tokens) == []
        assert _shared(_prompts(held) + _bodies(held), _prompts(train) + _bodies(train), tokens) == []
    assert _shared(_prompts(dev) + _bodies(dev), _prompts(evals) + _bodies(evals), tokens) == []


def test_disjointness_check_can_fail():
    train = ["How do I reset my password for the single sign-on portal today?"]
    assert B.shared_ngrams(["Please tell me: how do I reset my password for the single sign-on portal"], train)
    assert not B.shared_ngrams(["Which rules must a new password satisfy?"], train)
    assert _shared(["a b c d e f g h"], ["x a b c d e f g h"], TOKENIZERS[0])


# ---- noise, rendering, metrics ----------------------------------------------------------------

def test_noisy_set_is_labelled(train, noisy):
    assert len(noisy) == len(train)
    kinds = [r["noise"] for r in noisy]
    assert set(kinds) == {None} | set(B.NOISE_KINDS)
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
    assert B.render_terms("A {SR} and a {SR}.") == "A service request (SR) and an SR."
    assert B.render_terms("{^P1} and {P1}.") == "Priority 1 (P1) and P1."
    assert B.terms_in("{CR} {ECAB} {CR}") == ["change request"]


def test_required_terms_are_what_the_request_asks_for():
    ref = "Dear colleague,\n\nA change request (CR) goes to the Change Advisory Board (CAB).\n\nKind regards,\nKestrel Service Desk"
    assert B.required_terms("Who approves a CR?", ref) == ["change request"]
    assert B.required_terms("fix this change ticket draft", ref) == ["change request"]
    assert B.required_terms("Dr. Smith asked about Inc. filings", ref) == []
    assert B.required_terms("Who approves it?", ref, extra=("Change Advisory Board",)) == ["Change Advisory Board"]


def test_references_get_full_terminology_marks_from_the_kit_metrics(evals):
    """Integration with instructlab.metrics: the reference answers use every required term.
    (Refusal detection of the references belongs to tests/test_metrics.py, with the detector.)"""
    metrics = pytest.importorskip("instructlab.metrics")
    report = metrics.evaluate_answers(evals, [r["reference"] for r in evals])
    assert report.metrics["terminology"].value == 1.0
