"""LoRA instruction tuning with TRL's ``SFTTrainer`` and PEFT, on the kit's masked, pre-tokenized data.

One call, :func:`train_lora`, turns conversations into a trained LoRA adapter and a complete run folder::

    runs/<stamp>-train/
      config.json         resolved TrainConfig + the hardware settings actually used
      manifest.json       package versions, git commit, data fingerprints, world size, ranks seen
      mask_report.json    what the masking kept, dropped and why
      log_history.jsonl   one line per log event, written while training runs
      checkpoints/        Trainer checkpoints (resume a killed run with ``resume=True``)
      adapter/            the PEFT adapter (+ tokenizer), loadable by ``models.load_model(name, adapter=...)``
      metrics.json        final loss, eval loss, throughput, padding fraction

Why the kit tokenizes and masks itself rather than letting TRL do it: TRL's template search does not know
every chat template (SmolLM2's ChatML raises, see the stack notes), and a ``messages`` dataset with
``completion_only_loss`` silently trains on the whole sequence. The kit's ``masking`` module produces
``input_ids`` / ``labels`` for any template, and TRL is told to use them as they are
(``dataset_kwargs={"skip_prepare_dataset": True}``).

Hardware: precision comes from :func:`instructlab.models.device_settings`, which asks the CPU. Where it
computes bf16 natively (AVX512-BF16, AMX) the kit trains with bf16 autocast (``bf16=True``), the frozen base
weights stored in bf16 and the LoRA parameters and optimizer state in fp32; where bf16 is emulated it passes
``bf16=False``: TRL's default bf16 autocast makes a step about 17x slower there. Activation checkpointing is
off on CPU (it only costs time). On CPU the vocabulary head runs only on positions with a label (see
:func:`compact_lm_head_on_cpu`).

Padding waste: batches are grouped by length (:class:`LengthGroupedBatchSampler`: similar lengths share a
batch, batch order shuffled) or padding-free (``batching="padding_free"``: a batch is one flat row with
``position_ids`` restarting per example; transformers builds a block-diagonal causal mask from them, so no
example attends to another).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from . import runs

ROLES = {"system", "user", "assistant"}
BATCHING = ("group_by_length", "padding_free", "padded")
TRAIN_ON = ("assistant", "last_assistant", "all")


class TrainDataError(ValueError):
    """The training data cannot be trained on (empty, everything truncated, no assistant turns)."""


class LoRATargetError(ValueError):
    """A LoRA target module name does not exist in the model."""


class QLoRAUnavailableError(RuntimeError):
    """4-bit QLoRA was requested where it cannot run (no CUDA GPU or no bitsandbytes)."""


# ----------------------------------------------------------------------------- configuration

@dataclass
class TrainConfig:
    """Everything that decides a training run. Defaults are the case study's (LoRA on Llama 3.1 8B).

    Hardware-dependent settings are *not* here: precision and device come from ``models.device_settings``
    and are recorded in the run's config.json under ``"hardware"``.
    """

    epochs: float = 4.0
    learning_rate: float = 2e-4
    batch_size: int = 4                 # per device
    grad_accum: int = 4
    max_length: int = 2048              # examples are truncated to this many tokens by the masking
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    train_on: str = "assistant"         # "assistant" | "last_assistant" | "all" (full-sequence loss)
    seed: int = 42
    max_steps: int = -1                 # > 0 overrides epochs
    n_examples: int | None = None       # None = all; else a seeded subset stratified by task_type
    # Shares of chosen `category` values in that subset, e.g. {"lookalike": 0.15}: the rest keeps the data's
    # mix. None keeps the data's mix everywhere. Used where a small subset would under-sample a rare category.
    category_shares: dict[str, float] | None = None
    batching: str = "group_by_length"   # "group_by_length" | "padding_free" | "padded"
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    logging_steps: int = 1
    save_steps: int = 50                # checkpoint every N optimizer steps (resume starts from the last)
    save_total_limit: int | None = 2
    eval_batch_size: int = 8
    quantization: str | None = None     # "4bit" = QLoRA (CUDA + bitsandbytes only)
    activation_checkpointing: bool | None = None   # None: off (on CPU it only costs time)
    device: str | None = None           # None: models.device_settings() decides
    dtype: str | None = None            # CPU: "bfloat16" / "float32" forces it; None: $INSTRUCTLAB_DTYPE, else the CPU

    def __post_init__(self) -> None:
        self.target_modules = tuple(self.target_modules)
        if self.train_on not in TRAIN_ON:
            raise ValueError(f"train_on={self.train_on!r}: use one of {TRAIN_ON}")
        if self.batching not in BATCHING:
            raise ValueError(f"batching={self.batching!r}: use one of {BATCHING}")
        if self.quantization not in (None, "4bit"):
            raise ValueError(f"quantization={self.quantization!r}: use None or '4bit' (QLoRA)")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["target_modules"] = list(self.target_modules)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Build from a dict (e.g. a run's config.json); unknown keys are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class TrainProfile:
    """A named preset: which model, how many examples, which TrainConfig."""

    model: str
    config: TrainConfig
    description: str


TRAIN_PROFILES: dict[str, TrainProfile] = {
    "smoke": TrainProfile(
        "tiny-random",
        TrainConfig(epochs=1, max_steps=4, batch_size=2, grad_accum=1, max_length=512, n_examples=8,
                    learning_rate=1e-3, save_steps=2),
        "tiny random model, 8 examples, 4 steps: checks the plumbing in seconds, learns nothing"),
    "quick": TrainProfile(
        "smollm2-135m-instruct",
        TrainConfig(epochs=1, learning_rate=1e-3, batch_size=4, grad_accum=1, max_length=512, n_examples=480,
                    lora_r=16, lora_alpha=32,
                    target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
                    category_shares={"decline": 0.15, "lookalike": 0.15}, warmup_ratio=0.05, save_steps=20),
        "SmolLM2-135M-Instruct, 480 examples (15% declines, 15% look-alikes, the rest stratified by task type), "
        "LoRA r=16 on every linear layer, 1 epoch (120 steps of 4) at max_length 512: the demo, ~15 min on a "
        "2-core CPU"),
    "full": TrainProfile(
        "smollm2-135m-instruct", TrainConfig(),
        "the case study's configuration (4 epochs, lr 2e-4, batch 4 x accumulation 4, r=16 on q/v, all data)"),
}


def profile_config(profile: str, **overrides: Any) -> tuple[str, TrainConfig]:
    """(model name, TrainConfig) of a profile in TRAIN_PROFILES, with TrainConfig fields overridden.

    ``overrides`` may also hold ``model=...``. Raises ValueError for an unknown profile or field.
    """
    if profile not in TRAIN_PROFILES:
        raise ValueError(f"unknown profile {profile!r}: use one of {sorted(TRAIN_PROFILES)}")
    prof = TRAIN_PROFILES[profile]
    model = overrides.pop("model", None) or prof.model
    names = {f.name for f in fields(TrainConfig)}
    unknown = set(overrides) - names
    if unknown:
        raise ValueError(f"unknown TrainConfig fields {sorted(unknown)}; known: {sorted(names)}")
    config = replace(prof.config, **{k: v for k, v in overrides.items() if v is not None})
    if config.category_shares is not None:  # a copy: editing a run's config never edits the profile
        config = replace(config, category_shares=dict(config.category_shares))
    return model, config


@dataclass
class TrainResult:
    """What :func:`train_lora` returns. ``model`` / ``tokenizer`` are the trained objects (not saved twice)."""

    run_dir: Path
    adapter_dir: Path
    log_history: list[dict[str, Any]]
    metrics: dict[str, Any]
    throughput: dict[str, Any]
    mask_report: dict[str, Any]
    model: Any = field(default=None, repr=False)
    tokenizer: Any = field(default=None, repr=False)

    @property
    def losses(self) -> list[float]:
        """Training loss at each logged step, in order."""
        return [row["loss"] for row in self.log_history if "loss" in row]


# ----------------------------------------------------------------------------- data

def as_conversations(data: Any) -> list[list[dict[str, str]]]:
    """Conversations (lists of {"role","content"}) from a JSONL path, records or conversations.

    Accepts: a path to a JSONL file (any format ``formats.load_records`` knows), a list of records
    (dicts with "messages", or Alpaca / ShareGPT records), or a list of message lists.
    """
    if isinstance(data, (str, os.PathLike)):
        from . import formats

        data = formats.load_records(data)
    out = []
    for item in data:
        if isinstance(item, dict):
            if "messages" in item:
                item = item["messages"]
            else:
                from . import formats

                item = formats.to_messages(item)
        out.append([{"role": m["role"], "content": m["content"]} for m in item])
    return out


def _stratified(items: list[Any], n: int, rng: random.Random, key: str) -> list[Any]:
    """``n`` of ``items`` (n < len), each ``key`` group getting round(n * share), at least one."""
    groups: dict[Any, list[Any]] = {}
    for rec in items:
        groups.setdefault(rec.get(key) if isinstance(rec, dict) else None, []).append(rec)
    quota = {g: max(1, round(n * len(v) / len(items))) for g, v in groups.items()}
    while sum(quota.values()) > n:  # rounding overshoot: trim the biggest groups
        quota[max(quota, key=quota.get)] -= 1
    chosen = []
    for g in sorted(groups, key=str):
        chosen += rng.sample(groups[g], min(quota[g], len(groups[g])))
    return chosen


def select_examples(records: Sequence[Any], n: int | None, seed: int = 0, key: str = "task_type",
                    category_shares: dict[str, float] | None = None, share_key: str = "category") -> list[Any]:
    """A seeded subset of ``n`` records, stratified by ``record[key]`` so the task mix is kept.

    Each group gets ``round(n * share)`` records (at least one when the group is non-empty), then the
    subset is shuffled. ``n=None`` or ``n >= len(records)`` returns all records (shuffled with the seed).
    Records without ``key`` (plain conversations) form one group.

    ``category_shares`` (e.g. ``{"lookalike": 0.15}``) fixes the share of those ``record[share_key]``
    values in the subset (each stratified by ``key`` inside); the other records fill the rest as above.
    Raises ValueError when shares add up to more than 1 or a category has too few records for its share.
    """
    rng = random.Random(seed)
    items = list(records)
    if n is None or n >= len(items):
        rng.shuffle(items)
        return items
    chosen: list[Any] = []
    if category_shares:
        if sum(category_shares.values()) > 1 or min(category_shares.values()) < 0:
            raise ValueError(f"category_shares {category_shares} must be >= 0 and add up to at most 1")
        rest = items
        for cat, share in sorted(category_shares.items()):
            pool = [r for r in items if isinstance(r, dict) and r.get(share_key) == cat]
            want = round(n * share)
            if want > len(pool):
                raise ValueError(f"category_shares asks for {want} {share_key}={cat!r} records "
                                 f"({share:.0%} of {n}) but the data has {len(pool)}: lower the share or n_examples")
            chosen += _stratified(pool, want, rng, key) if want < len(pool) else list(pool)
            rest = [r for r in rest if not (isinstance(r, dict) and r.get(share_key) == cat)]
        n_rest = n - len(chosen)
        chosen += _stratified(rest, n_rest, rng, key) if n_rest < len(rest) else list(rest)
    else:
        chosen = _stratified(items, n, rng, key)
    rng.shuffle(chosen)
    return chosen


def config_subset(records: Sequence[Any], config: TrainConfig) -> list[Any]:
    """The training subset ``config`` asks for: ``n_examples`` drawn with its ``seed`` and ``category_shares``.

    ``train_lora`` draws with this; a notebook that shows the chosen data first calls it too, so the two
    never draw differently."""
    return select_examples(list(records), config.n_examples, seed=config.seed,
                           category_shares=config.category_shares)


def prepare_examples(tokenizer: Any, conversations: list, config: TrainConfig, what: str = "training") -> Any:
    """Tokenize and mask conversations with the kit's masking; returns ``masking.MaskedDataset``.

    Raises TrainDataError when nothing is left to train on: no conversations, no assistant turns, or every
    example truncated away by ``max_length`` (the message names the numbers and what to change).
    """
    from . import masking

    if not conversations:
        raise TrainDataError(f"the {what} data is empty: pass a JSONL path or a non-empty list of conversations "
                             "(e.g. data/kestrel/train.jsonl)")
    try:
        masked = masking.mask_dataset(tokenizer, conversations, max_length=config.max_length,
                                      train_on=config.train_on, progress=False)
    except ValueError as err:  # FormatError / MaskingError: say which data set it came from
        raise TrainDataError(f"cannot use the {what} data: {err}") from err
    rep = masked.report
    if rep.n_kept == 0:
        reasons = ", ".join(f"{r}: {c}" for r, c in Counter(rep.reasons).most_common()) or "none given"
        truncated = sum(c for r, c in Counter(rep.reasons).items() if "trunc" in str(r).lower())
        hint = (f"every example was truncated before its first trained token: raise max_length "
                f"(now {config.max_length}) or shorten the prompts" if truncated == rep.n_in else
                "check that the conversations contain assistant turns (train_on="
                f"{config.train_on!r} trains on those)")
        raise TrainDataError(f"no {what} examples left after masking ({rep.n_in} in, 0 kept; reasons: "
                             f"{reasons}). {hint}.")
    if rep.n_dropped:
        print(f"[instructlab] masking dropped {rep.n_dropped} of {rep.n_in} {what} examples: "
              f"{dict(Counter(rep.reasons))}", file=sys.stderr)
    return masked


def mask_report_dict(report: Any) -> dict[str, Any]:
    """A JSON-ready summary of a ``masking.MaskReport``."""
    return {"n_in": report.n_in, "n_kept": report.n_kept, "n_dropped": report.n_dropped,
            "reasons": dict(Counter(report.reasons)), "dropped": [list(d) for d in report.dropped][:200],
            "trained_tokens": report.trained_tokens, "total_tokens": report.total_tokens}


def to_dataset(examples: list[dict[str, list[int]]]) -> Any:
    """A ``datasets.Dataset`` with exactly the columns input_ids / attention_mask / labels."""
    from datasets import Dataset

    cols = ("input_ids", "attention_mask", "labels")
    return Dataset.from_dict({c: [ex[c] if c in ex else [1] * len(ex["input_ids"]) for ex in examples]
                              for c in cols})


# ----------------------------------------------------------------------------- batching

class LengthGroupedSampler:
    """Index sampler whose consecutive ``batch_size`` indices have similar lengths, in shuffled batch order.

    Each epoch (``set_epoch``, called by the Trainer) the indices are permuted with ``seed + epoch``,
    cut into groups of ``group_batches`` batches, sorted by length inside each group and cut into batches;
    the batches are then shuffled (a partial last batch stays last, so batch boundaries never shift).
    Unlike transformers' ``LengthGroupedSampler`` the batch order is random, so an epoch does not run from
    the longest to the shortest examples, and short task types (e.g. declines) are not bunched together.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, group_batches: int = 64):
        self.lengths, self.batch_size, self.seed = list(lengths), int(batch_size), int(seed)
        self.group = self.batch_size * max(1, group_batches)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        import torch

        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        perm = torch.randperm(len(self.lengths), generator=gen).tolist()
        full, partial = [], []
        for start in range(0, len(perm), self.group):
            chunk = sorted(perm[start:start + self.group], key=lambda i: self.lengths[i])
            for b in range(0, len(chunk), self.batch_size):
                (full if len(chunk[b:b + self.batch_size]) == self.batch_size else partial).append(
                    chunk[b:b + self.batch_size])
        order = torch.randperm(len(full), generator=gen).tolist()
        return iter([i for k in order for i in full[k]] + [i for b in partial for i in b])


