"""Kestrel Systems: the case study's house rules and its deterministic instruction dataset.

The constants below transcribe the customer's brief (``shared/domain-brief.md``); the metrics,
the judge and the notebooks import them, so their names are stable:

``TERMS``           the glossary: ``Term(preferred, abbreviation, avoid)``
``COMPETITORS``     the named competitors a request must not be answered about
``TEAMS``           sign-off names of the internal teams; ``DEFAULT_TEAM`` signs by default
``SYSTEM_PROMPT``   the assistant's system prompt, identical in train and eval
``TEMPLATES``       template name -> the section names a response must contain
``GREETING`` / ``SIGN_OFF``   how every message opens and closes
``GUIDANCE_TABLE``  the kit's guidance on how many examples a task type needs

``build_kestrel(out_dir, seed)`` composes ``train.jsonl``, ``eval.jsonl`` and
``train_noisy.jsonl`` from the facts of the corpus in ``data/corpus/`` with varied, templated
phrasing. It uses one ``random.Random(seed)`` and lists only (never set or dict-hash order, never
the clock), so a rebuild is byte-identical: ``python -m instructlab.kestrel --check`` proves it.

Response formats (what the structure checks look for):
- every response opens with ``Dear colleague,`` and closes with ``Kind regards,`` then the team
  on its own line;
- an incident notice has the line ``[P<n>] INC-<7 digits>: <service> <description>`` and the
  sections as ``Summary: ...`` paragraphs; a change summary has ``CR-<5 digits>: <title>``;
- a knowledge answer ends its body with ``Reference: KB-<number>``;
- a term is spelled out with its abbreviation on first use, then the abbreviation alone.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import filecmp
import json
import random
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple


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
_TERM_BY_ABBR = {t.abbreviation: t for t in TERMS + EXTRA_TERMS}

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

TASK_TYPES = ["question", "summary", "rewrite", "template", "analysis", "comparison", "decline"]

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
# Corpus facts. Each fact lives in one document of data/corpus/ (``doc`` is its file stem).
# ``questions``: the first two phrasings are for training, the last one is held out for eval.
# ``answer`` uses term placeholders: {CR} -> "change request (CR)" on first use, then "CR";
# {CR+s} is the plural, {^CR} capitalises the spelled-out form at a sentence start.
# --------------------------------------------------------------------------------------------

class Fact(NamedTuple):
    doc: str
    kb: str | None
    questions: tuple[str, str, str]
    answer: str
    team: str = DEFAULT_TEAM


DOC_TITLES: dict[str, str] = {
    "style-guide": "Communication Style Guide",
    "glossary": "Glossary of Service Terms",
    "incident-management-policy": "Incident Management Policy",
    "change-management-policy": "Change Management Policy",
    "sla-and-priorities": "Service Levels and Priorities",
    "dr-bcp-summary": "Disaster Recovery and Business Continuity Summary",
    "data-protection-policy": "Data Protection Policy",
    "competitor-enquiry-policy": "Competitor Enquiry Policy",
    "hr-self-service-guide": "HR Self-Service Guide",
    "response-templates": "Response Templates",
    "kb-1042-password-reset-sso": "KB-1042 Password reset and single sign-on",
    "kb-2051-vpn-mfa": "KB-2051 VPN access with multi-factor authentication",
    "kb-1310-maintenance-windows": "KB-1310 Maintenance windows",
    "kb-1187-phishing-reporting": "KB-1187 Reporting phishing e-mails",
    "kb-1520-problem-records-rca": "KB-1520 Problem records and root cause analysis",
    "kb-3004-cmdb-configuration-items": "KB-3004 Configuration items and the configuration management database",
}
CM, NOC, SOC, HR = TEAMS[3], TEAMS[1], TEAMS[2], TEAMS[4]

FACTS: list[Fact] = [
    # style guide
    Fact("style-guide", None, ("How should an internal message open and close?",
         "What greeting and sign-off do we use in messages?",
         "Which opening words and closing words does the house style prescribe?"),
         'Messages open with "Dear colleague," or "Dear <name>," and close with "Kind regards," '
         "followed by the team name on its own line. Where no other team applies, we sign as "
         "Kestrel Service Desk."),
    Fact("style-guide", None, ("How do we write dates and times?",
         "What date and time format does the style guide require?",
         "Tell me the correct notation for a date and a clock time in our messages."),
         "We write dates as YYYY-MM-DD, for example 2026-03-14, and times in UTC on the 24-hour "
         "clock, for example 14:00 UTC. We do not use local time zones or a.m. and p.m."),
    Fact("style-guide", None, ("How should abbreviations be introduced in a message?",
         "When may I use an abbreviation such as CR on its own?",
         "Is it fine to write SLA without explaining it first?"),
         'We spell a term out with its abbreviation in brackets on first use, for example "change '
         'request (CR)", and use the abbreviation alone afterwards. Identifiers keep their fixed '
         "forms, such as CR-12345 and INC-1234567."),
    Fact("style-guide", None, ("What tone should our messages have?",
         "Are exclamation marks or emoji allowed in company messages?",
         "Which words and symbols does our writing standard rule out?"),
         'Our messages are formal and institutional, and "we" speaks for the company. We do not '
         "use slang, emoji, exclamation marks or filler phrases, and we keep paragraphs short."),
    Fact("style-guide", None, ("When should an answer cite a knowledge base article?",
         "Do I need to reference the KB in my replies?",
         "In what way do we point colleagues towards the relevant article?"),
         'When a {KB} applies, we cite it by its identifier, for example "see KB-1042". Knowledge '
         'answers end with a line such as "Reference: KB-1042".'),
    # glossary
    Fact("glossary", "KB-3004", ("What is a configuration item?",
         "What does CI mean at Kestrel?",
         "Define the word configuration item as we use it internally."),
         "A {CI} is any component we manage to deliver a service, such as a server, a network "
         "device or an application. Every {CI} is recorded in the {CMDB} with its owner and its "
         "relationships."),
    Fact("glossary", None, ("What does MTTR measure?",
         "How is mean time to resolve calculated?",
         "Explain the MTTR figure in our service reviews."),
         "{^MTTR} is the average time from logging an incident to its resolution, measured over a "
         "calendar month. We report it per priority in the monthly service review."),
    Fact("glossary", None, ("What is an operational level agreement?",
         "What does OLA stand for and what does it cover?",
         "Describe what an OLA is for."),
         "An {OLA} is an agreement between two internal teams, such as the Service Desk and the "
         "{NOC}, that supports a customer {SLA}. It sets the internal response and handover "
         "times that let us meet the {SLA}."),
    Fact("glossary", None, ("What does end of life mean for a system?",
         "What happens when a product reaches EOL?",
         "How are systems past their vendor support date treated?"),
         "A system reaches {EOL} when the vendor no longer provides fixes or security updates. "
         "We record the {EOL} date against the {CI} in the {CMDB} and plan the replacement "
         "through a {CR} at least six months before that date."),
    Fact("glossary", None, ("What format do incident and change identifiers use?",
         "How are CR, SR and INC numbers written?",
         "Show me the fixed shape of each record number we use."),
         "Identifiers have fixed forms: CR-12345 for a {CR}, SR-123456 for a {SR}, INC-1234567 "
         "for an incident, PRB-1234 for a {PRB} and KB-1042 for a {KB}."),
    Fact("glossary", None, ("What is a service request?",
         "When do I raise a service request?",
         "Which kinds of need count as a service request?"),
         "A {SR} is a request for something new or standard, such as access, equipment or "
         "information, where nothing is broken. Colleagues raise it in the self-service portal, "
         "and it receives a number in the form SR-123456."),
    # incident management
    Fact("incident-management-policy", None, ("How do I report an incident?",
         "What is the first step when a service stops working?",
         "Where should colleagues log a service interruption?"),
         "Report the incident to the Service Desk through the portal or by telephone on extension "
         "4000. The Service Desk logs it with a number in the form INC-1234567, sets the priority "
         "and assigns a resolver group."),
    Fact("incident-management-policy", None, ("What is a major incident?",
         "When is a major incident declared?",
         "Who is responsible for declaring a major incident, and what follows?"),
         "Every {P1} incident is treated as a major incident. The duty incident manager declares "
         "it, opens a bridge call within 15 minutes and sends updates at least every 30 minutes "
         "until the service is restored.", NOC),
    Fact("incident-management-policy", None, ("How often must we send updates for an open incident?",
         "What is the update interval for incident notices?",
         "At what rhythm do customers hear from us during an incident?"),
         "We send updates every 30 minutes for {P1}, every 60 minutes for {P2} and once per "
         "business day for {P3} and {P4} incidents. Each update uses the incident notice "
         "template and states the time of the next update."),
    Fact("incident-management-policy", "KB-1520", ("When is a root cause analysis required?",
         "Which incidents need an RCA?",
         "Does every incident call for a root cause analysis?"),
         "A {RCA} is required for every {P1} incident and for any {P2} incident that recurs within "
         "30 days. The {RCA} is recorded in a {PRB} and is due within 5 business days of "
         "resolution."),
    Fact("incident-management-policy", None, ("What do I do if an incident looks like a security breach?",
         "When should an incident go to the SOC?",
         "How do we deal with an incident that might be a cyber attack?"),
         "Suspected security incidents go to the {SOC} immediately, whatever their priority. Do "
         "not switch off affected systems; the {SOC} decides on containment and evidence "
         "handling.", SOC),
    Fact("incident-management-policy", None, ("When can an incident be closed?",
         "Who confirms that an incident is resolved?",
         "What has to happen before an incident record is closed?"),
         "An incident is closed when the service is restored and the reporter confirms it, or "
         "after 3 business days without a reply. The resolver records the cause and the fix and "
         "links any related {PRB}."),
    # change management
    Fact("change-management-policy", None, ("What types of change do we have?",
         "Which change categories does the policy define?",
         "Into which classes do we sort changes?"),
         "We have three types. A {STD} is low risk and follows a documented procedure approved in "
         "advance; a normal change is assessed by the {CAB}; an {ECR} restores or protects a "
         "service and is approved by the {ECAB}.", CM),
    Fact("change-management-policy", None, ("When does the CAB meet?",
         "What is the deadline for submitting a change to CAB?",
         "By which day must a normal change be in to make the weekly review?"),
         "The {CAB} meets every Tuesday at 10:00 UTC. A normal {CR} must be submitted by 17:00 UTC "
         "on the preceding Thursday to be reviewed that week.", CM),
    Fact("change-management-policy", None, ("Who approves an emergency change?",
         "How is the ECAB convened?",
         "What sign-off does an emergency change require?"),
         "An {ECR} needs approval by the {ECAB}: the duty change manager, the service owner and a "
         "senior engineer from the affected team. The duty change manager convenes it by "
         "telephone within 1 hour, and the {CAB} reviews the change at its next meeting.", CM),
    Fact("change-management-policy", None, ("Does every change need a rollback plan?",
         "What must a rollback plan contain?",
         "Is a back-out procedure compulsory for every change?"),
         "Every {CR} must include a tested rollback plan with the steps, the time it needs and "
         "the decision point for invoking it. A {CR} without a rollback plan is returned to the "
         "requester.", CM),
    Fact("change-management-policy", "KB-1310", ("When may changes be implemented?",
         "Can a normal change run outside the maintenance window?",
         "At what hours is change work on customer services permitted?"),
         "Normal changes that affect customer services run in the standard {MW}, Saturday 22:00 "
         "to Sunday 04:00 UTC. Work outside the {MW} needs explicit approval from the {CAB}.", CM),
    Fact("change-management-policy", None, ("Is there a change freeze at year end?",
         "When is the annual change freeze?",
         "Which dates does this winter's freeze cover?"),
         "A change freeze applies from 2026-12-18 to 2027-01-04. During the freeze we implement "
         "only {ECR+s} approved by the {ECAB}.", CM),
    Fact("change-management-policy", None, ("How is the risk of a change assessed?",
         "What does the risk assessment in a CR include?",
         "Walk me through how change risk gets scored."),
         "The requester rates impact and likelihood from 1 to 3 each, and their product is the "
         "risk score. A score of 6 or more, or any change to a {CI} marked critical in the "
         "{CMDB}, is high risk and needs a senior reviewer before the {CAB}.", CM),
    # service levels and priorities
    Fact("sla-and-priorities", None, ("What is a P1 incident?",
         "What are the response and resolution targets for priority 1?",
         "How fast do we have to react to a P1, and fix it?"),
         "{^P1} is a complete loss of a business-critical service. The response target is 15 "
         "minutes and the resolution target is 4 hours, around the clock."),
    Fact("sla-and-priorities", None, ("What counts as a P2 incident?",
         "What are the targets for a priority 2 incident?",
         "Which response time and fix time belong to P2?"),
         "{^P2} is a major degradation of a service. The response target is 30 minutes and the "
         "resolution target is 8 hours, around the clock."),
    Fact("sla-and-priorities", None, ("What is a P3 incident?",
         "What response and resolution times apply to priority 3?",
         "Give me the P3 definition together with its targets."),
         "{^P3} is an incident with minor impact. The response target is 4 business hours and "
         "the resolution target is 3 business days."),
    Fact("sla-and-priorities", None, ("What is a P4?",
         "How long do we have to resolve a priority 4 item?",
         "Which targets belong to the lowest priority level?"),
         "{^P4} covers a request or a cosmetic issue. The response target is 1 business day and "
         "the resolution target is 10 business days."),
    Fact("sla-and-priorities", None, ("What are business hours for SLA purposes?",
         "How are business hours defined in the SLA?",
         "Do P3 targets count weekends?"),
         "Business hours are 08:00 to 18:00 UTC, Monday to Friday, excluding the public holidays "
         "in the customer contract. {^P3} and {P4} targets count business hours only; {P1} and "
         "{P2} targets run around the clock."),
    Fact("sla-and-priorities", None, ("How do we report SLA performance?",
         "When is the monthly SLA report published?",
         "Who gets to see how we performed against the service levels each month?"),
         "We publish the {SLA} report by the fifth business day of each month. It shows response "
         "and resolution performance and {MTTR} per priority, and service owners review it with "
         "their customers."),
    Fact("sla-and-priorities", None, ("Does the SLA clock stop while we wait for the customer?",
         "When is the resolution clock paused?",
         "Can the timer on an incident be put on hold?"),
         "The resolution clock pauses only while an incident has the status Awaiting customer, "
         "and the pause is recorded with its reason. The response clock never pauses."),
    # DR and BCP
    Fact("dr-bcp-summary", None, ("What are the RTO and RPO for tier 1 services?",
         "How fast must a tier 1 service be restored after a disaster?",
         "Which recovery objectives cover our most critical services?"),
         "Tier 1 services have a {RTO} of 4 hours and a {RPO} of 15 minutes. They run in both data "
         "centres, Leeds and Frankfurt, with replicated storage.", NOC),
    Fact("dr-bcp-summary", None, ("What are the recovery objectives for tier 2 services?",
         "How much data can a tier 2 service lose in a disaster?",
         "For a tier 2 system, what restore time and data loss are accepted?"),
         "Tier 2 services have a {RTO} of 24 hours and a {RPO} of 4 hours. They are restored from "
         "replicas in the secondary data centre.", NOC),
    Fact("dr-bcp-summary", None, ("What RTO applies to tier 3 services?",
         "How are tier 3 services recovered?",
         "What does recovery look like for the least critical tier?"),
         "Tier 3 services have a {RTO} of 72 hours and a {RPO} of 24 hours. They are restored "
         "from the nightly backups.", NOC),
    Fact("dr-bcp-summary", None, ("How often do we test disaster recovery?",
         "When are DR tests carried out?",
         "What is the schedule for failover exercises?"),
         "We test {DR} failover for every tier 1 service twice a year and for tier 2 services once "
         "a year. Tests run in the {MW}, and the results go to the service owner within 10 "
         "business days.", NOC),
    Fact("dr-bcp-summary", None, ("Who can invoke the business continuity plan?",
         "How is the BCP activated?",
         "What triggers continuity arrangements and who decides?"),
         "The crisis management team, led by the duty director, invokes the {BCP}. Staff then "
         "follow the site instructions in the {BCP}, and the Service Desk operates from the "
         "alternate office in Manchester."),
    Fact("dr-bcp-summary", None, ("How often is the BCP reviewed?",
         "When was the business continuity plan last updated?",
         "What review cycle does our continuity plan follow?"),
         "We review the {BCP} every year and after every invocation. The last review was "
         "completed on 2026-06-30, and the next is due by 2027-06-30."),
    # response templates
    Fact("response-templates", None, ("What sections does an incident notice have?",
         "How is an incident notice structured?",
         "Lay out the parts of our standard outage notification."),
         "An incident notice starts with the subject line [P<n>] INC-<number>: <service> <short "
         "description>, followed by the sections Summary, Impact, Current status and Next "
         "update."),
    Fact("response-templates", None, ("What does a change request summary contain?",
         "Which sections go into a CR summary?",
         "Describe the layout of a change summary for the board."),
         "A {CR} summary starts with the subject line CR-<number>: <title>, followed by the "
         "sections Purpose, Scope, Risk assessment, Maintenance window, Rollback plan and CAB "
         "decision.", CM),
    Fact("response-templates", None, ("How do I structure a status update?",
         "What are the sections of a status update?",
         "Which headings belong in a progress report to stakeholders?"),
         "A status update has four sections: Summary, Progress, Next steps and Contacts. We keep "
         "each section to one short paragraph."),
    Fact("response-templates", None, ("What is the format of a knowledge answer?",
         "How should a knowledge answer end?",
         "What shape does an answer based on an article take?"),
         'A knowledge answer gives the answer in one or two short paragraphs and then the line '
         '"Reference: KB-<number>" naming the {KB} it relies on.'),
    # KB-1042
    Fact("kb-1042-password-reset-sso", "KB-1042", ("How do I reset my password?",
         "What is the process for a forgotten SSO password?",
         "I cannot remember my sign-in password; how do I set a new one?"),
         "Go to https://id.kestrel.example, choose Forgot password and confirm the code sent to "
         "your registered {MFA} method. The new password applies to all {SSO} applications "
         "within 5 minutes."),
    Fact("kb-1042-password-reset-sso", "KB-1042", ("What are the password requirements?",
         "How long does my password need to be?",
         "Which rules must a new password satisfy?"),
         "Passwords must have at least 14 characters and must not repeat any of the last 10 "
         "passwords. We do not require periodic changes unless a compromise is suspected."),
    Fact("kb-1042-password-reset-sso", "KB-1042", ("My account is locked; what should I do?",
         "How long does an SSO lockout last?",
         "After too many wrong passwords I am shut out, so what now?"),
         "An {SSO} account locks for 15 minutes after 5 failed attempts. If it is still locked "
         "after that, raise a {SR} or call the Service Desk on extension 4000, and we unlock it "
         "after verifying your identity."),
    # KB-2051
    Fact("kb-2051-vpn-mfa", "KB-2051", ("How do I connect to the VPN?",
         "What are the steps to sign in to the VPN?",
         "Explain how remote staff get onto the corporate network."),
         "Open the Kestrel Connect client, select the profile Kestrel-Corp and sign in with your "
         "{SSO} credentials. Approve the {MFA} prompt in the Kestrel Authenticator app within "
         "60 seconds."),
    Fact("kb-2051-vpn-mfa", "KB-2051", ("I have a new phone; how do I move my MFA?",
         "How do I re-register the authenticator app on a new device?",
         "My handset was replaced, so how does my verification app get set up again?"),
         "Raise a {SR} with the category Access-MFA before you reset your old phone. The Service "
         "Desk sends a one-time enrolment code that is valid for 24 hours."),
    Fact("kb-2051-vpn-mfa", "KB-2051", ("Why does my VPN connection drop?",
         "How long does a VPN session last?",
         "The remote connection keeps ending on its own, is that expected?"),
         "VPN sessions end after 12 hours and must be started again. If the connection drops "
         "more often, export the client log under Help, Export logs, and report an incident with "
         "the log attached.", NOC),
    Fact("kb-2051-vpn-mfa", "KB-2051", ("Can I use a hardware token instead of the app?",
         "Is there an alternative to the authenticator app for MFA?",
         "What if I cannot use a mobile phone for verification at work?"),
         "Yes. We issue hardware tokens to colleagues who cannot use a mobile phone at work. "
         "Request one through a {SR} in the category Access-MFA; tokens are sent within 3 "
         "business days."),
    # KB-1310
    Fact("kb-1310-maintenance-windows", "KB-1310", ("When is the standard maintenance window?",
         "What are the hours of the weekly maintenance window?",
         "On which night does our regular planned work happen?"),
         "The standard {MW} runs from Saturday 22:00 to Sunday 04:00 UTC. Customer services may "
         "be unavailable during this time once customers have been notified.", CM),
    Fact("kb-1310-maintenance-windows", "KB-1310", ("How much notice must customers get before maintenance?",
         "When do we notify customers of planned work?",
         "How far in advance are clients told about scheduled work?"),
         "Customers receive notice at least 5 business days before work in the standard {MW} and "
         "at least 10 business days before an extended {MW}.", CM),
    Fact("kb-1310-maintenance-windows", "KB-1310", ("What if the work needs more than six hours?",
         "What is an extended maintenance window?",
         "Can planned work go beyond the usual Sunday morning finish?"),
         "An extended {MW} runs from Saturday 22:00 to Sunday 10:00 UTC. It needs approval from "
         "the {CAB} and is limited to four per year for each customer service.", CM),
    Fact("kb-1310-maintenance-windows", "KB-1310", ("What happens if a change overruns the window?",
         "What should an implementer do when work will not finish in time?",
         "Is there a cut-off time for invoking the rollback during planned work?"),
         "If the work will not finish by 03:30 UTC, the implementer invokes the rollback plan "
         "unless the change manager approves a short extension. An overrun beyond 04:00 UTC is "
         "logged as an incident.", CM),
    # KB-1187
    Fact("kb-1187-phishing-reporting", "KB-1187", ("How do I report a phishing e-mail?",
         "What should I do with a suspicious e-mail?",
         "Someone sent me a dodgy message asking for my login; where does it go?"),
         "Use the Report Phishing button in Outlook, or forward the message as an attachment to "
         "phishing@kestrel.example. Do not click links or reply. The {SOC} reviews every report "
         "within 4 hours.", SOC),
    Fact("kb-1187-phishing-reporting", "KB-1187", ("What should I do if I clicked a link in a phishing e-mail?",
         "I entered my password on a fake page; what now?",
         "What steps follow after falling for a fraudulent e-mail?"),
         "Call the Service Desk on extension 4000 immediately and reset your password as "
         "described in KB-1042. The {SOC} then checks your device and your account activity.",
         SOC),
    Fact("kb-1187-phishing-reporting", "KB-1187", ("How can I recognise a phishing e-mail?",
         "What are the signs of a phishing message?",
         "Which clues suggest that an e-mail is not genuine?"),
         "Typical signs are an unexpected request for credentials or payment, a sender address "
         "outside kestrel.example, pressure to act quickly and links that do not match the "
         "displayed text.", SOC),
    # KB-1520
    Fact("kb-1520-problem-records-rca", "KB-1520", ("When do we raise a problem record?",
         "What triggers a PRB?",
         "In which situations must somebody open a problem record?"),
         "We raise a {PRB} when an incident recurs three times in 30 days, after every {P1} "
         "incident, or when the cause of an incident is unknown. Problem records have numbers in "
         "the form PRB-1234."),
    Fact("kb-1520-problem-records-rca", "KB-1520", ("What must a root cause analysis contain?",
         "What goes into an RCA document?",
         "List what a finished root cause analysis has to include."),
         "A {RCA} contains the timeline in UTC, the root cause, the contributing factors, the "
         "actions taken and the preventive actions with owners and due dates."),
    Fact("kb-1520-problem-records-rca", "KB-1520", ("What is a known error?",
         "How do we handle a problem with a known workaround?",
         "Explain the known-error status of a problem record."),
         "A known error is a {PRB} whose root cause and workaround are documented. We publish the "
         "workaround as a {KB} so that the Service Desk can resolve matching incidents faster."),
    # KB-3004
    Fact("kb-3004-cmdb-configuration-items", "KB-3004", ("Who updates the CMDB?",
         "When must the CMDB be updated?",
         "Whose duty is it to keep configuration records current?"),
         "The owner of a {CI} updates the {CMDB} as part of every {CR}; the {CR} is not closed "
         "until the record is updated. Change Management audits a sample of 50 records each "
         "month.", CM),
    Fact("kb-3004-cmdb-configuration-items", "KB-3004", ("What information does a CI hold?",
         "Which fields does a configuration item have?",
         "What details are stored for each component in the configuration database?"),
         "Each {CI} records its name, type, owner team, service, location, support contract and "
         "{EOL} date, together with its relationships to other {CI+s}."),
]


class Lookalike(NamedTuple):
    """A legitimate request that mentions employees, personal data or competitors (answer it)."""

    doc: str
    kb: str | None
    train: tuple[str, ...]
    eval: tuple[str, ...]
    answer: str
    team: str = DEFAULT_TEAM


LOOKALIKES: list[Lookalike] = [
    Lookalike("data-protection-policy", None, (
        "What does our data-protection policy say about employee personal data?",
        "Can you summarise how Kestrel protects the personal data it holds?",
        "Who owns the company's data-protection policy?",
        "How long do we keep personal data about employees and customers?",
        "What are the main rules of our own data protection policy?"), (
        "Outline the principles our privacy policy applies to staff records.",
        "Which retention rule governs personal information we store?",
        "Give me the gist of Kestrel's internal privacy rules."),
        "Our data-protection policy says we collect personal data of employees and customers only "
        "for a defined purpose, keep it no longer than the retention schedule allows and restrict "
        "access to those who need it. The Data Protection Officer owns the policy and reviews it "
        "every year."),
    Lookalike("hr-self-service-guide", None, (
        "How do I update my own home address in the HR system?",
        "Where can employees change their own phone number and emergency contact?",
        "I moved house; how do I change my address on my employee record?",
        "How can staff correct their own personal details?",
        "Where do I update my bank details for payroll?"), (
        "My surname changed after marriage, so where do I amend my own record?",
        "Which page lets me edit my personal contact information myself?",
        "Can I fix a typo in my own employee profile without HR?"),
        "You can update your own address, telephone number and emergency contact in the HR "
        "portal under Personal details. Changes take effect on the next business day, and changes to "
        "bank details must be confirmed with {MFA}.", HR),
    Lookalike("hr-self-service-guide", None, (
        "How many days of annual leave does the policy give employees?",
        "How much holiday are we entitled to per year?",
        "Can I carry over unused leave days to next year?",
        "What is the annual leave allowance at Kestrel?",
        "How many leave days does a full-time employee get?"), (
        "What's the standard vacation entitlement for staff here?",
        "Tell me how many paid days off a year a colleague receives.",
        "Are untaken holidays lost at the end of December?"),
        "The leave policy grants 25 days of annual leave per calendar year, plus public "
        "holidays. Up to 5 unused days can be carried over and must be taken by the end of March "
        "of the following year. Part-time colleagues receive a pro-rata allowance.", HR),
    Lookalike("data-protection-policy", None, (
        "What does GDPR require in general?",
        "Can you explain the main GDPR principles?",
        "In general terms, what are our obligations under GDPR?",
        "What rights do individuals have under the GDPR?",
        "How quickly must a personal data breach be reported under GDPR?"), (
        "Briefly, what is the General Data Protection Regulation about?",
        "Which duties does European privacy law place on companies like ours?",
        "What must organisations do with personal information according to the regulation?"),
        "In general terms, the GDPR requires a lawful basis for processing personal data, "
        "collecting only what is needed, keeping it secure and respecting rights such as access "
        "and erasure. A breach that puts individuals at risk must be reported to the supervisory "
        "authority within 72 hours. Our data-protection policy applies these principles."),
    Lookalike("kb-1187-phishing-reporting", "KB-1187", (
        "How do I report a phishing e-mail that pretends to come from Ardent Cloud?",
        "I got an e-mail claiming to be from Bluefin IT asking for my password; what do I do?",
        "A message impersonating Corvid Networks asks me to log in; how do I report it?",
        "Someone sent a fake invoice that looks like it is from Pelican Data; where do I report it?",
        "What should I do with a suspicious e-mail using a competitor's logo?"), (
        "There's a mail pretending to be a rival provider wanting my credentials, who handles it?",
        "Spoofed message branded as Pelican Data in my inbox, what is the procedure?",
        "An invoice supposedly from Ardent Cloud looks fake, so what happens next?"),
        "Treat it as phishing, whichever company it claims to come from. Use the Report Phishing "
        "button in Outlook or forward the message as an attachment to phishing@kestrel.example, "
        "and do not click links or reply. The {SOC} reviews every report within 4 hours.", SOC),
    Lookalike("competitor-enquiry-policy", None, (
        "Who owns competitor enquiries internally?",
        "Which team handles questions about competitors?",
        "Where should I send a request that asks about a competitor?",
        "What does the competitor-enquiry policy cover?",
        "A customer asked how we compare with a competitor; who should answer that?"), (
        "Which department is responsible for market and rival intelligence?",
        "If someone wants information on another provider, who do I pass it to?",
        "Summarise the scope of the rules on enquiries about rival firms."),
        "Partnerships & Market Intelligence owns every enquiry about competitors, including "
        "comparisons, pricing, opinions and questions about their staff, customers or systems. "
        "Forward such requests to that team through the portal; other teams do not answer them."),
    Lookalike("competitor-enquiry-policy", None, (
        "How do we handle a customer who is moving to another provider?",
        "What is our process when a customer joins us from another provider?",
        "In general, how do we manage a customer's exit to a different supplier?",
        "What happens to a customer's data when they leave for another provider?",
        "How do we onboard a customer transferring from another IT services company?"), (
        "Describe the transition steps when a client switches away from Kestrel.",
        "Which procedure applies when a new client migrates to us from elsewhere?",
        "What does a service handover look like when an account changes supplier?"),
        "We follow the service transition procedure: a named transition manager, an agreed exit "
        "or onboarding plan and a secure handover of data and documentation within the dates in "
        "the contract. We do not comment on the other provider's services; commercial questions "
        "go to the account manager."),
    Lookalike("hr-self-service-guide", None, (
        "How do I request a copy of my own personal data?",
        "How can an employee make a subject access request?",
        "Where do I ask HR for the data the company holds about me?",
        "What is the process for a subject access request by a member of staff?",
        "How long does HR take to answer a request for my own records?"), (
        "I would like to see everything Kestrel stores about me, so how?",
        "What route does a worker use to obtain their own file?",
        "Can staff get a copy of their own HR records, and how quickly?"),
        "Raise a {SR} in the HR portal with the category HR-Privacy and ask for a subject access "
        "request. We respond within one calendar month.", HR),
    Lookalike("data-protection-policy", None, (
        "What should I do if I sent a customer's personal data to the wrong person?",
        "How do I report a personal data breach?",
        "Who do I tell if a laptop with employee data is lost?",
        "What is the internal process for a suspected data leak?",
        "How quickly must staff report a lost USB stick with personal data?"), (
        "An e-mail with a spreadsheet of staff names went to an outside address, what now?",
        "Where does a possible exposure of customer information get reported?",
        "Personal details may have leaked from a shared folder; who acts on it?"),
        "Report it to the {SOC} within 1 hour through the portal category Data Breach, and do "
        "not try to recall or delete the data yourself. The Data Protection Officer decides "
        "whether the supervisory authority must be informed.", SOC),
    Lookalike("hr-self-service-guide", None, (
        "What happens to an employee's accounts when they leave the company?",
        "How is access removed for a leaver?",
        "Can a manager get access to a leaver's mailbox?",
        "When is a departing employee's SSO account disabled?",
        "What is the leaver process for IT access?"), (
        "A member of my team is leaving on Friday; how is their access shut down?",
        "Tell me how we revoke system access for staff who resign.",
        "Who can read the mailbox of someone who has left?"),
        "HR records the leaving date, and the Service Desk disables the {SSO} account at 18:00 "
        "UTC on the last working day. The line manager can request access to the mailbox through "
        "a {SR} for 30 days."),
    Lookalike("hr-self-service-guide", None, (
        "How do I report my own sickness absence?",
        "What is the procedure when I am ill and cannot work?",
        "Do I need to tell HR why I am off sick?",
        "When do employees need a fit note for sick leave?",
        "Who do I inform if I am sick in the morning?"), (
        "I woke up unwell today, so what are the steps for calling in sick?",
        "Is a medical certificate needed if my illness lasts more than a week?",
        "Where should staff record their own absence due to illness?"),
        "Tell your line manager before 10:00 UTC on the first day and record the absence in the "
        "HR portal. You do not need to give medical details in the portal; a fit note is needed "
        "after 7 calendar days.", HR),
    Lookalike("incident-management-policy", None, (
        "How should an incident notice refer to a third-party supplier that caused the outage?",
        "Can we name the supplier responsible in a customer incident notice?",
        "If another provider's fault hit our service, what do we say to customers?",
        "How do we describe an upstream provider failure in an incident update?",
        "Should the incident notice mention which vendor broke the service?"), (
        "Our carrier's fault took down a customer link, how is that worded externally?",
        "Is naming the external party at fault allowed in customer communications?",
        "What wording covers a disruption that originated with a partner company?"),
        "Describe the affected service and the impact, not the supplier. If a third party caused "
        "the incident, the notice says \"a third-party provider\", and the account manager "
        "informs the customer of details directly.", NOC),
    Lookalike("hr-self-service-guide", None, (
        "How many employees does Kestrel Systems have?",
        "Which internal teams does Kestrel have?",
        "How do I find a colleague's work phone number?",
        "Where is the staff directory for work contact details?",
        "How do I find out which team a colleague works in?"), (
        "Where can I look up someone's office extension?",
        "What is the size of the company and how is it organised?",
        "Which tool shows business contact details of my coworkers?"),
        "Kestrel Systems has about 2,000 employees in teams that include the Service Desk, the "
        "{NOC}, the {SOC}, Change Management, HR and Partnerships & Market Intelligence. Work "
        "contact details, such as extensions and team names, are in the staff directory on the "
        "intranet; personal contact details are not published."),
]


class Comparison(NamedTuple):
    a: str
    b: str
    answer: str
    doc: str
    team: str = DEFAULT_TEAM


COMPARISONS: list[Comparison] = [
    Comparison("a standard change", "a normal change",
               "A {STD} is low risk, follows a documented procedure approved in advance and needs "
               "no {CAB} review for each occurrence. A normal change is assessed individually: it "
               "is submitted by Thursday 17:00 UTC and reviewed by the {CAB} on Tuesday. Use a "
               "{STD} only when the procedure matches the work exactly.",
               "change-management-policy", CM),
    Comparison("a normal change", "an emergency change",
               "A normal change is planned, reviewed by the {CAB} at its weekly meeting and "
               "implemented in the {MW}. An {ECR} restores or protects a service that cannot wait "
               "for the next meeting; the {ECAB} approves it within 1 hour, and the {CAB} reviews "
               "it afterwards.", "change-management-policy", CM),
    Comparison("the CAB", "the ECAB",
               "The {CAB} meets every Tuesday at 10:00 UTC and reviews normal changes. The {ECAB} "
               "is convened by telephone within 1 hour for {ECR+s} only and consists of the duty "
               "change manager, the service owner and a senior engineer.",
               "change-management-policy", CM),
    Comparison("a P1", "a P2",
               "{^P1} is a complete loss of a business-critical service, with a response target "
               "of 15 minutes and a resolution target of 4 hours. {^P2} is a major degradation, "
               "with targets of 30 minutes and 8 hours. Both run around the clock, and every {P1} "
               "is handled as a major incident.", "sla-and-priorities"),
    Comparison("a P3", "a P4",
               "{^P3} is an incident with minor impact: response within 4 business hours and "
               "resolution within 3 business days. {^P4} is a request or a cosmetic issue: "
               "response within 1 business day and resolution within 10 business days.",
               "sla-and-priorities"),
    Comparison("a service request", "an incident",
               "A {SR} asks for something new or standard, such as access or equipment, when "
               "nothing is broken; it is numbered SR-123456. An incident is an unplanned "
               "interruption or degradation of a service; it is numbered INC-1234567 and is "
               "measured against the priority targets.", "glossary"),
    Comparison("an incident", "a problem record",
               "An incident records one interruption and aims to restore the service quickly. A "
               "{PRB} looks for the underlying cause of one or more incidents and records the "
               "{RCA} and the preventive actions (see KB-1520).", "kb-1520-problem-records-rca"),
    Comparison("RTO", "RPO",
               "The {RTO} is how long a service may take to be restored after a disaster; the "
               "{RPO} is how much data, measured in time, may be lost. For tier 1 services the "
               "{RTO} is 4 hours and the {RPO} is 15 minutes.", "dr-bcp-summary", NOC),
    Comparison("an SLA", "an OLA",
               "A {SLA} is our commitment to a customer, with response and resolution targets per "
               "priority. An {OLA} is an agreement between internal teams, such as the Service "
               "Desk and the {NOC}, that sets the handover times needed to meet the {SLA}.",
               "glossary"),
    Comparison("the authenticator app", "a hardware token",
               "Both satisfy {MFA} for the VPN and {SSO}. The Kestrel Authenticator app is the "
               "default and is set up on your phone; a hardware token is issued through a {SR} in "
               "the category Access-MFA to colleagues who cannot use a phone at work (see "
               "KB-2051).", "kb-2051-vpn-mfa"),
    Comparison("the standard maintenance window", "an extended maintenance window",
               "The standard {MW} runs from Saturday 22:00 to Sunday 04:00 UTC and needs 5 "
               "business days' notice. An extended {MW} runs until Sunday 10:00 UTC, needs {CAB} "
               "approval and 10 business days' notice, and is limited to four per year per "
               "service (see KB-1310).", "kb-1310-maintenance-windows", CM),
    Comparison("tier 1", "tier 2 recovery",
               "Tier 1 services run in both data centres, with a {RTO} of 4 hours and a {RPO} of "
               "15 minutes, and are tested twice a year. Tier 2 services are restored from "
               "replicas in the secondary data centre, with a {RTO} of 24 hours and a {RPO} of 4 "
               "hours, and are tested once a year.", "dr-bcp-summary", NOC),
    Comparison("a known error", "an open problem record",
               "Both are {PRB+s}. An open {PRB} is still under investigation; a known error has a "
               "documented root cause and workaround, which we publish as a {KB} so the Service "
               "Desk can resolve matching incidents (see KB-1520).",
               "kb-1520-problem-records-rca"),
]

# Slot values for generated scenarios (fictional).
SERVICES = [
    ("E-mail", "the e-mail service"), ("Payroll portal", "the payroll portal"),
    ("Customer billing", "the customer billing platform"), ("HR portal", "the HR portal"),
    ("VPN gateway", "the VPN gateway"), ("File storage", "the file storage service"),
    ("Service portal", "the self-service portal"), ("CRM", "the CRM application"),
    ("Leeds network", "the Leeds data centre network"), ("Hosted desktops", "the hosted desktops"),
    ("Backup service", "the backup service"), ("Telephony", "the telephony platform"),
    ("Monitoring", "the monitoring platform"), ("Web hosting", "the customer web hosting"),
]
EMPLOYEES = [
    "Maria Jensen", "Tom Okafor", "Priya Raman", "Lukas Weber", "Sophie Martin", "Daniel Kowalski",
    "Aisha Bello", "Jonas Lind", "Elena Rossi", "Marcus Grant", "Hannah Schultz", "Omar Haddad",
    "Claire Dubois", "Viktor Novak", "Grace Mensah", "Peter Holm", "Nadia Petrova", "Sam Carter",
]
CHANGE_TITLES = [
    ("Firewall firmware upgrade", "upgrade the firmware on the Leeds core firewalls",
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
     "the core switching layer in Leeds"),
]


# --------------------------------------------------------------------------------------------
# Rendering: term placeholders, messages, small helpers
# --------------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{(\^?)([A-Z][A-Z0-9]*)(\+s)?\}")
_VOWEL_SOUND_ABBR = ("SR|SLA|RCA|MW|MFA|RTO|RPO|SSO|SOC|NOC|ECR|EOL|OLA|MTTR|ECAB|STD|"
                     "ECRs|SRs|RCAs|SLAs|OLAs|MWs")
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
    glossary = {t.abbreviation: t.preferred for t in TERMS}
    out: list[str] = []
    for m in _PLACEHOLDER.finditer(text):
        pref = glossary.get(m.group(2))
        if pref and pref not in out:
            out.append(pref)
    return out


def message(paragraphs: list[str], team: str = DEFAULT_TEAM, greeting: str = GREETING) -> str:
    """A house-style message: greeting, short paragraphs, "Kind regards," and the team."""
    body = "\n\n".join(p for p in paragraphs if p)
    return render_terms(f"{greeting}\n\n{body}\n\n{SIGN_OFF}\n{team}")


def first_sentence(text: str) -> str:
    return re.split(r"(?<=[.])\s+(?=[A-Z{])", text, maxsplit=1)[0]


def _lower_first(text: str) -> str:
    return text[0].lower() + text[1:] if len(text) > 1 and text[1].islower() else text


def _wrap(rng: random.Random, q: str, prefixes: list[str], suffixes: list[str]) -> str:
    """Surface variety: a random lead-in and closing remark around a question."""
    pre, suf = rng.choice(prefixes), rng.choice(suffixes)
    if pre.endswith(", ") or pre.endswith(": ") or pre.endswith("- "):
        q = _lower_first(q)
    if not suf and rng.random() < 0.1 and q.endswith("?"):
        q = q[:-1]
    return f"{pre}{q}{suf}"


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


@dataclass
class Example:
    """One generated item before it becomes a JSONL line."""

    task_type: str
    doc: str
    user: str
    raw: str                     # the response with term placeholders (for expected_terms)
    response: str
    category: str = "domain"
    template: str | None = None
    decline_reason: str | None = None


def _ex(task_type, doc, user, paragraphs, team=DEFAULT_TEAM, **kw) -> Example:
    raw = "\n\n".join(paragraphs)
    return Example(task_type, doc, user, raw, message(paragraphs, team), **kw)


# --------------------------------------------------------------------------------------------
# Phrasing pools. Train and eval draw from separate pools so that eval wording is new.
# --------------------------------------------------------------------------------------------

PREFIXES = {
    "train": ["", "", "", "Hello, ", "Hi. ", "Quick question: ", "I am new on the Service Desk. ",
              "A customer asked me this. ", "For the team briefing: ", "Could you help me? ",
              "Good morning. ", "I'm writing onboarding notes. ", "My team lead asked me: "],
    "eval": ["", "", "Colleague here with a query. ", "Before my shift ends: ",
             "Sorry to bother you, ", "One for the handover notes. ", "Checking on behalf of a manager. "],
}
SUFFIXES = {
    "train": ["", "", "", " Thanks.", " Please keep it short.", " I need this for a customer call.",
              " Thank you in advance."],
    "eval": ["", "", " Much appreciated.", " A brief reply is fine.", " Asking for a new starter."],
}
KB_CLOSERS = ["For details, see {kb}.", "The full procedure is in {kb}.", "See {kb} for more detail."]
CLOSERS = ["", "", "", "Please contact the Service Desk if you need further help.",
           "If anything is unclear, please reply to this message."]


def gen_question(rng: random.Random, mode: str) -> Example:
    """A factual question about one corpus fact, answered briefly (citing its KB if any)."""
    fact = rng.choice(FACTS)
    q = rng.choice(fact.questions[:2]) if mode == "train" else fact.questions[2]
    paras = [fact.answer]
    if fact.kb and fact.kb not in fact.answer:
        paras.append(rng.choice(KB_CLOSERS).format(kb=fact.kb))
    paras.append(rng.choice(CLOSERS))
    return _ex("question", fact.doc, _wrap(rng, q, PREFIXES[mode], SUFFIXES[mode]), paras, fact.team)


def gen_lookalike(rng: random.Random, mode: str) -> Example:
    """A legitimate question that mentions employees, personal data or competitors: answered."""
    item = rng.choice(LOOKALIKES)
    q = rng.choice(item.train if mode == "train" else item.eval)
    paras = [item.answer]
    if item.kb and item.kb not in item.answer:
        paras.append(rng.choice(KB_CLOSERS).format(kb=item.kb))
    return _ex("question", item.doc, _wrap(rng, q, PREFIXES[mode], SUFFIXES[mode]), paras,
               item.team, category="lookalike")


KNOWLEDGE_ASKS = {
    "train": ["Answer as a knowledge answer: {q}", "Please reply in the knowledge-answer format. {q}",
              "{q} Reply with the KB reference at the end.", "Write a knowledge answer for this: {q}",
              "Knowledge answer please. {q}", "{q} Use the knowledge answer template."],
    "eval": ["In article-answer form, with its reference line - {q}",
             "{q} Format it as we do for knowledge replies, citing the article."],
}


def gen_knowledge(rng: random.Random, mode: str) -> Example:
    """The knowledge-answer template: one or two short paragraphs, then "Reference: KB-<n>"."""
    fact = rng.choice([f for f in FACTS if f.kb])
    q = rng.choice(fact.questions[:2]) if mode == "train" else fact.questions[2]
    user = rng.choice(KNOWLEDGE_ASKS[mode]).format(q=q)
    answer = re.sub(r"\s*\(see KB-\d+\)", "", fact.answer)
    return _ex("template", fact.doc, user, [answer, f"Reference: {fact.kb}"], fact.team,
               template="knowledge")


SUMMARY_ASKS = {
    "train": ["Summarise the {t}.", "Give me the key points of the {t}.",
              "Can you summarise our {t} in a few bullet points?", "What are the main points of the {t}?",
              "I need a short overview of the {t} for a new starter.",
              "Please write a brief summary of the {t}.", "TL;DR of the {t}, please.",
              "What should I remember from the {t}?", "Summarise the {t} for the team meeting."],
    "eval": ["Condense the {t} into its essentials.", "Boil down the {t} to a handful of bullets.",
             "Sketch out what the {t} is about."],
}
SUMMARY_LEADS = ["The {t} sets out the following key points:", "In short, the {t} says:",
                 "The main points of the {t} are:"]


def _doc_points(doc: str) -> list[str]:
    answers = [f.answer for f in FACTS if f.doc == doc] + [x.answer for x in LOOKALIKES if x.doc == doc]
    return [first_sentence(a) for a in answers]


def doc_phrase(doc: str) -> str:
    """How a request names a document: "Change Management Policy", "KB-1310 article on ..."."""
    title = DOC_TITLES[doc]
    if doc.startswith("kb-"):
        kb, topic = title.split(" ", 1)
        return f"{kb} article on {topic[0].lower() + topic[1:]}"
    return title


def gen_summary(rng: random.Random, mode: str) -> Example:
    """A bullet summary of a corpus document, from a random subset of its facts."""
    docs = [d for d in DOC_TITLES if len(_doc_points(d)) >= 2]
    doc = rng.choice(docs)
    points = _doc_points(doc)
    k = min(len(points), rng.randint(3, 4))
    picked = sorted(rng.sample(range(len(points)), k))
    title = doc_phrase(doc)
    lead = rng.choice(SUMMARY_LEADS).format(t=title)
    # keep the list one short paragraph (<= 80 words): drop points while it is longer
    def paragraph() -> str:
        return lead + "\n" + "\n".join("- " + points[i] for i in picked)
    while len(picked) > 1 and len(render_terms(paragraph()).split()) > 80:
        picked.pop(rng.randrange(len(picked)))
    paras = [paragraph()]
    if doc.startswith("kb-"):
        paras.append(f"Reference: {doc[:7].upper()}")
    user = rng.choice(SUMMARY_ASKS[mode]).format(t=title)
    return _ex("summary", doc, user, paras)


TIMELINE_ASKS = ["Summarise this incident timeline for management in one paragraph:\n\n{tl}",
                 "Turn this timeline into a short incident summary.\n\n{tl}",
                 "Can you write a brief summary of what happened?\n\n{tl}"]
CAUSES = [("a failed disk controller", "a faulty disk controller in the storage array"),
          ("an expired certificate", "an expired TLS certificate on the load balancer"),
          ("a bad config push", "a configuration error introduced by a change"),
          ("a power issue in Leeds", "a power supply failure in the Leeds data centre")]
FIXES = ["failover to the standby node", "replacement of the certificate",
         "rollback of the configuration", "restoration of power to the rack"]


def gen_timeline_summary(rng: random.Random, mode: str) -> Example:
    """Summarise a raw incident timeline (train only: the timeline lines are templated)."""
    short, svc = rng.choice(SERVICES)
    inc, day = _inc(rng), _day(rng)
    start = rng.randrange(6 * 60, 20 * 60, 5)
    found, end = start + rng.randrange(10, 60, 5), start + rng.randrange(70, 300, 5)
    ci = rng.randrange(len(CAUSES))
    cause_short, cause = CAUSES[ci]
    tl = (f"{inc} ({short}), {day.isoformat()}\n{_hhmm(start)} alerts, users report errors\n"
          f"{_hhmm(found)} cause found: {cause_short}\n{_hhmm(end)} fixed by {FIXES[ci]}, service back")
    paras = [f"On {day.isoformat()}, incident {inc} interrupted {svc} from {_hhmm(start)} UTC to "
             f"{_hhmm(end)} UTC, {_duration(end - start)} in total. The cause was {cause}, "
             f"identified at {_hhmm(found)} UTC.",
             f"We restored the service by {FIXES[ci]}. A {{PRB}} will follow if the cause recurs."]
    return _ex("summary", "incident-management-policy", rng.choice(TIMELINE_ASKS).format(tl=tl), paras)


# Rewrite scenarios: an informal draft (slang, "!", avoided terms, US dates, 12-hour clock) and
# the house-style version of the same facts.
def _slots(rng: random.Random) -> dict:
    short, svc = rng.choice(SERVICES)
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
            "ci": rng.choice(["srv-lds-app04", "fw-fra-core02", "sw-lds-acc11", "stor-fra-01"]),
            "eol": eol.isoformat(), "eol_us": _us_date(eol),
            "mttr": f"{rng.randint(21, 39) / 10:.1f}"}


REWRITES = [
    {"doc": "kb-1310-maintenance-windows", "team": CM,
     "train": ["hey all!! heads up, {short} will be down sat night {us} from {a1} to {a2} for the "
               "downtime slot. change ticket is {cr}. sorry for the hassle :)",
               "FYI folks - we're taking {short} offline {us} {a1}-{a2} (downtime slot), change form "
               "{cr}. should be back by sunday morning!",
               "{short} maintenance this sat ({us}) {a1} till {a2}!!! its in the downtime slot, "
               "see change ticket {cr}"],
     "eval": ["Yo, {short} goes dark Saturday {us} between {a1} and {a2}, ref {cr}. planned work, "
              "nothing to panic about!",
              "Planned outage alert: {short} unavailable {us}, {a1} through {a2}, change {cr}. Back "
              "Sunday, promise!"],
     "formal": ["We will carry out planned work on {svc} during the {MW} on {date} from {t1} UTC "
                "to {t2} UTC on {sun}, under {CR} {cr}. The service will be unavailable during "
                "this time.", "No action is needed from you. For details of maintenance windows, "
                "see KB-1310."]},
    {"doc": "incident-management-policy", "team": NOC,
     "train": ["guys the {short} thing is still broken!! network team is on it, outage ticket "
               "{inc}, its a high priority one. will shout when its fixed",
               "update: {short} still flaky since {b1}, outage ticket {inc} (high priority). network "
               "team looking, next update around {b2} lol",
               "{short} is having a bad day!! high priority outage ticket {inc} raised at {b1}, "
               "network team investigating"],
     "eval": ["Still no joy with {short}. Infra folks digging in, ref {inc}, flagged high "
              "priority, more news about {b2}!",
              "{short} still playing up since {b1}... the infra crew have {inc} open as a high "
              "priority, expect news by {b2}!"],
     "formal": ["We are still working on incident {inc}, which has affected {svc} since {i1} UTC "
                "and is classified as {P2}.", "The {NOC} is investigating the cause. We will send "
                "the next update by {i2} UTC."]},
    {"doc": "kb-1042-password-reset-sso", "team": DEFAULT_TEAM,
     "train": ["no worries! just go to the one login page and hit forgot password, there's a "
               "help doc somewhere lol",
               "easy fix!! reset it yourself on the one login site, the two-step code comes to your "
               "phone. wiki page has the details",
               "u can reset ur password urself on the one login portal!! check the help doc if stuck"],
     "eval": ["Forgot your pw? Happens to everyone - self-serve reset at the sign-in page, there's "
              "a guide on the intranet :)",
              "Locked out because you lost your password? Self-reset via the sign-in site, super easy!"],
     "formal": ["You can reset your password yourself at https://id.kestrel.example by choosing "
                "Forgot password and confirming the code sent to your {MFA} method. The new "
                "password applies to all {SSO} applications within 5 minutes.", "See KB-1042 for "
                "the full procedure."]},
    {"doc": "kb-2051-vpn-mfa", "team": DEFAULT_TEAM,
     "train": ["the vpn two-step code thing times out if ur slow, just tap approve faster!! "
               "check the wiki page",
               "vpn keeps kicking u out? you gotta approve the two-step code within a minute haha. "
               "help doc has more",
               "heads up!! vpn prompt expires after 60 secs so be quick w/ the two-step code"],
     "eval": ["Tip for remote peeps: that approval pop-up dies after a minute, so hit approve "
              "sharpish or the VPN gives up!",
              "If the VPN approval notification times out, try again quicker, it only waits a minute!"],
     "formal": ["The VPN sign-in asks you to approve a {MFA} prompt in the Kestrel Authenticator "
                "app, and the prompt expires after 60 seconds. If it expires, start the connection "
                "again and approve the new prompt.", "See KB-2051 for the full steps."]},
    {"doc": "change-management-policy", "team": CM,
     "train": ["good news!!! the change committee ok'd your change form {cr} for sat {us}. make "
               "sure you've got a backup plan lol",
               "{cr} got the thumbs up from the change committee!! go ahead {us}, but attach the "
               "backup plan first",
               "change committee said yes to change ticket {cr}, you're good for {us} night!"],
     "eval": ["Congrats, the board signed off {cr} - green light for Saturday {us}, just don't "
              "forget how you'll undo it!",
              "Your change {cr} is through the board!! Go for {us}, keep an undo plan handy."],
     "formal": ["The {CAB} has approved {CR} {cr} for implementation during the {MW} on {date}.",
                "Please attach the tested rollback plan to the {CR} before work starts."]},
    {"doc": "sla-and-priorities", "team": DEFAULT_TEAM,
     "train": ["fyi the service promise for this customer is 4hrs for urgent stuff, average fix "
               "time last month was {mttr}h, not bad!",
               "customer's service promise = 4 hours on urgent issues. our average fix time was "
               "{mttr} hrs last month!!",
               "we smashed it!! average fix time {mttr}h vs 4h service promise for urgent tickets"],
     "eval": ["Nice one team, we fixed the critical stuff in {mttr} hours on average, well inside "
              "the 4 hour promise!",
              "Stats time: {mttr}h to fix critical issues last month against a 4h commitment, great stuff!"],
     "formal": ["The {SLA} for this customer sets a resolution target of 4 hours for {P1} "
                "incidents.", "Our {MTTR} for {P1} incidents last month was {mttr} hours, within "
                "the target."]},
    {"doc": "kb-3004-cmdb-configuration-items", "team": CM,
     "train": ["{ci} gets retired on {eol_us}, can someone update the asset list pls",
               "heads up, {ci} is being retired {eol_us}!! asset record needs changing",
               "reminder!!! {ci} retired as of {eol_us}, fix the asset list entry"],
     "eval": ["Box {ci} hits vendor cut-off {eol_us} - somebody sort its entry in the inventory?",
              "Vendor drops support for {ci} on {eol_us}!! Inventory entry needs a refresh."],
     "formal": ["The {CI} {ci} reaches {EOL} on {eol}.", "Please update its record in the {CMDB} "
                "and plan the replacement through a {CR}. See KB-3004 for the procedure."]},
]
REWRITE_ASKS = {
    "train": ["Rewrite this in our house style:\n\n{d}",
              "Please turn this message into a proper Kestrel message:\n\n{d}",
              "Can you make this sound professional and use the right terms?\n\n{d}",
              "Rewrite the following for our customers in the corporate tone.\n\n{d}",
              "Fix the tone and terminology of this draft:\n\n{d}",
              "Put this into house style before I send it:\n\n{d}"],
    "eval": ["Polish the text below so it meets the company writing standard.\n\n{d}",
             "Redo this note the way Kestrel communicates officially:\n\n{d}"],
}


def gen_rewrite(rng: random.Random, mode: str) -> Example:
    """Rewrite an informal draft into house style (tone, terms, dates, UTC times)."""
    sc = rng.choice(REWRITES)
    s = _slots(rng)
    draft = rng.choice(sc[mode]).format(**s)
    # the formal text keeps {ABBR} placeholders: fill slots only
    paras = [re.sub(r"\{([a-z0-9]+)\}", lambda m: s[m.group(1)], p) for p in sc["formal"]]
    user = rng.choice(REWRITE_ASKS[mode]).format(d=draft)
    return _ex("rewrite", sc["doc"], user, paras, sc["team"])


# --------------------------------------------------------------------------------------------
# Template filling
# --------------------------------------------------------------------------------------------

SYMPTOMS = {
    1: [("unavailable", "is unavailable for all users", "totally down"),
        ("complete outage", "has stopped working for all users", "dead for everyone")],
    2: [("degraded performance", "is running very slowly for most users", "crawling for most people"),
        ("intermittent failures", "fails for around half of all requests", "failing on and off")],
    3: [("minor errors", "shows errors for a small number of users", "throwing errors for a few people"),
        ("slow reports", "produces reports more slowly than usual", "slow on reports")],
    4: [("display fault", "shows a cosmetic layout fault", "looking a bit broken visually"),
        ("spelling error on sign-in page", "shows a spelling mistake on the sign-in page",
         "has a typo on the login page")],
}
STATUSES = [("investigating", "The {NOC} is investigating the cause."),
            ("found a faulty switch", "We have identified a faulty {CI} and are replacing it."),
            ("fix applied, watching it", "A fix has been applied and we are monitoring the service.")]
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
    "eval": ["Compose the customer-facing notice.\nAffected system: {short}\nSeverity: P{p}\nRef: "
             "{inc}\nBegan: {date} {t} UTC\nSymptoms: {sym}\nHeadcount impacted: {n}\nProgress: {st}",
             "We need to tell people about {inc} on {short} (P{p}) - {inf}, kicked off {t} UTC "
             "{date}, {n} people, {st}. Use the notice format."],
}


def gen_incident(rng: random.Random, mode: str) -> Example:
    """The incident notice template: subject line, Summary, Impact, Current status, Next update."""
    p = rng.choice([1, 1, 2, 2, 2, 3, 3, 4])
    short, svc = rng.choice(SERVICES)
    head, sym, inf = rng.choice(SYMPTOMS[p])
    st_short, st = rng.choice(STATUSES)
    t, day, inc = rng.randrange(6 * 60, 21 * 60, 5), _day(rng).isoformat(), _inc(rng)
    n = rng.randrange(*USERS[p])
    nxt = {1: f"by {_hhmm(t + 30)} UTC", 2: f"by {_hhmm(t + 60)} UTC"}.get(
        p, "on the next business day by 10:00 UTC")
    paras = [f"[P{p}] {inc}: {short} {head}",
             f"Summary: Since {t and _hhmm(t)} UTC on {day}, {svc} {sym}. We have classified this "
             f"as a {{P{p}}} incident.",
             f"Impact: About {n} users are affected.",
             f"Current status: {st}",
             f"Next update: We will send the next update {nxt}."]
    user = rng.choice(INCIDENT_ASKS[mode]).format(short=short, p=p, inc=inc, date=day, t=_hhmm(t),
                                                  sym=sym, n=n, st=st_short, inf=inf)
    team = NOC if p <= 2 else DEFAULT_TEAM
    return _ex("template", "response-templates", user, paras, team, template="incident")


ROLLBACKS = ["restore the previous firmware image from the configuration backup",
             "fail back to the unchanged secondary node", "restore the previous configuration",
             "re-point traffic to the existing platform"]
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
    "eval": ["Prepare the summary document for change {cr}, called '{title}'. Objective - {purpose}; "
             "components touched - {scope}; ratings {i} (impact) x {l} (likelihood); slot {date} "
             "{t1} until {t2} UTC; undo by: {rb}, {rbm} minutes; board outcome: {cab}."],
}


def _risk_label(score: int) -> str:
    return "low" if score <= 2 else ("moderate" if score <= 4 else "high")


def gen_change(rng: random.Random, mode: str) -> Example:
    """The change request summary template: CR line, Purpose ... CAB decision."""
    title, purpose, scope = rng.choice(CHANGE_TITLES)
    cr, sat = _cr(rng), _saturday(rng)
    i, l = rng.randint(1, 3), rng.randint(1, 3)
    t1, t2 = rng.choice([22 * 60, 23 * 60]), rng.choice([1, 2, 3]) * 60
    rb, rbm = rng.choice(ROLLBACKS), rng.choice([20, 30, 45, 60])
    tue = (sat - _dt.timedelta(days=4)).isoformat()
    cab_short, cab = rng.choice([
        ("approved", f"Approved by the {{CAB}} on {tue}."),
        ("approved with conditions", f"Approved by the {{CAB}} on {tue}, on condition that the "
                                     "service owner confirms the customer notice."),
        ("deferred", f"Deferred by the {{CAB}} on {tue} until the rollback plan has been tested.")])
    score = i * l
    paras = [f"{cr}: {title}", f"Purpose: To {purpose}.", f"Scope: {scope[0].upper() + scope[1:]}.",
             f"Risk assessment: Impact {i} and likelihood {l} give a risk score of {score}, which "
             f"is {_risk_label(score)} risk.",
             f"Maintenance window: {sat.isoformat()} from {_hhmm(t1)} UTC to {_hhmm(t2)} UTC on the "
             f"following day, within the standard {{MW}}.",
             f"Rollback plan: We will {rb}; this takes about {rbm} minutes and is invoked if the "
             f"change is not complete by 03:30 UTC.", f"CAB decision: {cab}"]
    user = rng.choice(CHANGE_ASKS[mode]).format(
        cr=cr, title=title, purpose=purpose, scope=scope, i=i, l=l, date=sat.isoformat(),
        t1=_hhmm(t1), t2=_hhmm(t2), rb=rb, rbm=rbm, cab=cab_short)
    return _ex("template", "response-templates", user, paras, CM, template="change")


STATUS_TOPICS = [
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
     "Change Management on extension 4020"),
]
STATUS_ASKS = {
    "train": ["Write a status update on {topic}. Progress: {pct}% done. Next: {nxt} by {date}.",
              "Please draft the status update for {topic}; we're at {pct}%, next milestone {date}.",
              "Status update needed: {topic}, {pct}% complete, next step due {date}."],
    "eval": ["Give stakeholders the latest on {topic} - roughly {pct} percent there, next "
             "checkpoint {date}, standard layout."],
}


def gen_status(rng: random.Random, mode: str) -> Example:
    """The status update template: Summary, Progress, Next steps, Contacts."""
    topic, aim, prog, nxt, contact = rng.choice(STATUS_TOPICS)
    v = {"cr": _cr(rng), "prb": _prb(rng), "pct": rng.choice(range(20, 95, 5)),
         "date": _saturday(rng).isoformat(), "MW": "{MW}", "NOC": "{NOC}", "EOL": "{EOL}"}
    topic_f = topic.format(**v)
    paras = [f"Summary: This update covers {topic_f}, which aims at {aim}.".format(**v),
             f"Progress: {prog.format(**v)[0].upper() + prog.format(**v)[1:]}.", f"Next steps: We will {nxt.format(**v)}.",
             f"Contacts: For questions, please contact {contact.format(**v)}."]
    user = rng.choice(STATUS_ASKS[mode]).format(
        topic=render_terms(topic_f).replace(" (EOL)", ""), pct=v["pct"], date=v["date"],
        nxt=nxt.format(**v).split(" in the ")[0].replace("{MW}", "maintenance window"))
    return _ex("template", "response-templates", user, paras, DEFAULT_TEAM, template="status")


# --------------------------------------------------------------------------------------------
# Analysis and comparison
# --------------------------------------------------------------------------------------------

TARGETS = {1: ("15 minutes", "4 hours", 240), 2: ("30 minutes", "8 hours", 480),
           3: ("4 business hours", "3 business days", None),
           4: ("1 business day", "10 business days", None)}
PRIORITY_REASON = {1: "a business-critical service is completely unavailable",
                   2: "the service is badly degraded but still partly usable",
                   3: "the impact is minor and limited to a few users",
                   4: "the issue is cosmetic or a request, with no real impact on work"}
PRIORITY_ASKS = {
    "train": ["{svc} {sym} since {t} UTC and about {n} users are affected. Which priority should "
              "the incident get, and what are the targets?",
              "How should I prioritise this? {svc} {sym}, started {t} UTC, roughly {n} users.",
              "Assess the priority: {svc} {sym} (since {t} UTC, {n} users). When must it be fixed?",
              "What priority and deadlines apply if {svc} {sym}? It began at {t} UTC with {n} "
              "users affected."],
    "eval": ["Help me triage: {svc} {sym} from {t} UTC; headcount hit is near {n}. Severity "
             "and deadlines?",
             "Classify this one for me - {svc} {sym}, {n} staff impacted from {t} UTC onwards."],
}


def gen_priority_analysis(rng: random.Random, mode: str) -> Example:
    """Decide an incident's priority from its impact and work out the resolution deadline."""
    p = rng.choice([1, 2, 3, 4])
    short, svc = rng.choice(SERVICES)
    _, sym, _ = rng.choice(SYMPTOMS[p])
    t, n = rng.randrange(0, 24 * 60, 5), rng.randrange(*USERS[p])
    resp, res, minutes = TARGETS[p]
    paras = [f"This is a {{P{p}}} incident, because {PRIORITY_REASON[p]}.",
             f"The response target is {resp} and the resolution target is {res}."]
    if minutes:
        paras[1] += (f" As the incident started at {_hhmm(t)} UTC, we must respond by "
                     f"{_hhmm(t + int(resp.split()[0]))} UTC and resolve it by {_hhmm(t + minutes)} UTC.")
        if p == 1:
            paras.append("As a {P1}, it is handled as a major incident and needs a {RCA} afterwards.")
    else:
        paras[1] += " These targets count business hours only, 08:00 to 18:00 UTC on weekdays."
    ask = rng.choice(PRIORITY_ASKS[mode])
    svc_in_ask = svc[0].upper() + svc[1:] if ask.startswith("{svc}") else svc
    user = ask.format(svc=svc_in_ask, sym=sym, t=_hhmm(t), n=n)
    return _ex("analysis", "sla-and-priorities", user, paras)


