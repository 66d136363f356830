# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 · Base model vs instruction-tuned model
#
# **What you will learn.** A *base* language model is trained only to continue text; an *instruction-tuned*
# model has been fine-tuned on conversations so that it answers. We send the same prompts to both:
#
# * **Gemma-3-270M (base)** gets each prompt as raw text and simply continues it;
# * **SmolLM2-135M-Instruct** gets each prompt wrapped in its chat template and answers it;
# * as a control, the base model also gets the prompt inside a chat template (the kit's default Gemma-style
#   one, since base models ship without a template): a template alone does not teach a model to answer.
#
# **Why it matters.** This gap is exactly what instruction tuning closes, and what the rest of the kit
# (data building, loss masking, LoRA training, evaluation) is about. Both models are embedded in the kit and
# run offline; the first run converts their GGUF files once (about a minute each) into `~/.cache/instructlab`.

# %% tags=["parameters"]
base_model = ""        # empty: the profile's (quick/full: gemma-3-270m; smoke: tiny-random)
instruct_model = ""    # empty: the profile's (quick/full: smollm2-135m-instruct; smoke: tiny-random)
prompts = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Give three tips for writing a clear email.",
    "Our change request CR-12345 was rejected by the Change Advisory Board. Draft a short reply to the requester.",
]
max_new_tokens = 0     # 0: the profile's (64; smoke: 8)
profile = "quick"      # "smoke" | "quick" | "full" (instructlab/profiles.py)
run_dir = ""

# %% [markdown]
# The profile (`instructlab/profiles.py`) fills in whatever the parameters above leave empty: the models,
# how many prompts and how many new tokens. `start_lesson` prints it, the run folder and the device.

# %%
from IPython.display import HTML, display
import pandas as pd
from instructlab import experiment, models, runs

lesson = experiment.start_lesson("00_base_vs_instruct", profile, run_dir, "base-vs-instruct")
run_dir, P = lesson.run_dir, lesson.profile
base_model, instruct_model = base_model or P.base_model, instruct_model or P.instruct_model
prompts, max_new_tokens = prompts[:P.demo_prompts or None], max_new_tokens or P.demo_max_new_tokens
print(f"base {base_model!r}, instruct {instruct_model!r}, {len(prompts)} prompts, {max_new_tokens} new tokens")

# %% [markdown]
# ## Load both models
#
# `load_model` / `load_tokenizer` take the kit's model names (or any local folder or hub id). The device and
# precision come from one place, `models.device_settings()`. Watch for the notice that the base model got a
# default chat template: the kit never applies one silently.

# %%
base_tok = models.load_tokenizer(base_model)
base = models.load_model(base_model)
inst_tok = models.load_tokenizer(instruct_model)
inst = models.load_model(instruct_model)
for name, tok, model in [(base_model, base_tok, base), (instruct_model, inst_tok, inst)]:
    n_params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"{name}: {type(model).__name__}, {n_params:.0f}M parameters, {model.dtype}")
    print("   template:", tok.instructlab_template_note or "the model's own chat template")

# %% [markdown]
# ## What each model actually sees
#
# The base model reads the prompt as plain text. The instruct model reads it inside its chat template
# (ChatML for SmolLM2: `<|im_start|>user ... <|im_end|>`), ending with the start of an assistant turn: the
# model was trained to write what comes next and to close the turn with its end-of-turn token.

# %%
chat = [{"role": "user", "content": prompts[0]}]
print("base model input:\n" + prompts[0])
print("\ninstruct model input:\n" + inst_tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True))
print("base model inside the default template (control):\n"
      + base_tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True))

# %% [markdown]
# ## Same prompts, side by side
#
# Greedy decoding (no sampling), so every run gives the same text.

# %%
rows = []
for prompt in prompts:
    rows.append({
        "prompt": prompt,
        f"base: {base_model} (raw text)": models.complete_text(base, base_tok, prompt, max_new_tokens),
        f"instruct: {instruct_model} (chat)": models.complete_text(inst, inst_tok, prompt, max_new_tokens, chat=True),
        f"control: {base_model} (chat template)": models.complete_text(base, base_tok, prompt, max_new_tokens, chat=True),
    })
table = pd.DataFrame(rows)
display(HTML(table.to_html(index=False).replace("<td>", '<td style="white-space: pre-wrap; text-align: left">')))

# %% [markdown]
# ## Save the results
#
# Answers go to `answers.jsonl` and `answers.csv` in the run folder, next to a `manifest.json` recording the
# models, parameters and package versions.

# %%
runs.write_jsonl(run_dir / "answers.jsonl", rows)
table.to_csv(run_dir / "answers.csv", index=False)
lesson.finish(base_model=base_model, instruct_model=instruct_model, prompts=prompts, max_new_tokens=max_new_tokens,
              base_template_note=base_tok.instructlab_template_note)

# %% [markdown]
# ## What was shown, what to try next
#
# * The base model treats a question as the start of a document: it continues, repeats or drifts. The
#   instruct model, though half its size, answers, because it was fine-tuned on conversations.
# * Wrapping a prompt in a chat template does not by itself make a base model answer: the format must be
#   learned, which is what instruction tuning (and the loss masking in `instructlab.masking`) does.
# * The Kestrel prompt shows the next gap: even the instruct model does not know the company's tone,
#   terminology (change request, CR, Change Advisory Board, CAB) or when to decline.
#
# **Try next:** add your own prompts in the parameters cell; raise `max_new_tokens`; pass a local folder or a
# hub id as `base_model`; then continue with `01_data_building.py` (building the Kestrel dataset) and
# `02_lora_training.py` (teaching a model that standard).
