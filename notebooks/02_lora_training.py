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
# # 02 · LoRA instruction tuning on the Kestrel data
#
# **What you will learn.** How a conversation becomes training signal, and how the kit turns conversations
# into a LoRA adapter with TRL's `SFTTrainer` and PEFT. We first take one conversation through the kit's
# loss masking (`tokenize_with_mask`) and look at the tokens the loss is computed on, in two chat templates.
# Then one call, `experiment.train_run(params, run_dir)`, teaches SmolLM2-135M-Instruct the house style of
# Kestrel Systems (greeting, sign-off, terminology such as "change request (CR)") and which requests it must
# decline (competitors, employees' personal data); we compare its greedy answers on held-out prompts before
# and after training.
#
# **Why it matters.** Three details decide whether such a run is worth anything, and the kit makes each one
# visible: the loss covers only the assistant's answers and their end-of-turn token (the kit's masking, not
# TRL's template guessing), precision follows the hardware (bf16 autocast on a CPU without bf16 units is
# ~17x slower), and every run leaves a folder with the resolved config, package versions, data fingerprint,
# log history, adapter and one `result.json`, so a result can be traced and a killed run resumed.

# %% tags=["parameters"]
model = ""              # empty: the profile's (quick/full: smollm2-135m-instruct; smoke: tiny-random)
data_path = "data/kestrel/train.jsonl"   # relative to the repository root, or absolute
eval_path = "data/kestrel/dev.jsonl"    # held-out prompts for the loss and the before/after answers: the dev split, never the eval set
n_examples = 0          # 0: the profile's; training examples, stratified by task type
epochs = 0.0            # 0: the profile's
seed = 42               # training seed (LoRA init, data order, subset draw)
train_on = "assistant"  # "assistant" (response-only loss) | "last_assistant" | "all" (full sequence)
n_compare = 0           # held-out prompts answered before and after training; 0: the profile's (6; smoke: 3)
max_new_tokens = 0      # 0: the profile's (160; smoke: 12)
profile = "quick"       # "smoke" | "quick" | "full" (instructlab/profiles.py)
run_dir = ""

# %% [markdown]
# ## Profile and run folder
#
# The profile (`instructlab/profiles.py`) holds three presets: `smoke` (tiny random model, seconds, for
# tests), `quick` (the demo: SmolLM2-135M on a few hundred examples, one epoch, sized for a 2-core CPU) and
# `full` (the case study's configuration: 4 epochs, lr 2e-4, batch 4 x accumulation 4, r=16 on q/v, all
# 1,800 examples). Parameters set above override it. `TrainParams` is what one training run needs;
# `resolve()` shows the model and the `TrainConfig` it will use.

# %%
import collections

import pandas as pd
from IPython.display import HTML, display

from instructlab import experiment, formats, masking, models, runs, train

lesson = experiment.start_lesson("02_lora_training", profile, run_dir, "train")
run_dir, P = lesson.run_dir, lesson.profile
n_compare, max_new_tokens = n_compare or P.compare_prompts, max_new_tokens or P.compare_max_new_tokens
params = experiment.TrainParams(profile=profile, model=model, data_path=data_path, eval_path=eval_path,
                                n_examples=n_examples, epochs=epochs, seed=seed, train_on=train_on)
model_name, config = params.resolve()
print("model:", model_name)
config

# %% [markdown]
# ## The data
#
# Each training record is a conversation (system, user, assistant) with a `task_type`; about 15% are declines.
# The subset is drawn per task type, so it keeps the mix of the full set (`train.config_subset` is the draw
# `train_run` makes). The evaluation prompts are separate and their wording never appears in training: we
# answer a few of each category (domain task, must-decline, look-alike that must *not* be declined) before
# and after training.

# %%
train_records = formats.load_records(experiment.repo_path(data_path))
eval_records = formats.load_records(experiment.repo_path(eval_path), require_response=False)  # prompts + references
chosen = train.config_subset(train_records, config)
print(f"{len(train_records)} training records, {len(chosen)} used:", dict(collections.Counter(r["task_type"] for r in chosen)),
      "| categories:", dict(collections.Counter(r.get("category") for r in chosen)))