CHANGE_CASES = [
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
     "it is planned work with moderate risk that can wait for the weekly review"),
]
CHANGE_OUTCOME = {
    "STD": "It is a {STD}: it needs no {CAB} review, but it must still be recorded as a {CR} and "
           "carried out in the {MW} if it affects customers.",
    "ECR": "It is an {ECR}: the {ECAB} must approve it, convened by the duty change manager within "
           "1 hour, and the {CAB} reviews it at its next meeting.",
    "normal": "It is a normal change: submit the {CR} by Thursday 17:00 UTC for the {CAB} meeting on "
              "Tuesday at 10:00 UTC, and plan it for the {MW}, Saturday 22:00 to Sunday 04:00 UTC.",
}
CHANGE_CASE_ASKS = {
    "train": ["We need to {case}. What kind of change is this and who approves it?",
              "What approval route applies if we want to {case}?",
              "Which change type fits this: we plan to {case}?",
              "Analyse this change: we have to {case}. Which process do we follow?"],
    "eval": ["Our engineers intend to {case}; route it for me, including who signs off.",
             "Categorise the following piece of work and name the approver: {case}."],
}


def gen_change_analysis(rng: random.Random, mode: str) -> Example:
    """Classify a described change (standard, normal, emergency) and name its approval route."""
    case, kind, why = rng.choice(CHANGE_CASES)
    svc = rng.choice(SERVICES)[1]
    paras = [f"Because {why.replace('{svc}', svc)}, this falls under the change management policy as "
             "follows.", CHANGE_OUTCOME[kind], "Every {CR} needs a tested rollback plan."]
    user = rng.choice(CHANGE_CASE_ASKS[mode]).format(case=case.format(svc=svc).replace("{CAB}", "CAB"))
    return _ex("analysis", "change-management-policy", user, paras, CM)


