"""Corpus facts and comparisons for the Kestrel dataset builder (``data/kestrel/build.py``).

Each fact lives in one document of ``data/corpus/`` (``doc`` is its file stem). Phrasing is split
by purpose:

- ``questions`` / ``answers``: training phrasings (several of each, combined freely);
- ``held``: one held-out (question, answer) pair in new words. The builder gives it to exactly
  one of the dev and eval splits, so an eval (or dev) question and its reference answer share no
  8-word run with training.

Answers use term placeholders: ``{CR}`` -> "change request (CR)" on first use, then "CR";
``{CR+s}`` is the plural, ``{^CR}`` capitalises the spelled-out form at a sentence start.
"""

from __future__ import annotations

from typing import NamedTuple

from instructlab import kestrel as K

DEFAULT_TEAM = K.DEFAULT_TEAM
CM, NOC, SOC, HR = K.TEAMS[3], K.TEAMS[1], K.TEAMS[2], K.TEAMS[4]


class Fact(NamedTuple):
    doc: str
    kb: str | None
    questions: tuple[str, ...]
    answers: tuple[str, ...]
    held: tuple[str, str]
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
    "staff-directory-guide": "Staff Directory and Availability Guide",
    "response-templates": "Response Templates",
    "kb-1042-password-reset-sso": "KB-1042 Password reset and single sign-on",
    "kb-2051-vpn-mfa": "KB-2051 VPN access with multi-factor authentication",
    "kb-1310-maintenance-windows": "KB-1310 Maintenance windows",
    "kb-1187-phishing-reporting": "KB-1187 Reporting phishing e-mails",
    "kb-1520-problem-records-rca": "KB-1520 Problem records and root cause analysis",
    "kb-3004-cmdb-configuration-items": "KB-3004 Configuration items and the configuration management database",
}

