"""Response-only masking across chat-template families, on the kit's real tokenizers.

The template families live in tests/chat_templates.py and are applied to the SmolLM2 tokenizer
(through ``tiny-random``, which carries it); the embedded SmolLM2 and Gemma tokenizers are tested
with their own (default) templates. Assertions are on specific tokens and decoded text.
"""

import copy

import pytest
import torch

from chat_templates import END_MARKERS, TEMPLATES, TRIMMING
from instructlab import masking, models
from instructlab.masking import (IGNORE_INDEX, MaskedCollator, MaskingError, TruncatedAwayError,
                                 mask_dataset, show_mask, tokenize_with_mask, trained_runs, verify_mask)

SYSTEM = "You are the Kestrel assistant. Never say 'Paris is lovely'."
CONV = [  # system, an answer that the user quotes, unicode, leading/trailing whitespace, 2 turns
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "Reply with exactly: The answer is 42."},
    {"role": "assistant", "content": "The answer is 42."},
    {"role": "user", "content": "Und auf Japanisch — 東京? 🙂"},
    {"role": "assistant", "content": "  東京 (Tokyo) ✓ – naïve café 🙂\n"},
]


@pytest.fixture(scope="module")
def smol_tok():
    return models.load_tokenizer("tiny-random")  # SmolLM2's real tokenizer + ChatML template


def with_template(tok, name):
    tok = copy.copy(tok)
    tok.chat_template = TEMPLATES[name]
    return tok


def run_texts(tok, ex):
    return [tok.decode(ex["input_ids"][a:b], skip_special_tokens=False) for a, b in trained_runs(ex["labels"])]


def expected_run(name, content):
    return (content.strip() if name in TRIMMING else content) + END_MARKERS[name]


def assert_run(name, got, want):
    """Exact, except that a non-special marker (e.g. '<|eot_id|>' for SmolLM2) may share its last
    BPE token with the next header, and a token may carry the separator space before the content."""
    if END_MARKERS[name].strip() in ("<|eot_id|>", "<|end|>", "<end_of_turn>") and got.endswith("<"):
        got = got[:-1]
    assert got.lstrip(" \n") == want.lstrip(" \n"), (name, got, want)


# ---------------------------------------------------------------- template families

@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_trained_tokens_are_assistant_contents_plus_end_marker(smol_tok, name):
    tok = with_template(smol_tok, name)
    ex = tokenize_with_mask(tok, CONV)
    assert masking.template_info(tok).end_marker == END_MARKERS[name]
    runs = run_texts(tok, ex)
    assert len(runs) == 2
    assert_run(name, runs[0], expected_run(name, CONV[2]["content"]))
    if name == "reasoning":
        assert "think>" not in runs[1]  # the empty think block the template adds is not the answer
    assert_run(name, runs[1], expected_run(name, CONV[4]["content"]))
    assert verify_mask(tok, CONV, ex)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_input_ids_are_the_plain_tokenization_and_masked_outside_spans(smol_tok, name):
    tok = with_template(smol_tok, name)
    ex = tokenize_with_mask(tok, CONV)
    text = tok.apply_chat_template(CONV, tokenize=False)
    assert ex["input_ids"] == tok(text, add_special_tokens=False)["input_ids"]
    assert ex["attention_mask"] == [1] * len(ex["input_ids"])
    trained_text = "".join(run_texts(tok, ex))
    for quoted in ("Reply with exactly", "Japanisch", "Kestrel assistant", "Paris is lovely"):
        assert quoted not in trained_text
    labels = ex["labels"]
    assert all(lab in (IGNORE_INDEX, i) for lab, i in zip(labels, ex["input_ids"]))
    assert labels[0] == IGNORE_INDEX and sum(lab != IGNORE_INDEX for lab in labels) < len(labels) / 2


@pytest.mark.parametrize("name", ["chatml", "mistral", "llama2", "reasoning", "chatml_default_system"])
def test_eos_closing_each_assistant_turn_is_trained(smol_tok, name):
    tok = with_template(smol_tok, name)
    ex = tokenize_with_mask(tok, CONV)
    eos = tok.eos_token_id  # <|im_end|> for SmolLM2
    trained_eos = [k for k, lab in enumerate(ex["labels"]) if lab == eos]
    assert len(trained_eos) == 2  # one per assistant turn
    for a, b in trained_runs(ex["labels"]):
        assert ex["input_ids"][b - 1] == eos  # every run ends on the end-of-turn token
    if name.startswith("chatml"):  # the <|im_end|> closing system and user turns stays masked
        assert ex["input_ids"].count(eos) == 5


