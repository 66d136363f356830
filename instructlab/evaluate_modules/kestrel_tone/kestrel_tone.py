"""Corporate tone 1-5 by the kit's rule-based rubric scorer (instructlab.metrics.rubric_tone)."""

import datasets
import evaluate

from instructlab.metrics import TONE_COMPONENTS, rubric_tone

_DESCRIPTION = ("Mean rubric tone (1-5) of answers against the Kestrel house style, with the pass rate of "
                "each rubric component (greeting, sign-off, no exclamation/emoji/slang, ...). This is the "
                "rule-based scorer, not an LLM judge.")
_INPUTS = "predictions: list of answers. templates (optional kwarg): template name or None per answer."


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class KestrelTone(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(description=_DESCRIPTION, citation="", inputs_description=_INPUTS,
                                   features=datasets.Features({"predictions": datasets.Value("string")}))

    def _compute(self, predictions, templates=None):
        templates = templates or [None] * len(predictions)
        scores = [rubric_tone(p, t) for p, t in zip(predictions, templates)]
        out = {"tone": sum(s.score for s in scores) / len(scores) if scores else None, "n": len(scores)}
        for c in TONE_COMPONENTS:
            vals = [s.components.get(c) for s in scores if s.components.get(c) is not None]
            out[f"pass_{c}"] = sum(vals) / len(vals) if vals else None
        return out