F = Fact
FACTS: list[Fact] = [
    # style guide
    F("style-guide", None, (
        "How should an internal message open and close?",
        "What greeting and sign-off do we use in messages?",
        "Which opening words and closing words does the house style prescribe?"), (
        'Messages open with "Dear colleague," or "Dear <name>," and close with "Kind regards," '
        "followed by the team name on its own line. Where no other team applies, we sign as "
        "Kestrel Service Desk.",
        'Every message starts with "Dear colleague," or with "Dear" and the person\'s name. It ends '
        'with "Kind regards," and, on the next line, the name of the team that writes; the default '
        "signature is Kestrel Service Desk."), (
        "What should the first and last lines of a reply to a colleague look like?",
        'Begin with the salutation "Dear colleague," (or "Dear" plus a name), and finish with '
        '"Kind regards," above the sending team, placed alone on the final line. Kestrel Service '
        "Desk signs whenever no other team is responsible.")),
    F("style-guide", None, (
        "How do we write dates and times?",
        "What date and time format does the style guide require?",
        "Tell me the correct notation for a date and a clock time in our messages."), (
        "We write dates as YYYY-MM-DD, for example 2026-03-14, and times in UTC on the 24-hour "
        "clock, for example 14:00 UTC. We do not use local time zones or a.m. and p.m.",
        "Dates follow the YYYY-MM-DD pattern, such as 2026-03-14. Times are given in UTC with the "
        "24-hour clock, such as 14:00 UTC, never in local time."), (
        "Is 3/14 at 2pm an acceptable way to write a date and time here?",
        "The house style writes the year first, then month and day, as in 2026-03-14, and expresses "
        "every clock time as a 24-hour value in UTC, as in 14:00 UTC. Local zones and 12-hour "
        "suffixes are replaced accordingly.")),
    F("style-guide", None, (
        "How should abbreviations be introduced in a message?",
        "When may I use an abbreviation such as CR on its own?",
        "Is it fine to write SLA without explaining it first?"), (
        'We spell a term out with its abbreviation in brackets on first use, for example "change '
        'request (CR)", and use the abbreviation alone afterwards. Identifiers keep their fixed '
        "forms, such as CR-12345 and INC-1234567.",
        'The first mention gives the full term with the abbreviation in brackets, such as "change '
        'request (CR)"; later mentions use the abbreviation alone. Record numbers such as CR-12345 '
        "keep their fixed shape."), (
        "Can a message start straight away with an acronym like MTTR?",
        "No. Write the full expression first and add the short form in brackets after it, for "
        "instance mean time to resolve (MTTR); from then on the short form is enough. Reference "
        "numbers like INC-1234567 are written in their fixed form throughout.")),
    F("style-guide", None, (
        "What tone should our messages have?",
        "Are exclamation marks or emoji allowed in company messages?",
        "Which words and symbols does our writing standard rule out?"), (
        'Our messages are formal and institutional, and "we" speaks for the company. We do not '
        "use slang, emoji, exclamation marks or filler phrases, and we keep paragraphs short.",
        'We write formally, with "we" speaking for Kestrel Systems. Messages stay in short '
        "paragraphs and leave out slang, emoji, exclamation marks and filler."), (
        "What register is expected when I write on behalf of the company?",
        'A formal, institutional register: the company speaks as "we", paragraphs are brief, and '
        "colloquial words, emoji, exclamation marks and phrases that add nothing are left out.")),
    F("style-guide", None, (
        "When should an answer cite a knowledge base article?",
        "Do I need to reference the KB in my replies?",
        "In what way do we point colleagues towards the relevant article?"), (
        'When a {KB} applies, we cite it by its identifier, for example "see KB-1042". Knowledge '
        'answers end with a line such as "Reference: KB-1042".',
        'If a {KB} covers the topic, the reply names it by number, as in "see KB-1042", and a '
        'knowledge answer closes with the line "Reference: KB-1042".'), (
        "Must replies mention an article number whenever one exists?",
        'Yes. Whenever a {KB} is relevant, quote its identifier in the text (for instance "see '
        'KB-1042"); in the knowledge answer format, the last line of the body is "Reference:" '
        "followed by that identifier.")),
    # glossary
    F("glossary", "KB-3004", (
        "What is a configuration item?",
        "What does CI mean at Kestrel?",
        "Define the word configuration item as we use it internally."), (
        "A {CI} is any component we manage to deliver a service, such as a server, a network "
        "device or an application. Every {CI} is recorded in the {CMDB} with its owner and its "
        "relationships.",
        "We call any managed component that supports a service a {CI}: a server, a network device "
        "or an application, for example. Each one has a record in the {CMDB} that names its owner "
        "and its relationships."), (
        "Is a single firewall counted as a CI?",
        "Yes. Any part of the estate that we run in order to provide a service counts as a {CI}, "
        "whether hardware like a firewall or software like an application. The {CMDB} holds an "
        "entry for it, including who owns it and what it is connected to.")),
    F("glossary", None, (
        "What does MTTR measure?",
        "How is mean time to resolve calculated?",
        "Explain the MTTR figure in our service reviews."), (
        "{^MTTR} is the average time from logging an incident to its resolution, measured over a "
        "calendar month. We report it per priority in the monthly service review.",
        "{^MTTR} takes every incident resolved in a calendar month and averages the time between "
        "logging and resolution. The monthly service review shows it for each priority."), (
        "What exactly does the resolution figure per priority in our monthly review mean?",
        "That figure is the {MTTR}: for one calendar month, the mean span from the moment an "
        "incident is logged until it is resolved, reported separately for each priority level.")),
    F("glossary", None, (
        "What is an operational level agreement?",
        "What does OLA stand for and what does it cover?",
        "Describe what an OLA is for."), (
        "An {OLA} is an agreement between two internal teams, such as the Service Desk and the "
        "{NOC}, that supports a customer {SLA}. It sets the internal response and handover "
        "times that let us meet the {SLA}.",
        "Two internal teams agree an {OLA} with each other, for example the Service Desk and the "
        "{NOC}. It fixes the internal response and handover times that a customer {SLA} depends "
        "on."), (
        "Why would the Service Desk sign an agreement with another of our own teams?",
        "Such a document is an {OLA}. It commits one internal team to another, say the Service "
        "Desk to the {NOC}, on response and handover times, so that together we can keep the "
        "promises of the customer {SLA}.")),
    F("glossary", None, (
        "What does end of life mean for a system?",
        "What happens when a product reaches EOL?",
        "How are systems past their vendor support date treated?"), (
        "A system reaches {EOL} when the vendor no longer provides fixes or security updates. "
        "We record the {EOL} date against the {CI} in the {CMDB} and plan the replacement "
        "through a {CR} at least six months before that date.",
        "{^EOL} is the date after which the vendor stops shipping fixes and security updates. The "
        "date is stored with the {CI} in the {CMDB}, and the replacement is planned through a {CR} "
        "no later than six months ahead of it."), (
        "Our vendor will stop patching a switch next year; what do we have to do?",
        "Once patches stop, the switch is at {EOL}. Enter that date on its {CI} record in the "
        "{CMDB}, then raise a {CR} for the replacement so that it is planned a minimum of six "
        "months before support ends.")),
    F("glossary", None, (
        "What format do incident and change identifiers use?",
        "How are CR, SR and INC numbers written?",
        "Show me the fixed shape of each record number we use."), (
        "Identifiers have fixed forms: CR-12345 for a {CR}, SR-123456 for a {SR}, INC-1234567 "
        "for an incident, PRB-1234 for a {PRB} and KB-1042 for a {KB}.",
        "Each record type has its own number pattern: a {CR} looks like CR-12345, a {SR} like "
        "SR-123456, an incident like INC-1234567, a {PRB} like PRB-1234 and a {KB} like KB-1042."), (
        "How many digits follow the prefix in a problem record number, compared with the others?",
        "A {PRB} carries four digits (PRB-1234). The other patterns are five for a {CR} (CR-12345), "
        "six for a {SR} (SR-123456) and seven for an incident (INC-1234567); articles are written "
        "KB-1042.")),
    F("glossary", None, (
        "What is a service request?",
        "When do I raise a service request?",
        "Which kinds of need count as a service request?"), (
        "A {SR} is a request for something new or standard, such as access, equipment or "
        "information, where nothing is broken. Colleagues raise it in the self-service portal, "
        "and it receives a number in the form SR-123456.",
        "Raise a {SR} when you need something standard or new, for example access, equipment or "
        "information, and nothing is broken. It is logged in the self-service portal with a "
        "number such as SR-123456."), (
        "I just need a new laptop bag, nothing is faulty; what do I log?",
        "That is a {SR}: an ask for equipment, access or information while every service works "
        "normally. Submit it through the self-service portal; it is numbered in the SR-123456 "
        "pattern.")),
    # incident management
    F("incident-management-policy", None, (
        "How do I report an incident?",
        "What is the first step when a service stops working?",
        "Where should colleagues log a service interruption?"), (
        "Report the incident to the Service Desk through the portal or by telephone on extension "
        "4000. The Service Desk logs it with a number in the form INC-1234567, sets the priority "
        "and assigns a resolver group.",
        "Contact the Service Desk, either in the portal or on extension 4000. We log the incident "
        "as INC-1234567 or similar, set its priority and pass it to a resolver group."), (
        "The printer floor has lost all network access; who do I tell and how?",
        "Call extension 4000 or use the portal to reach the Service Desk. The desk records an "
        "incident number of the INC-1234567 kind, decides the priority and routes the case to the "
        "right resolver group.")),
    F("incident-management-policy", None, (
        "What is a major incident?",
        "When is a major incident declared?",
        "Who is responsible for declaring a major incident, and what follows?"), (
        "Every {P1} incident is treated as a major incident. The duty incident manager declares "
        "it, opens a bridge call within 15 minutes and sends updates at least every 30 minutes "
        "until the service is restored.",
        "A {P1} incident is always a major incident. The duty incident manager declares it, starts "
        "a bridge call within 15 minutes and keeps updates coming every 30 minutes or more often "
        "until the service is back."), (
        "What changes once the duty incident manager calls a P1 a major incident?",
        "All {P1} cases are major incidents. After the declaration a bridge call must be running "
        "within 15 minutes, and the duty incident manager issues an update no less often than "
        "every 30 minutes until the service has been restored.")),
    F("incident-management-policy", None, (
        "How often must we send updates for an open incident?",
        "What is the update interval for incident notices?",
        "At what rhythm do customers hear from us during an incident?"), (
        "We send updates every 30 minutes for {P1}, every 60 minutes for {P2} and once per "
        "business day for {P3} and {P4} incidents. Each update uses the incident notice "
        "template and states the time of the next update.",
        "Update frequency depends on priority: every 30 minutes for {P1}, every 60 minutes for "
        "{P2}, and once per business day for {P3} and {P4}. Every update follows the incident "
        "notice template and says when the next one is due."), (
        "A P2 has been open for two hours; how many notices should customers have had by now?",
        "For {P2} the cadence is one notice per 60 minutes, so two by now. {^P1} is updated every "
        "30 minutes and {P3} or {P4} once a business day; each notice is written in the incident "
        "notice format and gives the time of the following one.")),
    F("incident-management-policy", "KB-1520", (
        "When is a root cause analysis required?",
        "Which incidents need an RCA?",
        "Does every incident call for a root cause analysis?"), (
        "A {RCA} is required for every {P1} incident and for any {P2} incident that recurs within "
        "30 days. The {RCA} is recorded in a {PRB} and is due within 5 business days of "
        "resolution.",
        "Every {P1} incident needs a {RCA}, and so does a {P2} incident that happens again within "
        "30 days. We record it in a {PRB}, due 5 business days after resolution."), (
        "A P2 came back three weeks after we fixed it; is an analysis of the cause needed?",
        "Yes. A repeat of a {P2} inside 30 days triggers a {RCA}, as every {P1} does. The analysis "
        "lives in a {PRB} and has to be finished no more than 5 business days after the incident "
        "is resolved.")),
    F("incident-management-policy", None, (
        "What do I do if an incident looks like a security breach?",
        "When should an incident go to the SOC?",
        "How do we deal with an incident that might be a cyber attack?"), (
        "Suspected security incidents go to the {SOC} immediately, whatever their priority. Do "
        "not switch off affected systems; the {SOC} decides on containment and evidence "
        "handling.",
        "Pass any suspected security incident to the {SOC} straight away, at any priority. Leave "
        "affected systems running: the {SOC} decides how to contain the attack and handle the "
        "evidence."), (
        "A server shows signs of ransomware; should I power it off first?",
        "Leave it on and hand the case to the {SOC} at once, regardless of priority. Containment "
        "steps and the preservation of evidence are decisions for the {SOC}.")),
    F("incident-management-policy", None, (
        "When can an incident be closed?",
        "Who confirms that an incident is resolved?",
        "What has to happen before an incident record is closed?"), (
        "An incident is closed when the service is restored and the reporter confirms it, or "
        "after 3 business days without a reply. The resolver records the cause and the fix and "
        "links any related {PRB}.",
        "We close an incident once the service works again and the reporter confirms it, or when "
        "3 business days pass without a reply. Before closing, the resolver notes the cause and "
        "the fix and links any related {PRB}."), (
        "The user never answered my resolution mail; can I shut the incident anyway?",
        "Yes, once 3 business days have gone by with no reply; otherwise closure waits for the "
        "reporter to confirm the service is restored. Either way, document cause and fix in the "
        "record and attach any associated {PRB}.")),
    # change management
    F("change-management-policy", None, (
        "What types of change do we have?",
        "Which change categories does the policy define?",
        "Into which classes do we sort changes?"), (
        "We have three types. A {STD} is low risk and follows a documented procedure approved in "
        "advance; a normal change is assessed by the {CAB}; an {ECR} restores or protects a "
        "service and is approved by the {ECAB}.",
        "The policy knows three kinds of change: a {STD}, which is low risk and follows a "
        "procedure approved beforehand; a normal change, which the {CAB} assesses; and an {ECR}, "
        "which restores or protects a service with {ECAB} approval."), (
        "Is every change reviewed by the weekly board?",
        "Only normal changes are. A {STD} runs on a low-risk procedure that was signed off in "
        "advance, and an {ECR}, needed to restore or protect a service, goes to the {ECAB} "
        "instead."), CM),
    F("change-management-policy", None, (
        "When does the CAB meet?",
        "What is the deadline for submitting a change to CAB?",
        "By which day must a normal change be in to make the weekly review?"), (
        "The {CAB} meets every Tuesday at 10:00 UTC. A normal {CR} must be submitted by 17:00 UTC "
        "on the preceding Thursday to be reviewed that week.",
        "The {CAB} sits on Tuesdays at 10:00 UTC. To be reviewed that week, a normal {CR} has to "
        "be in by Thursday 17:00 UTC the week before."), (
        "If I file my change on Friday morning, which board meeting will look at it?",
        "Not the coming one: the cut-off for a Tuesday 10:00 UTC {CAB} session is 17:00 UTC on the "
        "Thursday before it, so a {CR} filed on Friday waits for the meeting after that."), CM),
    F("change-management-policy", None, (
        "Who approves an emergency change?",
        "How is the ECAB convened?",
        "What sign-off does an emergency change require?"), (
        "An {ECR} needs approval by the {ECAB}: the duty change manager, the service owner and a "
        "senior engineer from the affected team. The duty change manager convenes it by "
        "telephone within 1 hour, and the {CAB} reviews the change at its next meeting.",
        "The {ECAB} approves every {ECR}. It consists of the duty change manager, the service owner "
        "and a senior engineer of the affected team, is called by telephone within 1 hour, and the "
        "{CAB} looks at the change again at its next meeting."), (
        "Who sits on the board that authorises urgent fixes at night?",
        "That board is the {ECAB}, which signs off each {ECR}: the duty change manager calls it "
        "together by phone inside 1 hour, alongside the owner of the service and a senior engineer "
        "of the team concerned. The regular {CAB} then reviews the change afterwards."), CM),
    F("change-management-policy", None, (
        "Does every change need a rollback plan?",
        "What must a rollback plan contain?",
        "Is a back-out procedure compulsory for every change?"), (
        "Every {CR} must include a tested rollback plan with the steps, the time it needs and "
        "the decision point for invoking it. A {CR} without a rollback plan is returned to the "
        "requester.",
        "Yes. Each {CR} carries a tested rollback plan that lists the steps, how long they take and "
        "when the decision to invoke it is made. Requests without one go back to the requester."), (
        "What happens to a change submitted with no way to undo it?",
        "It is sent back. A {CR} is accepted only with a rollback plan that has been tested and "
        "that states its steps, its duration and the point at which we decide to use it."), CM),
    F("change-management-policy", "KB-1310", (
        "When may changes be implemented?",
        "Can a normal change run outside the maintenance window?",
        "At what hours is change work on customer services permitted?"), (
        "Normal changes that affect customer services run in the standard {MW}, Saturday 22:00 "
        "to Sunday 04:00 UTC. Work outside the {MW} needs explicit approval from the {CAB}.",
        "A normal change that touches customer services is carried out in the standard {MW}, from "
        "22:00 UTC on Saturday to 04:00 UTC on Sunday. Any other time needs explicit {CAB} "
        "approval."), (
        "Could we patch a customer platform on a Wednesday afternoon?",
        "Only if the {CAB} explicitly approves it. Normal changes to customer services belong in "
        "the standard {MW}, which starts 22:00 UTC each Saturday and finishes 04:00 UTC the next "
        "morning."), CM),
    F("change-management-policy", None, (
        "Is there a change freeze at year end?",
        "When is the annual change freeze?",
        "Which dates does this winter's freeze cover?"), (
        "A change freeze applies from 2026-12-18 to 2027-01-04. During the freeze we implement "
        "only {ECR+s} approved by the {ECAB}.",
        "Yes: from 2026-12-18 until 2027-01-04 changes are frozen. Only {ECR+s} with {ECAB} "
        "approval go ahead in that period."), (
        "Can I schedule a normal change for 2026-12-28?",
        "No. That date falls inside the freeze running 2026-12-18 to 2027-01-04, when the only work "
        "carried out is an {ECR} signed off by the {ECAB}."), CM),
    F("change-management-policy", None, (
        "How is the risk of a change assessed?",
        "What does the risk assessment in a CR include?",
        "Walk me through how change risk gets scored."), (
        "The requester rates impact and likelihood from 1 to 3 each, and their product is the "
        "risk score. A score of 6 or more, or any change to a {CI} marked critical in the "
        "{CMDB}, is high risk and needs a senior reviewer before the {CAB}.",
        "Impact and likelihood are each rated 1 to 3 by the requester and multiplied to give the "
        "risk score. Scores of 6 or more, and any change to a {CI} flagged critical in the {CMDB}, "
        "count as high risk and need a senior reviewer ahead of the {CAB}."), (
        "My change scores impact 2 and likelihood 3; is that high risk?",
        "Yes. Multiplying the two ratings gives 6, and anything from 6 upwards is high risk, as is "
        "work on a {CI} that the {CMDB} marks as critical. A senior reviewer must check it before "
        "it reaches the {CAB}."), CM),
    # service levels and priorities
    F("sla-and-priorities", None, (
        "What is a P1 incident?",
        "What are the response and resolution targets for priority 1?",
        "How fast do we have to react to a P1, and fix it?"), (
        "{^P1} is a complete loss of a business-critical service. The response target is 15 "
        "minutes and the resolution target is 4 hours, around the clock.",
        "A {P1} means a business-critical service is completely lost. We respond within 15 minutes "
        "and resolve within 4 hours, day and night."), (
        "The whole payroll system is down for everyone; what deadlines apply?",
        "A business-critical service that is entirely unavailable is {P1}. Someone must pick it up "
        "inside 15 minutes, and it must be fixed inside 4 hours, day and night alike.")),
    F("sla-and-priorities", None, (
        "What counts as a P2 incident?",
        "What are the targets for a priority 2 incident?",
        "Which response time and fix time belong to P2?"), (
        "{^P2} is a major degradation of a service. The response target is 30 minutes and the "
        "resolution target is 8 hours, around the clock.",
        "A {P2} is a major degradation. We respond within 30 minutes and resolve within 8 hours, "
        "at any time of day."), (
        "E-mail is working but extremely slow for most staff; how is that classified?",
        "Heavy degradation like this is {P2}. The targets are a first response no later than 30 "
        "minutes and a fix no later than 8 hours, with the clock running through nights and "
        "weekends.")),
    F("sla-and-priorities", None, (
        "What is a P3 incident?",
        "What response and resolution times apply to priority 3?",
        "Give me the P3 definition together with its targets."), (
        "{^P3} is an incident with minor impact. The response target is 4 business hours and "
        "the resolution target is 3 business days.",
        "A {P3} has minor impact. It gets a response within 4 business hours and a resolution "
        "within 3 business days."), (
        "A handful of users see an error in one report; what priority and deadlines?",
        "Limited impact of that kind is {P3}: we answer inside 4 business hours and aim to close "
        "it inside 3 business days.")),
    F("sla-and-priorities", None, (
        "What is a P4?",
        "How long do we have to resolve a priority 4 item?",
        "Which targets belong to the lowest priority level?"), (
        "{^P4} covers a request or a cosmetic issue. The response target is 1 business day and "
        "the resolution target is 10 business days.",
        "A {P4} is a request or a cosmetic fault. We respond within 1 business day and resolve "
        "within 10 business days."), (
        "A logo on the portal is slightly misaligned; how quickly must it be fixed?",
        "A purely cosmetic fault is {P4}. The first response is due inside 1 business day and the "
        "fix inside 10 business days.")),
    F("sla-and-priorities", None, (
        "What are business hours for SLA purposes?",
        "How are business hours defined in the SLA?",
        "Do P3 targets count weekends?"), (
        "Business hours are 08:00 to 18:00 UTC, Monday to Friday, excluding the public holidays "
        "in the customer contract. {^P3} and {P4} targets count business hours only; {P1} and "
        "{P2} targets run around the clock.",
        "For the {SLA}, business hours run from 08:00 to 18:00 UTC on weekdays, without the public "
        "holidays named in the customer contract. Only {P3} and {P4} targets use them; {P1} and "
        "{P2} targets run day and night."), (
        "Does a P4 logged on Friday evening start counting before Monday?",
        "No. {^P4} and {P3} clocks advance only between 08:00 and 18:00 UTC from Monday to Friday, "
        "and not on the contract's public holidays; the {P1} and {P2} clocks, by contrast, never "
        "stop.")),
    F("sla-and-priorities", None, (
        "How do we report SLA performance?",
        "When is the monthly SLA report published?",
        "Who gets to see how we performed against the service levels each month?"), (
        "We publish the {SLA} report by the fifth business day of each month. It shows response "
        "and resolution performance and {MTTR} per priority, and service owners review it with "
        "their customers.",
        "The monthly {SLA} report appears by the fifth business day. It covers response and "
        "resolution performance and {MTTR} for each priority, and service owners go through it "
        "with their customers."), (
        "By when will last month's service level figures be out?",
        "The {SLA} report comes out no later than the fifth business day of the month, with "
        "performance against response and resolution targets and the {MTTR} broken down by "
        "priority. Each service owner discusses it with the customers concerned.")),
    F("sla-and-priorities", None, (
        "Does the SLA clock stop while we wait for the customer?",
        "When is the resolution clock paused?",
        "Can the timer on an incident be put on hold?"), (
        "The resolution clock pauses only while an incident has the status Awaiting customer, "
        "and the pause is recorded with its reason. The response clock never pauses.",
        "Only the resolution clock can pause, and only while the incident is set to Awaiting "
        "customer, with the reason recorded. The response clock keeps running."), (
        "We are waiting for a customer to send logs; does the fix deadline keep ticking?",
        "Set the incident to Awaiting customer and note why: that status is the one case in which "
        "the resolution timer stops. There is no pause at all for the response timer.")),
    # DR and BCP
    F("dr-bcp-summary", None, (
        "What are the RTO and RPO for tier 1 services?",
        "How fast must a tier 1 service be restored after a disaster?",
        "Which recovery objectives cover our most critical services?"), (
        "Tier 1 services have a {RTO} of 4 hours and a {RPO} of 15 minutes. They run in both data "
        "centres, Leeds and Frankfurt, with replicated storage.",
        "For tier 1, the {RTO} is 4 hours and the {RPO} is 15 minutes. These services run in both "
        "data centres, Leeds and Frankfurt, on replicated storage."), (
        "If Leeds is lost, how long may a tier 1 service stay down?",
        "At most 4 hours, which is the tier 1 {RTO}, and no more than 15 minutes of data may be lost "
        "under its {RPO}. Tier 1 services are active in Frankfurt as well as Leeds, with storage "
        "replicated between them."), NOC),
    F("dr-bcp-summary", None, (
        "What are the recovery objectives for tier 2 services?",
        "How much data can a tier 2 service lose in a disaster?",
        "For a tier 2 system, what restore time and data loss are accepted?"), (
        "Tier 2 services have a {RTO} of 24 hours and a {RPO} of 4 hours. They are restored from "
        "replicas in the secondary data centre.",
        "A tier 2 service has a {RTO} of 24 hours and a {RPO} of 4 hours, and we restore it from "
        "replicas held in the secondary data centre."), (
        "How long can a second-tier system take to come back after losing its site?",
        "Up to 24 hours, its {RTO}, with up to 4 hours of data lost, its {RPO}. Recovery uses the "
        "replicas kept in the secondary data centre."), NOC),
    F("dr-bcp-summary", None, (
        "What RTO applies to tier 3 services?",
        "How are tier 3 services recovered?",
        "What does recovery look like for the least critical tier?"), (
        "Tier 3 services have a {RTO} of 72 hours and a {RPO} of 24 hours. They are restored "
        "from the nightly backups.",
        "For tier 3 the {RTO} is 72 hours and the {RPO} 24 hours; these services come back from "
        "the nightly backups."), (
        "A tier 3 reporting tool was lost in the outage; what is the recovery promise?",
        "It is rebuilt from the nightly backups within 72 hours, the {RTO} for tier 3, and the "
        "data may be up to 24 hours old, its {RPO}."), NOC),
    F("dr-bcp-summary", None, (
        "How often do we test disaster recovery?",
        "When are DR tests carried out?",
        "What is the schedule for failover exercises?"), (
        "We test {DR} failover for every tier 1 service twice a year and for tier 2 services once "
        "a year. Tests run in the {MW}, and the results go to the service owner within 10 "
        "business days.",
        "{^DR} failover is tested twice a year for each tier 1 service and once a year for tier 2. "
        "The tests take place in the {MW}, and the service owner receives the results within 10 "
        "business days."), (
        "Has a tier 2 service got to be failed over for testing every six months?",
        "No, annually is enough for tier 2; tier 1 is exercised twice yearly. {^DR} tests are run "
        "inside the {MW}, and their outcome is reported to the owner of the service no later than "
        "10 business days afterwards."), NOC),
    F("dr-bcp-summary", None, (
        "Who can invoke the business continuity plan?",
        "How is the BCP activated?",
        "What triggers continuity arrangements and who decides?"), (
        "The crisis management team, led by the duty director, invokes the {BCP}. Staff then "
        "follow the site instructions in the {BCP}, and the Service Desk operates from the "
        "alternate office in Manchester.",
        "The {BCP} is invoked by the crisis management team under the duty director. Colleagues "
        "then follow its site instructions, and the Service Desk moves to the alternate office in "
        "Manchester."), (
        "If our main office becomes unusable, who decides that continuity arrangements start?",
        "The duty director, leading the crisis management team, puts the {BCP} into effect. After "
        "that everyone works to the site instructions it contains, with the Service Desk running "
        "from the Manchester alternate office.")),
    F("dr-bcp-summary", None, (
        "How often is the BCP reviewed?",
        "When was the business continuity plan last updated?",
        "What review cycle does our continuity plan follow?"), (
        "We review the {BCP} every year and after every invocation. The last review was "
        "completed on 2026-06-30, and the next is due by 2027-06-30.",
        "The {BCP} is reviewed each year and after each invocation. The latest review finished on "
        "2026-06-30; the next one is due by 2027-06-30."), (
        "Is our continuity plan up to date, and when is it next looked at?",
        "Its most recent review was completed on 2026-06-30. The {BCP} is checked once a year and "
        "also whenever it has been invoked, so the following review is due no later than "
        "2027-06-30.")),
    # response templates
    F("response-templates", None, (
        "What sections does an incident notice have?",
        "How is an incident notice structured?",
        "Lay out the parts of our standard outage notification."), (
        "An incident notice starts with the subject line [P<n>] INC-<number>: <service> <short "
        "description>, followed by the sections Summary, Impact, Current status and Next "
        "update.",
        "The subject line of an incident notice reads [P<n>] INC-<number>: <service> <short "
        "description>. The body then has four sections: Summary, Impact, Current status and Next "
        "update."), (
        "What headings must I fill in when I notify customers of a disruption?",
        "Four, after a subject of the form [P<n>] INC-<number>: <service> <short description>. In "
        "order they are Summary, Impact, Current status, and Next update.")),
    F("response-templates", None, (
        "What does a change request summary contain?",
        "Which sections go into a CR summary?",
        "Describe the layout of a change summary for the board."), (
        "A {CR} summary starts with the subject line CR-<number>: <title>, followed by the "
        "sections Purpose, Scope, Risk assessment, Maintenance window, Rollback plan and CAB "
        "decision.",
        "The subject line of a {CR} summary is CR-<number>: <title>. Its sections are Purpose, "
        "Scope, Risk assessment, Maintenance window, Rollback plan and CAB decision."), (
        "In what order do the parts of a change write-up for the board come?",
        "A {CR} summary opens with CR-<number>: <title> as its subject. Six sections follow, "
        "starting with Purpose and Scope, then Risk assessment, then Maintenance window and Rollback "
        "plan, and finally CAB decision."), CM),
    F("response-templates", None, (
        "How do I structure a status update?",
        "What are the sections of a status update?",
        "Which headings belong in a progress report to stakeholders?"), (
        "A status update has four sections: Summary, Progress, Next steps and Contacts. We keep "
        "each section to one short paragraph.",
        "Write a status update in four sections, Summary, Progress, Next steps and Contacts, each "
        "of them one short paragraph."), (
        "How long should each part of a stakeholder status update be?",
        "One brief paragraph per part. The parts of a status update are Summary, then Progress, "
        "then Next steps, and finally Contacts.")),
    F("response-templates", None, (
        "What is the format of a knowledge answer?",
        "How should a knowledge answer end?",
        "What shape does an answer based on an article take?"), (
        'A knowledge answer gives the answer in one or two short paragraphs and then the line '
        '"Reference: KB-<number>" naming the {KB} it relies on.',
        'Write the answer in one or two short paragraphs and finish with "Reference: KB-<number>", '
        "the {KB} the answer is based on."), (
        "What goes on the final line of a reply that is based on an article?",
        'The line "Reference: KB-<number>", identifying the {KB} used. Above it, the answer itself '
        "takes no more than two brief paragraphs.")),
    # KB-1042
    F("kb-1042-password-reset-sso", "KB-1042", (
        "How do I reset my password?",
        "What is the process for a forgotten SSO password?",
        "I cannot remember my sign-in password; how do I set a new one?"), (
        "Go to https://id.kestrel.example, choose Forgot password and confirm the code sent to "
        "your registered {MFA} method. The new password applies to all {SSO} applications "
        "within 5 minutes.",
        "Open https://id.kestrel.example, select Forgot password and confirm the code that your "
        "registered {MFA} method receives. Within 5 minutes the new password works in every {SSO} "
        "application."), (
        "My password expired while I was on holiday; how can I choose a fresh one myself?",
        "Visit https://id.kestrel.example and pick Forgot password, then enter the code delivered "
        "to the {MFA} method you registered. Allow up to 5 minutes before the new password is "
        "active across the {SSO} applications.")),
    F("kb-1042-password-reset-sso", "KB-1042", (
        "What are the password requirements?",
        "How long does my password need to be?",
        "Which rules must a new password satisfy?"), (
        "Passwords must have at least 14 characters and must not repeat any of the last 10 "
        "passwords. We do not require periodic changes unless a compromise is suspected.",
        "A password needs 14 characters or more and may not match any of your last 10 passwords. "
        "Regular changes are needed only if a compromise is suspected."), (
        "Is a 12-character password long enough, and must I change it every quarter?",
        "It is too short: the minimum is 14 characters, and it may not reuse one of your 10 most "
        "recent passwords. There is no scheduled change; you change it when a compromise is "
        "suspected.")),
    F("kb-1042-password-reset-sso", "KB-1042", (
        "My account is locked; what should I do?",
        "How long does an SSO lockout last?",
        "After too many wrong passwords I am shut out, so what now?"), (
        "An {SSO} account locks for 15 minutes after 5 failed attempts. If it is still locked "
        "after that, raise a {SR} or call the Service Desk on extension 4000, and we unlock it "
        "after verifying your identity.",
        "After 5 failed attempts the {SSO} account locks for 15 minutes. If it stays locked, raise "
        "a {SR} or ring the Service Desk on extension 4000; we unlock it once we have verified who "
        "you are."), (
        "I mistyped my password several times and now cannot sign in at all; how long must I wait?",
        "Five wrong entries lock the {SSO} account for 15 minutes. Should the lock remain after "
        "that, log a {SR} or phone extension 4000, and the Service Desk releases it after checking "
        "your identity.")),
    # KB-2051
    F("kb-2051-vpn-mfa", "KB-2051", (
        "How do I connect to the VPN?",
        "What are the steps to sign in to the VPN?",
        "Explain how remote staff get onto the corporate network."), (
        "Open the Kestrel Connect client, select the profile Kestrel-Corp and sign in with your "
        "{SSO} credentials. Approve the {MFA} prompt in the Kestrel Authenticator app within "
        "60 seconds.",
        "Start the Kestrel Connect client, choose the Kestrel-Corp profile and sign in with your "
        "{SSO} credentials, then approve the {MFA} prompt in the Kestrel Authenticator app within "
        "60 seconds."), (
        "I am working from a hotel tonight; how do I get onto the internal network?",
        "Launch Kestrel Connect, pick Kestrel-Corp as the profile and enter your {SSO} user name "
        "and password. A {MFA} request then appears in the Kestrel Authenticator app; accept it "
        "before 60 seconds have passed.")),
    F("kb-2051-vpn-mfa", "KB-2051", (
        "I have a new phone; how do I move my MFA?",
        "How do I re-register the authenticator app on a new device?",
        "My handset was replaced, so how does my verification app get set up again?"), (
        "Raise a {SR} with the category Access-MFA before you reset your old phone. The Service "
        "Desk sends a one-time enrolment code that is valid for 24 hours.",
        "Before you reset the old phone, raise a {SR} in the category Access-MFA. The Service Desk "
        "then sends a one-time enrolment code, valid for 24 hours."), (
        "I am about to wipe my old handset; what should I do first so I keep sign-in working?",
        "Log a {SR} under Access-MFA while the old phone still works. You receive a single-use "
        "enrolment code from the Service Desk, and it expires after 24 hours.")),
    F("kb-2051-vpn-mfa", "KB-2051", (
        "Why does my VPN connection drop?",
        "How long does a VPN session last?",
        "The remote connection keeps ending on its own, is that expected?"), (
        "VPN sessions end after 12 hours and must be started again. If the connection drops "
        "more often, export the client log under Help, Export logs, and report an incident with "
        "the log attached.",
        "A VPN session ends after 12 hours, and you start a new one. If it drops more often than "
        "that, export the log from Help, Export logs, and report an incident with the log "
        "attached."), (
        "My remote session closed after a full working day; is that a fault?",
        "Not if it ran for 12 hours, the maximum session length; simply reconnect. Shorter drops "
        "are worth reporting: save the client log through Help, Export logs, and attach it to an "
        "incident."), NOC),
    F("kb-2051-vpn-mfa", "KB-2051", (
        "Can I use a hardware token instead of the app?",
        "Is there an alternative to the authenticator app for MFA?",
        "What if I cannot use a mobile phone for verification at work?"), (
        "Yes. We issue hardware tokens to colleagues who cannot use a mobile phone at work. "
        "Request one through a {SR} in the category Access-MFA; tokens are sent within 3 "
        "business days.",
        "Colleagues who cannot use a mobile phone at work receive a hardware token. Request it "
        "with a {SR} in the category Access-MFA, and it arrives within 3 business days."), (
        "Phones are banned in my secure area; how do I pass the second sign-in factor?",
        "Ask for a hardware token by logging a {SR} under Access-MFA. Tokens are "
        "provided to anyone unable to use a phone at work and are dispatched inside 3 business "
        "days.")),
    # KB-1310
    F("kb-1310-maintenance-windows", "KB-1310", (
        "When is the standard maintenance window?",
        "What are the hours of the weekly maintenance window?",
        "On which night does our regular planned work happen?"), (
        "The standard {MW} runs from Saturday 22:00 to Sunday 04:00 UTC. Customer services may "
        "be unavailable during this time once customers have been notified.",
        "Our standard {MW} is from 22:00 UTC on Saturday to 04:00 UTC on Sunday. Once customers "
        "have been notified, their services may be unavailable during it."), (
        "At what time does the weekly slot for planned work close?",
        "The standard {MW} closes at 04:00 UTC on Sunday, six hours after it opens at 22:00 UTC "
        "on Saturday. Notified customers can lose service for the duration."), CM),
    F("kb-1310-maintenance-windows", "KB-1310", (
        "How much notice must customers get before maintenance?",
        "When do we notify customers of planned work?",
        "How far in advance are clients told about scheduled work?"), (
        "Customers receive notice at least 5 business days before work in the standard {MW} and "
        "at least 10 business days before an extended {MW}.",
        "We give customers 5 business days' notice or more for work in the standard {MW}, and 10 "
        "business days or more for an extended {MW}."), (
        "If we plan a long Sunday-morning session, how early must the customer hear about it?",
        "An extended {MW} requires a notice period of no less than 10 business days; ordinary work "
        "in the standard {MW} requires 5."), CM),
    F("kb-1310-maintenance-windows", "KB-1310", (
        "What if the work needs more than six hours?",
        "What is an extended maintenance window?",
        "Can planned work go beyond the usual Sunday morning finish?"), (
        "An extended {MW} runs from Saturday 22:00 to Sunday 10:00 UTC. It needs approval from "
        "the {CAB} and is limited to four per year for each customer service.",
        "Work longer than six hours can use an extended {MW}, from 22:00 UTC on Saturday to 10:00 "
        "UTC on Sunday. The {CAB} must approve it, and each customer service may have four per "
        "year."), (
        "Our migration needs ten hours; is there a longer slot we can use?",
        "Yes, an extended {MW}, which lasts until 10:00 UTC on Sunday, beginning at 22:00 UTC on "
        "Saturday. It requires {CAB} sign-off, and no customer service may have more than four of "
        "them per year."), CM),
    F("kb-1310-maintenance-windows", "KB-1310", (
        "What happens if a change overruns the window?",
        "What should an implementer do when work will not finish in time?",
        "Is there a cut-off time for invoking the rollback during planned work?"), (
        "If the work will not finish by 03:30 UTC, the implementer invokes the rollback plan "
        "unless the change manager approves a short extension. An overrun beyond 04:00 UTC is "
        "logged as an incident.",
        "When the work cannot finish by 03:30 UTC, the implementer starts the rollback plan, "
        "unless the change manager agrees a short extension. Running past 04:00 UTC is logged as "
        "an incident."), (
        "It is 03:20 UTC and my change is only half done; what now?",
        "Unless the change manager grants a brief extension, begin the rollback as soon as it is "
        "clear the work will miss 03:30 UTC. Anything still running after 04:00 UTC becomes an "
        "incident."), CM),
    # KB-1187
    F("kb-1187-phishing-reporting", "KB-1187", (
        "How do I report a phishing e-mail?",
        "What should I do with a suspicious e-mail?",
        "Someone sent me a dodgy message asking for my login; where does it go?"), (
        "Use the Report Phishing button in Outlook, or forward the message as an attachment to "
        "phishing@kestrel.example. Do not click links or reply. The {SOC} reviews every report "
        "within 4 hours.",
        "Press Report Phishing in Outlook, or send the message as an attachment to "
        "phishing@kestrel.example, without clicking its links or replying. The {SOC} looks at "
        "each report within 4 hours."), (
        "An odd mail asks me to confirm my bank details; how do I flag it?",
        "Click the Report Phishing button in Outlook; alternatively attach the mail to a new "
        "message addressed to phishing@kestrel.example. Leave its links alone and send no answer. "
        "Each report reaches the {SOC}, which assesses it inside 4 hours."), SOC),
    F("kb-1187-phishing-reporting", "KB-1187", (
        "What should I do if I clicked a link in a phishing e-mail?",
        "I entered my password on a fake page; what now?",
        "What steps follow after falling for a fraudulent e-mail?"), (
        "Call the Service Desk on extension 4000 immediately and reset your password as "
        "described in KB-1042. The {SOC} then checks your device and your account activity.",
        "Ring the Service Desk on extension 4000 straight away and reset your password following "
        "KB-1042. After that, the {SOC} checks your device and the activity on your account."), (
        "I typed my credentials into a page that turned out to be fake; what is step one?",
        "Phone extension 4000 at once so the Service Desk knows, and change your password using "
        "the steps in KB-1042. Afterwards the {SOC} will review your laptop and recent sign-ins."), SOC),
    F("kb-1187-phishing-reporting", "KB-1187", (
        "How can I recognise a phishing e-mail?",
        "What are the signs of a phishing message?",
        "Which clues suggest that an e-mail is not genuine?"), (
        "Typical signs are an unexpected request for credentials or payment, a sender address "
        "outside kestrel.example, pressure to act quickly and links that do not match the "
        "displayed text.",
        "Watch for an unexpected request for credentials or payment, a sender outside "
        "kestrel.example, pressure to act fast, and links whose target differs from the text "
        "shown."), (
        "What gives away a fake e-mail pretending to be from IT?",
        "Warning signs include being asked out of the blue for a password or a payment, an address "
        "that is not on kestrel.example, urgency, and links that point somewhere other than their "
        "visible text suggests."), SOC),
    # KB-1520
    F("kb-1520-problem-records-rca", "KB-1520", (
        "When do we raise a problem record?",
        "What triggers a PRB?",
        "In which situations must somebody open a problem record?"), (
        "We raise a {PRB} when an incident recurs three times in 30 days, after every {P1} "
        "incident, or when the cause of an incident is unknown. Problem records have numbers in "
        "the form PRB-1234.",
        "A {PRB} is opened after every {P1} incident, when an incident comes back three times in "
        "30 days, or when nobody knows an incident's cause. Its number looks like PRB-1234."), (
        "The same disk alert has produced three incidents this month; should something else be "
        "opened?",
        "Yes, a {PRB}: three repeats within 30 days is one trigger, alongside any {P1} and any "
        "incident with an unknown cause. It receives an identifier in the PRB-1234 pattern.")),
    F("kb-1520-problem-records-rca", "KB-1520", (
        "What must a root cause analysis contain?",
        "What goes into an RCA document?",
        "List what a finished root cause analysis has to include."), (
        "A {RCA} contains the timeline in UTC, the root cause, the contributing factors, the "
        "actions taken and the preventive actions with owners and due dates.",
        "Every {RCA} has a UTC timeline, the root cause, the contributing factors, the actions "
        "taken and the preventive actions, each with an owner and a due date."), (
        "I have been asked to write up why the storage failed; which parts are mandatory?",
        "That write-up is a {RCA}. It must set out what happened in time order, in UTC, the root "
        "cause and contributing factors, what was done, and preventive actions with named owners "
        "and deadlines.")),
    F("kb-1520-problem-records-rca", "KB-1520", (
        "What is a known error?",
        "How do we handle a problem with a known workaround?",
        "Explain the known-error status of a problem record."), (
        "A known error is a {PRB} whose root cause and workaround are documented. We publish the "
        "workaround as a {KB} so that the Service Desk can resolve matching incidents faster.",
        "When a {PRB} has its root cause and workaround documented, it is a known error. The "
        "workaround is published as a {KB}, which helps the Service Desk resolve matching "
        "incidents faster."), (
        "We found a workaround for a recurring fault; where does it get written down?",
        "Once cause and workaround are recorded, the {PRB} becomes a known error, and the "
        "workaround goes into a {KB} so that Service Desk agents can apply it to similar incidents "
        "quickly.")),
    # KB-3004
    F("kb-3004-cmdb-configuration-items", "KB-3004", (
        "Who updates the CMDB?",
        "When must the CMDB be updated?",
        "Whose duty is it to keep configuration records current?"), (
        "The owner of a {CI} updates the {CMDB} as part of every {CR}; the {CR} is not closed "
        "until the record is updated. Change Management audits a sample of 50 records each "
        "month.",
        "Each {CI} owner updates the {CMDB} within every {CR}, and the {CR} stays open until that "
        "is done. Change Management audits 50 records a month."), (
        "I replaced a router last night; when does its configuration entry have to change?",
        "As part of the same {CR}: the {CI} owner amends the {CMDB} entry, and the {CR} may only be "
        "closed afterwards. Each month Change Management checks a sample of 50 entries."), CM),
    F("kb-3004-cmdb-configuration-items", "KB-3004", (
        "What information does a CI hold?",
        "Which fields does a configuration item have?",
        "What details are stored for each component in the configuration database?"), (
        "Each {CI} records its name, type, owner team, service, location, support contract and "
        "{EOL} date, together with its relationships to other {CI+s}.",
        "A {CI} record holds the name, type, owner team, service, location, support contract and "
        "{EOL} date, plus the relationships to other {CI+s}."), (
        "What do I fill in when registering a new server in the configuration database?",
        "Its {CI} entry needs a name, a type, the owning team, the service it supports, where it "
        "is, which support contract covers it and its {EOL} date, as well as how it relates to "
        "other {CI+s}.")),
]