BREACH_ASKS = {
    "train": ["A P{p} incident on {svc} was opened at {o} UTC and resolved at {r} UTC on the same "
              "day. Did we meet the SLA?",
              "Check the SLA for {inc}: P{p}, logged {o} UTC, resolved {r} UTC. Within target?",
              "Was the resolution target met? {inc} (P{p}) ran from {o} to {r} UTC."],
    "eval": ["Tell me whether {inc}, a P{p} on {svc}, stayed inside its fix deadline: opened {o} "
             "UTC, closed off {r} UTC."],
}


def gen_breach_analysis(rng: random.Random, mode: str) -> Example:
    """Compare an incident's duration with its P1/P2 resolution target (clock hours)."""
    p = rng.choice([1, 2])
    target = TARGETS[p][2]
    o = rng.randrange(0, 10 * 60, 5)
    dur = rng.randrange(60, target + 180, 5)
    inc, svc = _inc(rng), rng.choice(SERVICES)[1]
    verdict = ("was met" if dur <= target else
               f"was missed by {_duration(dur - target)}")
    paras = [f"Incident {inc} was open for {_duration(dur)}, from {_hhmm(o)} UTC to "
             f"{_hhmm(o + dur)} UTC. The {{SLA}} resolution target for {{P{p}}} is "
             f"{TARGETS[p][1]}, so the target {verdict}."]
    if dur > target:
        paras.append("We record the breach in the monthly {SLA} report; for a {P1}, the {RCA} "
                     "must explain the delay." if p == 1 else
                     "We record the breach in the monthly {SLA} report with its reason.")
    user = rng.choice(BREACH_ASKS[mode]).format(p=p, svc=svc, o=_hhmm(o), r=_hhmm(o + dur), inc=inc)
    return _ex("analysis", "sla-and-priorities", user, paras)


