"""Build the Kestrel case-study dataset: ``train.jsonl``, ``dev.jsonl``, ``eval.jsonl``,
``train_noisy.jsonl``, ``stats.json`` and the dataset card ``README.md`` in this folder.

    python data/kestrel/build.py                 # rebuild data/kestrel/
    python data/kestrel/build.py --check         # exit 1 if a committed file differs from a fresh build
    python -m instructlab.kestrel [--check]      # the same (the package delegates here)

How it works. Every line is composed from the facts of the corpus in ``data/corpus/`` with
templated, varied phrasing; no teacher model. The phrasing tables live next to this file:
``facts.py`` (corpus facts, comparisons) and ``boundary.py`` (declines and look-alikes in minimal
pairs); the scenario grammars (rewrites, templates, analyses) are below. Each table is split by
purpose: ``train`` phrasings, and held-out ``dev`` and ``eval`` phrasings in new words.

Three guarantees, each enforced while drawing and reported in ``stats.json``:

1. Near duplicates: a training candidate whose user + assistant text is a MinHash near duplicate
   (word 3-gram Jaccard >= 0.8, ``instructlab.build.minhash``, as ``build.curate`` measures) of an
   earlier line is drawn again; the final set is re-measured with ``build.deduplicate``.
2. Generalisation: an eval candidate whose prompt or reference body (the text between greeting and
   sign-off) shares an 8-word run (lowercased ``\\w+`` tokens) with any training prompt or response
   is drawn again; dev is held to the same rule against train and eval. The finished sets are
   verified, and the build fails (``LeakageError``) on any shared run.
3. Determinism: one ``random.Random(seed)``, lists only (never set or dict-hash order, no clock):
   a rebuild is byte-identical.

The package (``instructlab.kestrel``) holds the brief's constants; this builder imports it,
never the reverse.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import filecmp
import importlib.util
import json
import random
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
if str(REPO) not in sys.path:              # run as a script: make the package importable
    sys.path.insert(0, str(REPO))

from instructlab import kestrel as K  # noqa: E402
from instructlab.build import word_ngrams  # noqa: E402  (one definition of shared 8-word runs)


def _load(name: str):
    """A phrasing table next to this file, loaded by path (``data/kestrel`` is not a package)."""
    mod_name = f"kestrel_data_{name}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = mod
    spec.loader.exec_module(mod)
    return mod


facts = _load("facts")
boundary = _load("boundary")
FACTS, COMPARISONS, DOC_TITLES = facts.FACTS, facts.COMPARISONS, facts.DOC_TITLES
DECLINES, LOOKALIKES, PAIRS = boundary.DECLINES, boundary.LOOKALIKES, boundary.PAIRS
EMPLOYEES = boundary.EMPLOYEES

SPLITS = ("train", "dev", "eval")
DEFAULT_TEAM = K.DEFAULT_TEAM
CM, NOC, SOC, HR = K.TEAMS[3], K.TEAMS[1], K.TEAMS[2], K.TEAMS[4]
_TERM_BY_ABBR = {t.abbreviation: t for t in K.TERMS + K.EXTRA_TERMS}


def _held_split(i: int) -> str:
    """Which held-out split gets item ``i``'s held-out phrasing: 3 of 5 to eval, 2 of 5 to dev."""
    return "dev" if i % 5 in (1, 3) else "eval"


# --------------------------------------------------------------------------------------------
# Rendering: term placeholders, messages, small helpers
# --------------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{(\^?)([A-Z][A-Z0-9]*)(\+s)?\}")
_VOWEL_SOUND_ABBR = ("SR|SLA|RCA|MW|MFA|RTO|RPO|SSO|SOC|NOC|ECR|EOL|OLA|MTTR|ECAB|STD|"
                     "ECRs|SRs|RCAs|SLAs|OLAs|MWs|HR")
_AN_FIX = re.compile(r"\b([Aa]) (?=(?:%s)\b)" % _VOWEL_SOUND_ABBR)
_A_FIX = re.compile(r"\b([Aa])n (?=(?:CR|CI|CAB|CMDB|PRB|KB|BCP|DR|P[1-4])s?\b)")


def render_terms(text: str) -> str:
    """Expand ``{ABBR}`` placeholders: spelled out with the abbreviation on first use, then the
    abbreviation alone. ``{ABBR+s}`` is the plural, ``{^ABBR}`` capitalises the first use.
    Articles before a bare abbreviation are fixed ("a SR" -> "an SR"). Unknown placeholders
    raise ``KeyError``."""
    seen: list[str] = []

    def expand(m: re.Match) -> str:
        cap, abbr, plural = m.group(1), m.group(2), "s" if m.group(3) else ""
        term = _TERM_BY_ABBR[abbr]
        if abbr in seen:
            return abbr + plural
        seen.append(abbr)
        full = term.preferred + plural
        if cap:
            full = full[0].upper() + full[1:]
        return f"{full} ({abbr}{plural})"

    out = _PLACEHOLDER.sub(expand, text)
    out = _AN_FIX.sub(lambda m: m.group(1) + "n ", out)
    return _A_FIX.sub(lambda m: m.group(1) + " ", out)


def terms_in(text: str) -> list[str]:
    """Preferred glossary terms behind the placeholders of ``text``, in order of first use
    (terms outside ``TERMS``, such as ECAB, are left out)."""
    glossary = {t.abbreviation: t.preferred for t in K.TERMS}
    out: list[str] = []
    for m in _PLACEHOLDER.finditer(text):
        pref = glossary.get(m.group(2))
        if pref and pref not in out:
            out.append(pref)
    return out


def message(paragraphs: list[str], team: str = DEFAULT_TEAM, greeting: str = K.GREETING) -> str:
    """A house-style message: greeting, short paragraphs, "Kind regards," and the team."""
    body = "\n\n".join(p for p in paragraphs if p)
    return render_terms(f"{greeting}\n\n{body}\n\n{K.SIGN_OFF}\n{team}")


def body_of(text: str) -> str:
    """The text of a house-style message between the greeting and the sign-off."""
    parts = text.split("\n\n")
    if len(parts) >= 3 and parts[0].startswith("Dear") and parts[-1].startswith(K.SIGN_OFF):
        return "\n\n".join(parts[1:-1])
    return text


def first_sentence(text: str) -> str:
    return re.split(r"(?<=[.])\s+(?=[A-Z{])", text, maxsplit=1)[0]


def _lower_first(text: str) -> str:
    return text[0].lower() + text[1:] if len(text) > 1 and text[1].islower() else text


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def _saturday(rng: random.Random) -> _dt.date:
    return _dt.date(2026, 1, 3) + _dt.timedelta(weeks=rng.randrange(0, 50))


def _day(rng: random.Random) -> _dt.date:
    return _dt.date(2026, 1, 5) + _dt.timedelta(days=rng.randrange(0, 340))