class Comparison(NamedTuple):
    a: str
    b: str
    answers: tuple[str, ...]      # training answers
    held: str                     # held-out answer (dev or eval)
    doc: str
    team: str = DEFAULT_TEAM


C = Comparison
COMPARISONS: list[Comparison] = [
    C("a standard change", "a normal change", (
        "A {STD} is low risk, follows a documented procedure approved in advance and needs no {CAB} "
        "review for each occurrence. A normal change is assessed individually: it is submitted by "
        "Thursday 17:00 UTC and reviewed by the {CAB} on Tuesday. Use a {STD} only when the "
        "procedure matches the work exactly.",
        "A normal change is reviewed one by one by the {CAB} on Tuesday, after submission by "
        "Thursday 17:00 UTC. A {STD} skips that review because it follows a low-risk procedure "
        "approved in advance, but only when the work matches the procedure exactly."),
        "Pick a {STD} when the work fits a pre-approved, low-risk procedure word for word; each "
        "occurrence then goes ahead without a {CAB} decision. Anything else is a normal change, "
        "which must be filed by 17:00 UTC on Thursday for the Tuesday {CAB} meeting.",
        "change-management-policy", CM),
    C("a normal change", "an emergency change", (
        "A normal change is planned, reviewed by the {CAB} at its weekly meeting and implemented in "
        "the {MW}. An {ECR} restores or protects a service that cannot wait for the next meeting; "
        "the {ECAB} approves it within 1 hour, and the {CAB} reviews it afterwards.",
        "An {ECR} restores or protects a service that cannot wait, so the {ECAB} approves it within "
        "1 hour and the {CAB} reviews it later. A normal change waits for the weekly {CAB} meeting "
        "and is implemented in the {MW}."),
        "The deciding question is urgency. Planned work goes through the weekly {CAB} and runs in "
        "the {MW}; work that has to restore or protect a service before the board meets is an "
        "{ECR}, signed off by the {ECAB} inside 1 hour and looked at by the {CAB} after the event.",
        "change-management-policy", CM),
    C("the CAB", "the ECAB", (
        "The {CAB} meets every Tuesday at 10:00 UTC and reviews normal changes. The {ECAB} is "
        "convened by telephone within 1 hour for {ECR+s} only and consists of the duty change "
        "manager, the service owner and a senior engineer.",
        "The {ECAB} handles {ECR+s} only: the duty change manager, the service owner and a senior "
        "engineer, called by telephone within 1 hour. The {CAB} reviews normal changes at its "
        "Tuesday meeting at 10:00 UTC."),
        "One is a standing meeting and the other is called on demand. The {CAB} sits at 10:00 UTC "
        "each Tuesday for normal changes, while the {ECAB}, made up of a senior engineer, the "
        "owner of the service and the duty change manager, is phoned together inside 1 hour whenever an "
        "{ECR} needs a decision.",
        "change-management-policy", CM),
    C("a P1", "a P2", (
        "{^P1} is a complete loss of a business-critical service, with a response target of 15 "
        "minutes and a resolution target of 4 hours. {^P2} is a major degradation, with targets "
        "of 30 minutes and 8 hours. Both run around the clock, and every {P1} is handled as a "
        "major incident.",
        "{^P2} is a major degradation with targets of 30 minutes to respond and 8 hours to resolve; "
        "{P1} is a complete loss of a business-critical service with 15 minutes and 4 hours. Both "
        "clocks run day and night, and every {P1} is a major incident."),
        "The difference is total loss against heavy degradation. A business-critical service that "
        "is completely gone is {P1}: 15 minutes to respond, 4 hours to fix, and always a major "
        "incident. A badly degraded one is {P2}: 30 minutes and 8 hours. Neither clock stops at "
        "night.",
        "sla-and-priorities"),
    C("a P3", "a P4", (
        "{^P3} is an incident with minor impact: response within 4 business hours and resolution "
        "within 3 business days. {^P4} is a request or a cosmetic issue: response within 1 "
        "business day and resolution within 10 business days.",
        "{^P4} covers requests and cosmetic issues, answered within 1 business day and resolved "
        "within 10 business days. {^P3} is minor impact, answered within 4 business hours and "
        "resolved within 3 business days."),
        "Minor impact on users makes it {P3}, with a reply due inside 4 business hours and a fix "
        "inside 3 business days. A cosmetic fault or a plain request is {P4}, which allows 1 "
        "business day to reply and 10 business days to fix.",
        "sla-and-priorities"),
    C("a service request", "an incident", (
        "A {SR} asks for something new or standard, such as access or equipment, when nothing is "
        "broken; it is numbered SR-123456. An incident is an unplanned interruption or degradation "
        "of a service; it is numbered INC-1234567 and is measured against the priority targets.",
        "An incident is an unplanned interruption or degradation of a service, numbered "
        "INC-1234567 and measured against the priority targets. A {SR} asks for something new or "
        "standard while nothing is broken, and is numbered SR-123456."),
        "Ask whether something is broken. If a service is interrupted or degraded without warning, "
        "log an incident (INC-1234567), which runs against the priority targets. If you simply "
        "need access, equipment or information, raise a {SR} (SR-123456).",
        "glossary"),
    C("an incident", "a problem record", (
        "An incident records one interruption and aims to restore the service quickly. A {PRB} "
        "looks for the underlying cause of one or more incidents and records the {RCA} and the "
        "preventive actions (see KB-1520).",
        "A {PRB} looks for the underlying cause behind one or more incidents and holds the {RCA} "
        "and the preventive actions. An incident covers a single interruption, and its goal is to "
        "restore the service quickly (see KB-1520)."),
        "They answer different questions. The incident is about getting one disrupted service "
        "working again fast; the {PRB} asks why disruptions happen, across however many incidents, "
        "and stores the {RCA} together with actions that prevent a repeat (see KB-1520).",
        "kb-1520-problem-records-rca"),
    C("RTO", "RPO", (
        "The {RTO} is how long a service may take to be restored after a disaster; the {RPO} is "
        "how much data, measured in time, may be lost. For tier 1 services the {RTO} is 4 hours "
        "and the {RPO} is 15 minutes.",
        "The {RPO} measures in time how much data may be lost in a disaster, and the {RTO} how long "
        "the restore may take. Tier 1 services have a {RPO} of 15 minutes and a {RTO} of 4 hours."),
        "One limits downtime, the other data loss. The {RTO} caps the time until a service is "
        "running again after a disaster, while the {RPO} caps how far back in time the recovered "
        "data may reach; tier 1 allows 4 hours and 15 minutes respectively.",
        "dr-bcp-summary", NOC),
    C("an SLA", "an OLA", (
        "A {SLA} is our commitment to a customer, with response and resolution targets per "
        "priority. An {OLA} is an agreement between internal teams, such as the Service Desk and "
        "the {NOC}, that sets the handover times needed to meet the {SLA}.",
        "An {OLA} is agreed between internal teams, for example the Service Desk and the {NOC}, and "
        "sets the handover times that the customer commitment depends on. That commitment is the "
        "{SLA}, with response and resolution targets per priority."),
        "The counterparty differs. Customers get a {SLA}, which promises response and resolution "
        "times for each priority; our own teams (for instance the {NOC} and the Service Desk) agree "
        "an {OLA} between themselves to fix the handovers that make those promises achievable.",
        "glossary"),
    C("the authenticator app", "a hardware token", (
        "Both satisfy {MFA} for the VPN and {SSO}. The Kestrel Authenticator app is the default and "
        "is set up on your phone; a hardware token is issued through a {SR} in the category "
        "Access-MFA to colleagues who cannot use a phone at work (see KB-2051).",
        "A hardware token and the Kestrel Authenticator app both satisfy {MFA} for the VPN and "
        "{SSO}. The app on your phone is the default; a token is issued through a {SR} in the "
        "category Access-MFA when you cannot use a phone at work (see KB-2051)."),
        "Either one works as the second factor, {MFA}, for {SSO} and VPN sign-in. Most colleagues "
        "use the Kestrel Authenticator app on their phone, and anyone who is not allowed or able "
        "to use a phone at work requests a token with a {SR} under Access-MFA (see KB-2051).",
        "kb-2051-vpn-mfa"),
    C("the standard maintenance window", "an extended maintenance window", (
        "The standard {MW} runs from Saturday 22:00 to Sunday 04:00 UTC and needs 5 business days' "
        "notice. An extended {MW} runs until Sunday 10:00 UTC, needs {CAB} approval and 10 business "
        "days' notice, and is limited to four per year per service (see KB-1310).",
        "An extended {MW} lasts until Sunday 10:00 UTC, needs {CAB} approval and 10 business days' "
        "notice, and each service may have four per year. The standard {MW}, Saturday 22:00 to "
        "Sunday 04:00 UTC, needs 5 business days' notice (see KB-1310)."),
        "Length, approval and notice set them apart. Both begin at 22:00 UTC on Saturday; the "
        "standard {MW} ends at 04:00 UTC and customers hear 5 business days ahead, whereas the "
        "extended {MW} continues to 10:00 UTC, requires the {CAB} to approve it and 10 business "
        "days of notice, and is capped at four a year for each service (see KB-1310).",
        "kb-1310-maintenance-windows", CM),
    C("tier 1", "tier 2 recovery", (
        "Tier 1 services run in both data centres, with a {RTO} of 4 hours and a {RPO} of 15 "
        "minutes, and are tested twice a year. Tier 2 services are restored from replicas in the "
        "secondary data centre, with a {RTO} of 24 hours and a {RPO} of 4 hours, and are tested "
        "once a year.",
        "Tier 2 services come back from replicas in the secondary data centre, with a {RTO} of 24 "
        "hours and a {RPO} of 4 hours, tested once a year. Tier 1 services run in both data "
        "centres, with a {RTO} of 4 hours and a {RPO} of 15 minutes, tested twice a year."),
        "Tier 1 is active in Leeds and Frankfurt at once, so it must be back within 4 hours, its "
        "{RTO}, losing at most 15 minutes of data, its {RPO}, and it is exercised twice yearly. "
        "Tier 2 relies on replicas at the secondary site, allows 24 hours and 4 hours, and is "
        "exercised annually.",
        "dr-bcp-summary", NOC),
    C("a known error", "an open problem record", (
        "Both are {PRB+s}. An open {PRB} is still under investigation; a known error has a "
        "documented root cause and workaround, which we publish as a {KB} so the Service Desk can "
        "resolve matching incidents (see KB-1520).",
        "A known error and an open {PRB} are both problem records. The known error has its root "
        "cause and workaround documented and published as a {KB} for the Service Desk; the open "
        "{PRB} is still being investigated (see KB-1520)."),
        "The status tells you how far the investigation is. While the cause is still being looked "
        "for, the {PRB} is open; as soon as cause and workaround are written down it counts as a "
        "known error, and the workaround is released as a {KB} for resolving similar incidents "
        "(see KB-1520).",
        "kb-1520-problem-records-rca"),
]