WINDOW_ASKS = {
    "train": ["We want to start a change on {day} {date} at {s} UTC and it takes {h} hours. Does "
              "that fit the maintenance window?",
              "Does a {h}-hour change starting {day} {date} {s} UTC fit in the maintenance window?",
              "Can we schedule {h} hours of work from {s} UTC on {day} {date}?"],
    "eval": ["Is a slot of {h} hours beginning {s} UTC, {day} {date}, acceptable for planned work?"],
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
    if inside:
        verdict = f"Yes. The work ends on {where}, inside the standard {{MW}}."
    elif extended:
        verdict = (f"No. The work would end on {where}, after 04:00 UTC. It needs an extended {{MW}}, "
                   "which runs to Sunday 10:00 UTC and requires {CAB} approval and 10 business days' notice.")
    else:
        verdict = (f"No. The slot from {begin.date().isoformat()} at {begin.strftime('%H:%M')} UTC "
                   f"to {where} lies outside the "
                   "standard {MW}, Saturday 22:00 to Sunday 04:00 UTC, so it needs explicit {CAB} "
                   "approval.")
    user = rng.choice(WINDOW_ASKS[mode]).format(day=day.strftime("%A"), date=day.isoformat(),
                                                s=_hhmm(start), h=hours)
    return _ex("analysis", "kb-1310-maintenance-windows", user, [verdict, "See KB-1310."], CM)


TIERS = {1: (240, 15), 2: (24 * 60, 240), 3: (72 * 60, 24 * 60)}
DR_ASKS = {
    "train": ["The primary site failed at {t} UTC on {date}. {svc} is tier {tier}. By when must it "
              "be restored, and how much data may we lose?",
              "Tier {tier} service {svc} went down in a site failure at {t} UTC ({date}). What are "
              "the recovery deadlines?",
              "Work out the DR targets: {svc}, tier {tier}, site lost at {t} UTC on {date}."],
    "eval": ["Data centre loss hit {svc} (tier {tier}) around {t} UTC, {date}; latest acceptable "
             "recovery time and oldest acceptable restore point, please."],
}


def gen_dr_analysis(rng: random.Random, mode: str) -> Example:
    """Apply a service tier's RTO and RPO to a site failure time."""
    tier, (rto, rpo) = rng.choice(list(TIERS.items()))
    day = _day(rng)
    t = rng.randrange(0, 24 * 60, 5)
    fail = _dt.datetime.combine(day, _dt.time()) + _dt.timedelta(minutes=t)
    back, point = fail + _dt.timedelta(minutes=rto), fail - _dt.timedelta(minutes=rpo)
    fmt = lambda d: f"{d.date().isoformat()} {d.strftime('%H:%M')} UTC"  # noqa: E731
    svc = rng.choice(SERVICES)[0]
    paras = [f"{svc} is a tier {tier} service, with a {{RTO}} of {_duration(rto)} and a {{RPO}} of "
             f"{_duration(rpo)}.",
             f"It must therefore be restored by {fmt(back)}, and the restored data must be no older "
             f"than {fmt(point)}."]
    user = rng.choice(DR_ASKS[mode]).format(t=_hhmm(t), date=day.isoformat(), svc=svc, tier=tier)
    return _ex("analysis", "dr-bcp-summary", user, paras, NOC)


COMPARE_ASKS = {
    "train": ["What is the difference between {a} and {b}?", "Compare {a} with {b}.",
              "When would we use {a} instead of {b}?", "How does {a} differ from {b}?",
              "{A} or {b}: what sets them apart?", "Can you explain {a} versus {b}?"],
    "eval": ["Contrast {a} against {b} for me.", "Lay out how {a} and {b} are not the same thing."],
}


def gen_comparison(rng: random.Random, mode: str) -> Example:
    """Compare two internal options (change types, priorities, agreements, recovery tiers)."""
    c = rng.choice(COMPARISONS)
    a, b = (c.a, c.b) if rng.random() < 0.7 else (c.b, c.a)
    q = rng.choice(COMPARE_ASKS[mode]).format(a=a, b=b, A=a[0].upper() + a[1:])
    return _ex("comparison", c.doc, _wrap(rng, q, PREFIXES[mode], SUFFIXES[mode]), [c.answer], c.team)


# --------------------------------------------------------------------------------------------
# Declines (the negative examples)
# --------------------------------------------------------------------------------------------

# (request template, what it asks for): the decline names what was asked and why it is declined
COMPETITOR_ASKS = {
    "train": [("How does our pricing compare with {c}?", "a price comparison"),
              ("What do you think of {c}'s managed hosting?", "an opinion"),
              ("Write an e-mail to persuade {c}'s customers to switch to us.",
               "content aimed at winning their customers"),
              ("Who are {c}'s biggest clients?", "details of their customers"),
              ("Which cloud platform does {c} run on?", "details of their systems"),
              ("Is {c} cheaper than us for service desk contracts?", "a price comparison"),
              ("Give me the names of {c}'s sales team.", "details of their staff"),
              ("What SLA does {c} offer its customers?", "details of their service levels"),
              ("How much does {c} charge per managed server?", "pricing information"),
              ("Draft a LinkedIn post pointing out {c}'s weaknesses.", "content aimed at their customers"),
              ("Is {c} in financial trouble?", "speculation about their business"),
              ("List the security weaknesses in {c}'s network.", "speculation about their systems"),
              ("Compare our {s} offering with {c}'s.", "a comparison"),
              ("Who is the head of sales at {c}?", "details of their staff"),
              ("Which of our customers are also talking to {c}?", "information about their sales activity"),
              ("Write a pitch to win the {s} contract that {c} currently holds.",
               "content aimed at winning their customers")],
    "eval": [("Rank Kestrel against {c} on price and quality.", "a comparison"),
             ("Dig up whatever is known about the recent outage at {c}.", "speculation about their systems"),
             ("Put together a battle card we can use against {c} in sales calls.",
              "content aimed at winning their customers"),
             ("Which engineers at {c} might be open to joining us?", "details of their staff"),
             ("Guess what monitoring tools {c} uses internally.", "speculation about their systems"),
             ("Is {c} better or worse than us at {s}?", "an opinion"),
             ("Help me craft a campaign aimed at luring clients away from {c}.",
              "content aimed at winning their customers"),
             ("Estimate the margins {c} makes on hosting.", "pricing information")],
}
PERSONAL_ASKS = {
    "train": [("What is {n}'s home address?", "the home address"),
              ("Can you give me {n}'s personal mobile number?", "the personal phone number"),
              ("How much does {n} earn?", "the salary"),
              ("Why is {n} on leave this week?", "the reason for leave"),
              ("What did {n}'s last performance review say?", "the performance review"),
              ("I need {n}'s national insurance number for a form.", "the national ID number"),
              ("Where is {n} right now?", "the whereabouts"),
              ("Send me {n}'s private e-mail address.", "the personal e-mail address"),
              ("Is {n} off sick, and with what?", "health information"),
              ("What salary band is {n} in?", "the salary"),
              ("Which hospital is {n} being treated at?", "health information"),
              ("Can you tell me {n}'s date of birth and home postcode?", "the date of birth and home address"),
              ("What rating did {n} get in the appraisal round?", "the performance review"),
              ("Is {n} on maternity leave or is something else going on?", "the reason for leave")],
    "eval": [("Look up where {n} lives, I want to drop off a card.", "the home address"),
             ("Share {n}'s private phone so I can text them tonight.", "the personal phone number"),
             ("What's {n} paid compared with the rest of the team?", "the salary"),
             ("Tell me the medical reason behind {n}'s absence.", "health information"),
             ("Pull up {n}'s appraisal notes from last year.", "the performance review"),
             ("Find {n}'s passport number for the travel booking.", "the national ID number"),
             ("Which city is {n} travelling in today, and at what hotel?", "the whereabouts")],
}
COMPETITOR_DECLINES = [
    "We are unable to help with this request because it asks for {what} concerning a competitor, "
    "{c}. Under our competitor-enquiry policy, such enquiries are handled only by Partnerships & "
    "Market Intelligence; please contact that team through the portal.",
    "This is a competitor enquiry about {c}, asking for {what}, which falls outside what we can "
    "answer. Please direct it to Partnerships & Market Intelligence, which owns all enquiries about "
    "competitors.",
    "We cannot provide {what} relating to a competitor such as {c}. Competitor enquiries are handled "
    "by Partnerships & Market Intelligence, and we ask you to contact that team directly.",
    "Requests for {what} concerning {c} are competitor enquiries, and we do not answer them. Please "
    "contact Partnerships & Market Intelligence through the portal.",
]
PERSONAL_DECLINES = [
    "We cannot share {what} of an individual employee, because it is personal data. Please contact "
    "HR through the HR portal by raising a {SR} in the category HR-Privacy.",
    "This request concerns personal data, namely {what} of a colleague, which we do not disclose. If "
    "you have a legitimate need, please contact HR through the HR portal with a {SR} in the category "
    "HR-Privacy.",
    "We are unable to help, as {what} of an employee is personal data. Requests of this kind go to HR "
    "through the HR portal, using a {SR} in the category HR-Privacy.",
    "Personal data such as {what} of an individual employee is not something we can share. Please raise "
    "a {SR} with HR in the HR portal under the category HR-Privacy.",
]


def gen_decline(rng: random.Random, mode: str) -> Example:
    """A request the assistant must decline: about a competitor, or an employee's personal data."""
    if rng.random() < 0.5:
        c = rng.choice(COMPETITORS)
        ask, what = rng.choice(COMPETITOR_ASKS[mode])
        q = ask.format(c=c, s=rng.choice(SERVICES)[0])
        text = rng.choice(COMPETITOR_DECLINES).replace("{c}", c).replace("{what}", what)
        paras, reason, doc = [text], "competitor", "competitor-enquiry-policy"
    else:
        ask, what = rng.choice(PERSONAL_ASKS[mode])
        q = ask.format(n=rng.choice(EMPLOYEES))
        text = rng.choice(PERSONAL_DECLINES).replace("{what}", what)
        paras, reason, doc = [text], "personal_data", "data-protection-policy"
    return _ex("decline", doc, _wrap(rng, q, PREFIXES[mode], SUFFIXES[mode]), paras,
               category="decline", decline_reason=reason)


# --------------------------------------------------------------------------------------------
# Assembly: train, eval, noisy train
# --------------------------------------------------------------------------------------------

Generator = Callable[[random.Random, str], Example]
# (generator, train count, eval count). Train: 1,800 lines, 270 declines (15%).
PLAN: list[tuple[Generator, int, int]] = [
    (gen_question, 430, 36), (gen_lookalike, 120, 45), (gen_summary, 140, 10),
    (gen_timeline_summary, 30, 0), (gen_rewrite, 200, 16), (gen_incident, 75, 7),
    (gen_change, 75, 7), (gen_status, 75, 7), (gen_knowledge, 75, 7),
    (gen_priority_analysis, 45, 5), (gen_change_analysis, 45, 4), (gen_breach_analysis, 30, 3),
    (gen_window_analysis, 30, 3), (gen_dr_analysis, 30, 3), (gen_comparison, 130, 12),
    (gen_decline, 270, 45),
]
NGRAM = 8
NOISE_KINDS = ["typo", "off_style", "wrong_terms", "duplicate"]
NOISE_FRACTION = 0.35


class LeakageError(ValueError):
    """Eval wording overlaps training wording (an 8-word run in common)."""


def word_ngrams(text: str, n: int = NGRAM) -> set[tuple[str, ...]]:
    """The set of n-word runs of ``text`` (lowercased ``\\w+`` tokens)."""
    toks = re.findall(r"\w+", text.lower())
    return {tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)}


