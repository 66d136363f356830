"""Generation for evaluation: batched greedy decoding with left padding and the KV cache.

Evaluating a model means answering a few hundred prompts. One prompt at a time leaves most of the
CPU idle (a 135M model is dominated by per-step overhead), so :func:`generate_answers` answers
``batch_size`` prompts per ``model.generate`` call:

* prompts are rendered with the tokenizer's chat template (plus the generation prompt);
* they are **sorted by length** before batching, so a batch holds prompts of similar length and little
  compute is spent on padding; the answers are returned in the **original order**;
* padding goes on the **left**, so every prompt ends right where generation starts and the KV cache
  continues each sequence from its last real token (transformers derives the position ids from the
  attention mask);
* decoding is greedy (``do_sample=False``), so the answers are deterministic and identical to
  one-by-one generation (:func:`generate_one_by_one`, kept as the reference and for
  ``benchmarks/generation_speed.py``). In fp32 that holds up to rounding that has not changed an answer
  (tested); with bf16 or fp16 weights on CPU, where such rounding does change answers, generation runs
  inside :func:`instructlab.cpu_kernels.batch_invariant`, which makes every answer the same bits at any
  batch size, and :func:`instructlab.cpu_fused.fused_generation`, whose compiled RMSNorm, SwiGLU and
  rotary kernels give PyTorch's bits in less time.

Works for base models (with the chat template :func:`instructlab.models.load_tokenizer` gives them),
instruct models and ``peft.PeftModel`` (base + LoRA adapter).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import torch

from . import cpu_fused, cpu_kernels
from .masking import rendered_ids

__all__ = ["prompt_messages", "render_prompts", "stop_token_ids", "generate_answers", "generate_one_by_one"]

Messages = list[dict[str, str]]

# End-of-turn markers of common chat templates: generation stops at whichever is in the vocabulary.
END_OF_TURN_TOKENS = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end|>")


def prompt_messages(conversation: Any) -> Messages:
    """The messages to prompt with: a record's ``messages`` (or the list itself) without the
    trailing assistant turn(s), so a training conversation with its reference answer can be reused.

    Raises ValueError when nothing is left to prompt with.
    """
    messages = conversation.get("messages") if isinstance(conversation, dict) else conversation
    messages = list(messages or [])
    while messages and messages[-1].get("role") == "assistant":
        messages.pop()
    if not messages:
        raise ValueError("a conversation has no user message to answer; expected "
                         "[{'role': 'user', 'content': ...}] or a record with 'messages'")
    return messages


def render_prompts(tokenizer: Any, conversations: Sequence[Any]) -> list[str]:
    """Chat-template text (with the generation prompt) for each conversation.

    Raises ValueError when the tokenizer has no chat template (load it with
    ``instructlab.models.load_tokenizer``, which gives base models a documented default).
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("the tokenizer has no chat template; load it with "
                         "instructlab.models.load_tokenizer(name), which adds the kit's default for base models")
    return [tokenizer.apply_chat_template(prompt_messages(c), tokenize=False, add_generation_prompt=True)
            for c in conversations]


def stop_token_ids(tokenizer: Any) -> list[int]:
    """EOS plus the chat template's end-of-turn tokens that exist in this vocabulary."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    vocab = tokenizer.get_vocab()
    ids += [vocab[t] for t in END_OF_TURN_TOKENS if t in vocab]
    return sorted(set(ids))


def _greedy_config(model: Any, tokenizer: Any, max_new_tokens: int):
    """A greedy GenerationConfig with the model's sampling defaults (temperature, top_p...) removed,
    so transformers does not warn that they are ignored."""
    from transformers import GenerationConfig

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, use_cache=True,
                              eos_token_id=stop_token_ids(tokenizer), pad_token_id=pad,
                              bos_token_id=getattr(model.config, "bos_token_id", None))
    if _supports_static_cache(model):
        # A KV cache allocated once for prompt + max_new_tokens: the default dynamic cache concatenates
        # every layer's keys and values at every step, ~30% of batched decoding time on CPU (profiled).
        config.cache_implementation = "static"
    return config


def _supports_static_cache(model: Any) -> bool:
    """Whether the (base) model's architecture declares the fixed-shape cache path (Llama, Gemma 3...)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return bool(getattr(base, "_can_compile_fullgraph", False))