by_cat = collections.defaultdict(list)
for r in eval_records:
    by_cat[r["category"]].append(r)
compare = [by_cat[c][i] for i in range(n_compare) for c in sorted(by_cat)][:n_compare]
print("held-out prompts to compare:", [(r["id"], r["category"]) for r in compare])

# %% [markdown]
# ## The mechanism: which tokens does the loss see?
#
# A causal LM is trained to predict every next token. For instruction tuning we want it to learn to *answer*,
# not to write the user's question, so the labels of every token outside the assistant's answers are set to
# -100, the `ignore_index` of PyTorch's cross-entropy: those positions add nothing to the loss.
# `masking.tokenize_with_mask` renders the conversation with the tokenizer's own chat template, tokenizes it
# once, and finds each assistant answer in the rendered text, whatever the template looks like.
#
# One decline from the training data, through the tokenizer of the model we train:

# %%
tokenizer = models.load_tokenizer(model_name)
conversation = next(r for r in chosen if r["task_type"] == "decline")["messages"]
example = masking.tokenize_with_mask(tokenizer, conversation)
ids, labels = example["input_ids"], example["labels"]
print(f"{len(ids)} tokens, {sum(x != -100 for x in labels)} of them trained")
print("input_ids:", ids[:12], "...", ids[-8:])
print("labels:   ", labels[:12], "...", labels[-8:])

# %% [markdown]
# Token by token around the two boundaries: where the answer starts (the labels switch from -100 to the token
# ids) and where it ends. The label of a trained position is the token itself; the model's output one
# position earlier is scored against it (the shift happens inside the loss).

# %%
pieces = masking.token_pieces(tokenizer, ids)
first = next(i for i, x in enumerate(labels) if x != -100)
last = max(i for i, x in enumerate(labels) if x != -100)
rows = [{"position": i, "token": repr(pieces[i]), "input_id": ids[i], "label": labels[i]}
        for i in [*range(max(first - 4, 0), first + 3), *range(last - 2, min(last + 3, len(ids)))]]
pd.DataFrame(rows).set_index("position")

# %% [markdown]
# **Why the end-of-turn token is trained.** The last trained token is the template's end-of-turn marker
# (`<|im_end|>` in SmolLM2's ChatML), not the last word of the answer. Generation stops when the model emits
# that token; if its label were -100, the model would never be taught to produce it and a tuned model would
# run on past its answer into an invented next turn. The newline the template adds *after* the marker is not
# trained: it is formatting, not something the model must write.
#
# `show_mask` colours the same example: trained tokens green, masked ones grey (in a terminal, ANSI colours).

# %%
masking.show_mask(tokenizer, example)

# %% [markdown]
# The masking does not search for a fixed "response template" string, so it works for any chat template.
# Here is the same conversation in a Gemma-style template (`<start_of_turn>model ... <end_of_turn>`, the
# kit's default for base Gemma models), applied to a copy of the same tokenizer: the markers differ, the
# trained span is again the answer plus its end-of-turn marker.

# %%
import copy

gemma_style = copy.copy(tokenizer)
gemma_style.chat_template = models.DEFAULT_CHAT_TEMPLATE
masking.show_mask(gemma_style, masking.tokenize_with_mask(gemma_style, conversation))

# %% [markdown]
# `MaskInspector` puts this in a widget: pick an example, a template and `train_on` (`assistant`,
# `last_assistant`, `all`) and see the mask change. A headless run shows the first example as text.

# %%
from instructlab.widgets import MaskInspector

MaskInspector(chosen[:20], tokenizers={model_name: tokenizer}, templates={"gemma-style": models.DEFAULT_CHAT_TEMPLATE})

# %% [markdown]
# ## Before training
#
# Greedy answers of the untuned model (batched generation with left padding and the KV cache).

# %%
from instructlab.generate import generate_answers