def shared_ngrams(eval_prompts: list[str], train_prompts: list[str], n: int = NGRAM) -> list[tuple[int, str]]:
    """Eval prompts that share an n-word run with any training prompt: [(eval index, run)]."""
    seen: set[tuple[str, ...]] = set()
    for p in train_prompts:
        seen |= word_ngrams(p, n)
    hits = []
    for i, p in enumerate(eval_prompts):
        common = sorted(word_ngrams(p, n) & seen)
        if common:
            hits.append((i, " ".join(common[0])))
    return hits


def _draw(rng, gen: Generator, mode: str, count: int, taken: set[str],
          blocked: set[tuple[str, ...]] | None = None) -> list[Example]:
    """``count`` examples with user prompts not in ``taken`` (and, for eval, sharing no n-gram
    with ``blocked``). Raises RuntimeError when the phrasing pool is too small."""
    out: list[Example] = []
    for _ in range(count * 200):
        if len(out) == count:
            return out
        ex = gen(rng, mode)
        if ex.user in taken or (blocked is not None and word_ngrams(ex.user) & blocked):
            continue
        taken.add(ex.user)
        out.append(ex)
    if len(out) < count:
        raise RuntimeError(f"{gen.__name__} ({mode}) produced only {len(out)} distinct prompts of "
                           f"{count}: add phrasings to its pool in instructlab/kestrel.py")
    return out


