"""Batched greedy generation: order restored, same answers as one-by-one, base/PEFT models."""

import pytest
import torch

from instructlab.generate import generate_answers, generate_one_by_one, prompt_messages, stop_token_ids
from instructlab.models import load_model, load_tokenizer


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("tiny-random")


def varied_tiny(dtype: str = "float32"):
    """tiny-random with larger weights. The stored tiny model emits end-of-turn at once; larger random weights
    make it produce varied text, so equality of batched and one-by-one outputs is a real check."""
    m = load_model("tiny-random", dtype="float32")
    torch.manual_seed(0)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.3)
    return m.to(getattr(torch, dtype))


@pytest.fixture(scope="module")
def model():
    # fp32: the batching logic is what is tested here; bf16 (the batch-invariant kernels) in
    # tests/test_precision.py.
    return varied_tiny("float32")


# Lengths deliberately unsorted so that the length sort reorders them.
CONVS = [[{"role": "user", "content": "word " * n + str(n)}] for n in (3, 17, 1, 9, 25, 5, 12)]


def test_batched_equals_one_by_one_and_keeps_order(model, tok):
    batched = generate_answers(model, tok, CONVS, max_new_tokens=10, batch_size=3, progress=False)
    single = generate_one_by_one(model, tok, CONVS, max_new_tokens=10)
    assert len(batched) == len(CONVS)
    assert all(single), "the perturbed tiny model should produce text"
    assert len(set(single)) > 1, "different prompts should give different answers"
    assert batched == single


def test_order_restored_when_a_prompt_moves(model, tok):
    one = generate_answers(model, tok, CONVS, max_new_tokens=6, batch_size=4, progress=False)
    rev = generate_answers(model, tok, CONVS[::-1], max_new_tokens=6, batch_size=4, progress=False)
    assert rev == one[::-1]


def test_padding_side_restored_and_records_accepted(model, tok):
    tok.padding_side = "right"
    recs = [{"id": "a", "messages": CONVS[0] + [{"role": "assistant", "content": "reference"}]}]
    out = generate_answers(model, tok, recs, max_new_tokens=4, progress=False)
    assert tok.padding_side == "right"
    assert out == generate_answers(model, tok, [CONVS[0]], max_new_tokens=4, progress=False)


def test_peft_model_generates(tok):
    from peft import LoraConfig, get_peft_model

    base = load_model("tiny-random")
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    out = generate_answers(peft_model, tok, CONVS[:3], max_new_tokens=4, batch_size=2, progress=False)
    assert len(out) == 3 and all(isinstance(a, str) for a in out)


def test_errors_and_stop_tokens(tok, model):
    assert tok.convert_tokens_to_ids("<|im_end|>") in stop_token_ids(tok)
    with pytest.raises(ValueError, match="no user message"):
        prompt_messages([{"role": "assistant", "content": "x"}])
    with pytest.raises(ValueError, match="batch_size"):
        generate_answers(model, tok, CONVS, batch_size=0)


@pytest.mark.real_model
@pytest.mark.parametrize("name", ["smollm2-135m-instruct", "gemma-3-270m"])
def test_real_models_batched_equals_one_by_one_with_the_static_cache(name):
    """The embedded models take the fixed-shape KV cache path, and batching (left padding, length sort)
    changes no answer: first prompts of the eval set, 16 greedy tokens."""
    from instructlab.generate import _greedy_config
    from instructlab.runs import read_jsonl
    from instructlab.profiles import REPO_ROOT as REPO

    # fp32: in bf16 batching can flip near-tied answers (tests/test_precision.py, a known gap)
    tokenizer, lm = load_tokenizer(name), load_model(name, dtype="float32")
    assert _greedy_config(lm, tokenizer, 8).cache_implementation == "static"
    records = read_jsonl(REPO / "data" / "kestrel" / "eval.jsonl")[:4]
    batched = generate_answers(lm, tokenizer, records, max_new_tokens=16, batch_size=4, progress=False)
    single = generate_one_by_one(lm, tokenizer, records, max_new_tokens=16)
    assert batched == single and all(batched)


def test_bf16_weights_are_packed_once_for_all_batches(tok, monkeypatch):
    """generate_answers (and the notebooks' batch-by-batch evaluation) enter the batch-invariant kernels once
    around their batches: each linear layer's weight is packed for oneDNN once per call, not once per batch; the
    answers stay those of one-by-one generation."""
    from instructlab import cpu_kernels, experiment

    if not cpu_kernels._packing_matches_plain():
        pytest.skip("oneDNN's prepacked bf16 linear is not used on this machine")
    m = varied_tiny("bfloat16")
    layers = sum(type(x) is torch.nn.Linear and x.weight.dtype == torch.bfloat16 for x in m.modules())
    packed = []
    real = torch.ops.mkldnn._reorder_linear_weight
    monkeypatch.setattr(torch.ops.mkldnn, "_reorder_linear_weight", lambda *a: packed.append(1) or real(*a))
    batched = generate_answers(m, tok, CONVS, max_new_tokens=6, batch_size=3, progress=False)  # 3 batches
    assert 0 < len(packed) <= layers, f"{len(packed)} packings for {layers} linear layers over 3 batches"
    # the notebooks' evaluation, which reports each batch (experiment._answers_by_batch), packs once too
    packed.clear()
    reported = []
    by_batch = experiment._answers_by_batch(m, tok, CONVS, 6, 3, lambda k, n, s: reported.append((k, n)))
    assert 0 < len(packed) <= layers and reported == [(1, 3), (2, 3), (3, 3)]
    monkeypatch.undo()
    assert batched == by_batch == generate_one_by_one(m, tok, CONVS, max_new_tokens=6)