def padding_fraction(lengths: Sequence[int], batches: Iterable[Sequence[int]]) -> float:
    """Share of positions that are padding when ``batches`` (lists of indices) are padded to their longest."""
    real = padded = 0
    for b in batches:
        ls = [lengths[i] for i in b]
        real, padded = real + sum(ls), padded + max(ls) * len(ls)
    return 1.0 - real / padded if padded else 0.0


# ----------------------------------------------------------------------------- callbacks

def _callback_base():
    from transformers import TrainerCallback

    return TrainerCallback


class LogHistoryCallback(_callback_base()):
    """Streams the Trainer's log history to ``log_history.jsonl`` (rank 0 only), one line per log event.

    At the start of a (resumed) run the file is rewritten from the restored history, so a resumed run's file
    holds the history of the whole run without duplicates.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            runs.write_jsonl(self.path, state.log_history)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and state.log_history:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(state.log_history[-1], default=str) + "\n")


@contextlib.contextmanager
def compact_lm_head_on_cpu(enabled: bool = True) -> Iterator[None]:
    """While active, TRL's fused LM head scores only the positions that have a label, on CPU too.

    TRL 1.16's fused head (``trl.trainer.utils.add_fused_lm_head``) gathers the positions whose label is not
    -100 only on Triton devices (CUDA, XPU); elsewhere it projects *every* position through the vocabulary
    head and zeroes the masked ones afterwards, because on compiled backends a varying number of positions
    would recompile. Eager CPU has no such cost, and the prompt tokens (label -100) are about 45% of a
    Kestrel batch: this skips their head matmuls and the fp32 softmax work over the vocabulary, in the
    forward and the backward. The loss is the same (tested); ``benchmarks/train_throughput.py`` measures
    the gain. TRL's choice is restored on exit, so other trainers in the process keep TRL's behaviour.

    Args:
        enabled: False leaves TRL's behaviour unchanged (a no-op context).
    """
    from trl.trainer import utils as trl_utils

    original = getattr(trl_utils, "_use_triton", None)
    if not enabled or original is None:  # another TRL version without this switch: TRL's own path
        yield
        return
    trl_utils._use_triton = lambda device: original(device) or device.type == "cpu"
    try:
        yield
    finally:
        trl_utils._use_triton = original


def _trainer_class():
    """SFTTrainer plus the kit's length-grouped sampler (imported lazily: trl takes seconds to import)."""
    from trl import SFTTrainer

    class KitSFTTrainer(SFTTrainer):
        """SFTTrainer + length-grouped batches + counts of the tokens each micro-batch really trained on."""

        kit_group_by_length = False
        kit_compact_head = False  # build_trainer turns it on for CPU runs (see compact_lm_head_on_cpu)

        def compute_loss(self, model, inputs, *args, **kwargs):
            with compact_lm_head_on_cpu(self.kit_compact_head):
                return super().compute_loss(model, inputs, *args, **kwargs)

        def training_step(self, model, inputs, *args, **kwargs):
            counts = self.__dict__.setdefault("kit_tokens", Counter())
            counts["positions"] += int(inputs["input_ids"].numel())
            mask = inputs.get("attention_mask")
            counts["real"] += int(mask.sum()) if mask is not None else int(inputs["input_ids"].numel())
            counts["trained"] += int((inputs["labels"] != -100).sum())
            return super().training_step(model, inputs, *args, **kwargs)

        def _get_train_sampler(self, train_dataset=None):
            ds = train_dataset if train_dataset is not None else self.train_dataset
            if not self.kit_group_by_length:
                return super()._get_train_sampler(ds)
            return LengthGroupedSampler([len(x) for x in ds["input_ids"]],
                                        self.args.per_device_train_batch_size, seed=self.args.seed)

    return KitSFTTrainer


