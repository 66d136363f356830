"""Corporate tone 1-5 by the kit's rule-based rubric scorer (instructlab.metrics.rubric_tone)."""

import datasets
import evaluate

from instructlab.metrics import TONE_COMPONENTS, rubric_tone, term_rules

_DESCRIPTION = ("Mean rubric tone (1-5) of answers against the Kestrel house style, content included: an "
                "answer that does not respond to its request scores at most 2 and a refusal without reason "
                "and team at most 3. Also the pass rate of each rubric component (greeting, sign-off, responds, "
                "abbreviation_first_use, ...). This is the rule-based scorer, not an LLM judge.")
_INPUTS = ("predictions: list of answers. templates (optional kwarg): template name or None per answer. "
           "prompts, categories (optional kwargs): the request and its category (domain / decline / lookalike) "
           "per answer; without them only the substance of the answer is checked.")


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class KestrelTone(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(description=_DESCRIPTION, citation="", inputs_description=_INPUTS,
                                   features=datasets.Features({"predictions": datasets.Value("string")}))

    def _compute(self, predictions, templates=None, prompts=None, categories=None):
        n = len(predictions)
        templates, prompts, categories = templates or [None] * n, prompts or [None] * n, categories or [None] * n
        rules = term_rules()
        scores = [rubric_tone(p, t, {"prompt": q or "", "category": c} if q or c else None, rules)
                  for p, t, q, c in zip(predictions, templates, prompts, categories)]
        out = {"tone": sum(s.score for s in scores) / len(scores) if scores else None, "n": len(scores)}
        for c in TONE_COMPONENTS:
            vals = [s.components.get(c) for s in scores if s.components.get(c) is not None]
            out[f"pass_{c}"] = sum(vals) / len(vals) if vals else None
        return out
