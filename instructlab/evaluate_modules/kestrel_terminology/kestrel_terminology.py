"""Terminology: share of answers using all their expected Kestrel terms and none of the avoid-terms."""

import datasets
import evaluate

from instructlab.metrics import term_rules, terminology_score

_DESCRIPTION = ("Share of answers that use every expected glossary term (preferred form or abbreviation, "
                "any case) and none of the brief's terms to avoid (instructlab.metrics.terminology_score).")
_INPUTS = "predictions: list of answers. references: list of lists of expected terms, e.g. [['CR', 'CAB']]."


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class KestrelTerminology(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_INPUTS,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Sequence(datasets.Value("string"))}))

    def _compute(self, predictions, references):
        rules = term_rules()
        ok = [terminology_score(p, r, rules).ok for p, r in zip(predictions, references)]
        return {"terminology": sum(ok) / len(ok) if ok else None, "n": len(ok)}
