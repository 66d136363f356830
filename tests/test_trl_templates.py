"""Peer cross-check: the kit's masking against TRL's shipped ``*_training.jinja`` templates.

TRL's training templates mark what an assistant emits with ``{% generation %}`` blocks, from which
transformers builds ``return_assistant_tokens_mask``. For each text template, on both embedded
tokenizers, the kit's ``input_ids`` must equal the template's own tokenization (plus the one BOS the
kit's rule adds on Gemma when the template writes none), and every token the kit trains must lie
inside transformers' mask. TRL also trains trailing newlines and injected empty think blocks; the
kit need not, so the check is one-sided. One exception, checked on its own below: transformers'
mask misses the continuation byte-tokens of a multi-byte character that ends a generation block;
the kit trains them.
"""

import copy
from pathlib import Path

import pytest
import trl
from jinja2.exceptions import TemplateError

from instructlab import masking, models

TEMPLATE_DIR = Path(trl.__file__).parent / "chat_templates"
# Vision-language templates iterate over content parts ({"type": "text", ...}); the kit's
# conversations have string contents, which these templates render as nothing.
MULTIMODAL = {"idefics3", "llava_next", "smolvlm"}
TEMPLATES = sorted(p.name[:-len("_training.jinja")] for p in TEMPLATE_DIR.glob("*_training.jinja"))
TOKENIZERS = ("smollm2-135m-instruct", "gemma-3-270m")
SYSTEM = {"role": "system", "content": "You are the Kestrel assistant."}
CONV = [
    {"role": "user", "content": "Reply with exactly: The answer is 42."},
    {"role": "assistant", "content": "The answer is 42."},
    {"role": "user", "content": "Und auf Japanisch — 東京?"},
    {"role": "assistant", "content": "✓ 東京 (Tokyo) – naïve café 🙂 done ✓"},
]


@pytest.fixture(scope="module", params=TOKENIZERS)
def base_tok(request):
    return models.load_tokenizer(request.param)


def with_template(tok, name):
    tok = copy.copy(tok)
    tok.chat_template = (TEMPLATE_DIR / f"{name}_training.jinja").read_text(encoding="utf-8")
    return tok


def conversation_for(tok):
    """With a system message, unless the template refuses one (Gemma 1)."""
    try:
        tok.apply_chat_template([SYSTEM] + CONV, tokenize=False)
        return [SYSTEM] + CONV
    except TemplateError:  # "System role not supported"
        return CONV


def same_character(offsets, i, others):
    """Whether token ``i`` covers only characters that a token in ``others`` also covers
    (a byte-level tokenizer splits one multi-byte character over several tokens)."""
    s, e = offsets[i]
    return any(offsets[j][0] < e and offsets[j][1] > s for j in others)


def test_the_shipped_templates_are_found():
    assert len(TEMPLATES) >= 20 and "gptoss" in TEMPLATES, TEMPLATES


@pytest.mark.real_model
@pytest.mark.parametrize("name", [n for n in TEMPLATES if n not in MULTIMODAL])
def test_kit_ids_equal_the_template_and_trained_tokens_lie_in_the_assistant_mask(base_tok, name):
    tok = with_template(base_tok, name)
    if name.startswith("lfm2") and tok.bos_token == "<|im_start|>":
        pytest.skip("lfm2 writes bos_token then <|im_start|>: on SmolLM2 (BOS = <|im_start|>) that is a "
                    "double BOS, which the kit refuses on purpose (MaskingError)")
    conv = conversation_for(tok)
    ref = tok.apply_chat_template(conv, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ref_ids, mask = list(ref["input_ids"]), list(ref["assistant_masks"])
    assert sum(mask), f"{name}: the template marks no assistant tokens"
    ex = masking.tokenize_with_mask(tok, conv)
    ids = ex["input_ids"]
    shift = len(ids) - len(ref_ids)  # the kit's BOS rule: one BOS when the tokenizer adds it and the render lacks it
    text = tok.apply_chat_template(conv, tokenize=False)
    adds_bos = tok("x")["input_ids"][0] == tok.bos_token_id  # Gemma: yes, SmolLM2: no
    assert shift == int(adds_bos and not text.startswith(tok.bos_token))
    assert ids[:shift] == [tok.bos_token_id] * shift and ids[shift:] == ref_ids
    offsets = tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    inside = [j for j, m in enumerate(mask) if m]
    trained = [i - shift for i, label in enumerate(ex["labels"]) if label != masking.IGNORE_INDEX]
    outside = [i for i in trained if not mask[i] and not same_character(offsets, i, inside)]
    assert not outside, (name, [tok.decode([ref_ids[i]]) for i in outside])
    assert masking.verify_mask(tok, conv, ex)  # each assistant turn trained, with its end marker


@pytest.mark.real_model
def test_gptoss_trains_end_before_more_turns_and_return_after_the_last():
    tok = with_template(models.load_tokenizer("smollm2-135m-instruct"), "gptoss")
    info = masking.template_info(tok)
    assert (info.end_marker, info.final_marker) == ("<|end|>", "<|return|>")
    ex = masking.tokenize_with_mask(tok, CONV)
    runs = [tok.decode(ex["input_ids"][a:b]) for a, b in masking.trained_runs(ex["labels"])]
    # on SmolLM2 these tags are plain text: "<|end|>" shares its last BPE token "><" with the next "<|start|>"
    runs = [r[:-1] if r.endswith("|><") else r for r in runs]
    assert runs == [CONV[1]["content"] + "<|end|>", CONV[3]["content"] + "<|return|>"], runs


@pytest.mark.real_model
def test_transformers_mask_misses_continuation_bytes_the_kit_trains():
    """diffusion_gemma puts the content in its own generation block; an answer ending with "✓"
    (3 UTF-8 bytes, split over byte tokens by SmolLM2) ends that block mid-character. transformers
    maps the block's last character to its first token only, so the rest of "✓" is left out."""
    tok = with_template(models.load_tokenizer("smollm2-135m-instruct"), "diffusion_gemma")
    conv = [{"role": "user", "content": "Done?"}, {"role": "assistant", "content": "Done ✓"}]
    ref = tok.apply_chat_template(conv, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = list(ref["input_ids"]), list(ref["assistant_masks"])
    ex = masking.tokenize_with_mask(tok, conv)
    assert ex["input_ids"] == ids
    trained = {i for i, label in enumerate(ex["labels"]) if label != masking.IGNORE_INDEX}
    missed = sorted(trained - {i for i, m in enumerate(mask) if m})
    assert missed, "transformers' mask now covers the whole character: update the README note"
    assert "✓" in tok.decode(ids[missed[0] - 1:missed[-1] + 1]) and "✓" not in tok.decode(ids[missed[0]:missed[-1] + 1])
    assert tok.decode([ids[i] for i in sorted(trained)]).startswith("Done ✓")
