"""Refusal rate of answers with the kit's documented detector (``instructlab.metrics.is_refusal``)."""

import datasets
import evaluate

from instructlab.metrics import is_refusal, precision_recall

_DESCRIPTION = ("Share of answers that decline the request, by instructlab.metrics.is_refusal (first-person "
                "decline phrases such as 'we cannot share', 'I'm sorry, but I can't'). With labels "
                "(1 = refusal, 0 = not) it also returns the detector's precision, recall and F1.")
_INPUTS = "predictions: list of answer strings. labels (optional kwarg): list of 0/1 refusal labels."


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class KestrelRefusal(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_INPUTS,
            features=datasets.Features({"predictions": datasets.Value("string")}))

    def _compute(self, predictions, labels=None):
        flags = [is_refusal(p) for p in predictions]
        out = {"refusal_rate": sum(flags) / len(flags) if flags else None, "n": len(flags)}
        if labels is not None:
            pr = precision_recall(flags, [bool(r) for r in labels])
            out.update(precision=pr["precision"], recall=pr["recall"], f1=pr["f1"])
        return out