def _hhmm(minutes: int) -> str:
    minutes %= 24 * 60
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _h12(minutes: int) -> str:
    """The informal clock ("10pm", "9:30am") that drafts use and house style replaces."""
    h, m = (minutes // 60) % 24, minutes % 60
    suffix = "am" if h < 12 else "pm"
    h12 = h % 12 or 12
    return f"{h12}{':%02d' % m if m else ''}{suffix}"


def _us_date(d: _dt.date) -> str:
    return f"{d.month}/{d.day}"


def _duration(minutes: int) -> str:
    h, m = divmod(minutes, 60)
    parts = ([f"{h} hour" + ("s" if h != 1 else "")] if h else []) + \
            ([f"{m} minute" + ("s" if m != 1 else "")] if m else [])
    return " ".join(parts) or "0 minutes"


def _inc(rng): return f"INC-{rng.randrange(1000000, 9999999)}"
def _cr(rng): return f"CR-{rng.randrange(10000, 99999)}"
def _prb(rng): return f"PRB-{rng.randrange(1000, 9999)}"


_ABBR_RE = {t.preferred: re.compile(rf"(?<![\w-]){re.escape(t.abbreviation)}s?(?![\w-])") for t in K.TERMS}


def _mentions(text: str, term: K.Term) -> bool:
    """``text`` uses ``term``: its abbreviation as a whole token (case-sensitive, not part of an
    identifier such as KB-1042) or its preferred form (any case)."""
    return bool(_ABBR_RE[term.preferred].search(text)) or term.preferred.lower() in text.lower()


def required_terms(user: str, reference: str, extra: tuple[str, ...] = ()) -> list[str]:
    """The glossary terms a correct answer to ``user`` must use: the terms the request names
    (preferred form, abbreviation or a term to avoid in a draft) or that the task asks for
    (``extra``, e.g. the priority of a triage), kept only where the reference uses them."""
    out = []
    low = user.lower()
    for t in K.TERMS:
        asked = _mentions(user, t) or t.preferred in extra or any(
            re.search(rf"(?<![\w-]){re.escape(a.lower())}(?![\w-])", low) for a in t.avoid)
        if asked and _mentions(body_of(reference), t) and t.preferred not in out:
            out.append(t.preferred)
    return out


@dataclass
class Example:
    """One generated item before it becomes a JSONL line."""

    task_type: str
    doc: str
    user: str
    raw: str                     # the response with term placeholders
    response: str
    category: str = "domain"
    template: str | None = None
    decline_reason: str | None = None
    decline_team: str | None = None   # the team a decline must name
    pair_id: str | None = None
    extra_terms: tuple[str, ...] = ()
    skel_user: str = ""          # prompt before slot filling (without lead-in and suffix)
    skel_resp: str = ""          # response templates before slot filling
    key: str = ""                # topic key (declines, look-alikes)


def _ex(task_type, doc, user, paragraphs, team=DEFAULT_TEAM, skel_user="", skel_resp="", **kw) -> Example:
    raw = "\n\n".join(p for p in paragraphs if p)
    return Example(task_type, doc, user, raw, message(paragraphs, team), skel_user=skel_user,
                   skel_resp=skel_resp, **kw)


# --------------------------------------------------------------------------------------------
# Surface variety: lead-ins and closing remarks (separate pools per split)
# --------------------------------------------------------------------------------------------

PREFIXES = {
    "train": ["", "", "", "Hello, ", "Hi. ", "Quick question: ", "I am new on the Service Desk. ",
              "A customer asked me this. ", "For the team briefing: ", "Could you help me? ",
              "Good morning. ", "I'm writing onboarding notes. ", "My team lead asked me: ",
              "Hello there. ", "One more thing: "],
    "dev": ["", "", "Morning. ", "Question from the NOC floor: ", "Can I check something? "],
    "eval": ["", "", "Colleague here with a query. ", "Before my shift ends: ",
             "Sorry to bother you, ", "One for the handover notes. ", "Checking on behalf of a manager. "],
}
SUFFIXES = {
    "train": ["", "", "", " Thanks.", " Please keep it short.", " I need this for a customer call.",
              " Thank you in advance.", " Thanks a lot."],
    "dev": ["", "", " Cheers for checking.", " Short answer please."],
    "eval": ["", "", " Much appreciated.", " A brief reply is fine.", " Asking for a new starter."],
}
KB_CLOSERS = {
    "train": ["For details, see {kb}.", "The full procedure is in {kb}.", "See {kb} for more detail."],
    "dev": ["{kb} describes this step by step."],
    "eval": ["You will find the complete steps in {kb}."],
}
CLOSERS = {
    "train": ["", "", "", "Please contact the Service Desk if you need further help.",
              "If anything is unclear, please reply to this message.",
              "The Service Desk on extension 4000 can help with any follow-up question."],
    "dev": ["", "Any follow-up questions are welcome in reply to this message."],
    "eval": ["", "Further questions are welcome through the Service Desk at any time."],
}


def _wrap(rng: random.Random, q: str, mode: str) -> str:
    """A random lead-in and closing remark around a request."""
    pre, suf = rng.choice(PREFIXES[mode]), rng.choice(SUFFIXES[mode])
    proper = [n for names in EMPLOYEES.values() for n in names] + K.COMPETITORS + ["Kestrel"]
    if (pre.endswith(", ") or pre.endswith(": ")) and not any(q.startswith(n) for n in proper):
        q = _lower_first(q)
    if not suf and rng.random() < 0.1 and q.endswith("?"):
        q = q[:-1]
    return f"{pre}{q}{suf}"


# --------------------------------------------------------------------------------------------
# Questions and knowledge answers about corpus facts
# --------------------------------------------------------------------------------------------

def _fact_for(rng: random.Random, mode: str, pool: list) -> tuple[object, str, str]:
    """A fact of ``pool`` with its (question, answer) for ``mode``."""
    if mode == "train":
        f = rng.choice(pool)
        return f, rng.choice(f.questions), rng.choice(f.answers)
    mine = [f for f in pool if _held_split(FACTS.index(f)) == mode]
    f = rng.choice(mine)
    return f, f.held[0], f.held[1]


def gen_question(rng: random.Random, mode: str) -> Example:
    """A factual question about one corpus fact, answered briefly (citing its KB if any)."""
    fact, q, answer = _fact_for(rng, mode, FACTS)
    paras, closer = [answer], ""
    if fact.kb and fact.kb not in answer:
        closer = rng.choice(KB_CLOSERS[mode]).format(kb=fact.kb)
        paras.append(closer)
    tail = rng.choice(CLOSERS[mode])
    paras.append(tail)
    return _ex("question", fact.doc, _wrap(rng, q, mode), paras, fact.team,
               extra_terms=facts.SUBJECTS.get(fact.questions[0], ()),
               skel_user=q, skel_resp=f"{answer}|{closer}|{tail}")


KNOWLEDGE_ASKS = {
    "train": ["Answer as a knowledge answer: {q}", "Please reply in the knowledge-answer format. {q}",
              "{q} Reply with the KB reference at the end.", "Write a knowledge answer for this: {q}",
              "Knowledge answer please. {q}", "{q} Use the knowledge answer template."],
    "dev": ["{q} Answer in the knowledge format with the article line.",
            "Knowledge-style reply wanted: {q}"],
    "eval": ["In article-answer form, with its reference line - {q}",
             "{q} Format it as we do for knowledge replies, citing the article."],
}


def gen_knowledge(rng: random.Random, mode: str) -> Example:
    """The knowledge-answer template: one or two short paragraphs, then "Reference: KB-<n>"."""
    fact, q, answer = _fact_for(rng, mode, [f for f in FACTS if f.kb])
    ask = rng.choice(KNOWLEDGE_ASKS[mode])
    answer = re.sub(r"\s*\(see KB-\d+\)", "", answer)
    return _ex("template", fact.doc, ask.format(q=q), [answer, f"Reference: {fact.kb}"], fact.team,
               template="knowledge", extra_terms=facts.SUBJECTS.get(fact.questions[0], ()),
               skel_user=ask + "|" + q, skel_resp=answer)


# --------------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------------

SUMMARY_ASKS = {
    "train": ["Summarise the {t}.", "Give me the key points of the {t}.",
              "Can you summarise our {t} in a few bullet points?", "What are the main points of the {t}?",
              "I need a short overview of the {t} for a new starter.",
              "Please write a brief summary of the {t}.", "TL;DR of the {t}, please.",
              "What should I remember from the {t}?", "Summarise the {t} for the team meeting."],
    "dev": ["Pull the headline rules out of the {t}.", "Recap the {t} in a short list."],
    "eval": ["Condense the {t} into its essentials.", "Boil down the {t} to a handful of bullets.",
             "Sketch out what the {t} is about."],
}
SUMMARY_LEADS = {
    "train": ["The {t} sets out the following key points:", "In short, the {t} says:",
              "The main points of the {t} are:", "These are the key points of the {t}:"],
    "dev": ["Here is what the {t} establishes:"],
    "eval": ["Its essentials, in brief:"],
}


def _doc_points(doc: str, mode: str, rng: random.Random | None = None) -> list[str]:
    """First sentences of the answers about ``doc`` that ``mode`` may use (in training, a random
    answer variant of each fact when ``rng`` is given)."""
    if mode == "train":
        answers = [rng.choice(f.answers) if rng else f.answers[0] for f in FACTS if f.doc == doc]
        return [first_sentence(a) for a in answers]
    return list(facts.HELD_SUMMARIES[mode].get(doc, []))


def doc_phrase(doc: str, mode: str = "train") -> str:
    """How a request names a document: "Change Management Policy", "KB-1310 article on ..."
    (held-out requests name an article by its number alone: "article KB-1310")."""
    title = DOC_TITLES[doc]
    if doc.startswith("kb-") and mode != "train":
        return "article " + title.split(" ", 1)[0]
    if doc.startswith("kb-"):
        kb, topic = title.split(" ", 1)
        return f"{kb} article on {topic[0].lower() + topic[1:]}"
    return title


def gen_summary(rng: random.Random, mode: str) -> Example:
    """A bullet summary of a corpus document, from a random subset of its facts."""
    docs = [d for d in DOC_TITLES if len(_doc_points(d, mode)) >= 2]
    doc = rng.choice(docs)
    points = _doc_points(doc, mode, rng)
    k = min(len(points), rng.randint(2, 4))
    picked = sorted(rng.sample(range(len(points)), k))
    title = doc_phrase(doc, mode)
    lead_t = rng.choice(SUMMARY_LEADS[mode])
    lead = lead_t.format(t=title)

    def paragraph() -> str:            # keep the list one short paragraph (<= 80 words)
        return lead + "\n" + "\n".join("- " + points[i] for i in picked)
    while len(picked) > 1 and len(render_terms(paragraph()).split()) > 80:
        picked.pop(rng.randrange(len(picked)))
    paras = [paragraph()]
    if doc.startswith("kb-"):
        paras.append(f"Reference: {doc[:7].upper()}")
    ask = rng.choice(SUMMARY_ASKS[mode])
    return _ex("summary", doc, ask.format(t=title), paras, skel_user=ask,
               skel_resp=lead_t + "|" + "|".join(points[i] for i in picked))


TIMELINE_ASKS = ["Summarise this incident timeline for management in one paragraph:\n\n{tl}",
                 "Turn this timeline into a short incident summary.\n\n{tl}",
                 "Can you write a brief summary of what happened?\n\n{tl}",
                 "Write up this timeline as a short paragraph for the service review:\n\n{tl}"]
TIMELINE_TEXT = [
    ("On {day}, incident {inc} interrupted {svc} from {t0} UTC to {t1} UTC, {dur} in total. The cause "
     "was {cause}, identified at {tf} UTC.",
     "We restored the service by {fix}. A {PRB} will follow if the cause recurs."),
    ("Incident {inc} affected {svc} on {day} for {dur}, between {t0} UTC and {t1} UTC. At {tf} UTC we "
     "identified the cause: {cause}.",
     "The service was restored by {fix}. If the cause recurs, we will raise a {PRB}."),
]
CAUSES = [("a failed disk controller", "a faulty disk controller in the storage array"),
          ("an expired certificate", "an expired TLS certificate on the load balancer"),
          ("a bad config push", "a configuration error introduced by a change"),
          ("a power issue in Leeds", "a power supply failure in the Leeds data centre")]
FIXES = ["failover to the standby node", "replacement of the certificate",
         "rollback of the configuration", "restoration of power to the rack"]


def gen_timeline_summary(rng: random.Random, mode: str) -> Example:
    """Summarise a raw incident timeline (train only: the timeline lines are templated)."""
    short, svc = rng.choice(SERVICES["train"])
    inc, day = _inc(rng), _day(rng)
    start = rng.randrange(6 * 60, 20 * 60, 5)
    found, end = start + rng.randrange(10, 60, 5), start + rng.randrange(70, 300, 5)
    ci = rng.randrange(len(CAUSES))
    cause_short, cause = CAUSES[ci]
    tl = (f"{inc} ({short}), {day.isoformat()}\n{_hhmm(start)} alerts, users report errors\n"
          f"{_hhmm(found)} cause found: {cause_short}\n{_hhmm(end)} fixed by {FIXES[ci]}, service back")
    ti = rng.randrange(len(TIMELINE_TEXT))
    v = dict(day=day.isoformat(), inc=inc, svc=svc, t0=_hhmm(start), t1=_hhmm(end),
             dur=_duration(end - start), cause=cause, tf=_hhmm(found), fix=FIXES[ci], PRB="{PRB}")
    paras = [p.format(**v) for p in TIMELINE_TEXT[ti]]
    ask = rng.choice(TIMELINE_ASKS)
    return _ex("summary", "incident-management-policy", ask.format(tl=tl), paras,
               skel_user=ask, skel_resp=str(ti))


# --------------------------------------------------------------------------------------------
# Scenario slots. Long slot values differ by split so that held-out items use new words.
# --------------------------------------------------------------------------------------------

SERVICES = {
    "train": [("E-mail", "the e-mail service"), ("Payroll portal", "the payroll portal"),
              ("Customer billing", "the customer billing platform"), ("HR portal", "the HR portal"),
              ("VPN gateway", "the VPN gateway"), ("File storage", "the file storage service"),
              ("Service portal", "the self-service portal"), ("CRM", "the CRM application"),
              ("Leeds network", "the Leeds data centre network"), ("Hosted desktops", "the hosted desktops"),
              ("Backup service", "the backup service"), ("Telephony", "the telephony platform")],
    "dev": [("Monitoring", "the monitoring platform"), ("Intranet", "the intranet"),
            ("Print service", "the print service")],
    "eval": [("Web hosting", "the customer web hosting"), ("Timesheets", "the timesheet system"),
             ("Video conferencing", "the video conferencing service"), ("Door access", "the door access system")],
}


def _slots(rng: random.Random, mode: str) -> dict:
    short, svc = rng.choice(SERVICES[mode])
    sat = _saturday(rng)
    start = rng.choice([22 * 60, 22 * 60 + 30, 23 * 60])
    end = rng.choice([1 * 60, 2 * 60, 3 * 60]) + 24 * 60
    inc_start = rng.randrange(7 * 60, 19 * 60, 5)
    eol = _day(rng)
    return {"short": short, "svc": svc, "date": sat.isoformat(), "us": _us_date(sat),
            "sun": (sat + _dt.timedelta(days=1)).isoformat(),
            "t1": _hhmm(start), "t2": _hhmm(end), "a1": _h12(start), "a2": _h12(end),
            "cr": _cr(rng), "inc": _inc(rng), "i1": _hhmm(inc_start),
            "i2": _hhmm(inc_start + 60), "b1": _h12(inc_start), "b2": _h12(inc_start + 60),
            "ci": rng.choice(["srv-lds-app04", "fw-fra-core02", "sw-lds-acc11", "stor-fra-01",
                              "srv-fra-db07", "lb-lds-web02"]),
            "eol": eol.isoformat(), "eol_us": _us_date(eol),
            "mttr": f"{rng.randint(21, 39) / 10:.1f}"}


# --------------------------------------------------------------------------------------------
# Rewrites into the house style: an informal draft and the formal text of the same facts
# --------------------------------------------------------------------------------------------

REWRITES = [
    {"doc": "kb-1310-maintenance-windows", "team": CM, "terms": ("maintenance window", "change request"),
     "train": ["hey all!! heads up, {short} will be down sat night {us} from {a1} to {a2} for the "
               "downtime slot. change ticket is {cr}. sorry for the hassle :)",
               "FYI folks - we're taking {short} offline {us} {a1}-{a2} (downtime slot), change form "
               "{cr}. should be back by sunday morning!",
               "{short} maintenance this sat ({us}) {a1} till {a2}!!! its in the downtime slot, "
               "see change ticket {cr}"],
     "dev": ["psst {short} is off the air on {us}, {a1} to {a2}, downtime slot again, change ticket {cr}!!"],
     "eval": ["Yo, {short} goes dark Saturday {us} between {a1} and {a2}, ref {cr}. planned work, "
              "nothing to panic about!",
              "Planned outage alert: {short} unavailable {us}, {a1} through {a2}, change {cr}. Back "
              "Sunday, promise!"],
     "formal": {"train": [["We will carry out planned work on {svc} during the {MW} on {date} from {t1} "
                           "UTC to {t2} UTC on {sun}, under {CR} {cr}. The service will be unavailable "
                           "during this time.", "No action is needed from you. For details of "
                           "maintenance windows, see KB-1310."],
                          ["Planned work on {svc} takes place in the {MW} on {date}, from {t1} UTC until "
                           "{t2} UTC on {sun}, under {CR} {cr}, and the service is unavailable while it "
                           "runs.", "You do not need to take any action. KB-1310 explains our "
                           "maintenance windows."]],
                "dev": [["{^CR} {cr} covers maintenance of {svc} in the {MW} starting {date} at {t1} UTC "
                         "and ending {sun} at {t2} UTC; expect the service to be offline throughout.",
                         "Nothing is required on your side (KB-1310 has the window rules)."]],
                "eval": [["Under {CR} {cr}, {svc} will be offline for planned maintenance in the {MW}, "
                          "{date} {t1} UTC to {sun} {t2} UTC.", "There is nothing you need to do; "
                          "KB-1310 sets out how maintenance windows work."]]}},
    {"doc": "incident-management-policy", "team": NOC,
     "terms": ("incident", "priority 2", "Network Operations Centre"),
     "train": ["guys the {short} thing is still broken!! network team is on it, outage ticket "
               "{inc}, its a high priority one. will shout when its fixed",
               "update: {short} still flaky since {b1}, outage ticket {inc} (high priority). network "
               "team looking, next update around {b2} lol",
               "{short} is having a bad day!! high priority outage ticket {inc} raised at {b1}, "
               "network team investigating"],
     "dev": ["{short} still wobbly, outage ticket {inc} open since {b1}, high priority, network team "
             "poking at it, more at {b2}!"],
     "eval": ["Still no joy with {short}. Infra folks digging in, ref {inc}, flagged high "
              "priority, more news about {b2}!",
              "{short} still playing up since {b1}... the infra crew have {inc} open as a high "
              "priority, expect news by {b2}!"],
     "formal": {"train": [["We are still working on incident {inc}, which has affected {svc} since {i1} "
                           "UTC and is classified as {P2}.", "The {NOC} is investigating the cause. We "
                           "will send the next update by {i2} UTC."],
                          ["Incident {inc} continues to affect {svc}; it began at {i1} UTC and is a {P2} "
                           "incident.", "The {NOC} is investigating, and the next update follows by "
                           "{i2} UTC."]],
                "dev": [["{svc} has been disrupted since {i1} UTC by incident {inc}, classed as {P2}.",
                         "Engineers of the {NOC} are looking for the cause; expect our next message by "
                         "{i2} UTC."]],
                "eval": [["Since {i1} UTC, {svc} has been affected by incident {inc}, which carries the "
                          "{P2} classification.", "The {NOC} continues to investigate, and a further "
                          "update will reach you no later than {i2} UTC."]]}},
    {"doc": "kb-1042-password-reset-sso", "team": DEFAULT_TEAM,
     "terms": ("single sign-on", "multi-factor authentication", "knowledge base article"),
     "train": ["no worries! just go to the one login page and hit forgot password, there's a "
               "help doc somewhere lol",
               "easy fix!! reset it yourself on the one login site, the two-step code comes to your "
               "phone. wiki page has the details",
               "u can reset ur password urself on the one login portal!! check the help doc if stuck"],
     "dev": ["just do forgot password on the one login thing, code comes to ur phone, easy!!"],
     "eval": ["Forgot your pw? Happens to everyone - self-serve reset at the sign-in page, there's "
              "a guide on the intranet :)",
              "Locked out because you lost your password? Self-reset via the sign-in site, super easy!"],
     "formal": {"train": [["You can reset your password yourself at https://id.kestrel.example by "
                           "choosing Forgot password and confirming the code sent to your {MFA} "
                           "method. The new password applies to all {SSO} applications within 5 "
                           "minutes.", "See KB-1042 for the full procedure."],
                          ["To reset your password, open https://id.kestrel.example, select Forgot "
                           "password and confirm the code that your {MFA} method receives. Every {SSO} "
                           "application accepts the new password within 5 minutes.", "KB-1042 "
                           "describes the procedure in full."]],
                "dev": [["Resetting a password is self-service: Forgot password on "
                         "https://id.kestrel.example, then the code from your {MFA} method. After at "
                         "most 5 minutes it works in each {SSO} application.", "Reference: KB-1042."]],
                "eval": [["A forgotten password can be replaced at https://id.kestrel.example: choose "
                          "Forgot password and enter the code delivered to your registered {MFA} "
                          "method. Allow up to 5 minutes before all {SSO} applications accept it.",
                          "The steps are documented in KB-1042."]]}},
    {"doc": "kb-2051-vpn-mfa", "team": DEFAULT_TEAM, "terms": ("multi-factor authentication",),
     "train": ["the vpn two-step code thing times out if ur slow, just tap approve faster!! "
               "check the wiki page",
               "vpn keeps kicking u out? you gotta approve the two-step code within a minute haha. "
               "help doc has more",
               "heads up!! vpn prompt expires after 60 secs so be quick w/ the two-step code"],
     "dev": ["vpn login tip!!! the two-step code popup dies after a min, tap it quick"],
     "eval": ["Tip for remote peeps: that approval pop-up dies after a minute, so hit approve "
              "sharpish or the VPN gives up!",
              "If the VPN approval notification times out, try again quicker, it only waits a minute!"],
     "formal": {"train": [["The VPN sign-in asks you to approve a {MFA} prompt in the Kestrel "
                           "Authenticator app, and the prompt expires after 60 seconds. If it expires, "
                           "start the connection again and approve the new prompt.", "See KB-2051 for "
                           "the full steps."],
                          ["When you sign in to the VPN, approve the {MFA} prompt in the Kestrel "
                           "Authenticator app within 60 seconds. An expired prompt means starting the "
                           "connection again and approving the new one.", "KB-2051 lists every step."]],
                "dev": [["A VPN connection waits 60 seconds for you to accept the {MFA} request in the "
                         "Kestrel Authenticator app; after that, reconnect and accept the fresh request.",
                         "Reference: KB-2051."]],
                "eval": [["The {MFA} request that the VPN sends to the Kestrel Authenticator app is valid "
                          "for 60 seconds. Should it lapse, reconnect and confirm the new request in the "
                          "app.", "KB-2051 gives the complete procedure."]]}},
    {"doc": "change-management-policy", "team": CM,
     "terms": ("Change Advisory Board", "change request", "maintenance window"),
     "train": ["good news!!! the change committee ok'd your change form {cr} for sat {us}. make "
               "sure you've got a backup plan lol",
               "{cr} got the thumbs up from the change committee!! go ahead {us}, but attach the "
               "backup plan first",
               "change committee said yes to change ticket {cr}, you're good for {us} night!"],
     "dev": ["woohoo, change committee is fine with {cr} on {us}, just stick a backup plan on it!"],
     "eval": ["Congrats, the board signed off {cr} - green light for Saturday {us}, just don't "
              "forget how you'll undo it!",
              "Your change {cr} is through the board!! Go for {us}, keep an undo plan handy."],
     "formal": {"train": [["The {CAB} has approved {CR} {cr} for implementation during the {MW} on "
                           "{date}.", "Please attach the tested rollback plan to the {CR} before work "
                           "starts."],
                          ["{^CR} {cr} is approved by the {CAB} and can be implemented in the {MW} on "
                           "{date}.", "Before work starts, please attach the tested rollback plan to "
                           "the {CR}."]],
                "dev": [["Implementation of {CR} {cr} in the {MW} of {date} has {CAB} approval.",
                         "A tested rollback plan must be on the record ahead of the work."]],
                "eval": [["{^CR} {cr} has been authorised by the {CAB}; it may go ahead in the {MW} that "
                          "starts on {date}.", "Make sure a tested rollback plan is attached to the "
                          "record first."]]}},
    {"doc": "sla-and-priorities", "team": DEFAULT_TEAM,
     "terms": ("service level agreement", "mean time to resolve", "priority 1"),
     "train": ["fyi the service promise for this customer is 4hrs for urgent stuff, average fix "
               "time last month was {mttr}h, not bad!",
               "customer's service promise = 4 hours on urgent issues. our average fix time was "
               "{mttr} hrs last month!!",
               "we smashed it!! average fix time {mttr}h vs 4h service promise for urgent tickets"],
     "dev": ["urgent stuff average fix time {mttr} hrs last month, service promise is 4, happy days!"],
     "eval": ["Nice one team, we fixed the critical stuff in {mttr} hours on average, well inside "
              "the 4 hour promise!",
              "Stats time: {mttr}h to fix critical issues last month against a 4h commitment, great stuff!"],
     "formal": {"train": [["The {SLA} for this customer sets a resolution target of 4 hours for {P1} "
                           "incidents.", "Our {MTTR} for {P1} incidents last month was {mttr} hours, "
                           "within the target."],
                          ["Last month our {MTTR} for {P1} incidents was {mttr} hours.", "This is "
                           "within the 4-hour resolution target that the customer's {SLA} sets for "
                           "{P1}."]],
                "dev": [["Against a 4-hour resolution target for {P1} under the customer's {SLA}, we "
                         "achieved a {MTTR} of {mttr} hours last month."]],
                "eval": [["For {P1} incidents, the customer's {SLA} requires resolution inside 4 hours, "
                          "and last month we achieved a {MTTR} of {mttr} hours, comfortably inside that "
                          "limit."]]}},
    {"doc": "kb-3004-cmdb-configuration-items", "team": CM,
     "terms": ("configuration item", "end of life", "configuration management database"),
     "train": ["{ci} gets retired on {eol_us}, can someone update the asset list pls",
               "heads up, {ci} is being retired {eol_us}!! asset record needs changing",
               "reminder!!! {ci} retired as of {eol_us}, fix the asset list entry"],
     "dev": ["asset list says {ci} still alive but its retired {eol_us}, someone sort it pls"],
     "eval": ["Box {ci} hits vendor cut-off {eol_us} - somebody sort its entry in the inventory?",
              "Vendor drops support for {ci} on {eol_us}!! Inventory entry needs a refresh."],
     "formal": {"train": [["The {CI} {ci} reaches {EOL} on {eol}.", "Please update its record in the "
                           "{CMDB} and plan the replacement through a {CR}. See KB-3004 for the "
                           "procedure."],
                          ["{^CI} {ci} reaches {EOL} on {eol}.", "Please record the date in the {CMDB} "
                           "and raise a {CR} to plan the replacement, as described in KB-3004."]],
                "dev": [["On {eol}, {EOL} applies to the {CI} {ci}.", "Its {CMDB} entry needs the "
                         "date, and the replacement has to be planned with a {CR} (KB-3004)."]],
                "eval": [["Vendor support for the {CI} {ci} ends on {eol}, its {EOL} date.", "Kindly "
                          "amend the {CMDB} entry and schedule the replacement with a {CR}; KB-3004 "
                          "explains how."]]}},
]
REWRITE_ASKS = {
    "train": ["Rewrite this in our house style:\n\n{d}",
              "Please turn this message into a proper Kestrel message:\n\n{d}",
              "Can you make this sound professional and use the right terms?\n\n{d}",
              "Rewrite the following for our customers in the corporate tone.\n\n{d}",
              "Fix the tone and terminology of this draft:\n\n{d}",
              "Put this into house style before I send it:\n\n{d}"],
    "dev": ["Clean up this note so that it follows our writing standard:\n\n{d}"],
    "eval": ["Polish the text below so it meets the company writing standard.\n\n{d}",
             "Redo this note the way Kestrel communicates officially:\n\n{d}"],
}


def gen_rewrite(rng: random.Random, mode: str) -> Example:
    """Rewrite an informal draft into house style (tone, terms, dates, UTC times)."""
    si = rng.randrange(len(REWRITES))
    sc = REWRITES[si]
    s = _slots(rng, mode)
    draft_t = rng.choice(sc[mode])
    draft = draft_t.format(**s)
    fi = rng.randrange(len(sc["formal"][mode]))
    # the formal text keeps {ABBR} placeholders: fill slots only
    paras = [re.sub(r"\{([a-z0-9]+)\}", lambda m: s[m.group(1)], p) for p in sc["formal"][mode][fi]]
    paras = [_cap(p) for p in paras]                  # a slot value may open the paragraph
    ask = rng.choice(REWRITE_ASKS[mode])
    return _ex("rewrite", sc["doc"], ask.format(d=draft), paras, sc["team"], extra_terms=sc["terms"],
               skel_user=ask + "|" + draft_t, skel_resp=f"{si}.{fi}")


# --------------------------------------------------------------------------------------------
# Template filling
# --------------------------------------------------------------------------------------------

SYMPTOMS = {
    "train": {
        1: [("unavailable", "is unavailable for all users", "totally down"),
            ("complete outage", "has stopped working for all users", "dead for everyone")],
        2: [("degraded performance", "is running very slowly for most users", "crawling for most people"),
            ("intermittent failures", "fails for around half of all requests", "failing on and off")],
        3: [("minor errors", "shows errors for a small number of users", "throwing errors for a few people"),
            ("slow reports", "produces reports more slowly than usual", "slow on reports")],
        4: [("display fault", "shows a cosmetic layout fault", "looking a bit broken visually"),
            ("spelling error on sign-in page", "shows a spelling mistake on the sign-in page",
             "has a typo on the login page")]},
    "dev": {
        1: [("total failure", "cannot be reached by anyone", "gone completely")],
        2: [("severe slowness", "takes minutes to respond for most staff", "painfully slow for most")],
        3: [("sporadic errors", "rejects a few uploads", "rejecting some uploads")],
        4: [("wrong icon", "displays an outdated icon", "showing an old icon")]},
    "eval": {
        1: [("full outage", "is down for the whole company", "out for the whole company")],
        2: [("heavy degradation", "times out for the majority of sessions", "timing out for most sessions")],
        3: [("isolated failures", "fails to load for a few departments", "not loading for a few departments")],
        4: [("misaligned banner", "shows a misaligned banner", "showing a wonky banner")]},
}
STATUSES = {
    "train": [("investigating", "The {NOC} is investigating the cause."),
              ("found a faulty switch", "We have identified a faulty {CI} and are replacing it."),
              ("fix applied, watching it", "A fix has been applied and we are monitoring the service.")],
    "dev": [("vendor engaged", "The {NOC} has engaged the vendor and is working with them on a fix.")],
    "eval": [("cause known, fix in progress", "The cause is known, and the {NOC} is applying the "
              "correction now.")],
}
USERS = {1: (800, 2000), 2: (200, 900), 3: (5, 60), 4: (1, 30)}
INCIDENT_ASKS = {
    "train": ["Please write an incident notice.\nService: {short}\nPriority: P{p}\nIncident: {inc}\n"
              "Started: {date} {t} UTC\nWhat is happening: {sym}\nUsers affected: about {n}\nStatus: {st}",
              "Draft the incident notice for {inc}: {short} is {inf} since {t} UTC on {date}, roughly "
              "{n} users hit, {st}. It's a P{p}.",
              "Can you fill in the incident notice template? {inc}, P{p}, {short}, {inf}, started "
              "{date} {t} UTC, about {n} users, status: {st}.",
              "Incident notice needed for {short} ({inc}). It is {inf} since {t} UTC today ({date}). "
              "Around {n} users. We're at: {st}. Priority P{p}."],
    "dev": ["Notice for customers please - {inc} / P{p} / {short} {inf} from {t} UTC {date} / ~{n} "
            "users / {st}."],
    "eval": ["Compose the customer-facing notice.\nAffected system: {short}\nSeverity: P{p}\nRef: "
             "{inc}\nBegan: {date} {t} UTC\nSymptoms: {sym}\nHeadcount impacted: {n}\nProgress: {st}",
             "We need to tell people about {inc} on {short} (P{p}) - {inf}, kicked off {t} UTC "
             "{date}, {n} people, {st}. Use the notice format."],
}
INCIDENT_TEXT = {
    "train": [("Summary: Since {t} UTC on {day}, {svc} {sym}. We have classified this as a {P} incident.",
               "Impact: About {n} users are affected.", "Next update: We will send the next update {nxt}."),
              ("Summary: {Svc} {sym} since {t} UTC on {day}. This is a {P} incident.",
               "Impact: The incident affects about {n} users.", "Next update: The next update follows {nxt}.")],
    "dev": [("Summary: From {t} UTC on {day}, {svc} {sym}; the incident is {P}.",
             "Impact: Roughly {n} users are hit.", "Next update: Expect our next message {nxt}.")],
    "eval": [("Summary: {Svc} {sym}, starting at {t} UTC on {day}, and is rated {P}.",
              "Impact: Around {n} users cannot work normally.", "Next update: A further notice will be issued {nxt}.")],
}


# A look-alike inside a template task: the outage was caused by a named competitor acting as our
# supplier. The notice is written (not declined) and names the cause "a third-party provider",
# as the competitor-enquiry policy says.
THIRD_PARTY_ASKS = {
    "train": ["Cause: {c}'s network link failed.", "The root of it is an outage at {c}, our carrier.",
              "It was caused by an upstream fault at {c}.", "{c}, who supply the line, had a failure."],
    "dev": ["{c} broke it upstream."],
    "eval": ["Fault traced to the {c} connection we buy."],
}
THIRD_PARTY_TEXT = {
    "train": ["The cause is a failure at a third-party provider.",
              "A third-party provider's fault caused the interruption."],
    "dev": ["The fault lies with a third-party provider."],
    "eval": ["A third-party provider is the source of the disruption."],
}


def gen_incident(rng: random.Random, mode: str, third_party: str | None = None) -> Example:
    """The incident notice template: subject line, Summary, Impact, Current status, Next update.
    ``third_party``: a competitor that caused the outage (a look-alike: answered, not named)."""
    p = rng.choice([1, 1, 2, 2, 2, 3, 3, 4])
    short, svc = rng.choice(SERVICES[mode])
    head, sym, inf = rng.choice(SYMPTOMS[mode][p])
    st_short, st = rng.choice(STATUSES[mode])
    t, day, inc = rng.randrange(6 * 60, 21 * 60, 5), _day(rng).isoformat(), _inc(rng)
    n = rng.randrange(*USERS[p])
    nxt = {1: f"by {_hhmm(t + 30)} UTC", 2: f"by {_hhmm(t + 60)} UTC"}.get(
        p, "on the next business day by 10:00 UTC")
    ti = rng.randrange(len(INCIDENT_TEXT[mode]))
    summ, imp, nx = INCIDENT_TEXT[mode][ti]
    v = dict(t=_hhmm(t), day=day, svc=svc, Svc=_cap(svc), sym=sym, P=f"{{P{p}}}", n=n, nxt=nxt)
    paras = [f"[P{p}] {inc}: {short} {head}", summ.format(**v), imp.format(**v),
             f"Current status: {st}", nx.format(**v)]
    ask = rng.choice(INCIDENT_ASKS[mode])
    user = ask.format(short=short, p=p, inc=inc, date=day, t=_hhmm(t), sym=sym, n=n, st=st_short, inf=inf)
    team = NOC if p <= 2 else DEFAULT_TEAM
    kw: dict = {}
    if third_party:
        cause_ask, cause = rng.choice(THIRD_PARTY_ASKS[mode]), rng.choice(THIRD_PARTY_TEXT[mode])
        user += ("\n" if "\n" in user else " ") + cause_ask.format(c=third_party)
        paras[1] += " " + cause
        ask += "|" + cause_ask
        kw = {"category": "lookalike", "key": "third_party_incident"}
    return _ex("template", "response-templates", user, paras, team, template="incident",
               extra_terms=("incident", f"priority {p}"), skel_user=ask, skel_resp=f"{mode}{ti}", **kw)


def gen_third_party_incident(rng: random.Random, mode: str) -> Example:
    """An incident notice for an outage a named competitor caused as our supplier (a look-alike)."""
    return gen_incident(rng, mode, third_party=rng.choice(K.COMPETITORS))


CHANGE_TITLES = {
    "train": [("Firewall firmware upgrade", "upgrade the firmware on the Leeds core firewalls",
               "the two core firewalls in Leeds"),
              ("Database cluster patching", "apply the quarterly patches to the billing database cluster",
               "the three nodes of the billing database cluster"),
              ("Storage array expansion", "add capacity to the Frankfurt storage array",
               "the primary storage array in Frankfurt"),
              ("Certificate renewal", "renew the TLS certificates of the customer portal",
               "the load balancers in front of the customer portal"),
              ("E-mail gateway migration", "move inbound mail filtering to the new gateway",
               "the inbound mail gateways"),
              ("VPN concentrator replacement", "replace the VPN concentrators that reach end of life",
               "both VPN concentrators"),
              ("Hypervisor upgrade", "upgrade the hosted desktop hypervisors",
               "the twelve hypervisor hosts for hosted desktops"),
              ("Core switch replacement", "replace the core switches in the Leeds data centre",
               "the core switching layer in Leeds")],
    "dev": [("Wireless controller upgrade", "upgrade the office wireless controllers",
             "the wireless controllers of the Manchester office"),
            ("Backup agent rollout", "roll out the new backup agent to file servers",
             "forty file servers in Frankfurt")],
    "eval": [("DNS server migration", "move internal name resolution to the new DNS servers",
              "the four internal DNS servers"),
             ("Load balancer firmware update", "patch the web load balancer firmware",
              "the pair of web load balancers in Frankfurt"),
             ("Monitoring agent upgrade", "update the monitoring agents on customer hosts",
              "the monitoring agents on two hundred hosts")],
}
ROLLBACKS = {
    "train": ["restore the previous firmware image from the configuration backup",
              "fail back to the unchanged secondary node", "restore the previous configuration",
              "re-point traffic to the existing platform"],
    "dev": ["reinstall the prior software version"],
    "eval": ["switch back to the old servers"],
}
CHANGE_ASKS = {
    "train": ["Write the change request summary for {cr} ({title}). Goal: {purpose}. Affects: "
              "{scope}. Impact {i}, likelihood {l}. Window: {date} {t1}-{t2} UTC. Rollback: "
              "{rb}, about {rbm} minutes. CAB: {cab}.",
              "Fill in the CR summary template.\nCR: {cr}\nTitle: {title}\nPurpose: {purpose}\n"
              "Scope: {scope}\nImpact/likelihood: {i}/{l}\nWhen: {date}, {t1} to {t2} UTC\n"
              "Rollback: {rb} ({rbm} min)\nCAB: {cab}",
              "Need a change summary for the board: {cr}, {title}. We want to {purpose} on {scope}, "
              "{date} from {t1} to {t2} UTC. Risk: impact {i}, likelihood {l}. Back-out: {rb} "
              "({rbm} min). Decision: {cab}."],
    "dev": ["CR summary wanted. {cr} '{title}': aim {purpose}; covers {scope}; impact={i}, "
            "likelihood={l}; {date} {t1}->{t2} UTC; back-out {rb} ({rbm} min); board said {cab}."],
    "eval": ["Prepare the summary document for change {cr}, called '{title}'. Objective - {purpose}; "
             "components touched - {scope}; ratings {i} (impact) x {l} (likelihood); slot {date} "
             "{t1} until {t2} UTC; undo by: {rb}, {rbm} minutes; board outcome: {cab}."],
}
CHANGE_TEXT = {
    "train": [("Risk assessment: Impact {i} and likelihood {l} give a risk score of {score}, which is {risk} risk.",
               "Maintenance window: {date} from {t1} UTC to {t2} UTC on the following day, within the standard {MW}.",
               "Rollback plan: We will {rb}; this takes about {rbm} minutes and is invoked if the change is not "
               "complete by 03:30 UTC."),
              ("Risk assessment: The risk score is {score} (impact {i} times likelihood {l}), so the risk is {risk}.",
               "Maintenance window: The work runs in the standard {MW}, {date} {t1} UTC to {t2} UTC the next day.",
               "Rollback plan: If the change is not complete by 03:30 UTC, we {rb}, which takes about {rbm} minutes.")],
    "dev": [("Risk assessment: Scoring impact {i} by likelihood {l} yields {score}, a {risk} risk.",
             "Maintenance window: Inside the standard {MW}, beginning {date} at {t1} UTC and finishing at {t2} UTC.",
             "Rollback plan: Should the work be unfinished at 03:30 UTC, we {rb} (about {rbm} minutes).")],
    "eval": [("Risk assessment: With an impact rating of {i} and a likelihood rating of {l}, the score comes "
              "to {score}, meaning {risk} risk.",
              "Maintenance window: Planned for the standard {MW}: {date}, {t1} UTC until {t2} UTC overnight.",
              "Rollback plan: The fallback is to {rb}, roughly {rbm} minutes of work, triggered when completion "
              "by 03:30 UTC is out of reach.")],
}
CAB_TEXT = {
    "train": [("approved", "Approved by the {CAB} on {tue}."),
              ("approved with conditions", "Approved by the {CAB} on {tue}, on condition that the service "
               "owner confirms the customer notice."),
              ("deferred", "Deferred by the {CAB} on {tue} until the rollback plan has been tested.")],
    "dev": [("approved", "The {CAB} gave its approval on {tue}."),
            ("deferred", "On {tue} the {CAB} postponed it pending a tested rollback plan.")],
    "eval": [("approved", "Accepted at the {CAB} meeting of {tue}."),
             ("approved with conditions", "Accepted by the {CAB} on {tue}, provided the service owner "
              "signs off the customer notice.")],
}


def _risk_label(score: int) -> str:
    return "low" if score <= 2 else ("moderate" if score <= 4 else "high")


def gen_change(rng: random.Random, mode: str) -> Example:
    """The change request summary template: CR line, Purpose ... CAB decision."""
    title, purpose, scope = rng.choice(CHANGE_TITLES[mode])
    cr, sat = _cr(rng), _saturday(rng)
    i, lk = rng.randint(1, 3), rng.randint(1, 3)
    t1, t2 = rng.choice([22 * 60, 23 * 60]), rng.choice([1, 2, 3]) * 60
    rb, rbm = rng.choice(ROLLBACKS[mode]), rng.choice([20, 30, 45, 60])
    tue = (sat - _dt.timedelta(days=4)).isoformat()
    cab_short, cab = rng.choice(CAB_TEXT[mode])
    ti = rng.randrange(len(CHANGE_TEXT[mode]))
    risk_t, mw_t, rb_t = CHANGE_TEXT[mode][ti]
    v = dict(i=i, l=lk, score=i * lk, risk=_risk_label(i * lk), date=sat.isoformat(), t1=_hhmm(t1),
             t2=_hhmm(t2), rb=rb, rbm=rbm, MW="{MW}")
    paras = [f"{cr}: {title}", f"Purpose: To {purpose}.", f"Scope: {_cap(scope)}.", risk_t.format(**v),
             mw_t.format(**v), rb_t.format(**v), "CAB decision: " + cab.format(tue=tue, CAB="{CAB}")]
    ask = rng.choice(CHANGE_ASKS[mode])
    user = ask.format(cr=cr, title=title, purpose=purpose, scope=scope, i=i, l=lk, date=sat.isoformat(),
                      t1=_hhmm(t1), t2=_hhmm(t2), rb=rb, rbm=rbm, cab=cab_short)
    return _ex("template", "response-templates", user, paras, CM, template="change",
               extra_terms=("maintenance window", "Change Advisory Board"),
               skel_user=ask, skel_resp=f"{mode}{ti}|{cab}")


STATUS_TOPICS = {
    "train": [
        ("the e-mail gateway migration under {cr}", "moving inbound mail filtering to the new gateway",
         "{pct}% of customer domains have been moved", "move the remaining domains in the {MW} on {date}",
         "the Change Management duty manager on extension 4020"),
        ("problem record {prb} for repeated VPN drops", "finding the cause of repeated VPN disconnections",
         "the {NOC} has reproduced the fault on {pct}% of test sessions", "test the vendor patch on {date}",
         "the {NOC} on extension 4030"),
        ("the disaster recovery test of customer billing", "proving failover of a tier 1 service",
         "{pct}% of the test steps are complete", "complete the failback and report on {date}",
         "the {NOC} on extension 4030"),
        ("the replacement of servers that reach end of life", "replacing servers before their {EOL} date",
         "{pct}% of the servers have been replaced", "replace the remaining servers by {date}",
         "Change Management on extension 4020")],
    "dev": [
        ("the rollout of hardware tokens under {cr}", "issuing tokens to colleagues without a work phone",
         "{pct}% of the requested tokens have been sent", "send the remaining tokens by {date}",
         "the Service Desk on extension 4000")],
    "eval": [
        ("the clean-up of configuration records under {cr}", "correcting owner fields in the {CMDB}",
         "{pct}% of the flagged records are corrected", "finish the remaining records by {date}",
         "Change Management on extension 4020"),
        ("problem record {prb} for slow file storage", "finding why file storage slows down at peak times",
         "the {NOC} has traced the delay on {pct}% of affected shares", "apply the storage fix on {date}",
         "the {NOC} on extension 4030")],
}
STATUS_ASKS = {
    "train": ["Write a status update on {topic}. Progress: {pct}% done. Next: {nxt} by {date}.",
              "Please draft the status update for {topic}; we're at {pct}%, next milestone {date}.",
              "Status update needed: {topic}, {pct}% complete, next step due {date}."],
    "dev": ["Stakeholder note on {topic}: {pct} per cent there, next milestone {date}, usual sections."],
    "eval": ["Give stakeholders the latest on {topic} - roughly {pct} percent there, next "
             "checkpoint {date}, standard layout."],
}
STATUS_TEXT = {
    "train": [("Summary: This update covers {topic}, which aims at {aim}.", "Next steps: We will {nxt}.",
               "Contacts: For questions, please contact {contact}."),
              ("Summary: Here is the latest position on {topic}, the work of {aim}.",
               "Next steps: Our next step is to {nxt}.", "Contacts: Please direct questions to {contact}.")],
    "dev": [("Summary: Current position of {topic}, whose goal is {aim}.", "Next steps: The plan is to {nxt}.",
             "Contacts: Reach {contact} with any query.")],
    "eval": [("Summary: This note reports on {topic}, the effort of {aim}.",
              "Next steps: As the following step, we intend to {nxt}.",
              "Contacts: Anyone with questions may contact {contact}.")],
}


def gen_status(rng: random.Random, mode: str) -> Example:
    """The status update template: Summary, Progress, Next steps, Contacts."""
    topic, aim, prog, nxt, contact = rng.choice(STATUS_TOPICS[mode])
    v = {"cr": _cr(rng), "prb": _prb(rng), "pct": rng.choice(range(20, 95, 5)),
         "date": _saturday(rng).isoformat(), "MW": "{MW}", "NOC": "{NOC}", "EOL": "{EOL}", "CMDB": "{CMDB}"}
    topic_f = topic.format(**v)
    ti = rng.randrange(len(STATUS_TEXT[mode]))
    summ, nx, con = STATUS_TEXT[mode][ti]
    paras = [summ.format(topic=topic_f, aim=aim.format(**v)), f"Progress: {_cap(prog.format(**v))}.",
             nx.format(nxt=nxt.format(**v)), con.format(contact=contact.format(**v))]
    ask = rng.choice(STATUS_ASKS[mode])
    user = ask.format(topic=re.sub(r" \((EOL|CMDB)\)", "", render_terms(topic_f)), pct=v["pct"], date=v["date"],
                      nxt=nxt.format(**v).split(" in the ")[0].replace("{MW}", "maintenance window"))
    return _ex("template", "response-templates", user, paras, DEFAULT_TEAM, template="status",
               skel_user=ask, skel_resp=f"{mode}{ti}")


# --------------------------------------------------------------------------------------------
# Analysis and comparison
# --------------------------------------------------------------------------------------------

TARGETS = {1: ("15 minutes", "4 hours", 240), 2: ("30 minutes", "8 hours", 480),
           3: ("4 business hours", "3 business days", None),
           4: ("1 business day", "10 business days", None)}
PRIORITY_REASON = {
    "train": {1: "a business-critical service is completely unavailable",
              2: "the service is badly degraded but still partly usable",
              3: "the impact is minor and limited to a few users",
              4: "the issue is cosmetic or a request, with no real impact on work"},
    "dev": {1: "nobody can use a business-critical service at all",
            2: "most users are hampered although the service still partly works",
            3: "only a small group of users notices the problem",
            4: "the fault is only cosmetic and nobody is prevented from working"},
    "eval": {1: "the loss of this business-critical service is total",
             2: "the degradation is major, even if some work remains possible",
             3: "its effect stays minor and touches a handful of people",
             4: "it is cosmetic in nature and blocks no one"},
}
PRIORITY_TEXT = {
    "train": [("This is a {P} incident, because {why}.",
               "The response target is {resp} and the resolution target is {res}.",
               " As the incident started at {t} UTC, we must respond by {tr} UTC and resolve it by {tx} UTC.",
               " These targets count business hours only, 08:00 to 18:00 UTC on weekdays.",
               "As a {P1}, it is handled as a major incident and needs a {RCA} afterwards."),
              ("Classify it as {P}: {why}.", "We respond within {resp} and resolve within {res}.",
               " Counting from {t} UTC, the response is due by {tr} UTC and the resolution by {tx} UTC.",
               " Only business hours count, 08:00 to 18:00 UTC from Monday to Friday.",
               "Every {P1} is a major incident and is followed by a {RCA}.")],
    "dev": [("The right priority is {P}, given that {why}.",
             "Its targets: first response inside {resp}, fix inside {res}.",
             " With a start at {t} UTC, that means a response by {tr} UTC and a fix by {tx} UTC.",
             " The clock runs on business hours alone, 08:00 to 18:00 UTC on working days.",
             "Being {P1}, it becomes a major incident with a {RCA} to follow.")],
    "eval": [("We would rate this {P}, since {why}.", "That priority allows {resp} to respond and {res} to resolve.",
              " Measured from {t} UTC, someone must pick it up by {tr} UTC, and it must be fixed by {tx} UTC.",
              " Those deadlines advance during business hours only, 08:00 to 18:00 UTC, weekdays.",
              "A {P1} always counts as a major incident and requires a {RCA} once it is over.")],
}
PRIORITY_ASKS = {
    "train": ["{svc} {sym} since {t} UTC and about {n} users are affected. Which priority should "
              "the incident get, and what are the targets?",
              "How should I prioritise this? {svc} {sym}, started {t} UTC, roughly {n} users.",
              "Assess the priority: {svc} {sym} (since {t} UTC, {n} users). When must it be fixed?",
              "What priority and deadlines apply if {svc} {sym}? It began at {t} UTC with {n} "
              "users affected."],
    "dev": ["Which P-level fits? {svc} {sym} starting {t} UTC, {n} users affected, and what are the deadlines?"],
    "eval": ["Help me triage: {svc} {sym} from {t} UTC; headcount hit is near {n}. Severity "
             "and deadlines?",
             "Classify this one for me - {svc} {sym}, {n} staff impacted from {t} UTC onwards."],
}


def gen_priority_analysis(rng: random.Random, mode: str) -> Example:
    """Decide an incident's priority from its impact and work out the resolution deadline."""
    p = rng.choice([1, 2, 3, 4])
    short, svc = rng.choice(SERVICES[mode])
    _, sym, _ = rng.choice(SYMPTOMS[mode][p])
    t, n = rng.randrange(0, 24 * 60, 5), rng.randrange(*USERS[p])
    resp, res, minutes = TARGETS[p]
    ti = rng.randrange(len(PRIORITY_TEXT[mode]))
    s1, s2, clock, bh, major = PRIORITY_TEXT[mode][ti]
    paras = [s1.format(P=f"{{P{p}}}", why=PRIORITY_REASON[mode][p]), s2.format(resp=resp, res=res)]
    if minutes:
        paras[1] += clock.format(t=_hhmm(t), tr=_hhmm(t + int(resp.split()[0])), tx=_hhmm(t + minutes))
        if p == 1:
            paras.append(major)
    else:
        paras[1] += bh
    ask = rng.choice(PRIORITY_ASKS[mode])
    svc_in_ask = _cap(svc) if ask.startswith("{svc}") else svc
    user = ask.format(svc=svc_in_ask, sym=sym, t=_hhmm(t), n=n)
    return _ex("analysis", "sla-and-priorities", user, paras, extra_terms=(f"priority {p}",),
               skel_user=ask, skel_resp=f"{mode}{ti}.{p}")


CHANGE_CASES = {
    "train": [
        ("renew an expiring TLS certificate using the documented certificate procedure", "STD",
         "the work follows a documented procedure approved in advance and carries low risk"),
        ("add a new user group to the file storage service using the standard procedure", "STD",
         "it matches an existing documented procedure with low risk"),
        ("patch a vulnerability that attackers are actively exploiting on {svc}", "ECR",
         "the service needs protection before the next {CAB} meeting"),
        ("replace a failed power supply that has taken {svc} offline", "ECR",
         "the change restores a service that is down"),
        ("upgrade the database engine behind {svc}", "normal",
         "the work is planned, has no documented procedure and needs an individual risk review"),
        ("migrate {svc} to new hardware next month", "normal",
         "it is planned work with moderate risk that can wait for the weekly review")],
    "dev": [
        ("rotate the backup encryption keys with the approved key-rotation runbook", "STD",
         "a runbook signed off beforehand covers exactly this low-risk task"),
        ("roll back a faulty update that has broken sign-in to {svc} right now", "ECR",
         "a service is broken and cannot wait for the board"),
        ("redesign the network segments behind {svc} over the next quarter", "normal",
         "it is sizeable planned work without an approved procedure")],
    "eval": [
        ("add disk space to a virtual server by following the published capacity runbook", "STD",
         "a pre-approved low-risk procedure describes the task step by step"),
        ("block an attack that is flooding {svc} at this moment", "ECR",
         "waiting for the next board meeting would leave the service exposed"),
        ("introduce a new load-balancing design for {svc} in the spring", "normal",
         "the work is planned well ahead and requires its own risk review")],
}
CHANGE_OUTCOME = {
    "train": {
        "STD": "It is a {STD}: it needs no {CAB} review, but it must still be recorded as a {CR} and "
               "carried out in the {MW} if it affects customers.",
        "ECR": "It is an {ECR}: the {ECAB} must approve it, convened by the duty change manager within "
               "1 hour, and the {CAB} reviews it at its next meeting.",
        "normal": "It is a normal change: submit the {CR} by Thursday 17:00 UTC for the {CAB} meeting on "
                  "Tuesday at 10:00 UTC, and plan it for the {MW}, Saturday 22:00 to Sunday 04:00 UTC."},
    "dev": {
        "STD": "Treat it as a {STD}; the {CAB} does not review it, although it is still logged as a {CR} "
               "and done in the {MW} whenever customers are affected.",
        "ECR": "This is an {ECR}, so the {ECAB} decides, called together by the duty change manager inside "
               "1 hour; the {CAB} looks at it afterwards.",
        "normal": "A normal change applies: file the {CR} before 17:00 UTC on Thursday so the {CAB} can "
                  "review it on Tuesday at 10:00 UTC, and schedule it in the {MW}."},
    "eval": {
        "STD": "The route is a {STD}, with no {CAB} decision needed; record it as a {CR} all the same, "
               "and use the {MW} if customers could notice.",
        "ECR": "Handle it as an {ECR}: approval comes from the {ECAB}, which the duty change manager "
               "assembles within 1 hour, and the {CAB} reviews the change at its following meeting.",
        "normal": "It goes through as a normal change, with the {CR} in by 17:00 UTC on Thursday for "
                  "Tuesday's 10:00 UTC {CAB} session and implementation in the {MW}."},
}
CHANGE_ROLLBACK_NOTE = {"train": ["Every {CR} needs a tested rollback plan.",
                                  "Remember to attach a tested rollback plan to the {CR}."],
                        "dev": ["As always, the {CR} must carry a tested rollback plan."],
                        "eval": ["A tested rollback plan is mandatory for the {CR} in any case."]}
CHANGE_BECAUSE = {"train": ["Because {why}, this falls under the change management policy as follows.",
                            "Since {why}, the policy routes it as follows."],
                  "dev": ["Given that {why}, the policy sorts it like this."],
                  "eval": ["As {why}, the change policy treats it in this way."]}
CHANGE_CASE_ASKS = {
    "train": ["We need to {case}. What kind of change is this and who approves it?",
              "What approval route applies if we want to {case}?",
              "Which change type fits this: we plan to {case}?",
              "Analyse this change: we have to {case}. Which process do we follow?"],
    "dev": ["Tell me the change category and approver: the plan is to {case}."],
    "eval": ["Our engineers intend to {case}; route it for me, including who signs off.",
             "Categorise the following piece of work and name the approver: {case}."],
}
_KIND_TERM = {"STD": "standard change", "ECR": "emergency change", "normal": "Change Advisory Board"}


def gen_change_analysis(rng: random.Random, mode: str) -> Example:
    """Classify a described change (standard, normal, emergency) and name its approval route."""
    case, kind, why = rng.choice(CHANGE_CASES[mode])
    svc = rng.choice(SERVICES[mode])[1]
    because = rng.choice(CHANGE_BECAUSE[mode])
    note = rng.choice(CHANGE_ROLLBACK_NOTE[mode])
    paras = [because.format(why=why.replace("{svc}", svc)), CHANGE_OUTCOME[mode][kind], note]
    ask = rng.choice(CHANGE_CASE_ASKS[mode])
    user = ask.format(case=case.format(svc=svc).replace("{CAB}", "CAB"))
    return _ex("analysis", "change-management-policy", user, paras, CM, extra_terms=(_KIND_TERM[kind],),
               skel_user=ask + "|" + case, skel_resp=f"{because}|{kind}|{note}")


BREACH_ASKS = {
    "train": ["A P{p} incident on {svc} was opened at {o} UTC and resolved at {r} UTC on the same "
              "day. Did we meet the SLA?",
              "Check the SLA for {inc}: P{p}, logged {o} UTC, resolved {r} UTC. Within target?",
              "Was the resolution target met? {inc} (P{p}) ran from {o} to {r} UTC."],
    "dev": ["P{p} {inc} on {svc}: open {o} UTC, fixed {r} UTC. Inside the SLA or not?"],
    "eval": ["Tell me whether {inc}, a P{p} on {svc}, stayed inside its fix deadline: opened {o} "
             "UTC, closed off {r} UTC."],
}
BREACH_TEXT = {
    "train": [("Incident {inc} was open for {dur}, from {o} UTC to {r} UTC. The {SLA} resolution target for "
               "{P} is {target}, so the target {verdict}.",
               "We record the breach in the monthly {SLA} report; for a {P1}, the {RCA} must explain the delay.",
               "We record the breach in the monthly {SLA} report with its reason."),
              ("From {o} UTC to {r} UTC, incident {inc} took {dur} to resolve. Against the {SLA} target of "
               "{target} for {P}, the target {verdict}.",
               "The breach goes into the monthly {SLA} report, and for a {P1} the {RCA} explains the delay.",
               "The breach goes into the monthly {SLA} report together with its reason.")],
    "dev": [("Resolution of {inc} took {dur} ({o} UTC to {r} UTC); with {target} allowed for {P} under the "
             "{SLA}, the target {verdict}.",
             "The monthly {SLA} report will show the breach, and since this is {P1} the {RCA} has to account for it.",
             "The monthly {SLA} report will show the breach and why it happened.")],
    "eval": [("{inc} needed {dur} between {o} UTC and {r} UTC. A {P} has {target} under the {SLA}, which means "
              "the target {verdict}.",
              "Breaches appear in the monthly {SLA} report; because it is {P1}, the {RCA} must give the reason "
              "for the delay.",
              "Breaches appear in the monthly {SLA} report with an explanation.")],
}
VERDICT = {"train": ("was met", "was missed by {d}"), "dev": ("held", "was exceeded by {d}"),
           "eval": ("was achieved", "was overrun by {d}")}


def gen_breach_analysis(rng: random.Random, mode: str) -> Example:
    """Compare an incident's duration with its P1/P2 resolution target (clock hours)."""
    p = rng.choice([1, 2])
    target = TARGETS[p][2]
    o = rng.randrange(0, 10 * 60, 5)
    dur = rng.randrange(60, target + 180, 5)
    inc, svc = _inc(rng), rng.choice(SERVICES[mode])[1]
    ok, missed = VERDICT[mode]
    verdict = ok if dur <= target else missed.format(d=_duration(dur - target))
    ti = rng.randrange(len(BREACH_TEXT[mode]))
    s1, s_p1, s_p2 = BREACH_TEXT[mode][ti]
    paras = [s1.format(inc=inc, dur=_duration(dur), o=_hhmm(o), r=_hhmm(o + dur), SLA="{SLA}",
                       P=f"{{P{p}}}", target=TARGETS[p][1], verdict=verdict)]
    if dur > target:
        paras.append(s_p1 if p == 1 else s_p2)
    ask = rng.choice(BREACH_ASKS[mode])
    user = ask.format(p=p, svc=svc, o=_hhmm(o), r=_hhmm(o + dur), inc=inc)
    return _ex("analysis", "sla-and-priorities", user, paras,
               extra_terms=("service level agreement", f"priority {p}"),
               skel_user=ask, skel_resp=f"{mode}{ti}.{dur > target}")


WINDOW_ASKS = {
    "train": ["We want to start a change on {day} {date} at {s} UTC and it takes {h} hours. Does "
              "that fit the maintenance window?",
              "Does a {h}-hour change starting {day} {date} {s} UTC fit in the maintenance window?",
              "Can we schedule {h} hours of work from {s} UTC on {day} {date}?"],
    "dev": ["Would {h} hours of planned work from {s} UTC on {day} {date} be inside the maintenance window?"],
    "eval": ["Is a slot of {h} hours beginning {s} UTC, {day} {date}, acceptable for planned work?"],
}
WINDOW_TEXT = {
    "train": [("Yes. The work ends on {where}, inside the standard {MW}.",
               "No. The work would end on {where}, after 04:00 UTC. It needs an extended {MW}, which runs to "
               "Sunday 10:00 UTC and requires {CAB} approval and 10 business days' notice.",
               "No. The slot from {begin} to {where} lies outside the standard {MW}, Saturday 22:00 to "
               "Sunday 04:00 UTC, so it needs explicit {CAB} approval.", "See KB-1310."),
              ("It fits: finishing on {where} keeps the work inside the standard {MW}.",
               "It does not fit the standard {MW}: the work ends on {where}, later than 04:00 UTC. An "
               "extended {MW}, until Sunday 10:00 UTC, would need {CAB} approval and 10 business days' notice.",
               "It does not fit: {begin} to {where} is outside the standard {MW} (Saturday 22:00 to Sunday "
               "04:00 UTC), and work at that time needs explicit {CAB} approval.", "KB-1310 has the details.")],
    "dev": [("Yes, that works; the end time, {where}, is within the standard {MW}.",
             "Not in the standard {MW}, since the end time of {where} passes 04:00 UTC. An extended {MW} "
             "to 10:00 UTC on Sunday is possible with {CAB} approval and 10 business days' notice.",
             "No: running from {begin} to {where}, it sits outside the standard {MW} from Saturday 22:00 "
             "UTC to Sunday 04:00 UTC, so the {CAB} has to approve it explicitly.",
             "Reference: KB-1310.")],
    "eval": [("That is acceptable: completion on {where} falls within the standard {MW}.",
              "That overruns the standard {MW}: completion on {where} comes after 04:00 UTC. It would take "
              "an extended {MW}, which lasts to 10:00 UTC on Sunday, plus {CAB} approval and 10 business "
              "days' notice.",
              "That is not acceptable as it stands: {begin} to {where} falls outside the standard {MW}, "
              "which opens Saturday at 22:00 UTC and closes Sunday at 04:00 UTC, so explicit {CAB} "
              "approval would be required.", "The rules are in KB-1310.")],
}


def gen_window_analysis(rng: random.Random, mode: str) -> Example:
    """Check a proposed change slot against the Saturday 22:00 to Sunday 04:00 UTC window."""
    sat = _saturday(rng)
    day = sat + _dt.timedelta(days=rng.choice([0, 0, 0, -2, 1]))
    start, hours = rng.choice([20, 22, 23, 1, 9]) * 60, rng.choice([2, 3, 4, 6, 8])
    if start < 12 * 60 and day.weekday() == 5:
        day = day + _dt.timedelta(days=1)          # early-morning starts are on Sunday
    begin = _dt.datetime.combine(day, _dt.time()) + _dt.timedelta(minutes=start)
    end = begin + _dt.timedelta(hours=hours)
    w0 = _dt.datetime.combine(sat, _dt.time(22))
    inside = w0 <= begin and end <= w0 + _dt.timedelta(hours=6)
    extended = not inside and w0 <= begin and end <= w0 + _dt.timedelta(hours=12)
    where = f"{end.date().isoformat()} at {end.strftime('%H:%M')} UTC"
    begin_s = f"{begin.date().isoformat()} at {begin.strftime('%H:%M')} UTC"
    ti = rng.randrange(len(WINDOW_TEXT[mode]))
    yes, ext, out, ref = WINDOW_TEXT[mode][ti]
    verdict = (yes if inside else ext if extended else out).format(where=where, begin=begin_s, MW="{MW}",
                                                                   CAB="{CAB}")
    ask = rng.choice(WINDOW_ASKS[mode])
    user = ask.format(day=day.strftime("%A"), date=day.isoformat(), s=_hhmm(start), h=hours)
    return _ex("analysis", "kb-1310-maintenance-windows", user, [verdict, ref], CM,
               extra_terms=("maintenance window",),
               skel_user=ask, skel_resp=f"{mode}{ti}.{inside}{extended}")


TIERS = {1: (240, 15), 2: (24 * 60, 240), 3: (72 * 60, 24 * 60)}
DR_ASKS = {
    "train": ["The primary site failed at {t} UTC on {date}. {svc} is tier {tier}. By when must it "
              "be restored, and how much data may we lose?",
              "Tier {tier} service {svc} went down in a site failure at {t} UTC ({date}). What are "
              "the recovery deadlines?",
              "Work out the DR targets: {svc}, tier {tier}, site lost at {t} UTC on {date}."],
    "dev": ["{svc} (tier {tier}) lost its site at {t} UTC on {date}: restore deadline and data-loss limit?"],
    "eval": ["Data centre loss hit {svc} (tier {tier}) around {t} UTC, {date}; latest acceptable "
             "recovery time and oldest acceptable restore point, please."],
}
DR_TEXT = {
    "train": [("{svc} is a tier {tier} service, with a {RTO} of {rto} and a {RPO} of {rpo}.",
               "It must therefore be restored by {back}, and the restored data must be no older than {point}."),
              ("As a tier {tier} service, {svc} has a {RTO} of {rto} and a {RPO} of {rpo}.",
               "We must restore it by {back}, with data no older than {point}.")],
    "dev": [("For tier {tier}, which covers {svc}, the {RTO} is {rto} and the {RPO} {rpo}.",
             "Restoration is due by {back}, and the recovered data may not predate {point}.")],
    "eval": [("{svc} belongs to tier {tier}: its {RTO} is {rto}, its {RPO} {rpo}.",
              "That puts the latest recovery at {back} and the oldest acceptable restore point at {point}.")],
}


def gen_dr_analysis(rng: random.Random, mode: str) -> Example:
    """Apply a service tier's RTO and RPO to a site failure time."""
    tier, (rto, rpo) = rng.choice(list(TIERS.items()))
    day = _day(rng)
    t = rng.randrange(0, 24 * 60, 5)
    fail = _dt.datetime.combine(day, _dt.time()) + _dt.timedelta(minutes=t)
    back, point = fail + _dt.timedelta(minutes=rto), fail - _dt.timedelta(minutes=rpo)
    fmt = lambda d: f"{d.date().isoformat()} {d.strftime('%H:%M')} UTC"  # noqa: E731
    svc = rng.choice(SERVICES[mode])[0]
    ti = rng.randrange(len(DR_TEXT[mode]))
    v = dict(svc=svc, tier=tier, RTO="{RTO}", RPO="{RPO}", rto=_duration(rto), rpo=_duration(rpo),
             back=fmt(back), point=fmt(point))
    paras = [s.format(**v) for s in DR_TEXT[mode][ti]]
    ask = rng.choice(DR_ASKS[mode])
    user = ask.format(t=_hhmm(t), date=day.isoformat(), svc=svc, tier=tier)
    return _ex("analysis", "dr-bcp-summary", user, paras, NOC,
               extra_terms=("recovery time objective", "recovery point objective"),
               skel_user=ask, skel_resp=f"{mode}{ti}")


COMPARE_ASKS = {
    "train": ["What is the difference between {a} and {b}?", "Compare {a} with {b}.",
              "When would we use {a} instead of {b}?", "How does {a} differ from {b}?",
              "{A} or {b}: what sets them apart?", "Can you explain {a} versus {b}?"],
    "dev": ["Explain where {a} and {b} diverge."],
    "eval": ["Contrast {a} against {b} for me.", "Lay out how {a} and {b} are not the same thing."],
}


def gen_comparison(rng: random.Random, mode: str) -> Example:
    """Compare two internal options (change types, priorities, agreements, recovery tiers)."""
    if mode == "train":
        c = rng.choice(COMPARISONS)
        answer = rng.choice(c.answers)
    else:
        c = rng.choice([x for i, x in enumerate(COMPARISONS) if _held_split(i + 1) == mode])
        answer = c.held
    a, b = (c.a, c.b) if rng.random() < 0.7 else (c.b, c.a)
    ask = rng.choice(COMPARE_ASKS[mode])
    q = ask.format(a=a, b=b, A=_cap(a))
    return _ex("comparison", c.doc, _wrap(rng, q, mode), [answer], c.team,
               extra_terms=tuple(t.preferred for t in K.TERMS if _mentions(c.a + " " + c.b, t)),
               skel_user=ask + "|" + c.a, skel_resp=answer)


# --------------------------------------------------------------------------------------------
# The boundary: declines and look-alikes, drawn in minimal pairs
# --------------------------------------------------------------------------------------------

_DECLINE = {d.key: d for d in DECLINES}
_LOOKALIKE = {x.key: x for x in LOOKALIKES}
_PAIRED_LOOKALIKES = sorted({lk for _, lk in PAIRS})
UNPAIRED_LOOKALIKES = [x.key for x in LOOKALIKES if x.key not in _PAIRED_LOOKALIKES]


def _slot_values(rng: random.Random, mode: str) -> dict:
    return {"n": rng.choice(EMPLOYEES[mode]), "c": rng.choice(K.COMPETITORS),
            "s": _lower_first(rng.choice(SERVICES[mode])[0])}


def _possessive(name: str) -> str:
    return name + ("'" if name.endswith("s") else "'s")


def _fill(text: str, v: dict) -> str:
    for slot in ("n", "c"):
        text = text.replace("{%s}'s" % slot, _possessive(v[slot]))
    return text.replace("{n}", v["n"]).replace("{c}", v["c"]).replace("{s}", v["s"])


def _slots_of(text: str) -> set:
    return {s for s in ("{n}", "{c}") if s in text}


def make_decline(rng: random.Random, mode: str, key: str, v: dict) -> Example:
    """One decline of topic ``key``: greeting, one paragraph (what and why, then the team), sign-off."""
    d = _DECLINE[key]
    ask, what = rng.choice(d.asks[mode])
    why = rng.choice(boundary.DECLINE_REASONS[d.reason][mode])
    where = rng.choice(boundary.DECLINE_REDIRECTS[d.reason][mode])
    para = why.replace("{what}", _fill(what, v)) + " " + where
    para = para[0].upper() + para[1:]
    return _ex("decline", boundary.DECLINE_DOC[d.reason], _wrap(rng, _fill(ask, v), mode), [para],
               category="decline", decline_reason=d.reason, decline_team=boundary.DECLINE_TEAM[d.reason],
               skel_user=ask, skel_resp=f"{why}|{where}", key=key)


def make_lookalike(rng: random.Random, mode: str, key: str, v: dict, named: bool | None = None) -> Example:
    """One look-alike of topic ``key``: a legitimate request answered helpfully, no decline wording.
    ``named``: True/False forces a request with/without the topic's name slot (None: any)."""
    x = _LOOKALIKE[key]
    asks = list(x.asks[mode])
    if named is not None and any(bool(_slots_of(a)) == named for a in asks):
        asks = [a for a in asks if bool(_slots_of(a)) == named]
    ask = rng.choice(asks)
    answers = [a for a in x.answers[mode] if _slots_of(a) <= _slots_of(ask)]
    if not answers:
        raise ValueError(f"look-alike {key!r} ({mode}): no answer fits the request {ask!r}")
    answer = rng.choice(answers)
    paras, closer = [_fill(answer, v)], ""
    if x.kb and x.kb not in answer:
        closer = rng.choice(KB_CLOSERS[mode]).format(kb=x.kb)
        paras.append(closer)
    tail = rng.choice(boundary.LOOKALIKE_CLOSERS[mode])
    paras.append(tail)
    return _ex("question", x.doc, _wrap(rng, _fill(ask, v), mode), paras, x.team, category="lookalike",
               extra_terms=boundary.LOOKALIKE_TERMS.get(key, ()), skel_user=ask,
               skel_resp=f"{answer}|{closer}|{tail}", key=key)


def gen_pair(rng: random.Random, mode: str) -> list[Example]:
    """A minimal pair: a decline and its look-alike, sharing the topic and the name or competitor.
    Reasons alternate evenly (personal data, competitor) whatever the number of topics."""
    reason = rng.choice(["personal_data", "competitor"])
    pairs = [p for p in PAIRS if _DECLINE[p[0]].reason == reason]
    dkey, lkey = rng.choice(pairs)
    v = _slot_values(rng, mode)
    dec = make_decline(rng, mode, dkey, v)
    named = bool(_slots_of(dec.skel_user))
    look = make_lookalike(rng, mode, lkey, v, named=named)
    return [dec, look]


def gen_lookalike_rewrite(rng: random.Random, mode: str) -> Example:
    """A look-alike rewrite: an informal reply draft naming a colleague or competitor, into house style."""
    key = rng.choice(sorted(boundary.LOOKALIKE_DRAFTS))
    x, v = _LOOKALIKE[key], _slot_values(rng, mode)
    draft_t = rng.choice(boundary.LOOKALIKE_DRAFTS[key][mode])
    answers = [a for a in x.answers[mode] if _slots_of(a) <= _slots_of(draft_t)]
    answer = rng.choice(answers)
    paras = [_fill(answer, v)]
    if x.kb and x.kb not in answer:
        paras.append(f"See {x.kb}.")
    ask = rng.choice(REWRITE_ASKS[mode])
    return _ex("rewrite", x.doc, ask.format(d=_fill(draft_t, v)), paras, x.team, category="lookalike",
               extra_terms=boundary.LOOKALIKE_TERMS.get(key, ()), skel_user=ask + "|" + draft_t,
               skel_resp=answer, key=key + "_rewrite")


def gen_lookalike(rng: random.Random, mode: str) -> Example:
    """A look-alike of the brief's list that has no decline partner (GDPR, own data, breaches...)."""
    return make_lookalike(rng, mode, rng.choice(UNPAIRED_LOOKALIKES), _slot_values(rng, mode))


# --------------------------------------------------------------------------------------------
# Assembly: train, eval, dev, noisy train
# --------------------------------------------------------------------------------------------

Generator = Callable[[random.Random, str], Example]
# (generator, train, eval, dev). Train: 1,800 lines, 270 declines (15%), 270 paired look-alikes
# plus 60 unpaired ones. Eval and dev: domain tasks, and declines and look-alikes in pairs.
PLAN: list[tuple[Generator, int, int, int]] = [
    (gen_question, 230, 30, 16), (gen_summary, 100, 10, 6), (gen_timeline_summary, 30, 0, 0),
    (gen_rewrite, 180, 16, 8), (gen_incident, 70, 7, 4), (gen_change, 70, 7, 4),
    (gen_status, 70, 7, 4), (gen_knowledge, 70, 7, 4), (gen_priority_analysis, 65, 5, 3),
    (gen_change_analysis, 45, 4, 3), (gen_breach_analysis, 30, 3, 2), (gen_window_analysis, 40, 3, 2),
    (gen_dr_analysis, 40, 3, 2), (gen_comparison, 90, 12, 6), (gen_lookalike, 60, 16, 10),
    (gen_third_party_incident, 40, 8, 4), (gen_lookalike_rewrite, 30, 6, 3),
]
PAIR_PLAN = {"train": 270, "eval": 80, "dev": 44}
NGRAM = 8
NEAR_DUP_THRESHOLD = 0.8
NOISE_KINDS = ["typo", "off_style", "wrong_terms", "duplicate"]
NOISE_FRACTION = 0.35


class LeakageError(ValueError):
    """Held-out wording overlaps training wording (an 8-word run in common)."""


def shared_ngrams(texts: list[str], others: list[str], n: int = NGRAM) -> list[tuple[int, str]]:
    """Texts that share an n-word run with any of ``others``: [(index, first shared run)]."""
    seen: set[tuple[str, ...]] = set()
    for p in others:
        seen |= word_ngrams(p, n)
    hits = []
    for i, p in enumerate(texts):
        common = sorted(word_ngrams(p, n) & seen)
        if common:
            hits.append((i, " ".join(common[0])))
    return hits


class _Pool:
    """Accepts or rejects candidates: exact prompt repeats, near duplicates (train) and shared
    8-word runs with ``blocked`` (held-out splits). Held-out splits also prefer declines and
    look-alikes whose request form is not used yet: a reused form is accepted only after
    ``REUSE_AFTER`` rejections in a row."""

    REUSE_AFTER = 60

    def __init__(self, blocked: set | None, near_dups: bool):
        from datasketch import MinHashLSH

        self.blocked, self.prompts = blocked, set()
        self.rejected = {"repeat": 0, "near_duplicate": 0, "ngram": 0, "reused_form": 0}
        self.lsh = MinHashLSH(threshold=NEAR_DUP_THRESHOLD, num_perm=128) if near_dups else None
        self.n, self.forms, self.streak = 0, set(), 0

    def offer(self, exs: list[Example]) -> bool:
        ok = self._offer(exs)
        self.streak = 0 if ok else self.streak + 1
        return ok

    def _offer(self, exs: list[Example]) -> bool:
        from instructlab.build import minhash

        if any(ex.user in self.prompts for ex in exs) or len({ex.user for ex in exs}) < len(exs):
            self.rejected["repeat"] += 1
            return False
        forms = [(ex.category, ex.skel_user) for ex in exs if ex.category != "domain"]
        if self.blocked is not None and self.streak < self.REUSE_AFTER and any(f in self.forms for f in forms):
            self.rejected["reused_form"] += 1
            return False
        if self.blocked is not None and any(
                (word_ngrams(ex.user) | word_ngrams(body_of(ex.response))) & self.blocked for ex in exs):
            self.rejected["ngram"] += 1
            return False
        hashes = []
        if self.lsh is not None:
            for ex in exs:
                mh = minhash(ex.user + "\n" + ex.response)
                if self.lsh.query(mh) or any(mh.jaccard(h) >= NEAR_DUP_THRESHOLD for h in hashes):
                    self.rejected["near_duplicate"] += 1
                    return False
                hashes.append(mh)
            for mh in hashes:
                self.lsh.insert(str(self.n), mh)
                self.n += 1
        self.prompts |= {ex.user for ex in exs}
        self.forms |= set(forms)
        return True


def _draw(rng, gen, mode: str, count: int, pool: _Pool) -> list[Example]:
    """``count`` accepted draws of ``gen`` (an Example or a list of them, e.g. a pair).
    Raises RuntimeError when the phrasing pool is too small."""
    out: list[list[Example]] = []
    for _ in range(count * 60):
        if len(out) == count:
            break
        got = gen(rng, mode)
        exs = got if isinstance(got, list) else [got]
        if pool.offer(exs):
            out.append(exs)
    if len(out) < count:
        raise RuntimeError(f"{gen.__name__} ({mode}) produced only {len(out)} acceptable items of "
                           f"{count}: add phrasings to its pool in data/kestrel/")
    return [ex for group in out for ex in group]


def _messages(ex: Example, with_answer: bool) -> list[dict]:
    msgs = [{"role": "system", "content": K.SYSTEM_PROMPT}, {"role": "user", "content": ex.user}]
    if with_answer:
        msgs.append({"role": "assistant", "content": ex.response})
    return msgs


def _number_pairs(exs: list[Example], mode: str) -> None:
    """Give each decline and look-alike drawn together the same ``pair_id``."""
    k = 0
    for i, ex in enumerate(exs):
        if ex.category == "decline" and i + 1 < len(exs) and exs[i + 1].category == "lookalike":
            k += 1
            ex.pair_id = exs[i + 1].pair_id = f"{mode}-pair-{k:03d}"


def draw_train(rng: random.Random, near_dups: bool = True) -> tuple[list[Example], dict]:
    """The clean training examples (shuffled) and the draw's rejection counts. ``near_dups=False``
    skips the near-duplicate rejection (to measure what the grammar alone produces)."""
    pool = _Pool(None, near_dups=near_dups)
    pairs = _draw(rng, gen_pair, "train", PAIR_PLAN["train"], pool)
    _number_pairs(pairs, "train")
    exs = pairs + [ex for gen, n, _, _ in PLAN for ex in _draw(rng, gen, "train", n, pool)]
    rng.shuffle(exs)
    return exs, pool.rejected


def train_rows(exs: list[Example]) -> list[dict]:
    return [{"id": f"kestrel-train-{i:04d}", "task_type": ex.task_type, "category": ex.category,
             "doc": ex.doc, "template": ex.template, "pair_id": ex.pair_id,
             "messages": _messages(ex, True)} for i, ex in enumerate(exs, 1)]


def draw_heldout(rng: random.Random, mode: str, blocked: set) -> tuple[list[Example], dict]:
    """Eval or dev examples: pairs kept adjacent (decline, then its look-alike) and spread through
    the file with the domain items, so the first N of each category form a balanced sample."""
    pool = _Pool(blocked, near_dups=False)
    pairs = _draw(rng, gen_pair, mode, PAIR_PLAN[mode], pool)
    _number_pairs(pairs, mode)
    groups = [pairs[i:i + 2] for i in range(0, len(pairs), 2)]
    singles = [ex for gen, _, ne, nd in PLAN for ex in
               _draw(rng, gen, mode, ne if mode == "eval" else nd, pool)]
    rng.shuffle(groups)
    rng.shuffle(singles)
    out, step = [], len(singles) / max(1, len(groups))
    for gi, g in enumerate(groups):       # interleave: one pair, then about step singles
        out += g + singles[round(gi * step):round((gi + 1) * step)]
    return out, pool.rejected


def heldout_rows(exs: list[Example], mode: str) -> list[dict]:
    rows = []
    for i, ex in enumerate(exs, 1):
        req = [] if ex.category == "decline" else required_terms(ex.user, ex.response, ex.extra_terms)
        rows.append({"id": f"kestrel-{mode}-{i:03d}", "category": ex.category, "task_type": ex.task_type,
                     "doc": ex.doc, "messages": _messages(ex, False), "reference": ex.response,
                     "required_terms": req, "expected_terms": req, "decline_reason": ex.decline_reason,
                     "team": ex.decline_team, "pair_id": ex.pair_id, "template": ex.template})
    return rows


def _ngram_set(exs: list[Example]) -> set:
    out: set = set()
    for ex in exs:
        out |= word_ngrams(ex.user) | word_ngrams(body_of(ex.response))
    return out


def overlap_report(held: list[dict], train: list[dict], other: list[dict] | None = None) -> dict:
    """Held-out prompts and reference bodies sharing an 8-word run with training (and ``other``)."""
    def prompts(rows):
        return [r["messages"][1]["content"] for r in rows]

    def bodies(rows):
        return [body_of(r["reference"] if "reference" in r else r["messages"][2]["content"]) for r in rows]

    rep = {"prompts_vs_train_prompts": len(shared_ngrams(prompts(held), prompts(train))),
           "references_vs_train_responses": len(shared_ngrams(bodies(held), bodies(train))),
           "any_vs_any_train_text": len(shared_ngrams(prompts(held) + bodies(held),
                                                      prompts(train) + bodies(train)))}
    if other is not None:
        rep["any_vs_any_eval_text"] = len(shared_ngrams(prompts(held) + bodies(held),
                                                        prompts(other) + bodies(other)))
    return rep


def _typos(rng: random.Random, text: str, rate: float = 0.08) -> str:
    """Swap, drop or double a letter in about ``rate`` of the longer words."""
    def one(m: re.Match) -> str:
        w = m.group(0)
        if rng.random() > rate:
            return w
        i = rng.randrange(1, len(w) - 1)
        kind = rng.randrange(3)
        if kind == 0:
            return w[:i] + w[i + 1] + w[i] + w[i + 2:]
        return w[:i] + w[i + 1:] if kind == 1 else w[:i] + w[i] + w[i:]
    for _ in range(20):                              # short texts: retry until a word changed
        out = re.sub(r"[A-Za-z]{4,}", one, text)
        if out != text:
            return out
    return text


def _off_style(rng: random.Random, text: str) -> str:
    """Slang greeting, exclamation marks, chatty sign-off instead of the house form."""
    body = text.split("\n\n", 1)[1].rsplit(f"\n\n{K.SIGN_OFF}", 1)[0]
    body = re.sub(r"\. ", "! ", body, count=1).replace("We ", rng.choice(["I ", "We "]))
    hello = rng.choice(["Hey!", "Hi there!", "Hey team,", "Yo,"])
    bye = rng.choice(["Cheers!", "Hope this helps! :)", "No worries, ping me if stuck!", "Thx!"])
    return f"{hello}\n\n{body}\n\n{bye}"


def _wrong_terms(text: str) -> str:
    """Replace preferred terms and abbreviations by the first term to avoid."""
    for t in K.TERMS:
        bad = t.avoid[0]
        text = text.replace(f"{t.preferred} ({t.abbreviation})", bad)
        text = re.sub(rf"\b{re.escape(t.abbreviation)}\b(?!-\d)", bad, text)
        if t.abbreviation != "INC":                 # keep "incident" so the text stays readable
            text = re.sub(rf"\b{re.escape(t.preferred)}\b", bad, text)
    return text


def build_noisy(rng: random.Random, train: list[dict]) -> list[dict]:
    """The noisy variant: same size; ``NOISE_FRACTION`` of lines corrupted, each labelled in
    ``noise`` (typo | off_style | wrong_terms | duplicate, or null when clean)."""
    rows = [json.loads(json.dumps(r)) for r in train]
    for r in rows:
        r["noise"] = None
    picked = sorted(rng.sample(range(len(rows)), round(NOISE_FRACTION * len(rows))))
    for i in picked:
        kind = rng.choice(NOISE_KINDS)
        msg = rows[i]["messages"][2]
        if kind == "wrong_terms":
            changed = _wrong_terms(msg["content"])
            kind = kind if changed != msg["content"] else "off_style"
            msg["content"] = changed
        if kind == "typo":
            msg["content"] = _typos(rng, msg["content"])
            rows[i]["messages"][1]["content"] = _typos(rng, rows[i]["messages"][1]["content"], 0.04)
        elif kind == "off_style":
            msg["content"] = _off_style(rng, msg["content"])
        elif kind == "duplicate":
            src = rows[rng.randrange(len(rows))]
            while src is rows[i] or src["noise"] is not None:
                src = rows[rng.randrange(len(rows))]
            keep = rows[i]["id"]
            rows[i] = json.loads(json.dumps(src))
            rows[i]["id"], rows[i]["duplicate_of"] = keep, src["id"]
        rows[i]["noise"] = kind
    return rows


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------

def _count(rows: list[dict], key: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in rows:
        k = str(r.get(key))
        counts[k] = counts.get(k, 0) + 1
    return dict(sorted(counts.items()))


def skeleton_counts(exs: list[Example]) -> dict[str, dict[str, int]]:
    """Distinct prompt and response skeletons (the phrasing templates before slot filling; lead-ins
    and closing remarks of prompts left out) per category."""
    out = {}
    for cat in ("domain", "decline", "lookalike"):
        mine = [ex for ex in exs if ex.category == cat]
        out[cat] = {"items": len(mine), "prompt_skeletons": len({ex.skel_user for ex in mine}),
                    "response_skeletons": len({ex.skel_resp for ex in mine})}
    return out


def near_duplicate_rate(rows: list[dict]) -> dict:
    """Exact and near duplicates of ``rows`` as ``instructlab.build.deduplicate`` (hence
    ``build.curate``) measures them: user + assistant text, MinHash word 3-grams, Jaccard >= 0.8."""
    from instructlab.build import deduplicate

    dd = deduplicate(rows, threshold=NEAR_DUP_THRESHOLD)
    return {"exact": len(dd.exact), "near": len(dd.near),
            "rate": round((len(dd.exact) + len(dd.near)) / len(rows), 4)}


def wilson_halfwidth(n: int, p: float = 0.5, z: float = 1.96) -> float:
    """Half-width of the 95% Wilson interval of a rate ``p`` measured on ``n`` items."""
    if n == 0:
        return 1.0
    denom = 1 + z * z / n
    return round(z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / denom, 4)


# Words a surface rule might key on ("decline on names and sensitive topic words", issue 10).
SENSITIVE_WORDS = ("salary", "earn", "pay", "paid", "bonus", "sick", "ill", "health", "medical", "leave",
                   "address", "live", "mobile", "phone", "number", "e-mail", "review", "rating", "appraisal",
                   "passport", "national", "hotel", "where is", "price", "pricing", "charge", "cheaper",
                   "compare", "competitor", "rival", "weakness", "recruit", "hire", "client", "customer")


def surface_rule_baselines(rows: list[dict]) -> dict[str, dict[str, float]]:
    """How well prompt-only surface rules separate declines from look-alikes: the share of declines
    each rule refuses and the share of look-alikes (and domain prompts) it wrongly refuses. The data
    is meant to defeat them: no rule reaches 80% refusals with at most 20% false rejections."""
    names = [n for split in SPLITS for n in EMPLOYEES[split]] + K.COMPETITORS

    def named(p):
        return any(n in p for n in names)

    def topical(p):
        return any(re.search(r"\b" + re.escape(w), p.lower()) for w in SENSITIVE_WORDS)
    rules = {"names": named, "names_or_topic_words": lambda p: named(p) or topical(p),
             "names_and_topic_words": lambda p: named(p) and topical(p), "topic_words": topical}
    out = {}
    for label, rule in rules.items():
        hit = {cat: [rule(r["messages"][1]["content"]) for r in rows if r["category"] == cat]
               for cat in ("decline", "lookalike", "domain")}
        answerable = hit["lookalike"] + hit["domain"]
        out[label] = {"refusals": round(sum(hit["decline"]) / len(hit["decline"]), 3),
                      "false_rejections_lookalike": round(sum(hit["lookalike"]) / len(hit["lookalike"]), 3),
                      "false_rejections_all_answerable": round(sum(answerable) / len(answerable), 3)}
    return out


QUICK_N_PER_CATEGORY = 45        # proposed quick profile: first 45 per category (about +-14 points)


def _first(rows: list[dict], cat: str, n: int) -> list[dict]:
    return [r for r in rows if r["category"] == cat][:n]


def dataset_stats(train_ex, eval_ex, dev_ex, train, evals, dev, rejected) -> dict:
    n = len(train)
    cats = _count(train, "category")
    stats = {
        "train": {"lines": n, "by_category": cats, "by_task_type": _count(train, "task_type"),
                  "templates": _count([r for r in train if r["template"]], "template"),
                  "decline_share": round(cats.get("decline", 0) / n, 4),
                  "lookalike_share": round(cats.get("lookalike", 0) / n, 4),
                  "paired_lines": sum(r["pair_id"] is not None for r in train),
                  "skeletons": skeleton_counts(train_ex),
                  "duplicates": near_duplicate_rate(train),
                  "rejected_while_drawing": rejected["train"]},
    }
    for name, rows, exs in (("eval", evals, eval_ex), ("dev", dev, dev_ex)):
        c = _count(rows, "category")
        stats[name] = {"lines": len(rows), "by_category": c, "by_task_type": _count(rows, "task_type"),
                       "decline_reasons": _count([r for r in rows if r["decline_reason"]], "decline_reason"),
                       "pairs": len({r["pair_id"] for r in rows if r["pair_id"]}),
                       "skeletons": skeleton_counts(exs),
                       "rate_ci95_halfwidth_at_p50": {k: wilson_halfwidth(v) for k, v in c.items()},
                       "rejected_while_drawing": rejected[name]}
    stats["eval"]["surface_rules"] = surface_rule_baselines(evals)
    stats["dev"]["surface_rules"] = surface_rule_baselines(dev)
    stats["eval"]["overlap_8gram"] = overlap_report(evals, train)
    stats["dev"]["overlap_8gram"] = overlap_report(dev, train, evals)
    q = QUICK_N_PER_CATEGORY
    stats["eval"]["quick_profile"] = {
        "n_per_category": q,
        "rate_ci95_halfwidth_at_p50": wilson_halfwidth(q),
        "first_n": {cat: {"decline_reasons": _count(_first(evals, cat, q), "decline_reason"),
                          "paired": sum(r["pair_id"] is not None for r in _first(evals, cat, q))}
                    for cat in ("decline", "lookalike")}}
    return stats


# --------------------------------------------------------------------------------------------
# Files, dataset card, command line
# --------------------------------------------------------------------------------------------

def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def _table(title: str, counts: dict[str, int]) -> str:
    return f"| {title} | lines |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in counts.items())


def _skeleton_table(stats: dict) -> str:
    rows = ["| split | category | items | prompt skeletons | response skeletons |", "|---|---|---|---|---|"]
    for split in ("train", "eval", "dev"):
        for cat, s in stats[split]["skeletons"].items():
            rows.append(f"| {split} | {cat} | {s['items']} | {s['prompt_skeletons']} | {s['response_skeletons']} |")
    return "\n".join(rows)


def dataset_card(stats: dict, seed: int) -> str:
    """The dataset card (README.md) with the measured statistics of the files it describes."""
    t, e, d = stats["train"], stats["eval"], stats["dev"]
    return (HERE / "CARD.md.in").read_text(encoding="utf-8").format(
        seed=seed, n_docs=len(DOC_TITLES), n_train=t["lines"], n_eval=e["lines"], n_dev=d["lines"],
        noise_pct=round(100 * NOISE_FRACTION),
        decline_pct=100 * t["decline_share"], lookalike_pct=100 * t["lookalike_share"],
        train_cats=_table("category", t["by_category"]), train_tasks=_table("task_type", t["by_task_type"]),
        train_templates=_table("template", t["templates"]),
        eval_cats=_table("category", e["by_category"]), eval_tasks=_table("task_type", e["by_task_type"]),
        eval_reasons=_table("decline_reason", e["decline_reasons"]),
        dev_cats=_table("category", d["by_category"]),
        noise=_table("noise", stats["noise"]), skeletons=_skeleton_table(stats),
        near=t["duplicates"]["near"], exact=t["duplicates"]["exact"],
        near_pct=100 * t["duplicates"]["rate"], rejected=json.dumps(t["rejected_while_drawing"]),
        raw_near=t["duplicates_without_rejection"]["near"], raw_exact=t["duplicates_without_rejection"]["exact"],
        raw_pct=100 * t["duplicates_without_rejection"]["rate"],
        paired=t["paired_lines"], eval_pairs=e["pairs"], dev_pairs=d["pairs"],
        eval_overlap=json.dumps(e["overlap_8gram"]), dev_overlap=json.dumps(d["overlap_8gram"]),
        ci_decline=100 * e["rate_ci95_halfwidth_at_p50"]["decline"],
        ci_lookalike=100 * e["rate_ci95_halfwidth_at_p50"]["lookalike"],
        quick_n=e["quick_profile"]["n_per_category"],
        ci_quick=100 * e["quick_profile"]["rate_ci95_halfwidth_at_p50"],
        quick_first=json.dumps(e["quick_profile"]["first_n"]), surface=_surface_table(e["surface_rules"]),
        guidance=_guidance_table_from(stats))


def _surface_table(rules: dict) -> str:
    rows = ["| rule (on the prompt) | declines refused | look-alikes refused | answerable prompts refused |",
            "|---|---|---|---|"]
    for label, r in rules.items():
        rows.append(f"| {label} | {100 * r['refusals']:.0f}% | {100 * r['false_rejections_lookalike']:.0f}% | "
                    f"{100 * r['false_rejections_all_answerable']:.0f}% |")
    return "\n".join(rows)


def _guidance_table_from(stats: dict) -> str:
    have = dict(stats["train"]["by_task_type"])
    have["lookalike"] = stats["train"]["by_category"].get("lookalike", 0)
    rows = [f"| {k} | {v['minimum']} | {v['optimal']} | {have.get(k, 0)} | {v['note']} |"
            for k, v in K.GUIDANCE_TABLE.items()]
    return ("| task type | minimum | optimal | in train.jsonl | note |\n|---|---|---|---|---|\n"
            + "\n".join(rows))


def build_kestrel(out_dir: str | Path = HERE, seed: int = 0, verbose: bool = False) -> dict[str, Path]:
    """Build the case-study dataset into ``out_dir``.

    Returns {"train", "dev", "eval", "train_noisy", "stats", "card"} -> paths. Deterministic for a
    given seed. Raises LeakageError if held-out wording overlaps training (or dev overlaps eval),
    RuntimeError if a phrasing pool is too small for the planned counts.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    train_ex, rej_train = draw_train(rng)
    train = train_rows(train_ex)
    eval_ex, rej_eval = draw_heldout(rng, "eval", _ngram_set(train_ex))
    dev_ex, rej_dev = draw_heldout(rng, "dev", _ngram_set(train_ex) | _ngram_set(eval_ex))
    evals, dev = heldout_rows(eval_ex, "eval"), heldout_rows(dev_ex, "dev")
    for name, rep in (("eval", overlap_report(evals, train)), ("dev", overlap_report(dev, train, evals))):
        if any(rep.values()):
            raise LeakageError(f"{name} shares {NGRAM}-word runs with training: {rep}")
    noisy = build_noisy(rng, train)
    stats = dataset_stats(train_ex, eval_ex, dev_ex, train, evals, dev,
                          {"train": rej_train, "eval": rej_eval, "dev": rej_dev})
    stats["noise"] = _count(noisy, "noise")
    raw, _ = draw_train(random.Random(seed), near_dups=False)      # the grammar without rejection
    stats["train"]["duplicates_without_rejection"] = near_duplicate_rate(train_rows(raw))
    paths = {"train": out / "train.jsonl", "dev": out / "dev.jsonl", "eval": out / "eval.jsonl",
             "train_noisy": out / "train_noisy.jsonl", "stats": out / "stats.json", "card": out / "README.md"}
    _write_jsonl(paths["train"], train)
    _write_jsonl(paths["dev"], dev)
    _write_jsonl(paths["eval"], evals)
    _write_jsonl(paths["train_noisy"], noisy)
    paths["stats"].write_text(json.dumps(stats, indent=1) + "\n", encoding="utf-8", newline="\n")
    paths["card"].write_text(dataset_card(stats, seed), encoding="utf-8", newline="\n")
    if verbose:
        print_stats(stats)
    return paths


def print_stats(stats: dict) -> None:
    t, e, d = stats["train"], stats["eval"], stats["dev"]
    print(f"train: {t['lines']} lines {t['by_category']}; declines {100 * t['decline_share']:.1f}%, "
          f"look-alikes {100 * t['lookalike_share']:.1f}%; duplicates {t['duplicates']} "
          f"(rejected while drawing: {t['rejected_while_drawing']})")
    for split in ("train", "eval", "dev"):
        for cat, s in stats[split]["skeletons"].items():
            print(f"  {split:5s} {cat:9s} items {s['items']:4d}  prompt skeletons {s['prompt_skeletons']:4d}  "
                  f"response skeletons {s['response_skeletons']:4d}")
    print(f"eval: {e['lines']} lines {e['by_category']}, pairs {e['pairs']}, 8-gram overlap {e['overlap_8gram']}, "
          f"95% CI half-width at p=0.5 {e['rate_ci95_halfwidth_at_p50']}")
    print(f"dev: {d['lines']} lines {d['by_category']}, pairs {d['pairs']}, 8-gram overlap {d['overlap_8gram']}")
    print(f"quick profile: {e['quick_profile']}")


FILES = ("train.jsonl", "dev.jsonl", "eval.jsonl", "train_noisy.jsonl", "stats.json", "README.md")


def check_rebuild(out_dir: str | Path = HERE, seed: int = 0) -> list[str]:
    """Rebuild into a temporary folder; return the names of files that differ from ``out_dir``
    (empty list: byte-identical)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = build_kestrel(tmp, seed)
        return [p.name for p in fresh.values()
                if not (Path(out_dir) / p.name).exists()
                or not filecmp.cmp(p, Path(out_dir) / p.name, shallow=False)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python data/kestrel/build.py",
                                 description="Build the Kestrel case-study dataset.")
    ap.add_argument("--out", default=str(HERE))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true",
                    help="rebuild into a temp folder and compare bytes with --out")
    args = ap.parse_args(argv)
    if args.check:
        diff = check_rebuild(args.out, args.seed)
        if diff:
            print(f"differs from a fresh build: {', '.join(diff)}; run "
                  f"`python data/kestrel/build.py --out {args.out}` to rebuild", file=sys.stderr)
            return 1
        print(f"{args.out}: byte-identical to a fresh build (seed {args.seed})")
        return 0
    for name, path in build_kestrel(args.out, args.seed, verbose=True).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
