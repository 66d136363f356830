"""Terminology: recall of the required Kestrel terms per answer, with a stuffing penalty (metrics.terminology_score)."""

import datasets
import evaluate

from instructlab.metrics import term_rules, terminology_score

_DESCRIPTION = ("Mean per-answer terminology score: the share of the required glossary terms the answer uses "
                "(preferred form in any case, or the abbreviation as a case-sensitive whole token), times a "
                "penalty for stuffing terms the request does not call for (instructlab.metrics.terminology_score). "
                "Also the mean recall and the share of answers using a term to avoid that the prompt did not "
                "contain.")
_INPUTS = ("predictions: list of answers. references: list of lists of required terms, e.g. [['CR', 'CAB']]. "
           "prompts (optional kwarg): the requests (their own terms count as relevant, their avoid-terms are "
           "not counted).")


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class KestrelTerminology(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_INPUTS,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Sequence(datasets.Value("string"))}))

    def _compute(self, predictions, references, prompts=None):
        rules = term_rules()
        prompts = prompts or [None] * len(predictions)
        res = [terminology_score(p, r, rules, prompt=q) for p, r, q in zip(predictions, references, prompts)]
        scored = [x for x in res if x.score is not None]
        return {"terminology": sum(x.score for x in scored) / len(scored) if scored else None,
                "recall": sum(x.recall for x in scored) / len(scored) if scored else None,
                "avoid_term_rate": sum(bool(x.avoided) for x in res) / len(res) if res else None,
                "n": len(scored)}