# The glossary terms a correct answer to a fact's question must use (its subject), keyed by the
# fact's first training question. The builder keeps only those the reference answer uses; a
# request's own terms (named in its wording) are added automatically.
SUBJECTS: dict[str, tuple[str, ...]] = {
    "When should an answer cite a knowledge base article?": ("knowledge base article",),
    "What is a configuration item?": ("configuration item", "configuration management database"),
    "What does MTTR measure?": ("mean time to resolve",),
    "What is an operational level agreement?": ("operational level agreement", "service level agreement"),
    "What does end of life mean for a system?": ("end of life", "change request"),
    "What is a service request?": ("service request",),
    "How do I report an incident?": ("incident",),
    "What is a major incident?": ("priority 1", "incident"),
    "How often must we send updates for an open incident?": ("incident",),
    "When is a root cause analysis required?": ("root cause analysis", "problem record"),
    "What do I do if an incident looks like a security breach?": ("Security Operations Centre",),
    "When can an incident be closed?": ("incident",),
    "What types of change do we have?": ("standard change", "emergency change", "Change Advisory Board"),
    "When does the CAB meet?": ("Change Advisory Board",),
    "Who approves an emergency change?": ("emergency change",),
    "Does every change need a rollback plan?": ("change request",),
    "When may changes be implemented?": ("maintenance window", "Change Advisory Board"),
    "Is there a change freeze at year end?": ("emergency change",),
    "How is the risk of a change assessed?": ("Change Advisory Board",),
    "What is a P1 incident?": ("priority 1",),
    "What counts as a P2 incident?": ("priority 2",),
    "What is a P3 incident?": ("priority 3",),
    "What is a P4?": ("priority 4",),
    "What are business hours for SLA purposes?": ("priority 3", "priority 4"),
    "How do we report SLA performance?": ("service level agreement", "mean time to resolve"),
    "What are the RTO and RPO for tier 1 services?": ("recovery time objective", "recovery point objective"),
    "What are the recovery objectives for tier 2 services?": ("recovery time objective", "recovery point objective"),
    "What RTO applies to tier 3 services?": ("recovery time objective", "recovery point objective"),
    "How often do we test disaster recovery?": ("disaster recovery",),
    "Who can invoke the business continuity plan?": ("business continuity plan",),
    "How often is the BCP reviewed?": ("business continuity plan",),
    "What sections does an incident notice have?": ("incident",),
    "What does a change request summary contain?": ("change request",),
    "What is the format of a knowledge answer?": ("knowledge base article",),
    "How do I reset my password?": ("single sign-on", "multi-factor authentication"),
    "My account is locked; what should I do?": ("single sign-on",),
    "How do I connect to the VPN?": ("single sign-on", "multi-factor authentication"),
    "I have a new phone; how do I move my MFA?": ("service request",),
    "Why does my VPN connection drop?": ("incident",),
    "Can I use a hardware token instead of the app?": ("service request",),
    "When is the standard maintenance window?": ("maintenance window",),
    "How much notice must customers get before maintenance?": ("maintenance window",),
    "What if the work needs more than six hours?": ("maintenance window", "Change Advisory Board"),
    "What happens if a change overruns the window?": ("incident",),
    "How do I report a phishing e-mail?": ("Security Operations Centre",),
    "What should I do if I clicked a link in a phishing e-mail?": ("Security Operations Centre",),
    "When do we raise a problem record?": ("problem record",),
    "What must a root cause analysis contain?": ("root cause analysis",),
    "What is a known error?": ("problem record", "knowledge base article"),
    "Who updates the CMDB?": ("configuration management database", "configuration item"),
    "What information does a CI hold?": ("configuration item",),
}

