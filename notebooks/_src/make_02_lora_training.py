"""Generate notebooks/02_lora_training.ipynb (run: .venv/bin/python notebooks/_src/make_02_lora_training.py)."""

from _common import code, md, write_notebook

cells = [
    md("""# 02 · LoRA instruction tuning on the Kestrel data

**What you will learn.** How the kit turns conversations into a LoRA adapter with TRL's `SFTTrainer`
and PEFT, in one call: `train_lora(model, data, config=...)`. We teach SmolLM2-135M-Instruct the house
style of Kestrel Systems (greeting, sign-off, terminology such as "change request (CR)") and which requests
it must decline (competitors, employees' personal data), then compare its greedy answers on held-out
prompts before and after training.

**Why it matters.** Three details decide whether such a run is worth anything, and the kit makes each one
visible: the loss covers only the assistant's answers (the kit's masking, not TRL's template guessing),
precision follows the hardware (bf16 autocast on a CPU without bf16 units is ~17x slower), and every run
leaves a folder with the resolved config, package versions, data fingerprint, log history and adapter,
so a result can be traced and a killed run resumed."""),
    code("""model = "smollm2-135m-instruct"
data_path = "data/kestrel/train.jsonl"   # relative to the repository root, or absolute
eval_path = "data/kestrel/eval.jsonl"
n_examples = 0          # 0: as the profile says; training examples, stratified by task type
epochs = 0.0            # 0: as the profile says
seed = 42               # training seed (LoRA init, data order, subset draw)
train_on = "assistant"  # "assistant" (response-only loss) | "last_assistant" | "all" (full sequence)
n_compare = 6           # held-out prompts answered before and after training
max_new_tokens = 160
profile = "quick"       # "smoke" | "quick" | "full"
run_dir = \"\"""", metadata={"tags": ["parameters"]}),
    md("""## Profile and run folder

`TRAIN_PROFILES` holds three presets: `smoke` (tiny random model, seconds, for tests), `quick` (the demo:
SmolLM2-135M on a few hundred examples, one epoch, sized for a 2-core CPU) and `full` (the case study's
configuration: 4 epochs, lr 2e-4, batch 4 x accumulation 4, r=16 on q/v, all 1,800 examples).
Parameters set above override the profile."""),
    code("""from pathlib import Path
import instructlab
from instructlab import formats, models, runs, train

REPO = Path(instructlab.__file__).resolve().parent.parent
model_name, config = train.profile_config(profile, n_examples=n_examples or None, epochs=epochs or None,
                                          seed=seed, train_on=train_on)
if profile != "smoke":
    model_name = model
else:
    n_compare, max_new_tokens = min(n_compare, 3), 12
    print(f"profile 'smoke': model replaced by {model_name!r}, {config.n_examples} examples, {config.max_steps} steps")
run_dir = runs.ensure_run_dir(run_dir, "train")
print("run folder:", run_dir)
print("device:", models.device_settings(config.device).description)
config"""),
    md("""## The data

Each training record is a conversation (system, user, assistant) with a `task_type`; about 15% are declines.
The subset is drawn per task type, so it keeps the mix of the full set. The evaluation prompts are separate
and their wording never appears in training: we answer a few of each category (domain task, must-decline,
look-alike that must *not* be declined) before and after training."""),
    code("""import collections
train_records = formats.load_records(REPO / data_path if not Path(data_path).is_absolute() else data_path)
eval_records = formats.load_records(REPO / eval_path if not Path(eval_path).is_absolute() else eval_path,
                                    require_response=False)  # prompts only (+ reference answers)
chosen = train.config_subset(train_records, config)  # what train_lora draws with this config
print(f"{len(train_records)} training records, {len(chosen)} used:", dict(collections.Counter(r["task_type"] for r in chosen)),
      "| categories:", dict(collections.Counter(r.get("category") for r in chosen)))
by_cat = collections.defaultdict(list)
for r in eval_records:
    by_cat[r["category"]].append(r)
compare = [by_cat[c][i] for i in range(n_compare) for c in sorted(by_cat)][:n_compare]
print("held-out prompts to compare:", [(r["id"], r["category"]) for r in compare])"""),
    md("""Eval loss is measured on held-out prompts paired with their reference answers (the eval set ships them),
at the start and at the end of training."""),
    code("""eval_for_loss = [{"messages": r["messages"] + [{"role": "assistant", "content": r["reference"]}]}
                 for r in eval_records if r.get("reference")]
eval_for_loss = train.select_examples(eval_for_loss, 4 if profile == "smoke" else 48, seed=0)
print(len(eval_for_loss), "eval conversations for the eval loss")"""),
    md("""## Before training

Greedy answers of the untuned model (batched generation with left padding and the KV cache)."""),
    code("""from instructlab.generate import generate_answers

tokenizer = models.load_tokenizer(model_name)
base = models.load_model(model_name)
before = generate_answers(base, tokenizer, compare, max_new_tokens=max_new_tokens, batch_size=8, progress=False)
del base
print(before[0][:500])"""),
    md("""## Train

`train_lora` masks and tokenizes the conversations, builds TRL's `SFTTrainer` with a PEFT `LoraConfig`
and the kit's length-grouped batches, and streams the log history into the run folder while it trains.
The progress bar is the Trainer's; `LiveLossPlot` redraws the loss curve as it goes (in a live notebook;
headless runs show the final figure)."""),
    code("""from instructlab.widgets import LiveLossPlot

live = LiveLossPlot(save_to=run_dir / "loss_curve", title=f"LoRA on {model_name} ({profile})")
result = train.train_lora(model_name, chosen, eval_data=eval_for_loss, config=config, run_dir=run_dir,
                          callbacks=[live])
print("adapter:", result.adapter_dir)"""),
    md("""## What the run recorded

Final metrics and throughput (real tokens per second, and the share of batch positions that were padding),
and what the masking did. The same numbers are in `metrics.json`, `mask_report.json` and `manifest.json`."""),
    code("""import pandas as pd

summary = {k: result.metrics.get(k) for k in ("final_loss", "eval_loss", "train_runtime", "global_step", "epoch")}
summary.update({k: result.throughput[k] for k in ("tokens_per_s", "padding_fraction", "world_size")})
summary.update({k: result.mask_report[k] for k in ("n_kept", "n_dropped", "trained_tokens", "total_tokens")})
table = pd.DataFrame([summary]).T.rename(columns={0: "value"})
table.to_csv(run_dir / "training_summary.csv")
runs.write_json(run_dir / "training_summary.json", summary)
table"""),
    md("""## After training: the same prompts, side by side

Greedy answers of base + adapter. In the quick profile, look for the greeting and sign-off, the glossary
terms with their abbreviations, and polite declines that name the team to contact; in the smoke profile
the model is random and so are its answers."""),
    code("""from IPython.display import HTML, display

after = generate_answers(result.model, result.tokenizer, compare, max_new_tokens=max_new_tokens, batch_size=8,
                         progress=False)
rows = [{"id": r["id"], "category": r["category"], "prompt": r["messages"][-1]["content"],
         "before": b, "after": a} for r, b, a in zip(compare, before, after)]
runs.write_jsonl(run_dir / "before_after.jsonl", rows)
side = pd.DataFrame(rows)
side.to_csv(run_dir / "before_after.csv", index=False)
display(HTML(side.to_html(index=False).replace("<td>", '<td style="white-space: pre-wrap; text-align: left">')))"""),
    code("""runs.write_manifest(run_dir, notebook="02_lora_training", profile=profile, compared=[r["id"] for r in compare])
sorted(p.name for p in run_dir.iterdir())"""),
    md("""## What was shown, what to try next

* One call trained a LoRA adapter with TRL + PEFT on the kit's masked data, with hardware-appropriate
  precision, length-grouped batches and a complete run folder (config, manifest, log history, adapter,
  metrics, checkpoints).
* Greedy answers before and after show what the adapter learned from a few hundred examples.

Next:
* measure it properly: `notebooks/03_evaluation.ipynb` with `adapter = "<this run folder>"` gives the case
  study's four metrics before vs after;
* `config.train_on = "all"` trains on the whole sequence (prompt included), for the masking comparison;
* resume a killed run: `train.train_lora(model_name, chosen, config=config, run_dir=run_dir, resume=True)`;
* export: `train.merge_adapter(run_dir, "merged/")` writes a standalone model that `transformers serve` can serve;
* more than one GPU: `torchrun --nproc_per_node N -m instructlab.train --profile full --run-dir runs/x`
  (see `docs/training.md`)."""),
]

write_notebook(cells, "02_lora_training.ipynb")