def test_reasoning_template_drops_think_from_earlier_turns(smol_tok):
    tok = with_template(smol_tok, "reasoning")
    conv = [{"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "<think>Add them.</think>It is 4."},
            {"role": "user", "content": "3+3?"},
            {"role": "assistant", "content": "<think>\nAdd again.\n</think>\n\nIt is 6."}]
    ex = tokenize_with_mask(tok, conv)
    first, last = run_texts(tok, ex)
    assert first == "It is 4.<|im_end|>"  # the template rendered the earlier turn without <think>
    assert last == "<think>\nAdd again.\n</think>\n\nIt is 6.<|im_end|>"
    assert verify_mask(tok, conv, ex)


def test_mistral_system_prompt_moved_to_last_user_turn_is_masked(smol_tok):
    tok = with_template(smol_tok, "mistral")
    text = tok.apply_chat_template(CONV, tokenize=False)
    assert text.index(SYSTEM) > text.index("The answer is 42.", text.index("[/INST]"))
    ex = tokenize_with_mask(tok, CONV)
    assert run_texts(tok, ex)[0] == " The answer is 42.<|im_end|>"


def test_answer_also_in_injected_default_system_prompt(smol_tok):
    tok = with_template(smol_tok, "chatml_default_system")
    conv = [{"role": "user", "content": "Say: Answer the question."},
            {"role": "assistant", "content": "Answer the question."}]
    ex = tokenize_with_mask(tok, conv)
    text = tok.apply_chat_template(conv, tokenize=False)
    assert text.count("Answer the question.") == 3
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    first_trained = trained_runs(ex["labels"])[0][0]
    assert enc["offset_mapping"][first_trained][0] > text.rindex("<|im_start|>assistant")
    assert run_texts(tok, ex) == ["Answer the question.<|im_end|>"]


def test_date_template_masks_the_injected_date(smol_tok):
    tok = with_template(smol_tok, "llama31_date")
    text = tok.apply_chat_template(CONV, tokenize=False)
    assert "Today Date:" in text
    ex = tokenize_with_mask(tok, CONV)
    assert "Date" not in "".join(run_texts(tok, ex))


EDGE_CASES = {
    "system_contains_answer": [{"role": "system", "content": "Always answer OK."},
                               {"role": "user", "content": "Status?"}, {"role": "assistant", "content": "OK."}],
    "user_equals_answer": [{"role": "user", "content": "echo"}, {"role": "assistant", "content": "echo"},
                           {"role": "user", "content": "echo"}, {"role": "assistant", "content": "echo"}],
    "consecutive_assistants": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "One"},
                               {"role": "assistant", "content": "Two"}],
    "assistant_first": [{"role": "assistant", "content": "How can I help?"},
                        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
}


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_edge_conversations(smol_tok, name, case):
    tok, conv = with_template(smol_tok, name), EDGE_CASES[case]
    ex = tokenize_with_mask(tok, conv)
    answers = [m["content"] for m in conv if m["role"] == "assistant"]
    trained = "".join(run_texts(tok, ex))
    squeezed = "".join(trained.split())
    assert squeezed.count(END_MARKERS[name].strip()) == len(answers)
    assert squeezed.startswith("".join(answers[0].split()))
    if case == "system_contains_answer":
        assert "Always" not in trained and "Status" not in trained
    if case == "user_equals_answer":  # two answers trained, the two identical user turns masked
        assert trained.count("echo") == 2
    assert verify_mask(tok, conv, ex)


def test_kestrel_training_data_all_verified(smol_tok):
    from pathlib import Path

    from instructlab.formats import load_records
    path = Path(__file__).resolve().parents[1] / "data" / "kestrel" / "train.jsonl"
    if not path.exists():
        pytest.skip("data/kestrel/train.jsonl not built yet (python -m instructlab.kestrel)")
    records = load_records(path)[:300]
    ds = mask_dataset(smol_tok, records, verify=True, progress=False)
    assert ds.report.n_kept == len(records) and ds.report.n_verified == len(records)
    assert 0.2 < ds.report.trained_fraction < 0.9


# ---------------------------------------------------------------- train_on, truncation, errors

def test_train_on_last_assistant_and_all(smol_tok):
    ex_last = tokenize_with_mask(smol_tok, CONV, train_on="last_assistant")
    # the leading "\n" is the header's newline, merged by BPE with the content's leading spaces
    assert run_texts(smol_tok, ex_last) == ["\n  東京 (Tokyo) ✓ – naïve café 🙂\n<|im_end|>"]
    assert len(trained_runs(ex_last["labels"])) == 1
    assert verify_mask(smol_tok, CONV, ex_last, train_on="last_assistant")
    ex_all = tokenize_with_mask(smol_tok, CONV, train_on="all")
    assert ex_all["labels"] == ex_all["input_ids"]
    with pytest.raises(ValueError, match="train_on"):
        tokenize_with_mask(smol_tok, CONV, train_on="assistants")