# ----------------------------------------------------------------------------- model & trainer

def check_target_modules(model: Any, targets: Sequence[str]) -> None:
    """Raise LoRATargetError when a LoRA target matches no module of ``model``, listing the names that exist.

    A target matches like in PEFT: a module whose full name equals it or ends with ``.<target>``.
    """
    import torch

    names = [n for n, _ in model.named_modules()]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                         if isinstance(m, torch.nn.Linear) or type(m).__name__ == "Conv1D"})
        raise LoRATargetError(f"LoRA target module(s) {missing} do not exist in {type(model).__name__}. "
                              f"Linear layers it has: {linear}. Set TrainConfig(target_modules=[...]) to some "
                              f"of these (attention projections are the usual choice).")


def load_training_model(model_name: str, config: TrainConfig, hw: Any) -> Any:
    """The base model for training: plain or 4-bit NF4 for QLoRA (CUDA + bitsandbytes only).

    Plain weights are loaded in ``hw.training_dtype`` (fp16 GPUs: fp32 master weights). With bf16 autocast on CPU
    that stores the frozen base in bf16, so autocast does not re-cast every weight on every step; PEFT
    adds the LoRA parameters in fp32 (``autocast_adapter_dtype``), hence fp32 optimizer state.
    """
    from . import models

    if config.quantization != "4bit":
        return models.load_model(model_name, device=hw.device, dtype=hw.training_dtype if not hw.fp16 else None,
                                 for_training=True)
    if hw.device != "cuda":
        raise QLoRAUnavailableError(f"QLoRA (quantization='4bit') needs a CUDA GPU; this run is on {hw.device}. "
                                    "Use quantization=None (plain LoRA) here, or run on a machine with an NVIDIA GPU.")
    if not hw.supports_qlora:
        raise QLoRAUnavailableError("QLoRA needs the bitsandbytes package: `pip install bitsandbytes` (and add it "
                                    "to requirements.lock), or use quantization=None.")
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype=hw.dtype)
    from peft import prepare_model_for_kbit_training

    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    model = AutoModelForCausalLM.from_pretrained(models.resolve_model_path(model_name), quantization_config=bnb,
                                                 dtype=hw.dtype, device_map={"": torch.device("cuda", local_rank)})
    return prepare_model_for_kbit_training(
        model, use_gradient_checkpointing=bool(config.activation_checkpointing))


