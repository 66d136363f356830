"""A run is a function: :func:`train_run` trains, :func:`eval_run` evaluates.

Each writes its run folder and returns a result object. Notebooks 02 and 03 call them and spend
their cells on showing what happened; the sweep (``ablation.run_sweep``) calls the same functions,
in its worker processes. Every run folder holds one documented results file, ``result.json``:

* training (:func:`train_run`): ``{"kind": "training", "params", "model", "config", "n_train",
  "metrics": {"train_loss", "final_loss", "eval_loss", "global_step", ...}, "throughput",
  "mask_report", "adapter_dir", "duration_s"}`` next to train_lora's adapter, checkpoints, log history;
* evaluation (:func:`eval_run`): ``{"kind": "evaluation", "params", "model", "adapter", "n_prompts",
  "max_new_tokens", "metrics": {metric: value}, "n": {metric: answers behind it},
  "sides": {"before": {...}, "after": {...}}, "duration_s"}``. ``metrics`` are those of the evaluated
  model: with the adapter when one is given ("after"), else the model alone ("before").

The checkpoint a sweep evaluates is chosen here too (:func:`select_checkpoint`: lowest loss on a dev
split carved from the training data), because it belongs to the run, not to the sweep.

:class:`Lesson` is the little bookkeeping every notebook needs (profile, run folder, a summary line).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from . import profiles, runs

__all__ = ["RESULT_FILE", "REPO_ROOT", "repo_path", "TrainParams", "EvalParams", "TrainRun", "EvalRun",
           "train_run", "eval_run", "read_result", "progress_callback", "dev_loss", "checkpoint_candidates",
           "select_checkpoint", "params_match", "training_matches", "param_names", "Lesson", "start_lesson"]

RESULT_FILE = "result.json"
REPO_ROOT = profiles.REPO_ROOT


def repo_path(value: str | os.PathLike) -> Path:
    """A path as users write it: absolute, relative to the current directory, or to the repository.

    Args:
        value: e.g. ``"data/kestrel/train.jsonl"``.
    Returns:
        An absolute path (the repository's when the path does not exist from the current directory).
    """
    p = Path(value)
    if p.is_absolute() or p.exists():
        return p.resolve()
    return REPO_ROOT / p


def _report_fn(report: Any) -> Callable[[str], None] | None:
    """``"auto"``: print when no live notebook frontend shows widgets (headless runs, terminals)."""
    if report == "auto":
        from . import widgets

        return print if widgets.is_headless() else None
    return report


# ----------------------------------------------------------------------------- training


@dataclass
class TrainParams:
    """What :func:`train_run` trains (notebook 02's parameters). Zero / empty means "the profile's".

    Args:
        profile: ``smoke`` / ``quick`` / ``full`` (``profiles``): model and TrainConfig.
        model: model name, local folder or hub id; empty: the profile's.
        data_path: training conversations (JSONL); relative paths from the repository.
        eval_path: held-out prompts with ``reference`` answers (eval.jsonl format); their loss is measured at
            the start and end of training. Default: the dev split (``data/kestrel/dev.jsonl``), so that nothing
            seen during training, not even a reported loss, comes from the eval set. Empty: no eval loss.
        n_examples: training examples drawn (stratified by task type); 0: the profile's.
        epochs: 0: the profile's.
        seed: LoRA init, data order, subset draw.
        train_on: ``assistant`` (response-only loss), ``last_assistant`` or ``all`` (full sequence).
        n_eval_loss: eval conversations for the eval loss; 0: the profile's.
        overrides: any other ``train.TrainConfig`` field, e.g. ``{"max_steps": 2}``.
    """

    profile: str = "quick"
    model: str = ""
    data_path: str = "data/kestrel/train.jsonl"
    eval_path: str = "data/kestrel/dev.jsonl"
    n_examples: int = 0
    epochs: float = 0.0
    seed: int = 42
    train_on: str = "assistant"
    n_eval_loss: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)

    def resolve(self) -> tuple[str, Any]:
        """(model name, ``train.TrainConfig``): the profile's, with these parameters applied.

        Raises:
            ValueError: an unknown profile or TrainConfig field (naming the valid ones).
        """
        from . import train

        profiles.check_name(self.profile, "TrainParams.profile")
        return train.profile_config(self.profile, model=self.model or None, n_examples=self.n_examples or None,
                                    epochs=self.epochs or None, seed=self.seed, train_on=self.train_on,
                                    **self.overrides)


@dataclass
class TrainRun:
    """What :func:`train_run` returns: the data it drew, train_lora's result and ``result.json``."""

    run_dir: Path
    model_name: str
    config: Any
    records: list[dict]
    eval_records: list[dict]
    train: Any                      # train.TrainResult (model, tokenizer, log history, metrics ...)
    result: dict[str, Any]

    @property
    def adapter_dir(self) -> Path:
        return self.train.adapter_dir


def _eval_conversations(path: str, n: int) -> list[dict]:
    """Eval-format records (prompt messages + ``reference``) as conversations ending in the reference."""
    from . import train

    if not path:
        return []
    rows = [{"messages": r["messages"] + [{"role": "assistant", "content": r["reference"]}]}
            for r in runs.read_jsonl(repo_path(path)) if r.get("reference")]
    return train.select_examples(rows, n, seed=0) if rows else []


def train_run(params: TrainParams | Mapping[str, Any], run_dir: str | Path, *, callbacks: Sequence[Any] = (),
              bar: bool = True, report: Callable[[str], None] | str | None = "auto") -> TrainRun:
    """Train one LoRA adapter (``train.train_lora``) and write ``<run_dir>/result.json``.

    Args:
        params: :class:`TrainParams` (or a dict of its fields).
        run_dir: the run folder; train_lora writes adapter, checkpoints, config, log history into it.
        callbacks: extra ``TrainerCallback`` objects (e.g. ``widgets.LiveLossPlot``).
        bar: show the Trainer's progress bar (off: train_lora prints each log line).
        report: called with progress lines (step, loss, ETA); ``"auto"`` prints them when no live
            notebook frontend is there to show the bar (headless runs); None: silent.
    Returns:
        :class:`TrainRun`.
    Raises:
        ValueError: bad parameters (unknown profile or field). ``train.TrainDataError`` and the other
        errors of ``train.train_lora``.
    """
    from . import formats, train

    params = params if isinstance(params, TrainParams) else TrainParams(**params)
    report = _report_fn(report)
    start = time.perf_counter()
    model_name, config = params.resolve()
    records = train.config_subset(formats.load_records(repo_path(params.data_path)), config)
    eval_records = _eval_conversations(params.eval_path, params.n_eval_loss or profiles.get(params.profile).eval_loss_examples)
    extra = [progress_callback(report)] if report else []
    if report:
        report(f"training {model_name} on {len(records)} examples ({params.profile} profile) -> {run_dir}")
    result = train.train_lora(model_name, records, eval_data=eval_records or None, config=config, run_dir=run_dir,
                              callbacks=[*callbacks, *extra], progress=bar)
    summary = {"kind": "training", "params": asdict(params), "model": model_name, "config": config.to_dict(),
               "n_train": len(records), "n_eval_loss": len(eval_records),
               "metrics": {k: v for k, v in result.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
               "throughput": result.throughput, "mask_report": {k: v for k, v in result.mask_report.items()
                                                                if not isinstance(v, (list, dict))},
               "adapter_dir": str(result.adapter_dir), "duration_s": round(time.perf_counter() - start, 1)}
    runs.write_json(Path(run_dir) / RESULT_FILE, summary)
    if report:
        report(f"trained in {summary['duration_s']:.0f} s: final loss {summary['metrics'].get('final_loss')}, "
               f"adapter {result.adapter_dir}")
    return TrainRun(Path(run_dir), model_name, config, records, eval_records, result, summary)


def read_result(run_dir: str | Path) -> dict[str, Any]:
    """The ``result.json`` of a training or evaluation run folder.

    Args:
        run_dir: the run folder.
    Returns:
        The parsed results file (see the module docstring for its fields).
    Raises:
        FileNotFoundError: the run did not finish (no results file), naming the folder.
    """
    path = Path(run_dir) / RESULT_FILE
    if not path.exists():
        raise FileNotFoundError(f"no {RESULT_FILE} in {run_dir}: the run did not finish; run it again")
    return json.loads(path.read_text(encoding="utf-8"))


def progress_callback(report: Callable[[str], None], every_s: float = 10.0) -> Any:
    """A ``TrainerCallback`` that reports training steps with the loss and an ETA.

    Args:
        report: called with one line, e.g. ``"step 40/120  loss 1.234  0:42 elapsed  eta 1:24"``.
        every_s: at most one line per this many seconds (the first and last steps always report).
    Returns:
        The callback instance.
    """
    from transformers import TrainerCallback

    class ProgressReport(TrainerCallback):
        def __init__(self):
            self.start, self.last, self.loss = None, 0.0, None

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "loss" in logs:
                self.loss = logs["loss"]
            if "eval_loss" in logs and state.is_world_process_zero:
                report(f"  eval loss {logs['eval_loss']:.4f} at step {state.global_step}")
            now = time.perf_counter()
            done, total = state.global_step, state.max_steps or 0
            if not state.is_world_process_zero or self.start is None or "loss" not in logs:
                return
            if now - self.last < every_s and done not in (1, total):
                return
            self.last = now
            elapsed = now - self.start
            eta = elapsed / max(done, 1) * (total - done) if total else 0
            report(f"  step {done}/{total}  loss {self.loss:.4f}  {_clock(elapsed)} elapsed  eta {_clock(eta)}")

    return ProgressReport()


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


# ----------------------------------------------------------------------------- evaluation


@dataclass
class EvalParams:
    """What :func:`eval_run` evaluates (notebook 03's parameters). Negative / zero means "the profile's".

    Args:
        profile: ``smoke`` / ``quick`` / ``full``: model, prompts per category and token budget.
        model: model name, local folder or hub id; empty: the profile's.
        adapter: PEFT adapter folder or a training run folder; empty: the model alone.
        eval_path: the eval set (``data/kestrel/eval.jsonl``); relative paths from the repository.
        n_per_category: prompts per category; -1: the profile's; 0: all.
        max_new_tokens: answer budget; 0: the profile's.
        batch_size: prompts per ``generate`` call.
        before: also answer with the model alone (the "before" side); the "after" side needs an adapter.
    """

    profile: str = "quick"
    model: str = ""
    adapter: str = ""
    eval_path: str = "data/kestrel/eval.jsonl"
    n_per_category: int = -1
    max_new_tokens: int = 0
    batch_size: int = 16
    before: bool = True


@dataclass
class EvalRun:
    """What :func:`eval_run` returns: the prompts, each side's answers and ``metrics.EvalReport``."""

    run_dir: Path
    model_name: str
    records: list[dict]
    answers: dict[str, list[str]]
    reports: dict[str, Any]
    max_new_tokens: int
    result: dict[str, Any]


def generation_dtype() -> str:
    """The precision eval answers are generated in here (``models.device_settings().dtype``), e.g. ``"bfloat16"``."""
    from . import models

    return models.device_settings().manifest()["dtype"]  # the name run manifests record


def generation_dtype_matches(evaluation: str | Path | Mapping[str, Any]) -> bool:
    """Whether a finished evaluation (its folder, or its ``result.json`` already read) generated its answers in
    the precision generation runs in now. A result from before the field was recorded counts as fp32 on CPU
    (the kit generated in fp32 there) and as the device's precision elsewhere (unchanged since)."""
    from . import models

    if isinstance(evaluation, Mapping):
        recorded = evaluation
    else:
        try:
            recorded = json.loads((Path(evaluation) / RESULT_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
    hw = models.device_settings()
    now = hw.manifest()["dtype"]  # as generation_dtype() names it
    return recorded.get("generation_dtype", "float32" if hw.device == "cpu" else now) == now


def _answer(model_name: str, adapter: str | None, records: list[dict], max_new_tokens: int, batch_size: int,
            side: str, report: Callable[[str], None] | None) -> list[str]:
    from . import generate, models

    tokenizer = models.load_tokenizer(model_name)
    model = models.load_model(model_name, adapter=adapter or None)
    if adapter:
        # One set of weights, as after `merge_adapter`: the unmerged LoRA branches (kept in fp32 by PEFT)
        # cost an extra cast and two small matmuls per linear layer per decoding step.
        model = model.merge_and_unload()
    t0 = time.perf_counter()
    if report:
        n_batches = -(-len(records) // batch_size)
        report(f"{side}: answering {len(records)} prompts with {model_name}{' + adapter' if adapter else ''} "
               f"({n_batches} batch{'es' if n_batches > 1 else ''} of up to {batch_size}, {max_new_tokens} new tokens)")
    if report is None:
        return generate.generate_answers(model, tokenizer, records, max_new_tokens=max_new_tokens,
                                         batch_size=batch_size, progress=True)
    answers = _answers_by_batch(model, tokenizer, records, max_new_tokens, batch_size,
                                lambda k, n, s: report(f"{side}: batch {k}/{n} done, {_clock(s)} elapsed"))
    report(f"{side}: {len(answers)} answers in {time.perf_counter() - t0:.1f} s")
    return answers


def _answers_by_batch(model: Any, tokenizer: Any, records: Sequence[dict], max_new_tokens: int, batch_size: int,
                      on_batch: Callable[[int, int, float], None]) -> list[str]:
    """``generate.generate_answers`` one batch at a time, to report each batch: the same batches it makes
    (prompts sorted longest first, ``batch_size`` at a time), so the answers are the same."""
    from . import generate

    texts = generate.render_prompts(tokenizer, records)
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    answers: list[str] = [""] * len(records)
    start = time.perf_counter()
    with generate._generation_kernels(model):  # once for all batches, as generate_answers does: weights packed once
        for k, idx in enumerate(batches, 1):
            out = generate.generate_answers(model, tokenizer, [records[i] for i in idx],
                                            max_new_tokens=max_new_tokens, batch_size=len(idx), progress=False)
            for i, answer in zip(idx, out):
                answers[i] = answer
            on_batch(k, len(batches), time.perf_counter() - start)
    return answers


def eval_run(params: EvalParams | Mapping[str, Any], run_dir: str | Path, *, tone_judge: Any = None,
             report: Callable[[str], None] | str | None = "auto") -> EvalRun:
    """Answer the eval set greedily, score the answers (``metrics.evaluate_answers``) and write the run folder.

    Writes ``<side>_answers.jsonl`` / ``_metrics.json`` / ``_per_category.csv`` / ``_terms.csv`` per side,
    ``before_after.{csv,json}`` and ``result.json``.

    Args:
        params: :class:`EvalParams` (or a dict of its fields).
        run_dir: the run folder (created).
        tone_judge: optional ``judge.ToneJudge``: scores each side's answers as an LLM tone judge.
        report: called with progress lines; ``"auto"`` prints them in headless runs; None: silent.
    Returns:
        :class:`EvalRun`.
    Raises:
        ValueError: bad parameters, or neither side requested (``before=False`` without an adapter).
        FileNotFoundError: a missing eval file or adapter.
    """
    from . import metrics

    params = params if isinstance(params, EvalParams) else EvalParams(**params)
    report = _report_fn(report)
    profile = profiles.get(profiles.check_name(params.profile, "EvalParams.profile"))
    if not params.before and not params.adapter:
        raise ValueError("EvalParams: before=False and no adapter: nothing to evaluate; give an adapter or before=True")
    start = time.perf_counter()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    model_name = params.model or profile.model
    n_per_category, max_new_tokens = metrics.eval_settings(params.profile, params.n_per_category, params.max_new_tokens)
    eval_file = repo_path(params.eval_path)
    if not eval_file.exists():
        raise FileNotFoundError(f"EvalParams.eval_path: no eval file {eval_file}; see data/kestrel/eval.jsonl")
    records = metrics.select_per_category(runs.read_jsonl(eval_file), n_per_category)
    sides = {**({"before": None} if params.before else {}), **({"after": params.adapter} if params.adapter else {})}
    answers = {side: _answer(model_name, adapter, records, max_new_tokens, params.batch_size, side, report)
               for side, adapter in sides.items()}
    prompts = [r["messages"][-1]["content"] for r in records]
    judged = {side: tone_judge.score(prompts, ans, progress=False) for side, ans in answers.items()} if tone_judge else {}
    reports = {side: metrics.evaluate_answers(records, ans, tone_judge=judged.get(side)) for side, ans in answers.items()}
    for side, rep in reports.items():
        rep.save(run_dir, side)
    if "before" in reports:
        metrics.write_before_after(reports["before"], reports.get("after"), run_dir)
    main_side = "after" if "after" in reports else "before"
    result = {"kind": "evaluation", "params": asdict(params), "model": model_name, "adapter": params.adapter or None,
              "eval_path": str(eval_file), "eval_fingerprint": runs.fingerprint(records), "n_prompts": len(records),
              "max_new_tokens": max_new_tokens, "generation_dtype": generation_dtype(), "side": main_side,
              "metrics": {k: m.value for k, m in reports[main_side].metrics.items()},
              "n": {k: m.n for k, m in reports[main_side].metrics.items()},
              "sides": {side: {k: m.value for k, m in rep.metrics.items()} for side, rep in reports.items()},
              "duration_s": round(time.perf_counter() - start, 1)}
    runs.write_json(run_dir / RESULT_FILE, result)
    if report:
        shown = ", ".join(f"{k} {v:.3g}" for k, v in result["metrics"].items() if isinstance(v, (int, float)))
        report(f"evaluated ({main_side}) in {result['duration_s']:.0f} s: {shown}")
    return EvalRun(run_dir, model_name, records, answers, reports, max_new_tokens, result)


# ----------------------------------------------------------------------------- choosing the checkpoint


def dev_loss(model: Any, tokenizer: Any, records: Sequence[dict], max_length: int = 1024, batch_size: int = 8) -> float:
    """Mean cross-entropy per trained token of ``records`` (conversations with answers).

    The loss is on the assistant turns only, whatever the run trained on, so variants compare on one instrument.

    Args:
        model: a causal LM (with or without adapter).
        tokenizer: its tokenizer.
        records: records with ``messages`` ending in an assistant turn.
        max_length: truncation of each conversation.
        batch_size: conversations per forward pass.
    Returns:
        The mean loss per trained token.
    """
    import torch

    from . import masking

    masked = masking.mask_dataset(tokenizer, [r["messages"] for r in records], max_length=max_length,
                                  train_on="assistant", progress=False)
    collate = masking.MaskedCollator(tokenizer)
    device = next(model.parameters()).device
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for i in range(0, len(masked.examples), batch_size):
            batch = {k: v.to(device) for k, v in collate(masked.examples[i:i + batch_size]).items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
            labels = batch["labels"][:, 1:]
            total += torch.nn.functional.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                                                       labels.reshape(-1), ignore_index=-100, reduction="sum").item()
            count += int((labels != -100).sum())
    return total / max(count, 1)


def checkpoint_candidates(train_dir: str | Path) -> list[Path]:
    """Adapters a training run left: its intermediate checkpoints in step order, then the final ``adapter``.

    Args:
        train_dir: a training run folder.
    Returns:
        ``checkpoints/checkpoint-N`` folders holding an ``adapter_config.json`` (except the final step's,
        which equals the final adapter), then ``<train_dir>/adapter``.
    """
    train_dir = Path(train_dir)
    steps = sorted((int(p.name.split("-")[-1]), p) for p in (train_dir / "checkpoints").glob("checkpoint-*")
                   if (p / "adapter_config.json").exists() and p.name.split("-")[-1].isdigit())
    final_step = read_result(train_dir)["metrics"].get("global_step") if (train_dir / RESULT_FILE).exists() else None
    return [p for step, p in steps if step != final_step] + [train_dir / "adapter"]


def select_checkpoint(model_name: str, train_dir: str | Path, dev_records: Sequence[dict]) -> dict[str, Any]:
    """Choose the adapter of a run with the lowest :func:`dev_loss` on the dev split (ties: the later one).

    Args:
        model_name: the base model.
        train_dir: the training run folder.
        dev_records: the dev split (conversations with answers), never the eval set.
    Returns:
        ``{"chosen", "dev_loss", "candidates": {path: loss}, "n_dev"}``, also written to
        ``<train_dir>/../checkpoint_selection.json``.
    """
    from . import models

    tokenizer = models.load_tokenizer(model_name)
    losses = {}
    # fp32 on CPU whatever generation runs in: the kit's automatic choice before bf16 generation, so the same
    # checkpoint is chosen as then, and INSTRUCTLAB_GENERATION_DTYPE does not change the choice
    dtype = "float32" if models.device_settings().device == "cpu" else None
    for path in checkpoint_candidates(train_dir):
        model = models.load_model(model_name, adapter=path, dtype=dtype)
        losses[str(path)] = dev_loss(model, tokenizer, dev_records)
        del model
    chosen = min(reversed(list(losses)), key=losses.get)
    result = {"chosen": chosen, "dev_loss": losses[chosen], "candidates": losses, "n_dev": len(dev_records)}
    runs.write_json(Path(train_dir).parent / "checkpoint_selection.json", result)
    return result


# ----------------------------------------------------------------------------- lessons


@dataclass
class Lesson:
    """A notebook's bookkeeping: its profile, its run folder, and the summary line at its end."""

    name: str
    profile: profiles.Profile
    run_dir: Path
    started: float = field(default_factory=time.perf_counter)

    def finish(self, **manifest: Any) -> str:
        """Record the lesson in ``manifest.json`` and print one summary line (time taken, where the results are).

        Args:
            manifest: extra fields for the manifest (what the lesson used and produced).
        Returns:
            The summary line.
        """
        took = time.perf_counter() - self.started
        files = sorted(p.name for p in self.run_dir.iterdir() if p.name != "manifest.json")
        runs.write_manifest(self.run_dir, notebook=self.name, profile=self.profile.name,
                            lesson_duration_s=round(took, 1), outputs=files, **manifest)
        shown = ", ".join(files[:8]) + (f" and {len(files) - 8} more" if len(files) > 8 else "")
        line = (f"{self.name} ({self.profile.name} profile) finished in {_clock(took)}; "
                f"results in {self.run_dir}: {shown}")
        print(line)
        sys.stdout.flush()
        return line


def start_lesson(name: str, profile: str, run_dir: str | Path | None, kind: str) -> Lesson:
    """Begin a notebook: check the profile, create the run folder, print both and the device.

    Args:
        name: the notebook (e.g. ``"02_lora_training"``).
        profile: ``smoke`` / ``quick`` / ``full``.
        run_dir: the folder from the parameters cell; empty: ``runs/<stamp>-<kind>-<profile>``.
        kind: the run kind for a new folder's name.
    Returns:
        :class:`Lesson` (``.profile`` is the :class:`profiles.Profile`, ``.run_dir`` a Path).
    Raises:
        ValueError: an unknown profile.
    """
    from . import models

    prof = profiles.get(profile)
    lesson = Lesson(name, prof, runs.ensure_run_dir(run_dir, kind, profile))
    print(f"{name}: profile {prof.name!r} ({prof.description})")
    print("run folder:", lesson.run_dir)
    print("device:", models.device_settings().description)
    return lesson


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def params_match(run_dir: str | Path, params: TrainParams | EvalParams) -> bool:
    """True when ``run_dir`` holds a finished run (its ``result.json``) made with exactly ``params``."""
    path = Path(run_dir) / RESULT_FILE
    if not path.exists():
        return False
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("params") == _jsonable(asdict(params))
    except ValueError:
        return False


def training_matches(train_dir: str | Path, params: TrainParams) -> bool:
    """True when ``train_dir`` holds a finished training run with the same model, data and resolved ``TrainConfig``
    (stricter than :func:`params_match`, which compares only the parameters; used by ``recipes``: the same
    parameters resolve differently once a profile is edited)."""
    path = Path(train_dir) / RESULT_FILE
    if not path.exists():
        return False
    try:
        done = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return False
    from .train import TrainConfig

    model, cfg = params.resolve()
    try:    # through TrainConfig: a field added since the run was made reads as its default
        recorded = TrainConfig.from_dict(done.get("config") or {}).to_dict()
    except (TypeError, ValueError):
        return False
    return (done.get("model") == model and json.dumps(recorded, sort_keys=True) == json.dumps(cfg.to_dict(), sort_keys=True)
            and done.get("params", {}).get("data_path") == params.data_path
            and done.get("params", {}).get("eval_path") == params.eval_path)


def param_names(cls: type) -> list[str]:
    """The field names of :class:`TrainParams` or :class:`EvalParams`."""
    return [f.name for f in fields(cls)]