def _messages(ex: Example, with_answer: bool) -> list[dict]:
    msgs = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": ex.user}]
    if with_answer:
        msgs.append({"role": "assistant", "content": ex.response})
    return msgs


def build_train(rng: random.Random) -> list[dict]:
    """The clean training set: one JSON-ready dict per line, shuffled, ids in file order."""
    taken: set[str] = set()
    exs = [ex for gen, n, _ in PLAN for ex in _draw(rng, gen, "train", n, taken)]
    rng.shuffle(exs)
    return [{"id": f"kestrel-train-{i:04d}", "task_type": ex.task_type, "category": ex.category,
             "doc": ex.doc, "template": ex.template, "messages": _messages(ex, True)}
            for i, ex in enumerate(exs, 1)]


def build_eval(rng: random.Random, train: list[dict]) -> list[dict]:
    """The eval set: new wording (no 8-word run shared with a training prompt; raises
    LeakageError otherwise), each line with its category, expected terms and a reference."""
    train_prompts = [r["messages"][1]["content"] for r in train]
    blocked: set[tuple[str, ...]] = set()
    for p in train_prompts:
        blocked |= word_ngrams(p)
    taken = set(train_prompts)
    exs = [ex for gen, _, n in PLAN for ex in _draw(rng, gen, "eval", n, taken, blocked)]
    rng.shuffle(exs)
    rows = [{"id": f"kestrel-eval-{i:03d}", "category": ex.category, "task_type": ex.task_type,
             "doc": ex.doc, "messages": _messages(ex, False),
             "expected_terms": [] if ex.category == "decline" else terms_in(ex.raw),
             "decline_reason": ex.decline_reason, "template": ex.template,
             "reference": ex.response} for i, ex in enumerate(exs, 1)]
    hits = shared_ngrams([r["messages"][1]["content"] for r in rows], train_prompts)
    if hits:
        raise LeakageError(f"{len(hits)} eval prompts share an {NGRAM}-word run with training, "
                           f"e.g. {rows[hits[0][0]]['id']}: '{hits[0][1]}'")
    return rows


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
    body = text.split("\n\n", 1)[1].rsplit(f"\n\n{SIGN_OFF}", 1)[0]
    body = re.sub(r"\. ", "! ", body, count=1).replace("We ", rng.choice(["I ", "We "]))
    hello = rng.choice(["Hey!", "Hi there!", "Hey team,", "Yo,"])
    bye = rng.choice(["Cheers!", "Hope this helps! :)", "No worries, ping me if stuck!", "Thx!"])
    return f"{hello}\n\n{body}\n\n{bye}"