def sft_config(config: TrainConfig, hw: Any, output_dir: str | Path, has_eval: bool = False,
               progress: bool = True) -> Any:
    """The ``trl.SFTConfig`` for a TrainConfig on the hardware ``hw`` (a models.DeviceSettings).

    Data is used as given (``skip_prepare_dataset``; the kit truncated it), precision follows the device
    (bf16 autocast on CPU only where the CPU computes bf16 natively), activation checkpointing is off unless
    asked for.
    """
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(output_dir), num_train_epochs=config.epochs, max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size, gradient_accumulation_steps=config.grad_accum,
        per_device_eval_batch_size=config.eval_batch_size, learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler, warmup_steps=config.warmup_ratio,
        weight_decay=config.weight_decay, seed=config.seed, data_seed=config.seed,
        **hw.training_args(), activation_checkpointing=bool(config.activation_checkpointing),
        max_length=None, padding_free=config.batching == "padding_free",
        dataset_kwargs={"skip_prepare_dataset": True}, remove_unused_columns=False,
        logging_steps=config.logging_steps, logging_first_step=True, save_strategy="steps",
        save_steps=config.save_steps, save_total_limit=config.save_total_limit,
        eval_strategy="no", eval_on_start=has_eval, report_to=[], disable_tqdm=not progress,
        ddp_find_unused_parameters=False, dataloader_num_workers=0)