@contextlib.contextmanager
def _left_padding(tokenizer: Any) -> Iterator[Any]:
    """Temporarily pad on the left (training collators usually pad on the right)."""
    old = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        yield tokenizer
    finally:
        tokenizer.padding_side = old


def _model_device(model: Any) -> torch.device:
    return next(model.parameters()).device


@contextlib.contextmanager
def _generation_kernels(model: Any) -> Iterator[None]:
    """The kit's bf16 CPU generation path around what runs inside: :func:`cpu_kernels.batch_invariant` and
    :func:`cpu_fused.fused_generation` where the model needs batch invariance (bf16 on CPU), else nothing. Nested,
    the inner one finds the model already switched; entered once around many batches, the linear layers'
    packed weights are made once for all of them instead of once per batch."""
    invariant = cpu_kernels.needs_batch_invariance(model)  # bf16 on CPU: same bits at any batch size
    with (cpu_kernels.batch_invariant(model) if invariant else contextlib.nullcontext(),
          cpu_fused.fused_generation(model, enabled=invariant)):  # the same bits, in less time
        yield


@torch.no_grad()
def _generate_batch(model: Any, tokenizer: Any, texts: list[str], config: Any) -> list[str]:
    """Answers for one batch of rendered prompts (left padded), new tokens only, special tokens removed. Enters
    :func:`_generation_kernels` itself (a no-op inside its callers', which hold it around all their batches)."""
    ids = [rendered_ids(tokenizer, t, generation_prompt=True) for t in texts]  # exactly the training prefix
    with _left_padding(tokenizer):
        enc = tokenizer.pad({"input_ids": ids}, padding=True, return_attention_mask=True, return_tensors="pt")
    enc = {k: v.to(_model_device(model)) for k, v in enc.items()}
    with _generation_kernels(model):
        out = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                             generation_config=config)
    new = out[:, enc["input_ids"].shape[1]:]
    return [tokenizer.decode(row, skip_special_tokens=True).strip() for row in new]


def generate_answers(model: Any, tokenizer: Any, conversations: Sequence[Any], max_new_tokens: int = 256,
                     batch_size: int = 16, progress: bool = True) -> list[str]:
    """Greedy answers to many conversations, batched.

    Args:
        model: a causal LM or PeftModel (in eval mode; switched to eval here).
        tokenizer: its tokenizer, with a chat template and a pad token (``models.load_tokenizer``).
        conversations: message lists, or records with ``messages``; trailing assistant turns are dropped.
        max_new_tokens: generation budget per answer. batch_size: prompts per ``generate`` call.
        progress: show a tqdm bar over batches.
    Returns:
        one answer string per conversation, in the input order (prompt and special tokens removed).
    Raises:
        ValueError: a conversation without a user turn, or a tokenizer without a chat template.
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    texts = render_prompts(tokenizer, conversations)
    lengths = [len(rendered_ids(tokenizer, t, generation_prompt=True)) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])  # longest first: memory peaks early
    config = _greedy_config(model, tokenizer, max_new_tokens)
    model.eval()
    answers: list[str | None] = [None] * len(texts)
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    with _generation_kernels(model):  # once for every batch (see _generation_kernels)
        for idx in tqdm(batches, desc="generating", disable=not progress, unit="batch"):
            for i, answer in zip(idx, _generate_batch(model, tokenizer, [texts[i] for i in idx], config)):
                answers[i] = answer
    return answers  # type: ignore[return-value]


def generate_one_by_one(model: Any, tokenizer: Any, conversations: Sequence[Any], max_new_tokens: int = 256,
                        progress: bool = False) -> list[str]:
    """The unbatched reference: one ``generate`` call per conversation, same greedy settings.

    Same inputs and output as :func:`generate_answers`; used to check that batching changes nothing
    and, in ``benchmarks/generation_speed.py``, to measure what batching gains.
    """
    from tqdm.auto import tqdm

    texts = render_prompts(tokenizer, conversations)
    config = _greedy_config(model, tokenizer, max_new_tokens)
    model.eval()
    with _generation_kernels(model):
        return [_generate_batch(model, tokenizer, [t], config)[0]
                for t in tqdm(texts, desc="generating", disable=not progress, unit="prompt")]