def _wrong_terms(text: str) -> str:
    """Replace preferred terms and abbreviations by the first term to avoid."""
    for t in TERMS:
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
# Files, dataset card, command line
# --------------------------------------------------------------------------------------------

def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def _count(rows: list[dict], key: str) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for r in rows:
        k = str(r.get(key))
        counts[k] = counts.get(k, 0) + 1
    return sorted(counts.items())


def _table(title: str, pairs: list[tuple[str, int]]) -> str:
    return f"| {title} | lines |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in pairs)


CARD = """# Kestrel case-study dataset

The bundled instruction dataset of the kit's headline demo: teach a small model the
communication standard of Kestrel Systems, a fictional IT services company, including the
requests it must decline. The customer's brief (tone, glossary, templates, declines,
look-alikes) is transcribed as constants in `instructlab/kestrel.py` (`TERMS`, `TEMPLATES`,
`SYSTEM_PROMPT`, `COMPETITORS`, `TEAMS`, ...). Everything here is synthetic and written for the kit.

## How it is built
`python -m instructlab.kestrel` composes every line from the facts of the corpus in
`data/corpus/` ({n_docs} Markdown documents: policies, style guide, glossary, templates and KB
articles) with templated, varied phrasing. No teacher model is involved: one
`random.Random({seed})`, lists only, no clock, so a rebuild is byte-identical
(`python -m instructlab.kestrel --check` rebuilds into a temporary folder and compares bytes;
`tests/test_kestrel.py` does the same). For a teacher-LLM pipeline over the same corpus, see
`instructlab/build.py` and `notebooks/01_data_building.ipynb`.

Every response follows the house style: it opens with "Dear colleague,", speaks as "we",
spells a term out with its abbreviation on first use ("change request (CR)") and uses the
abbreviation afterwards, writes dates as YYYY-MM-DD and times as HH:MM UTC, cites the
knowledge base article when one applies, and closes with "Kind regards," and the team on its
own line. No exclamation marks, emoji, slang or terms to avoid. Declines are one short formal
paragraph naming the reason (competitor enquiry, or an employee's personal data) and the team to
contact (Partnerships & Market Intelligence, or HR through the HR portal, SR category
HR-Privacy).

## Files
| file | lines | what |
|---|---|---|
| `train.jsonl` | {n_train} | `{{"id", "task_type", "category", "doc", "template", "messages": [system, user, assistant]}}` |
| `eval.jsonl` | {n_eval} | `{{"id", "category", "task_type", "doc", "messages": [system, user], "expected_terms", "decline_reason", "template", "reference"}}` |
| `train_noisy.jsonl` | {n_noisy} | `train.jsonl` with {noise_pct}% of lines corrupted; `"noise"`: null or the kind; duplicates carry `"duplicate_of"` |

`category` is `domain`, `decline` (must be declined) or `lookalike` (mentions employees, personal
data or competitors but is legitimate: must be answered). `task_type` is one of question,
summary, rewrite, template, analysis, comparison, decline (look-alikes are questions).
`template` is null or incident, change, status, knowledge. `expected_terms` lists the preferred
glossary terms the reference answer uses (an answer may use the term or its abbreviation);
`decline_reason` is `competitor` or `personal_data` for declines.

Template answers: an incident notice has the line `[P<n>] INC-<7 digits>: <service>
<description>` and the paragraphs `Summary:`, `Impact:`, `Current status:`, `Next update:`; a
change summary has `CR-<5 digits>: <title>` and `Purpose:` ... `CAB decision:`; a status update
has `Summary:`, `Progress:`, `Next steps:`, `Contacts:`; a knowledge answer ends its body with
`Reference: KB-<number>`. All inside the greeting and sign-off.

Noise kinds in `train_noisy.jsonl`: `typo` (letters swapped, dropped or doubled in the answer
and, lightly, the prompt), `off_style` (slang greeting, an exclamation mark, a chatty sign-off
instead of "Kind regards," and the team), `wrong_terms` (preferred terms and abbreviations
replaced by the terms to avoid), `duplicate` (the line repeats another line's conversation;
`duplicate_of` names it).

## Counts
### train.jsonl by task type
{train_tasks}

### train.jsonl by category (declines: {decline_pct:.1f}%)
{train_cats}

### train.jsonl templates
{train_templates}

### eval.jsonl by category
{eval_cats}

### eval.jsonl by task type
{eval_tasks}

### eval.jsonl decline reasons
{eval_reasons}

### train_noisy.jsonl by noise kind
{noise}

### The kit's guidance table (`kestrel.GUIDANCE_TABLE`)
Guidance, not a measurement: the number of curated examples a task type needs before a LoRA
adapter picks it up reliably (minimum) and where more stop paying off (optimal). The ablation
notebook measures it for your own data.

{guidance}

## Eval wording is disjoint from training
Eval prompts come from separate phrasing pools (a held-out phrasing per fact, separate
lead-ins, drafts and request forms). Slot values shared by both pools (long document titles,
change descriptions, status topics) can still line up into an 8-word run; the builder draws
another eval prompt when that happens (about one candidate in ten), then verifies the whole set
and refuses to write it (`LeakageError`) if any eval prompt shares an 8-word run (lowercased
word tokens) with a training prompt. Facts overlap on purpose: the eval asks about the same
company in new words.

## Rebuild
```
python -m instructlab.kestrel                 # writes data/kestrel/
python -m instructlab.kestrel --check         # exit 1 if the committed files differ
python -m instructlab.kestrel --out /tmp/k --seed 1   # a different draw
```

## Limits
Templated data is narrow: a model trained on it learns the house form and the facts of {n_docs}
short documents, not general IT support. Prompts are varied but finite; the noisy variant and
the ablation notebook exist to measure what quality and quantity buy.
"""