def build_trainer(model_name: str, train_ds: Any, eval_ds: Any, config: TrainConfig, args: Any,
                  tokenizer: Any, hw: Any, callbacks: Sequence[Any] = ()) -> Any:
    """Load the model, check the LoRA targets and build the SFTTrainer (TRL wraps the model with PEFT)."""
    from peft import LoraConfig
    from transformers import set_seed

    from . import masking

    model = load_training_model(model_name, config, hw)
    check_target_modules(model, config.target_modules)
    set_seed(config.seed)  # LoRA's A matrices are initialised from the global RNG inside SFTTrainer
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.target_modules), task_type="CAUSAL_LM")
    collator = None if config.batching == "padding_free" else masking.MaskedCollator(tokenizer)
    trainer = _trainer_class()(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                               processing_class=tokenizer, peft_config=lora, data_collator=collator,
                               callbacks=list(callbacks))
    trainer.kit_group_by_length = config.batching == "group_by_length"
    trainer.kit_compact_head = hw.device == "cpu"
    return trainer


# ----------------------------------------------------------------------------- the training run

def _distributed_run_dir(run_dir: str | Path | None, resume: bool) -> Path:
    """The run folder, the same on every rank: rank 0 creates it and broadcasts the path."""
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    if resume and not run_dir:
        raise ValueError("resume=True needs run_dir=<the folder of the run to continue>")
    state = PartialState()
    path = [str(run_dir) if run_dir else (str(runs.new_run_dir("train")) if state.is_main_process else None)]
    if state.num_processes > 1 and not run_dir:
        broadcast_object_list(path)
    Path(path[0]).mkdir(parents=True, exist_ok=True)
    return Path(path[0])


