"""Kestrel Systems: the case study's house rules, transcribed from the customer's brief.

The constants below transcribe ``shared/domain-brief.md``; the metrics, the judge, the data
builder and the notebooks import them, so their names are stable:

``TERMS``           the glossary: ``Term(preferred, abbreviation, avoid)``
``COMPETITORS``     the named competitors a request must not be answered about
``TEAMS``           sign-off names of the internal teams; ``DEFAULT_TEAM`` signs by default
``COMPETITOR_TEAM`` / ``PRIVACY_TEAM`` / ``HR_PRIVACY_CATEGORY``   where a decline redirects
``SYSTEM_PROMPT``   the assistant's system prompt, identical in train and eval
``TEMPLATES``       template name -> the section names a response must contain
``GREETING`` / ``SIGN_OFF``   how every message opens and closes
``TASK_TYPES``      the task types of the dataset
``GUIDANCE_TABLE``  the kit's guidance on how many examples a task type needs

The dataset itself (``data/kestrel/``) is built by ``data/kestrel/build.py``, next to its
phrasing tables; the builder imports this module, never the reverse. ``build_kestrel`` and
``python -m instructlab.kestrel [--check]`` are conveniences that load that script by path and
call it (nothing here imports it at module import time).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any, NamedTuple

from .profiles import REPO_ROOT

__all__ = ["Term", "TERMS", "EXTRA_TERMS", "COMPETITORS", "DEFAULT_TEAM", "TEAMS", "GREETING", "SIGN_OFF",
           "COMPETITOR_TEAM", "PRIVACY_TEAM", "HR_PRIVACY_CATEGORY", "SYSTEM_PROMPT", "TEMPLATES", "TASK_TYPES",
           "GUIDANCE_TABLE", "build_kestrel", "main"]


# --------------------------------------------------------------------------------------------
# The brief, as constants
# --------------------------------------------------------------------------------------------

class Term(NamedTuple):
    """One glossary row: the preferred term, its abbreviation and the terms to avoid."""

    preferred: str
    abbreviation: str
    avoid: tuple[str, ...]


# The brief's priority row ("priority 1 to priority 4 | P1..P4 | urgent, high, medium, low") is
# split in four; the avoided words are listed as priority labels ("high priority") because
# "high" alone is an ordinary word (a high risk score is fine).
TERMS: list[Term] = [
    Term("change request", "CR", ("change ticket", "change form")),
    Term("service request", "SR", ("ticket", "job")),
    Term("incident", "INC", ("outage ticket", "bug report")),
    Term("problem record", "PRB", ("recurring issue ticket",)),
    Term("Change Advisory Board", "CAB", ("change committee",)),
    Term("root cause analysis", "RCA", ("post-mortem write-up",)),
    Term("service level agreement", "SLA", ("service promise",)),
    Term("operational level agreement", "OLA", ("internal SLA",)),
    Term("mean time to resolve", "MTTR", ("average fix time",)),
    Term("maintenance window", "MW", ("downtime slot",)),
    Term("knowledge base article", "KB", ("wiki page", "help doc")),
    Term("configuration item", "CI", ("asset record",)),
    Term("configuration management database", "CMDB", ("asset list",)),
    Term("single sign-on", "SSO", ("one login",)),
    Term("multi-factor authentication", "MFA", ("two-step code",)),
    Term("business continuity plan", "BCP", ("emergency plan",)),
    Term("disaster recovery", "DR", ("backup plan",)),
    Term("recovery time objective", "RTO", ("restore target",)),
    Term("recovery point objective", "RPO", ("data-loss target",)),
    Term("Network Operations Centre", "NOC", ("network team",)),
    Term("Security Operations Centre", "SOC", ("security team",)),
    Term("end of life", "EOL", ("retired",)),
    Term("priority 1", "P1", ("urgent priority", "urgent")),
    Term("priority 2", "P2", ("high priority",)),
    Term("priority 3", "P3", ("medium priority",)),
    Term("priority 4", "P4", ("low priority",)),
    Term("emergency change", "ECR", ("rush change",)),
    Term("standard change", "STD", ("pre-approved fix",)),
]
# Not a glossary row, but the brief names it "emergency CAB (ECAB)"; responses spell it out too.
EXTRA_TERMS: list[Term] = [Term("emergency Change Advisory Board", "ECAB", ("emergency committee",))]

COMPETITORS: list[str] = ["Ardent Cloud", "Bluefin IT", "Corvid Networks", "Pelican Data"]

DEFAULT_TEAM = "Kestrel Service Desk"
TEAMS: list[str] = [
    DEFAULT_TEAM,
    "Kestrel Network Operations Centre",
    "Kestrel Security Operations Centre",
    "Kestrel Change Management",
    "Kestrel HR",
    "Kestrel Partnerships & Market Intelligence",
]
GREETING = "Dear colleague,"
SIGN_OFF = "Kind regards,"
COMPETITOR_TEAM = "Partnerships & Market Intelligence"
PRIVACY_TEAM = "HR"
HR_PRIVACY_CATEGORY = "HR-Privacy"

SYSTEM_PROMPT = (
    "You are the internal assistant of Kestrel Systems, an IT services company. "
    "You answer colleagues' requests on behalf of the company."
)

TEMPLATES: dict[str, list[str]] = {
    "incident": ["Summary", "Impact", "Current status", "Next update"],
    "change": ["Purpose", "Scope", "Risk assessment", "Maintenance window", "Rollback plan",
               "CAB decision"],
    "status": ["Summary", "Progress", "Next steps", "Contacts"],
    "knowledge": ["Reference: KB-"],
}

# The task types of the Kestrel records (``record["task_type"]``), defined once: ``build`` derives its
# teacher schema from this list (plus "lookalike", a teacher item's category).
TASK_TYPES = ["question", "summary", "analysis", "comparison", "rewrite", "template", "decline"]

# The kit's guidance (not a measured result): how many curated examples a task type needs before
# a LoRA adapter picks it up reliably ("minimum") and where more examples stop paying off
# ("optimal"), for a 0.1B-8B model. Judgement from the case study's scale (1,800 examples over
# seven task types) and the LIMA-style finding that quality beats quantity; the ablation notebook
# is where a user measures it for their own data.
GUIDANCE_TABLE: dict[str, dict[str, int | str]] = {
    "question": {"minimum": 100, "optimal": 300, "note": "varied phrasing matters more than count"},
    "summary": {"minimum": 50, "optimal": 150, "note": "cover every document at least once"},
    "rewrite": {"minimum": 75, "optimal": 200, "note": "teaches tone and terminology fastest"},
    "template": {"minimum": 40, "optimal": 80, "note": "per template; structure is learned early"},
    "analysis": {"minimum": 75, "optimal": 200, "note": "needs correct reasoning, check by hand"},
    "comparison": {"minimum": 50, "optimal": 150, "note": "internal options only"},
    "decline": {"minimum": 150, "optimal": 300, "note": "about 15% of the set, with look-alikes"},
    "lookalike": {"minimum": 75, "optimal": 150, "note": "guards against false rejections"},
}


# --------------------------------------------------------------------------------------------
# The dataset builder lives next to the data: data/kestrel/build.py
# --------------------------------------------------------------------------------------------

DATA_DIR = REPO_ROOT / "data" / "kestrel"
BUILDER = DATA_DIR / "build.py"


def load_builder() -> Any:
    """The data builder module (``data/kestrel/build.py``), loaded by path.

    Raises FileNotFoundError when the kit's ``data/`` folder is not next to the package (an
    installed wheel has no builder: clone the repository)."""
    if not BUILDER.exists():
        raise FileNotFoundError(f"{BUILDER} not found: the Kestrel data builder ships with the repository "
                                "(data/kestrel/build.py), not with the installed package")
    name = "kestrel_data_build"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, BUILDER)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


def build_kestrel(out_dir: str | Path = DATA_DIR, seed: int = 0) -> dict[str, Path]:
    """Build the case-study dataset into ``out_dir`` (see ``data/kestrel/build.py``).

    Returns {"train", "dev", "eval", "train_noisy", "stats", "card"} -> paths; deterministic for
    a given seed."""
    return load_builder().build_kestrel(out_dir, seed)


def main(argv: list[str] | None = None) -> int:
    """``python -m instructlab.kestrel [--out DIR] [--seed N] [--check]``: the builder's command line."""
    return load_builder().main(argv)


if __name__ == "__main__":
    sys.exit(main())