base = models.load_model(model_name)
before = generate_answers(base, tokenizer, compare, max_new_tokens=max_new_tokens, batch_size=8, progress=False)
del base
print(before[0][:500])

# %% [markdown]
# ## Train
#
# `experiment.train_run` draws the subset, masks and tokenizes it as above, and calls `train.train_lora`:
# TRL's `SFTTrainer` with a PEFT `LoraConfig` and the kit's length-grouped batches, the log history streamed
# into the run folder while it trains, and the eval loss on held-out prompts (with their reference answers)
# at the start and the end. The sweep of notebook 04 calls the same function. `LiveLossPlot` redraws the loss
# curve as it goes in a live notebook; a headless run prints each step's loss with an ETA instead.

# %%
from instructlab.widgets import LiveLossPlot

live = LiveLossPlot(save_to=run_dir / "loss_curve", title=f"LoRA on {model_name} ({profile})")
run = experiment.train_run(params, run_dir, callbacks=[live])
print("adapter:", run.adapter_dir)

# %% [markdown]
# ## What the run recorded
#
# Final metrics and throughput (real tokens per second, and the share of batch positions that were padding),
# and what the masking did. The same numbers are in `result.json` (the run's results file), `metrics.json`,
# `mask_report.json` and `manifest.json`.

# %%
result = run.result
summary = {k: result["metrics"].get(k) for k in ("final_loss", "eval_loss", "train_runtime", "global_step", "epoch")}
summary.update({k: result["throughput"].get(k) for k in ("tokens_per_s", "padding_fraction", "world_size")})
summary.update({k: result["mask_report"].get(k) for k in ("n_kept", "n_dropped", "trained_tokens", "total_tokens")})
table = pd.DataFrame([summary]).T.rename(columns={0: "value"})
table.to_csv(run_dir / "training_summary.csv")
table

# %% [markdown]
# ## After training: the same prompts, side by side
#
# Greedy answers of base + adapter. In the quick profile, look for the greeting and sign-off, the glossary
# terms with their abbreviations, and polite declines that name the team to contact; in the smoke profile
# the model is random and so are its answers.

# %%
after = generate_answers(run.train.model, run.train.tokenizer, compare, max_new_tokens=max_new_tokens,
                         batch_size=8, progress=False)
rows = [{"id": r["id"], "category": r["category"], "prompt": r["messages"][-1]["content"],
         "before": b, "after": a} for r, b, a in zip(compare, before, after)]
runs.write_jsonl(run_dir / "before_after.jsonl", rows)
side = pd.DataFrame(rows)
side.to_csv(run_dir / "before_after.csv", index=False)
display(HTML(side.to_html(index=False).replace("<td>", '<td style="white-space: pre-wrap; text-align: left">')))

# %%
lesson.finish(compared=[r["id"] for r in compare])

# %% [markdown]
# ## What was shown, what to try next
#
# * The labels of a conversation are -100 everywhere except the assistant's answers and their end-of-turn
#   marker, for any chat template; that is what "response-only loss" means, token by token.
# * One call trained a LoRA adapter with TRL + PEFT on those labels, with hardware-appropriate precision,
#   length-grouped batches and a complete run folder (config, manifest, log history, adapter, metrics,
#   checkpoints, `result.json`).
# * Greedy answers before and after show what the adapter learned from a few hundred examples.
#
# Next:
# * measure it properly: `notebooks/03_evaluation.py` with `adapter = "<this run folder>"` gives the case
#   study's four metrics before vs after;
# * `train_on = "all"` trains on the whole sequence (prompt included), for the masking comparison;
# * resume a killed run: `train.train_lora(model_name, chosen, config=config, run_dir=run_dir, resume=True)`;
# * export: `train.merge_adapter(run_dir, "merged/")` writes a standalone model that `transformers serve` can serve;
# * more than one GPU: `torchrun --nproc_per_node N -m instructlab.train --profile full --run-dir runs/x`
#   (see `docs/training.md`).