def _resume_checkpoint(run_dir: Path, config: TrainConfig | None, resume: bool) -> tuple[str | None, TrainConfig | None]:
    """(last checkpoint or None, config): a resumed run reuses its saved config; a different one is an error."""
    if not resume:
        return None, config
    saved = run_dir / "config.json"
    if saved.exists():
        saved_cfg = TrainConfig.from_dict(json.loads(saved.read_text(encoding="utf-8"))["config"])
        if config is not None and config.to_dict() != saved_cfg.to_dict():
            diff = {k: (v, config.to_dict()[k]) for k, v in saved_cfg.to_dict().items() if config.to_dict()[k] != v}
            raise ValueError(f"cannot resume {run_dir} with a different config (saved, given): {diff}. "
                             "Pass config=None to reuse the saved one, or start a new run.")
        config = saved_cfg
    from transformers.trainer_utils import get_last_checkpoint

    ckpt_dir = run_dir / "checkpoints"
    last = get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None
    if last is None:
        print(f"[instructlab] resume: no checkpoint in {ckpt_dir} yet; training from the start", file=sys.stderr)
    return last, config


def _gather_ranks(trainer: Any) -> list[dict[str, Any]]:
    """One record per process (rank, pid, host, steps run, tokens seen), gathered on every rank."""
    import socket

    from accelerate.utils import gather_object

    me = {"rank": trainer.args.process_index, "local_rank": trainer.args.local_process_index,
          "pid": os.getpid(), "host": socket.gethostname(), "global_step": trainer.state.global_step,
          "tokens": trainer.__dict__.get("kit_tokens", Counter())["real"]}
    return gather_object([me]) if trainer.args.world_size > 1 else [me]


def _throughput(trainer: Any, runtime: float, ranks: list[dict[str, Any]]) -> dict[str, Any]:
    """Tokens per second (all ranks) and padding fraction (this rank's batches) of the train() call."""
    c = trainer.__dict__.get("kit_tokens", Counter())
    tokens = sum(r["tokens"] for r in ranks)
    return {"train_runtime_s": round(runtime, 3), "tokens": tokens, "tokens_per_s": tokens / runtime if runtime else None,
            "positions_rank0": c["positions"], "trained_tokens_rank0": c["trained"],
            "padding_fraction": 1 - c["real"] / c["positions"] if c["positions"] else 0.0,
            "world_size": trainer.args.world_size}