def test_truncation_never_gives_zero_loss(smol_tok):
    full = tokenize_with_mask(smol_tok, CONV)
    first_trained = trained_runs(full["labels"])[0][0]
    with pytest.raises(TruncatedAwayError):
        tokenize_with_mask(smol_tok, CONV, max_length=first_trained)
    cut = tokenize_with_mask(smol_tok, CONV, max_length=first_trained + 2)
    assert len(cut["input_ids"]) == first_trained + 2
    assert cut["labels"][-2:] == full["input_ids"][first_trained:first_trained + 2]
    assert verify_mask(smol_tok, CONV, cut)

    long_prompt = [{"role": "user", "content": "word " * 400}, {"role": "assistant", "content": "Short."}]
    ds = mask_dataset(smol_tok, [CONV, long_prompt, {"messages": CONV}], max_length=first_trained + 2,
                      progress=False)
    assert ds.report.n_in == 3 and ds.report.n_kept == 2 and ds.report.n_dropped == 1
    assert ds.report.dropped == [(1, "all trained tokens truncated by max_length")]
    assert ds.report.reasons["all trained tokens truncated by max_length"] == 1
    assert ds.report.n_truncated == 2
    assert all(any(lab != IGNORE_INDEX for lab in ex["labels"]) for ex in ds.examples)


def test_mask_dataset_reports_and_raises_or_drops_bad_records(smol_tok):
    bad = [{"role": "user", "content": "no answer"}]
    with pytest.raises(ValueError, match="conversation 1: .*no assistant turn"):
        mask_dataset(smol_tok, [CONV, bad], progress=False)
    ds = mask_dataset(smol_tok, [CONV, bad, CONV], progress=False, on_error="drop", verify=True)
    assert len(ds) == 2 and ds.report.n_verified == 2 and ds.report.dropped[0][0] == 1
    single = tokenize_with_mask(smol_tok, CONV)
    assert ds[0] == single  # batched path == single-conversation path
    assert ds.report.trained_tokens == 2 * sum(lab != IGNORE_INDEX for lab in single["labels"])
    assert ds.report.total_tokens == 2 * len(single["input_ids"])


def test_verify_mask_catches_wrong_labels(smol_tok):
    ex = tokenize_with_mask(smol_tok, CONV)
    user_tok = next(k for k, lab in enumerate(ex["labels"]) if lab == IGNORE_INDEX and k > 20)
    leaked = dict(ex, labels=list(ex["labels"]))
    leaked["labels"][user_tok] = ex["input_ids"][user_tok]
    with pytest.raises(MaskingError, match="mask check failed") as info:
        verify_mask(smol_tok, CONV, leaked)
    assert "⟦" in str(info.value)  # shows the rendering with trained runs marked
    no_eos = dict(ex, labels=[IGNORE_INDEX if i == smol_tok.eos_token_id else lab
                              for i, lab in zip(ex["input_ids"], ex["labels"])])
    with pytest.raises(MaskingError):
        verify_mask(smol_tok, CONV, no_eos)
    other_ids = dict(ex, input_ids=ex["input_ids"][:-3] + [5, 5, 5])
    with pytest.raises(MaskingError, match="not the tokenization"):
        verify_mask(smol_tok, CONV, other_ids)


def test_template_problems_raise_clear_errors(smol_tok):
    tok = copy.copy(smol_tok)
    tok.chat_template = ("{% for m in messages %}{{ m['role'] + ': ' + (m['content'] | upper if "
                         "m['role'] == 'assistant' else m['content']) + '<|im_end|>\n' }}{% endfor %}")
    with pytest.raises(MaskingError, match="was not found in the rendered conversation"):
        tokenize_with_mask(tok, CONV)
    tok.chat_template = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
    with pytest.raises(MaskingError, match="never learn to stop"):
        tokenize_with_mask(tok, CONV)
    tok.chat_template = None
    with pytest.raises(MaskingError, match="no chat template"):
        tokenize_with_mask(tok, CONV)


# ---------------------------------------------------------------- collator and display