# Held-out summaries: standalone key points per document, in new words (the held-out answers
# above reply to one question each and do not stand alone as summary points). Each document
# belongs to one held-out split.
HELD_SUMMARIES: dict[str, dict[str, list[str]]] = {
    "eval": {
        "incident-management-policy": [
            "Colleagues report incidents to the Service Desk, by portal or on extension 4000.",
            "A {P1} is always handled as a major incident, with a bridge call inside 15 minutes.",
            "Customers hear from us every 30 minutes on a {P1} and every 60 minutes on a {P2}.",
            "Suspected security incidents pass straight to the {SOC}, whatever their priority.",
            "An incident closes once the reporter confirms the fix, or after 3 business days of silence."],
        "change-management-policy": [
            "Changes come in three kinds: standard, normal and emergency.",
            "Normal changes reach the {CAB}, which sits on Tuesdays at 10:00 UTC.",
            "An {ECR} is approved by the {ECAB}, called together within 1 hour.",
            "No {CR} is accepted without a tested rollback plan.",
            "Between 2026-12-18 and 2027-01-04 only emergency work goes ahead."],
        "sla-and-priorities": [
            "Four priorities set the targets, from {P1} (15 minutes and 4 hours) down to {P4}.",
            "Clocks for {P3} and {P4} advance in business hours, 08:00 to 18:00 UTC on weekdays.",
            "The resolution clock stops only while an incident waits on the customer.",
            "The monthly {SLA} report is out by the fifth business day."],
        "dr-bcp-summary": [
            "Tier 1 must return within 4 hours and lose no more than 15 minutes of data.",
            "Tier 2 allows 24 hours of downtime and 4 hours of lost data; tier 3 allows 72 and 24.",
            "Failover is exercised twice a year for tier 1 and yearly for tier 2.",
            "The duty director's crisis management team decides when the {BCP} applies."],
        "kb-1310-maintenance-windows": [
            "Planned work on customer services uses the Saturday night slot, ending 04:00 UTC on Sunday.",
            "Customers are told 5 business days ahead, or 10 for an extended {MW}.",
            "An extended {MW} lasts until 10:00 UTC and is capped at four a year per service.",
            "Work that will miss 03:30 UTC is rolled back unless the change manager extends it."],
        "kb-1187-phishing-reporting": [
            "Suspicious mail goes through the Report Phishing button or to phishing@kestrel.example.",
            "The {SOC} assesses every report inside 4 hours.",
            "Anyone who clicked a link calls extension 4000 and changes their password at once.",
            "Messages impersonating other companies are reported in exactly the same way."],
        "data-protection-policy": [
            "Personal data is gathered for a stated purpose and kept only as the retention schedule allows.",
            "Colleagues' private details, pay, health, reviews and whereabouts are never passed on; HR "
            "handles such requests.",
            "Work contact details in the staff directory may be shared.",
            "Suspected breaches reach the {SOC} inside 1 hour through the Data Breach category."],
        "hr-self-service-guide": [
            "Staff keep their own address, phone and emergency contact current in the HR portal.",
            "Annual leave is 25 days a year, with up to 5 days carried into March.",
            "Sickness is paid in full for 15 days in a rolling 12 months, then at half pay for 15 more.",
            "Reviews happen each January, with a check-in in July."],
    },
    "dev": {
        "style-guide": [
            "Every message opens with a salutation and ends with Kind regards and the sending team.",
            "Dates use the YYYY-MM-DD order and times the 24-hour clock in UTC.",
            "A term is written out in full, with its short form, the first time it appears.",
            "Slang, emoji and exclamation marks have no place in our writing."],
        "kb-1042-password-reset-sso": [
            "Passwords are reset by the owner at https://id.kestrel.example with an {MFA} code.",
            "A password needs 14 characters and may not repeat one of the previous 10.",
            "Five failed attempts lock the {SSO} account for 15 minutes."],
        "kb-2051-vpn-mfa": [
            "Remote access runs through Kestrel Connect with the Kestrel-Corp profile.",
            "The {MFA} prompt must be approved within 60 seconds.",
            "A session lasts at most 12 hours before a new one is needed."],
        "kb-1520-problem-records-rca": [
            "Three repeats of an incident in 30 days, or any {P1}, lead to a {PRB}.",
            "A {RCA} records the timeline, the cause and preventive actions with owners.",
            "Known errors get their workaround published as a {KB}."],
        "kb-3004-cmdb-configuration-items": [
            "Owners bring the {CMDB} up to date inside every {CR}.",
            "Change Management checks 50 records a month.",
            "Each {CI} entry holds its owner team, service, location, contract and {EOL} date."],
        "staff-directory-guide": [
            "The staff directory shows work contact details: role, team, office, extension and work e-mail.",
            "Outlook's Scheduling Assistant shows when colleagues are free or busy.",
            "Out-of-office replies and the Deputy field say who covers for an absent colleague.",
            "On-call rotas for the {NOC} and {SOC} are published a week ahead."],
    },
}