def _write_start(run_dir: Path, model_name: str, config: TrainConfig, hw: Any, args: Any,
                 selected: list, masked: Any, n_eval: int) -> None:
    """config.json, mask_report.json and the manifest's data fingerprints (rank 0 only)."""
    examples = [{"input_ids": e["input_ids"], "labels": e["labels"]} for e in masked.examples]
    runs.write_json(run_dir / "config.json", {
        "model_name": model_name, "config": config.to_dict(),
        "hardware": {"device": hw.device, "dtype": str(hw.dtype), "bf16": hw.bf16, "fp16": hw.fp16,
                     "use_cpu": hw.use_cpu, "description": hw.description, "world_size": args.world_size,
                     "precision": hw.precision, "precision_source": hw.precision_source},
        "sft_config": json.loads(json.dumps(args.to_dict(), default=str))})
    runs.write_json(run_dir / "mask_report.json", mask_report_dict(masked.report))
    runs.write_manifest(run_dir, kind="train", model=model_name, n_train_records=len(selected),
                        n_train_examples=len(masked.examples), n_eval_examples=n_eval,
                        data_fingerprint=runs.fingerprint(selected),
                        tokenized_fingerprint=runs.fingerprint(examples), world_size=args.world_size,
                        device=hw.description, precision=hw.manifest())


def train_lora(model_name: str, train_data: Any, eval_data: Any = None, config: TrainConfig | None = None,
               run_dir: str | Path | None = None, callbacks: Sequence[Any] = (), resume: bool = False,
               progress: bool = True) -> TrainResult:
    """Train a LoRA adapter on conversations with TRL's SFTTrainer and PEFT; write a complete run folder.

    Args:
        model_name: embedded name ("smollm2-135m-instruct", "tiny-random", ...), local folder or hub id.
        train_data: JSONL path, records (dicts with "messages" / Alpaca / ShareGPT) or message lists.
            ``config.n_examples`` picks a seeded subset stratified by ``task_type``.
        eval_data: same forms, with assistant answers; its loss is measured at the start and the end.
        config: TrainConfig (default: the case study's); precision/device come from ``models.device_settings``.
        run_dir: the run folder (default: ``runs.new_run_dir("train")``; under torchrun all ranks share it).
        callbacks: extra ``transformers.TrainerCallback`` objects (e.g. ``widgets.LiveLossPlot``).
        resume: continue the run in ``run_dir`` from its last checkpoint, with its saved config.
        progress: show the Trainer's progress bar (else each log line is printed).
    Returns:
        TrainResult(run_dir, adapter_dir, log_history, metrics, throughput, mask_report, model, tokenizer).
    Raises:
        TrainDataError (empty data, everything truncated, eval data without answers), LoRATargetError,
        QLoRAUnavailableError (4-bit off CUDA), ValueError (resume with a different config).
    """
    from . import models

    run_dir = Path(run_dir) if run_dir else None
    checkpoint, config = _resume_checkpoint(run_dir, config, resume) if resume and run_dir else (None, config)
    config = config or TrainConfig()
    hw = models.device_settings(config.device, config.dtype)
    if config.quantization == "4bit" and not hw.supports_qlora:
        load_training_model(model_name, config, hw)  # raises the explanatory QLoRAUnavailableError
    args = sft_config(config, hw, "checkpoints", has_eval=eval_data is not None, progress=progress)
    _ = args.device  # initialises torch.distributed under torchrun, before the run folder is shared
    run_dir = _distributed_run_dir(run_dir, resume)
    args.output_dir = str(run_dir / "checkpoints")
    tokenizer = models.load_tokenizer(model_name)
    records = train_data if not isinstance(train_data, (str, os.PathLike)) else _load(train_data)
    selected = config_subset(records, config)
    masked = prepare_examples(tokenizer, as_conversations(selected), config)
    eval_masked = prepare_examples(tokenizer, as_conversations(eval_data), config, "eval") if eval_data is not None else None
    if args.process_index == 0:
        _write_start(run_dir, model_name, config, hw, args, selected, masked,
                     len(eval_masked.examples) if eval_masked else 0)
    trainer = build_trainer(model_name, to_dataset(masked.examples),
                            to_dataset(eval_masked.examples) if eval_masked else None, config, args, tokenizer, hw,
                            [LogHistoryCallback(run_dir / "log_history.jsonl"), *callbacks])
    return _run_and_save(trainer, run_dir, checkpoint, masked, eval_masked is not None)


def _load(path: str | os.PathLike) -> list[Any]:
    from . import formats

    return formats.load_records(path)