def test_collator_pads_and_still_trains_eos_when_pad_is_eos(smol_tok):
    assert smol_tok.pad_token_id == smol_tok.eos_token_id  # SmolLM2: pad == eos == <|im_end|>
    short = tokenize_with_mask(smol_tok, CONV[1:3])
    long = tokenize_with_mask(smol_tok, CONV)
    batch = MaskedCollator(smol_tok, pad_to_multiple_of=8)([short, long])
    n = len(short["input_ids"])
    assert batch["input_ids"].shape[1] % 8 == 0 and batch["input_ids"].dtype == torch.long
    assert short["input_ids"][-2:] == [smol_tok.eos_token_id, 198]  # "<|im_end|>" "\n"
    assert batch["labels"][0, n - 2].item() == smol_tok.eos_token_id
    assert batch["labels"][0, :n].tolist() == short["labels"]
    assert (batch["labels"][0, n:] == IGNORE_INDEX).all() and (batch["input_ids"][0, n:] == 2).all()
    assert batch["attention_mask"][0].sum().item() == n
    assert (batch["labels"][0] == smol_tok.eos_token_id).sum().item() == 1  # the trained EOS survives
    left = MaskedCollator(smol_tok.pad_token_id, padding_side="left")([short, long])
    assert left["labels"][0, -n:].tolist() == short["labels"] and left["attention_mask"][0, 0] == 0


def test_show_mask_html_and_ansi(smol_tok):
    ex = tokenize_with_mask(smol_tok, CONV)
    view = show_mask(smol_tok, ex)
    n_trained = sum(lab != IGNORE_INDEX for lab in ex["labels"])
    assert view.n_tokens == len(ex["input_ids"]) and view.n_trained == n_trained
    assert f"{view.n_tokens} tokens, {n_trained} trained" in view.html
    assert "<span" in view._repr_html_() and "東" in view.html and "京" in view.html
    assert "\x1b[30;42m" in view.ansi and "The answer is 42." in str(view)
    assert "⟦The answer is 42.<|im_end|>⟧" in view.marked
    assert "".join(view.pieces) == smol_tok.decode(ex["input_ids"], skip_special_tokens=False)
    assert show_mask(smol_tok, CONV, html=False)._repr_html_() is None


# ---------------------------------------------------------------- embedded tokenizers, own templates

@pytest.mark.real_model
def test_smollm2_default_template_injects_system_prompt():
    tok = models.load_tokenizer("smollm2-135m-instruct")
    conv = [{"role": "user", "content": "Who trained you?"},
            {"role": "assistant", "content": "Hugging Face"}]
    text = tok.apply_chat_template(conv, tokenize=False)
    assert "trained by Hugging Face" in text  # the injected default system prompt quotes the answer
    ex = tokenize_with_mask(tok, conv)
    assert run_texts(tok, ex) == ["Hugging Face<|im_end|>"]
    assert ex["input_ids"].count(tok.bos_token_id) == 3  # <|im_start|> opens each of 3 turns, no extra BOS
    assert verify_mask(tok, conv, ex)


@pytest.mark.real_model
def test_gemma_default_template_single_bos_and_end_of_turn():
    tok = models.load_tokenizer("gemma-3-270m")
    ex = tokenize_with_mask(tok, CONV)
    eot = tok.convert_tokens_to_ids("<end_of_turn>")
    assert ex["input_ids"][0] == tok.bos_token_id and ex["input_ids"].count(tok.bos_token_id) == 1
    assert [ex["input_ids"][b - 1] for a, b in trained_runs(ex["labels"])] == [eot, eot]
    assert run_texts(tok, ex)[0] == "The answer is 42.<end_of_turn>"
    assert verify_mask(tok, CONV, ex)
    # a template without BOS on a tokenizer that adds one: exactly one BOS, never zero or two
    gemma_chatml = copy.copy(tok)
    gemma_chatml.chat_template = TEMPLATES["chatml"].replace("<|im_end|>", "<end_of_turn>")
    ex2 = tokenize_with_mask(gemma_chatml, CONV)
    assert ex2["input_ids"][0] == tok.bos_token_id and ex2["input_ids"][1] != tok.bos_token_id
    assert verify_mask(gemma_chatml, CONV, ex2)
    with_bos = copy.copy(tok)
    with_bos.chat_template = TEMPLATES["gemma"]
    ex3 = tokenize_with_mask(with_bos, CONV)
    assert ex3["input_ids"].count(tok.bos_token_id) == 1 and verify_mask(with_bos, CONV, ex3)


def test_public_tokenizer_path_gives_the_same_example(smol_tok):
    """With padding configured on the Rust tokenizer the kit falls back to ``tokenizer(...)``
    with offsets; both paths must give identical examples."""
    fast = tokenize_with_mask(smol_tok, CONV)
    backend = smol_tok.backend_tokenizer
    backend.enable_padding(length=4096, pad_id=smol_tok.pad_token_id)
    try:
        slow = tokenize_with_mask(smol_tok, CONV)
    finally:
        backend.no_padding()
    assert slow == fast and len(slow["input_ids"]) < 4096
