"""Template structure compliance for Kestrel template answers (instructlab.metrics.template_compliance)."""

import datasets
import evaluate

from instructlab.metrics import template_compliance

_DESCRIPTION = ("Share of answers that follow their response template: subject line where the template has "
                "one, every section present and in order (incident, change, status, knowledge).")
_INPUTS = "predictions: list of answers. references: template name per answer ('incident', 'change', ...)."


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class KestrelTemplate(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(description=_DESCRIPTION, citation="", inputs_description=_INPUTS,
                                   features=datasets.Features({"predictions": datasets.Value("string"),
                                                               "references": datasets.Value("string")}))

    def _compute(self, predictions, references):
        ok = [template_compliance(p, t).compliant for p, t in zip(predictions, references)]
        return {"template_compliance": sum(ok) / len(ok) if ok else None, "n": len(ok)}