def _run_and_save(trainer: Any, run_dir: Path, checkpoint: str | None, masked: Any, has_eval: bool) -> TrainResult:
    """Train (from ``checkpoint`` when resuming), save adapter + metrics on rank 0, return the result."""
    start = time.perf_counter()
    out = trainer.train(resume_from_checkpoint=checkpoint)
    runtime = time.perf_counter() - start
    ranks = _gather_ranks(trainer)
    throughput = _throughput(trainer, runtime, ranks)
    metrics = {**out.metrics, "global_step": trainer.state.global_step,
               "final_loss": next((r["loss"] for r in reversed(trainer.state.log_history) if "loss" in r), None),
               "resumed_from": checkpoint}
    if has_eval:
        metrics.update(trainer.evaluate())
    adapter_dir = run_dir / "adapter"
    trainer.save_model(str(adapter_dir))  # rank 0 only (Trainer checks); saves the tokenizer too
    if trainer.is_world_process_zero():
        runs.write_json(run_dir / "metrics.json", {**metrics, "throughput": throughput})
        runs.write_jsonl(run_dir / "log_history.jsonl", trainer.state.log_history)
        runs.write_manifest(run_dir, ranks=ranks, global_step=trainer.state.global_step,
                            finished_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    model = trainer.model
    model.eval()
    return TrainResult(run_dir, adapter_dir, list(trainer.state.log_history), metrics, throughput,
                       mask_report_dict(masked.report), model, trainer.processing_class)


# ----------------------------------------------------------------------------- export

def merge_adapter(run_dir_or_adapter: str | Path, out_dir: str | Path, model_name: str | None = None) -> Path:
    """Merge a LoRA adapter into its base model and save a standalone HF folder (model + tokenizer).

    Args:
        run_dir_or_adapter: a training run folder (with ``adapter/`` and ``config.json``) or an adapter folder.
        out_dir: where to write the merged model; loadable with ``AutoModelForCausalLM.from_pretrained`` or
            ``models.load_model(out_dir)`` and servable with ``transformers serve`` (adapters are not).
        model_name: the base model; default: the run's config.json, else the adapter's base_model_name_or_path.
    Returns the output folder. Raises FileNotFoundError when no adapter is found.
    The base is loaded unquantized and in fp32 whatever the device's inference dtype, so the adapter
    (trained in fp32, or under bf16 autocast with fp32 LoRA parameters) is added without bf16 rounding and
    a QLoRA adapter is merged into full-precision weights.
    """
    from . import models

    adapter_dir = models.find_adapter_dir(run_dir_or_adapter)
    if model_name is None:
        cfg_path = adapter_dir.parent / "config.json"
        if cfg_path.exists():
            model_name = json.loads(cfg_path.read_text(encoding="utf-8")).get("model_name")
    if model_name is None:
        model_name = json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    model = models.load_model(model_name, adapter=adapter_dir, device="cpu", dtype="float32")
    merged = model.merge_and_unload()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    tok_src = adapter_dir if (adapter_dir / "tokenizer_config.json").exists() else model_name
    models.load_tokenizer(str(tok_src)).save_pretrained(out)
    runs.write_json(out / "merge_info.json", {"base_model": model_name, "adapter": str(adapter_dir),
                                              "packages": runs.package_versions()})
    return out


# ----------------------------------------------------------------------------- command line

def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m instructlab.train", description=(
        "Train a LoRA adapter (works under `torchrun --nproc_per_node N` too; all ranks share --run-dir)."))
    p.add_argument("--profile", default="quick", choices=sorted(TRAIN_PROFILES))
    p.add_argument("--model", default=None, help="model name (default: the profile's)")
    p.add_argument("--data", default=str(Path(__file__).resolve().parent.parent / "data/kestrel/train.jsonl"))
    p.add_argument("--eval-data", default=None, help="conversations with answers, for eval loss")
    p.add_argument("--run-dir", default=None)
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    for name, typ in (("epochs", float), ("max-steps", int), ("n-examples", int), ("learning-rate", float),
                      ("batch-size", int), ("grad-accum", int), ("max-length", int), ("seed", int),
                      ("save-steps", int), ("batching", str), ("train-on", str), ("device", str)):
        p.add_argument(f"--{name}", type=typ, default=None)
    p.add_argument("--category-shares", type=json.loads, default=None,
                   help='JSON, e.g. \'{"lookalike": 0.15}\': shares of those categories in the n-examples subset')
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; prints the result summary as JSON on rank 0."""
    a = _parse_args(argv)
    keys = ("epochs", "max_steps", "n_examples", "learning_rate", "batch_size", "grad_accum", "max_length",
            "seed", "save_steps", "batching", "train_on", "device", "category_shares")
    model, config = profile_config(a.profile, model=a.model, **{k: getattr(a, k) for k in keys})
    res = train_lora(model, a.data, a.eval_data, config, a.run_dir, resume=a.resume)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"run_dir": str(res.run_dir), "adapter_dir": str(res.adapter_dir),
                          "final_loss": res.metrics.get("final_loss"), "throughput": res.throughput}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
