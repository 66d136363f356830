"""Training and generation see the same tokens.

For each chat-template family on both embedded tokenizers (SmolLM2: no BOS added by default;
Gemma-3: BOS added by default), the ids that the generation paths feed the model (batched
``generate.generate_answers``, notebook 00's ``models.complete_text`` and the local chat backend
``llm.LocalChat``) must equal the first ids of the training example of the same conversation
(``masking.tokenize_with_mask``), up to the answer's first trained token. The model is recorded by a
stand-in whose ``generate`` keeps the ids it was given, so the real generation code is exercised.
"""

import copy
from types import SimpleNamespace

import pytest
import torch

from chat_templates import TEMPLATES
from instructlab import generate, llm, masking, models

TOKENIZERS = ("smollm2-135m-instruct", "gemma-3-270m")
FAMILIES = ("own",) + tuple(TEMPLATES)  # "own": the tokenizer's own (or the kit's default) template
SYSTEM = {"role": "system", "content": "You are the Kestrel assistant."}
ONE = [{"role": "user", "content": "Summarise the outage report, please."},
       {"role": "assistant", "content": "Certainly. The outage lasted 42 minutes."}]
TWO = ONE + [{"role": "user", "content": "And the cause?"},
             {"role": "assistant", "content": "A failed power supply in rack 7."}]


class RecordingModel(torch.nn.Module):
    """Stands in for a causal LM: records the unpadded ids of each row and 'generates' EOS."""

    def __init__(self, eos: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.config = SimpleNamespace(bos_token_id=None)
        self.eos, self.seen = eos, []

    @property
    def device(self):
        return self.weight.device

    @property
    def dtype(self):
        return self.weight.dtype

    def generate(self, input_ids=None, attention_mask=None, **kwargs):
        mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        self.seen += [row[m.bool()].tolist() for row, m in zip(input_ids, mask)]
        return torch.cat([input_ids, torch.full((len(input_ids), 1), self.eos)], dim=1)


@pytest.fixture(scope="module", params=TOKENIZERS)
def base_tok(request):
    return models.load_tokenizer(request.param)


def tokenizer_for(base_tok, family):
    if family == "own":
        return base_tok
    tok = copy.copy(base_tok)
    tok.chat_template = TEMPLATES[family]
    return tok


def first_trained(example):
    return next(i for i, label in enumerate(example["labels"]) if label != masking.IGNORE_INDEX)


def last_turn_start(example):
    """Index of the first trained token of the final assistant turn."""
    runs = masking.trained_runs(example["labels"])
    return runs[-1][0]


def assert_agrees(tok, prompt_ids, conversation):
    ex = masking.tokenize_with_mask(tok, conversation)
    start = last_turn_start(ex) if len(conversation) > 3 else first_trained(ex)
    assert prompt_ids == ex["input_ids"][:len(prompt_ids)], (
        tok.decode(prompt_ids[:8]), tok.decode(ex["input_ids"][:8]))
    assert len(prompt_ids) <= start, "the generation prompt runs into the trained answer"
    # the prompt ends where the answer's header ends: what lies between is template text, never content
    gap = tok.decode(ex["input_ids"][len(prompt_ids):start])
    assert not gap.strip() or "think" in gap, gap


@pytest.mark.real_model
@pytest.mark.parametrize("family", FAMILIES)
def test_batched_generation_prompt_is_the_training_prefix(base_tok, family):
    tok = tokenizer_for(base_tok, family)
    model = RecordingModel(tok.eos_token_id)
    # two prompts of different lengths in one batch: left padding is exercised
    generate.generate_answers(model, tok, [[SYSTEM] + ONE, TWO], max_new_tokens=1, batch_size=2, progress=False)
    assert len(model.seen) == 2
    longer, shorter = sorted(model.seen, key=len, reverse=True)
    assert_agrees(tok, longer, TWO)  # TWO's prompt holds two more turns than ONE's
    assert_agrees(tok, shorter, [SYSTEM] + ONE)


@pytest.mark.real_model
@pytest.mark.parametrize("family", FAMILIES)
def test_notebook_00_chat_completion_prompt_is_the_training_prefix(base_tok, family):
    tok = tokenizer_for(base_tok, family)
    model = RecordingModel(tok.eos_token_id)
    models.complete_text(model, tok, ONE[0]["content"], max_new_tokens=1, chat=True, system=SYSTEM["content"])
    assert_agrees(tok, model.seen[0], [SYSTEM] + ONE)


@pytest.mark.real_model
@pytest.mark.parametrize("family", FAMILIES)
def test_local_chat_backend_prompt_is_the_training_prefix(base_tok, family):
    tok = tokenizer_for(base_tok, family)
    chat = llm.LocalChat("unused", max_new_tokens=1)
    chat._model, chat._tokenizer = RecordingModel(tok.eos_token_id), tok  # no model load
    chat.complete(TWO[:-1])
    assert_agrees(tok, chat._model.seen[0], TWO)


@pytest.mark.real_model
def test_bos_rule_on_both_tokenizers():
    """Gemma adds BOS by default: exactly one BOS whether or not the template writes it.
    SmolLM2 adds none: the ids are the render's tokens as they are."""
    gemma, smol = models.load_tokenizer("gemma-3-270m"), models.load_tokenizer("smollm2-135m-instruct")
    assert masking.tokenizer_adds_bos(gemma) and not masking.tokenizer_adds_bos(smol)
    for family in ("own", "chatml", "phi3", "llama3", "gemma"):
        tok = tokenizer_for(gemma, family)
        ids = masking.prompt_ids(tok, ONE[:1])
        assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1, family
        ex = masking.tokenize_with_mask(tok, ONE)
        assert ex["input_ids"][0] == tok.bos_token_id and ex["input_ids"].count(tok.bos_token_id) == 1, family
    chatml = tokenizer_for(smol, "chatml")
    text = masking.render(chatml, ONE[:1], add_generation_prompt=True)
    assert masking.prompt_ids(chatml, ONE[:1]) == smol(text, add_special_tokens=False)["input_ids"]