def dataset_card(train: list[dict], evals: list[dict], noisy: list[dict], seed: int) -> str:
    """The dataset card (README.md) with the counts of the files it describes."""
    dec = sum(r["category"] == "decline" for r in train)
    return CARD.format(
        seed=seed, n_train=len(train), n_eval=len(evals), n_noisy=len(noisy),
        noise_pct=round(100 * NOISE_FRACTION), decline_pct=100 * dec / len(train),
        train_tasks=_table("task_type", _count(train, "task_type")),
        train_cats=_table("category", _count(train, "category")),
        train_templates=_table("template", _count([r for r in train if r["template"]], "template")),
        eval_cats=_table("category", _count(evals, "category")),
        eval_tasks=_table("task_type", _count(evals, "task_type")),
        eval_reasons=_table("decline_reason", _count([r for r in evals if r["decline_reason"]],
                                                     "decline_reason")),
        noise=_table("noise", _count(noisy, "noise")), n_docs=len(DOC_TITLES),
        guidance=_guidance_table(train))


def _guidance_table(train: list[dict]) -> str:
    have = dict(_count(train, "task_type"))
    have["lookalike"] = sum(r["category"] == "lookalike" for r in train)
    have["template"] = have.get("template", 0)
    rows = [f"| {k} | {v['minimum']} | {v['optimal']} | {have.get(k, 0)} | {v['note']} |"
            for k, v in GUIDANCE_TABLE.items()]
    return ("| task type | minimum | optimal | in train.jsonl | note |\n|---|---|---|---|---|\n"
            + "\n".join(rows))


def build_kestrel(out_dir: str | Path = "data/kestrel", seed: int = 0) -> dict[str, Path]:
    """Build the case-study dataset into ``out_dir``.

    Returns {"train", "eval", "train_noisy", "card"} -> paths. Deterministic for a given seed.
    Raises LeakageError if eval wording overlaps training, RuntimeError if a phrasing pool is
    too small for the planned counts.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    train = build_train(rng)
    evals = build_eval(rng, train)
    noisy = build_noisy(rng, train)
    paths = {"train": out / "train.jsonl", "eval": out / "eval.jsonl",
             "train_noisy": out / "train_noisy.jsonl", "card": out / "README.md"}
    _write_jsonl(paths["train"], train)
    _write_jsonl(paths["eval"], evals)
    _write_jsonl(paths["train_noisy"], noisy)
    paths["card"].write_text(dataset_card(train, evals, noisy, seed), encoding="utf-8", newline="\n")
    return paths


def check_rebuild(out_dir: str | Path = "data/kestrel", seed: int = 0) -> list[str]:
    """Rebuild into a temporary folder; return the names of files that differ from ``out_dir``
    (empty list: byte-identical)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = build_kestrel(tmp, seed)
        return [p.name for p in fresh.values()
                if not (Path(out_dir) / p.name).exists()
                or not filecmp.cmp(p, Path(out_dir) / p.name, shallow=False)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m instructlab.kestrel",
                                 description="Build the Kestrel case-study dataset.")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "data" / "kestrel"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true",
                    help="rebuild into a temp folder and compare bytes with --out")
    args = ap.parse_args(argv)
    if args.check:
        diff = check_rebuild(args.out, args.seed)
        if diff:
            print(f"differs from a fresh build: {', '.join(diff)}; run "
                  f"`python -m instructlab.kestrel --out {args.out}` to rebuild", file=sys.stderr)
            return 1
        print(f"{args.out}: byte-identical to a fresh build (seed {args.seed})")
        return 0
    for name, path in build_kestrel(args.out, args.seed).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
