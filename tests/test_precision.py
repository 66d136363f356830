"""Precision follows the CPU: the decision (flags + timed probe, cached, overridable) and the numerics of
both paths, each forced with ``INSTRUCTLAB_DTYPE`` so that every machine tests both, whatever its CPU."""

import contextlib
import json
import os

import pytest
import torch
from conftest import scratch_dir

from instructlab import models
from instructlab.train import TrainConfig, merge_adapter, train_lora

TINY = "tiny-random"
PATHS = {"bfloat16": torch.bfloat16, "float32": torch.float32}


@pytest.fixture
def fake_cpu(monkeypatch, tmp_path):
    """A CPU whose flags and matmul rates the test chooses; the probe cache in a temporary folder."""
    monkeypatch.setenv("INSTRUCTLAB_CACHE", str(tmp_path))
    monkeypatch.delenv("INSTRUCTLAB_DTYPE", raising=False)
    monkeypatch.delenv("INSTRUCTLAB_GENERATION_DTYPE", raising=False)
    monkeypatch.setattr(models, "_PROBE_MEMO", {})
    cpu = {"model": "Fake EPYC", "flags": {"avx2", "avx512f", "avx512_bf16"}, "rates": {"bf16": 975.0, "fp32": 223.0},
           "probes": 0}
    monkeypatch.setattr(models, "_cpu_info", lambda: (cpu["model"], set(cpu["flags"])))

    def fake_rate(dtype=torch.float32, n=1024, reps=5):
        cpu["probes"] += 1
        return cpu["rates"]["bf16" if dtype == torch.bfloat16 else "fp32"]

    monkeypatch.setattr(models, "matmul_gflops", fake_rate)
    return cpu


def test_native_bf16_cpu_gets_bf16_and_says_why(fake_cpu):
    s = models.device_settings("cpu")
    assert s.description == (f"CPU ({os.cpu_count()} cores), bf16: native (avx512_bf16), 975 vs 223 GFLOP/s; "
                             "training and generation in bf16")
    # training: bf16 autocast and a bf16 base; generation: bf16 weights (batch-invariant kernels)
    assert (s.training_dtype, s.dtype, s.bf16, s.fp16, s.use_cpu, s.precision, s.precision_source) == (
        torch.bfloat16, torch.bfloat16, True, False, True, "bf16", "probe")
    assert s.training_args() == {"bf16": True, "fp16": False, "use_cpu": True}
    assert s.manifest()["precision"] == "bf16" and s.manifest()["train_dtype"] == "bfloat16"
    assert s.manifest()["dtype"] == "bfloat16"


def test_generation_dtype_variable_sets_generation_alone(fake_cpu, monkeypatch):
    monkeypatch.setenv("INSTRUCTLAB_GENERATION_DTYPE", "float32")  # answers as generated before bf16 generation
    s = models.device_settings("cpu")
    assert (s.dtype, s.training_dtype, s.bf16) == (torch.float32, torch.bfloat16, True)
    assert s.description.endswith("; training in bf16, generation in fp32 (INSTRUCTLAB_GENERATION_DTYPE=float32)")
    assert s.manifest()["dtype"] == "float32" and s.manifest()["train_dtype"] == "bfloat16"
    fake_cpu.update(flags={"avx2"}, rates={"bf16": 13.0, "fp32": 223.0})  # fp32 already: nothing to say
    monkeypatch.setattr(models, "_PROBE_MEMO", {})
    monkeypatch.setenv("INSTRUCTLAB_CACHE", str(models.cache_dir() / "other"))
    assert "generation in fp32" not in models.device_settings("cpu").description
    monkeypatch.setenv("INSTRUCTLAB_GENERATION_DTYPE", "half")
    with pytest.raises(ValueError, match=r"INSTRUCTLAB_GENERATION_DTYPE='half'.*bfloat16.*float32"):
        models.device_settings("cpu")


@pytest.mark.parametrize("flags, rates, why", [
    ({"avx2", "fma"}, {"bf16": 13.0, "fp32": 223.0}, "emulated (no bf16 CPU flag), 13 vs 223 GFLOP/s"),
    # a flag is not enough: the probe must confirm that bf16 really is faster
    ({"avx512_bf16"}, {"bf16": 230.0, "fp32": 223.0}, "emulated (avx512_bf16 but bf16 under 1.2x fp32's speed)"),
    # nor is a fast-looking timing without the flag (a noisy probe on a shared machine)
    ({"avx2"}, {"bf16": 900.0, "fp32": 223.0}, "emulated (no bf16 CPU flag)"),
])
def test_emulated_bf16_cpu_stays_fp32(fake_cpu, flags, rates, why):
    fake_cpu.update(flags=flags, rates=rates)
    s = models.device_settings("cpu")
    assert (s.dtype, s.training_dtype, s.bf16, s.precision) == (torch.float32, torch.float32, False, "fp32")
    assert s.description.startswith("CPU (") and f"fp32, bf16: {why}" in s.description


def test_probe_runs_once_per_machine_and_is_cached_on_disk(fake_cpu, monkeypatch):
    models.device_settings("cpu")
    probes = fake_cpu["probes"]
    assert probes >= 2  # bf16 and fp32 were both timed
    monkeypatch.setattr(models, "_PROBE_MEMO", {})  # a new process: only the file remains
    models.device_settings("cpu")
    assert fake_cpu["probes"] == probes
    saved = json.loads((models.cache_dir() / models.PRECISION_CACHE_FILE).read_text())
    (entry,) = saved.values()
    assert entry["cpu"] == "Fake EPYC" and entry["bf16_flags"] == ["avx512_bf16"] and entry["bf16_gflops"] == 975.0
    fake_cpu.update(model="Another CPU", flags={"avx2"}, rates={"bf16": 10.0, "fp32": 100.0})
    assert not models.device_settings("cpu").bf16  # another machine kind: probed again, fp32
    assert fake_cpu["probes"] > probes and len(json.loads((models.cache_dir() / "cpu_precision.json").read_text())) == 2


def test_a_kernel_isa_limit_is_probed_apart_from_the_cpu_it_runs_on(fake_cpu, monkeypatch):
    """``ONEDNN_MAX_CPU_ISA=AVX2`` on an AMX CPU: the same flags, but bf16 emulated. The cached probe of the
    unlimited kernels must not decide for it, nor its probe for them."""
    for name in models.KERNEL_ISA_ENV:
        monkeypatch.delenv(name, raising=False)
    assert models.device_settings("cpu").bf16
    probes = fake_cpu["probes"]
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    fake_cpu.update(rates={"bf16": 1.0, "fp32": 250.0})  # what this machine measures with oneDNN capped
    monkeypatch.setattr(models, "_PROBE_MEMO", {})
    s = models.device_settings("cpu")
    assert fake_cpu["probes"] > probes and not s.bf16 and s.dtype == torch.float32
    assert "emulated (avx512_bf16 but bf16 under 1.2x fp32's speed)" in s.description
    saved = json.loads((models.cache_dir() / models.PRECISION_CACHE_FILE).read_text())
    assert sorted(e.get("kernel_isa", {}).get("ONEDNN_MAX_CPU_ISA", "") for e in saved.values()) == ["", "AVX2"]
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")  # the limit lifted: the first probe's entry again, not a new probe
    monkeypatch.setattr(models, "_PROBE_MEMO", {})
    probes = fake_cpu["probes"]
    assert models.device_settings("cpu").bf16 and fake_cpu["probes"] == probes


@pytest.mark.parametrize("name, dtype", [("bfloat16", torch.bfloat16), ("bf16", torch.bfloat16),
                                         ("float32", torch.float32), ("FP32", torch.float32)])
def test_env_and_parameter_force_either_path(fake_cpu, monkeypatch, name, dtype):
    fake_cpu.update(flags={"avx2"}, rates={"bf16": 13.0, "fp32": 223.0})  # the CPU alone would say fp32
    monkeypatch.setenv("INSTRUCTLAB_DTYPE", name)
    s = models.device_settings("cpu")
    assert (s.dtype, s.training_dtype, s.bf16, s.precision_source) == (dtype, dtype, dtype == torch.bfloat16,
                                                                       "INSTRUCTLAB_DTYPE")
    assert f"forced by INSTRUCTLAB_DTYPE={name}" in s.description and "emulated" in s.description
    other = "float32" if dtype == torch.bfloat16 else "bfloat16"
    p = models.device_settings("cpu", dtype=other)  # the parameter wins over the variable
    assert p.dtype == PATHS[other] and p.precision_source == "parameter" and "forced by dtype=" in p.description


def test_bad_dtype_names_the_variable_and_the_valid_values(fake_cpu, monkeypatch):
    monkeypatch.setenv("INSTRUCTLAB_DTYPE", "half")
    with pytest.raises(ValueError, match=r"INSTRUCTLAB_DTYPE='half'.*bfloat16.*float32"):
        models.device_settings("cpu")
    monkeypatch.delenv("INSTRUCTLAB_DTYPE")
    with pytest.raises(ValueError, match=r"dtype='fp8'.*bfloat16.*float32"):
        models.device_settings("cpu", dtype="fp8")
    with pytest.raises(ValueError, match="torch.bfloat16 or torch.float32"):
        models.device_settings("cpu", dtype=torch.float16)


def test_cpu_flags_agree_with_torchs_own_check():
    """The flags the kit reads from /proc/cpuinfo match what torch's CPU dispatcher sees (x86 Linux)."""
    name, flags = models._cpu_info()
    if not (hasattr(torch, "cpu") and hasattr(torch.cpu, "_is_avx512_bf16_supported")) or "avx2" not in flags:
        pytest.skip("not an x86 CPU with torch's feature checks")
    assert name and ("avx512_bf16" in flags) == torch.cpu._is_avx512_bf16_supported()


def test_matmul_probe_measures_both_dtypes():
    fp32, bf16 = models.matmul_gflops(torch.float32, n=256, reps=2), models.matmul_gflops(torch.bfloat16, n=256, reps=2)
    # a real timing: positive and finite, below any CPU's peak (a zero or broken timing gives inf or nonsense);
    # no lower bound: on cores shared with other jobs the rate can fall arbitrarily low
    assert 0 < fp32 < 1e5 and 0 < bf16 < 1e5


# ----------------------------------------------------------------------------- training numerics

def _conversations(n=12):
    return [{"task_type": "q", "messages": [
        {"role": "user", "content": f"Question {i}: explain item {i} with {'detail ' * (2 + 3 * (i % 4))}."},
        {"role": "assistant", "content": f"Dear colleague, item {i} is covered in KB-{1000 + i}. Kind regards,"}]}
        for i in range(n)]


def _cfg(dtype, **kw):
    base = dict(epochs=1, max_steps=5, batch_size=2, grad_accum=1, max_length=256, learning_rate=2e-2,
                save_steps=100, seed=3, lora_dropout=0.0, dtype=dtype)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The same 5-step tiny-random LoRA run on each forced path."""
    root = tmp_path_factory.mktemp("precision")
    return {d: train_lora(TINY, _conversations(), config=_cfg(d), run_dir=root / d, progress=False) for d in PATHS}


def test_bf16_run_really_runs_bf16_and_records_it(trained):
    for name, res in trained.items():
        hw = json.loads((res.run_dir / "config.json").read_text())["hardware"]
        man = json.loads((res.run_dir / "manifest.json").read_text())
        want = "bf16" if name == "bfloat16" else "fp32"
        assert hw["precision"] == want and man["precision"]["precision"] == want
        assert man["precision"]["precision_source"] == "parameter" and "forced by dtype" in man["device"]
        sft = json.loads((res.run_dir / "config.json").read_text())["sft_config"]
        assert sft["bf16"] is (name == "bfloat16") and sft["use_cpu"] is True
        base = res.model.get_base_model()
        assert base.model.embed_tokens.weight.dtype == PATHS[name]  # frozen base stored in the path's dtype
        lora = [p for n, p in res.model.named_parameters() if "lora_" in n]
        assert lora and all(p.dtype == torch.float32 for p in lora)  # LoRA parameters stay fp32 on both


def test_bf16_training_loss_stays_close_to_fp32(trained):
    bf16, fp32 = trained["bfloat16"].losses, trained["float32"].losses
    assert len(bf16) == len(fp32) == 5
    assert bf16 != fp32  # the bf16 run did compute in bf16
    for a, b in zip(bf16, fp32):
        assert a == pytest.approx(b, rel=1e-3), (bf16, fp32)  # measured: at most 3e-5 apart
    assert fp32[-1] < fp32[0] and bf16[-1] < bf16[0]  # both learn, not just start alike


def test_bf16_training_keeps_optimizer_state_fp32(monkeypatch):
    from instructlab.train import as_conversations, build_trainer, prepare_examples, sft_config, to_dataset

    cfg = _cfg("bfloat16", max_steps=1)
    hw = models.device_settings(dtype="bfloat16")
    tok = models.load_tokenizer(TINY)
    masked = prepare_examples(tok, as_conversations(_conversations()), cfg)
    args = sft_config(cfg, hw, scratch_dir("trainer"), progress=False)
    trainer = build_trainer(TINY, to_dataset(masked.examples), None, cfg, args, tok, hw)
    trainer.args.save_strategy = "no"
    trainer.train()
    states = [t for st in trainer.optimizer.state.values() for t in st.values() if torch.is_tensor(t) and t.numel() > 1]
    assert states and all(t.dtype == torch.float32 for t in states)


def test_merged_bf16_adapter_reproduces_base_plus_adapter(trained, tmp_path):
    res = trained["bfloat16"]
    out = merge_adapter(res.run_dir, tmp_path / "merged")
    tok = models.load_tokenizer(str(out))
    enc = tok(tok.apply_chat_template([{"role": "user", "content": "Explain item 3."}], tokenize=False,
                                      add_generation_prompt=True), return_tensors="pt", add_special_tokens=False)
    gen = dict(max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
    for name, (atol, rtol) in {"float32": (1e-4, 1e-4), "bfloat16": (0.05, 0.02)}.items():
        with_adapter = models.load_model(TINY, adapter=res.run_dir, dtype=name)
        merged, base = models.load_model(str(out), dtype=name), models.load_model(TINY, dtype=name)
        assert merged.dtype == PATHS[name]
        with torch.no_grad():
            la, lm, lb = (m(**enc).logits.float() for m in (with_adapter, merged, base))
        assert (la - lb).abs().max() > 10 * atol  # the adapter really changed the model
        torch.testing.assert_close(lm, la, atol=atol, rtol=rtol)
        assert torch.equal(with_adapter.generate(**enc, **gen), merged.generate(**enc, **gen)), name


# ----------------------------------------------------------------------------- the compact LM head

def _tiny_trainer(cfg, dtype, n=12):
    """``build_trainer`` on tiny-random for ``_conversations(n)``, on the ``dtype`` path (also used by
    tests/test_cpu_kernels.py)."""
    from instructlab.train import as_conversations, build_trainer, prepare_examples, sft_config, to_dataset

    hw = models.device_settings(dtype=dtype)
    tok = models.load_tokenizer(TINY)
    masked = prepare_examples(tok, as_conversations(_conversations(n)), cfg)
    args = sft_config(cfg, hw, scratch_dir("trainer"))
    return build_trainer(TINY, to_dataset(masked.examples), None, cfg, args, tok, hw)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_batch_lengths_are_a_multiple_of_8_where_training_runs_bf16_on_a_cpu(dtype):
    """bf16 on a CPU: each batch padded up to a multiple of 8 positions (oneDNN reuses its matmul kernels; see
    train.pad_multiple), no further; fp32 (and any GPU): to the batch's longest sequence alone."""
    from types import SimpleNamespace

    from instructlab.train import CPU_BF16_PAD_MULTIPLE, pad_multiple

    cfg = TrainConfig(epochs=1, max_steps=2, batch_size=3, max_length=256, save_steps=100, seed=3, dtype=dtype)
    trainer = _tiny_trainer(cfg, dtype)
    batches = list(trainer.get_train_dataloader())
    assert len(batches) > 2
    multiple = CPU_BF16_PAD_MULTIPLE if dtype == "bfloat16" else 1
    for batch in batches:
        length, longest = batch["input_ids"].shape[1], int(batch["attention_mask"].sum(1).max())
        assert length % multiple == 0 and longest <= length < longest + multiple, (length, longest)
        padded = batch["attention_mask"] == 0
        assert (batch["labels"][padded] == -100).all()  # the padding is trained on nowhere
    assert any(int(b["attention_mask"].sum(1).max()) % 8 for b in batches)  # the data does not hide the difference
    gpu = SimpleNamespace(device="cuda", training_dtype=torch.bfloat16)
    assert pad_multiple(gpu) is None


def _batch_and_lora(trainer):
    """The trainer's first batch and its LoRA B matrices, given weights (they start at zero) so that every
    gradient is non-trivial."""
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    lora = [p for n, p in trainer.model.named_parameters() if "lora_B" in n]
    with torch.no_grad():
        for p in lora:
            p.normal_(0, 0.02)
    return batch, lora


def _loss_and_lora_grads(trainer, batch, lora, autocast=True):
    """The trainer's loss on ``batch`` and the gradients of ``lora``, from one forward and backward, in the trainer's
    precision: its bf16 autocast on the bf16 path (accelerate enters it around the model's forward only once
    ``train()`` has prepared the model, so a direct call enters it here); ``autocast=False``: none."""
    trainer.model.zero_grad()
    precision = trainer.accelerator.autocast() if autocast else contextlib.nullcontext()
    with trainer.compute_loss_context_manager(), precision:
        loss = trainer.compute_loss(trainer.model, dict(batch))
    loss.backward()
    return loss.detach().float(), [p.grad.float().clone() for p in lora]

@pytest.mark.parametrize("dtype", list(PATHS))
def test_compact_head_scores_only_labelled_positions_and_gives_the_same_loss_and_gradients(dtype, monkeypatch):
    from trl.trainer import utils as trl_utils

    trainer = _tiny_trainer(_cfg(dtype), dtype)
    assert trainer.kit_compact_head  # on by default on CPU
    trainer.kit_lean_head = False  # TRL's log-prob function, whose calls this test counts (tests/test_cpu_kernels.py)
    rows = []
    original = trl_utils._ChunkedLogProbFunction.apply
    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply",
                        lambda hidden, *a: rows.append(hidden.shape[0]) or original(hidden, *a))
    batch, lora = _batch_and_lora(trainer)
    out = {}
    for compact in (False, True):
        trainer.kit_compact_head = compact
        out[compact] = _loss_and_lora_grads(trainer, batch, lora)
    labelled = int((batch["labels"][:, 1:] != -100).sum())
    assert rows == [batch["labels"][:, 1:].numel(), labelled] and labelled < rows[0]
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=2e-2, atol=1e-4)
    torch.testing.assert_close(out[True][0], out[False][0], **tol)
    for g_compact, g_full in zip(out[True][1], out[False][1]):
        assert g_full.abs().max() > 0
        torch.testing.assert_close(g_compact, g_full, **tol)
    assert trl_utils._use_triton(torch.device("cpu")) is False  # TRL's own choice restored afterwards


def test_local_chat_dtype_parameter_loads_that_dtype_and_keys_the_cache(monkeypatch):
    from instructlab.llm import LocalChat

    for path in ("bfloat16", "float32"):  # the automatic choice on either kind of CPU
        monkeypatch.setenv("INSTRUCTLAB_GENERATION_DTYPE", path)
        assert LocalChat(TINY).settings().get("dtype") == (None if path == "float32" else path)
    monkeypatch.delenv("INSTRUCTLAB_GENERATION_DTYPE")

    auto, fp32 = LocalChat(TINY, max_new_tokens=2), LocalChat(TINY, max_new_tokens=2, dtype="float32")
    assert fp32.settings()["dtype"] == "float32"
    # automatic: fp32 keeps the keys from before bf16 generation; bf16 is named, so it never reuses fp32 answers
    resolved = str(models.device_settings().dtype).replace("torch.", "")
    assert auto.settings().get("dtype") == (None if resolved == "float32" else resolved)
    fp32.complete([{"role": "user", "content": "Hello"}])
    auto.complete([{"role": "user", "content": "Hello"}])
    assert fp32._model.dtype == torch.float32 and auto._model.dtype == models.device_settings().dtype


# ----------------------------------------------------------------------------- generation

@pytest.mark.real_model
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_batched_equals_one_by_one_within_each_dtype_on_smollm2(dtype):
    """Within one dtype, batching (left padding, length sort, static cache) changes no greedy answer, on a real
    model whose near-ties are real. In bf16 that takes ``cpu_kernels.batch_invariant``: without it 13 of 32
    SmolLM2 answers (64 new tokens) were identical, and this test failed on 6 prompts and 24 tokens."""
    from instructlab.generate import generate_answers, generate_one_by_one
    from instructlab.profiles import REPO_ROOT as REPO
    from instructlab.runs import read_jsonl

    name = "smollm2-135m-instruct"
    tok, lm = models.load_tokenizer(name), models.load_model(name, dtype=dtype)
    assert lm.dtype == PATHS[dtype]
    n, tokens = (12, 48) if dtype == "bfloat16" else (6, 24)  # fp32 one-by-one is the slow part
    records = read_jsonl(REPO / "data" / "kestrel" / "eval.jsonl")[:n]
    single = generate_one_by_one(lm, tok, records, max_new_tokens=tokens)
    for batch_size in (n, 5):
        assert generate_answers(lm, tok, records, max_new_tokens=tokens, batch_size=batch_size,
                                progress=False) == single
    assert all(single)


@pytest.mark.real_model
def test_the_amx_kernel_gives_smollm2_the_answers_of_onednns_call(monkeypatch):
    """On an AMX CPU a decoding step's bf16 linear layers run the kit's AMX kernel (``cpu_fused.amx_linear``);
    its probe admits it only where it gives ``F.linear``'s bits, so the answers are those of oneDNN's call."""
    from instructlab import cpu_fused
    from instructlab.generate import generate_answers
    from instructlab.profiles import REPO_ROOT as REPO
    from instructlab.runs import read_jsonl

    if not cpu_fused.amx_matches_plain():
        pytest.skip("no AMX kernel here (not an AMX CPU, kernels off, or not F.linear's bits): oneDNN's call runs")
    name = "smollm2-135m-instruct"
    tok, lm = models.load_tokenizer(name), models.load_model(name, dtype="bfloat16")
    records = read_jsonl(REPO / "data" / "kestrel" / "eval.jsonl")[:8]
    calls, packs = [], []
    real, real_pack = cpu_fused.amx_linear, cpu_fused.amx_pack
    monkeypatch.setattr(cpu_fused, "amx_linear", lambda rows, packed: calls.append(rows.shape[0]) or real(rows, packed))
    monkeypatch.setattr(cpu_fused, "amx_pack", lambda weight: packs.append(1) or real_pack(weight))
    with_amx = generate_answers(lm, tok, records, max_new_tokens=32, batch_size=4, progress=False)  # 2 batches
    # every linear layer (7 a layer, 30 layers, and the head) at every decoding step, 16 rows a call; each
    # weight laid out once for the whole call
    assert len(calls) % 211 == 0 and len(calls) >= 211 * 8 and set(calls) == {16} and len(packs) == 211
    monkeypatch.setattr(cpu_fused, "amx_matches_plain", lambda: False)
    calls.clear()
    assert generate_answers(lm, tok, records, max_new_tokens=32, batch_size=4, progress=False) == with_amx
    assert not calls and all(with_amx)


# unsorted prompt lengths (batches mix lengths and need left padding), and tiny-random writing varied text
from test_generate import CONVS, varied_tiny  # noqa: E402


@pytest.mark.parametrize("shape", [(576, 1536), (1536, 576), (576, 2048)])  # SmolLM2's MLP; a wide head
def test_invariant_linear_gives_a_row_the_same_bits_in_any_batch(shape):
    """Inside ``batch_invariant`` a linear layer computes its rows in blocks of one fixed size, so a row's bits do
    not depend on how many rows share its call: oneDNN blocks a matmul by its shape, and on an AMX CPU a row of
    SmolLM2's 576 -> 1536 projection came out differently in a call of 700 rows than in one of 2. A prompt's
    forward (the model's KV cache empty) and a decoding step's take blocks of their own sizes, a one-token
    prompt's too."""
    from instructlab import cpu_kernels
    from instructlab.cpu_kernels import _invariant_linear

    g = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(*shape, bias=False).to(torch.bfloat16)
    with torch.no_grad():
        linear.weight.normal_(0, 0.05, generator=g)
        rows = torch.randn(700, shape[0], generator=g).to(torch.bfloat16)
        prompt = _invariant_linear(linear, rows[None])[0]  # one long prompt (prefill)
        for start, length in ((0, 37), (5, 128), (300, 211), (699, 1)):  # shorter prompts, one of one token
            cpu_kernels._MEMO.prompt = True  # as the model's hook sees an empty cache
            try:
                alone = _invariant_linear(linear, rows[None, start:start + length])[0]
            finally:
                del cpu_kernels._MEMO.prompt
            assert torch.equal(alone, prompt[start:start + length])
        step = _invariant_linear(linear, rows[:40, None])[:, 0]  # a decoding step of 40 sequences
        for batch in (1, 3, 16, 17):
            assert torch.equal(_invariant_linear(linear, rows[:batch, None])[:, 0], step[:batch])
        torch.testing.assert_close(prompt.float(), linear(rows).float(), rtol=1e-2, atol=1e-2)


def test_batch_invariant_tells_the_linear_layers_a_prompt_from_a_decoding_step(monkeypatch):
    """The model's forward pre-hook reads its KV cache: empty for the prompt's forward, filled for each step."""
    from instructlab import cpu_kernels
    from instructlab.generate import generate_answers

    tok, m = models.load_tokenizer(TINY), varied_tiny("bfloat16")
    seen = []
    original = cpu_kernels._invariant_linear
    monkeypatch.setattr(cpu_kernels, "_invariant_linear", lambda linear, x: seen.append(
        (cpu_kernels._MEMO.prompt, x.shape[-2])) or original(linear, x))
    generate_answers(m, tok, CONVS[:3], max_new_tokens=4, batch_size=3, progress=False)
    assert seen[0][0] is True and seen[0][1] > 1  # the prompts' forward (its head sees the last position only)
    assert {flag for flag, _ in seen} == {True, False}
    assert all(length == 1 for flag, length in seen if flag is False)  # each step: one position per sequence
    assert "prompt" not in cpu_kernels._MEMO.__dict__  # cleared on exit


def test_batch_invariant_packs_bf16_weights_for_the_plain_paths_bits(monkeypatch):
    """Inside ``batch_invariant`` a bf16 linear layer multiplies by its weight packed once for oneDNN, where the
    once-per-process probe finds that this gives ``F.linear``'s bits: the same answers as the plain path, at
    any batch size. The packs exist only while the context lasts, and a layer outside it is not packed."""
    from instructlab import cpu_kernels
    from instructlab.generate import generate_answers

    if not cpu_kernels._packing_matches_plain():
        pytest.skip("oneDNN's packed bf16 linear is not available here, or not F.linear's bits: the plain path runs")
    tok, m = models.load_tokenizer(TINY), varied_tiny("bfloat16")
    packed = []
    original = cpu_kernels._block_matmul

    def watched(linear, dtype, block=cpu_kernels.INVARIANT_ROWS):
        matmul = original(linear, dtype, block)
        packed.append(isinstance(linear.__dict__.get(cpu_kernels._PACK), torch.Tensor))
        return matmul
    monkeypatch.setattr(cpu_kernels, "_block_matmul", watched)
    answers = {}
    for pack in (True, False):
        monkeypatch.setattr(cpu_kernels, "_packing_matches_plain", lambda pack=pack: pack)
        answers[pack] = [generate_answers(m, tok, CONVS, max_new_tokens=12, batch_size=b, progress=False)
                         for b in (len(CONVS), 2)]
    assert answers[True] == answers[False] and answers[True][0] == answers[True][1]
    assert len({a for a in answers[True][0]}) > 1  # varied text: a real comparison
    n = len(packed) // 2
    assert all(packed[:n]) and not any(packed[n:])  # every call packed, then none with packing off
    assert not any(k in mod.__dict__ for mod in m.modules() for k in (cpu_kernels._PACK, cpu_kernels._AMX))  # dropped on exit
    linear = next(mod for mod in m.modules() if type(mod) is torch.nn.Linear)
    with torch.no_grad():
        cpu_kernels._invariant_linear(linear, torch.randn(3, 1, linear.in_features).to(torch.bfloat16))
    assert cpu_kernels._PACK not in linear.__dict__  # outside the context: F.linear, nothing kept


def test_invariant_kernels_compute_the_same_attention_as_sdpa():
    """In fp32, inside ``batch_invariant``: a left-padded batch's logits on its real tokens, and the greedy
    answers (prefill and cached decoding steps), are those of transformers' own SDPA path."""
    from instructlab import cpu_kernels
    from instructlab.generate import generate_answers, render_prompts

    tok, m = models.load_tokenizer(TINY), varied_tiny("float32")
    tok.padding_side = "left"
    enc = tok(render_prompts(tok, CONVS), return_tensors="pt", padding=True, add_special_tokens=False)
    assert (enc["attention_mask"] == 0).any()  # padding present
    real = enc["attention_mask"].bool()
    with torch.no_grad():
        ref = m(**enc).logits
        with cpu_kernels.batch_invariant(m):
            assert m.config._attn_implementation == cpu_kernels.INVARIANT_ATTENTION
            got = m(**enc).logits
    torch.testing.assert_close(got[real], ref[real], rtol=1e-5, atol=1e-5)
    plain = generate_answers(m, tok, CONVS, max_new_tokens=10, batch_size=4, progress=False)
    with cpu_kernels.batch_invariant(m):
        invariant = generate_answers(m, tok, CONVS, max_new_tokens=10, batch_size=4, progress=False)
    assert invariant == plain and len(set(plain)) > 1
    # restored: transformers' attention again, and no linear layer keeps the one-row patch
    assert m.config._attn_implementation == "sdpa"
    assert not any("forward" in mod.__dict__ for mod in m.modules())


def test_invariant_kernels_follow_a_sliding_window_longer_prompts_than_it():
    """A Gemma-3-style model (sliding-window and full layers, window 4) on left-padded prompts longer than the
    window, in fp32: inside ``batch_invariant`` the logits on real tokens and the greedy continuations with a
    static cache are SDPA's (a key range taken from the last query alone would drop early queries' keys)."""
    from transformers import GenerationConfig
    from transformers.models.gemma3 import Gemma3ForCausalLM, Gemma3TextConfig

    from instructlab import cpu_kernels

    torch.manual_seed(0)
    cfg = Gemma3TextConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, head_dim=8, sliding_window=4,
                           layer_types=["sliding_attention", "full_attention"], attn_implementation="sdpa",
                           pad_token_id=0, eos_token_id=96, bos_token_id=1)
    model = Gemma3ForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    lengths = [11, 6, 9]
    ids = torch.zeros(3, max(lengths), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, -n:] = torch.randint(2, 96, (n,))
        mask[i, -n:] = 1
    gen = GenerationConfig(max_new_tokens=8, do_sample=False, cache_implementation="static", pad_token_id=0,
                           eos_token_id=None)
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).logits
        ref_ids = model.generate(input_ids=ids, attention_mask=mask, generation_config=gen)
        with cpu_kernels.batch_invariant(model):
            got = model(input_ids=ids, attention_mask=mask).logits
            got_ids = model.generate(input_ids=ids, attention_mask=mask, generation_config=gen)
    real = mask.bool()
    torch.testing.assert_close(got[real], ref[real], rtol=1e-5, atol=1e-5)
    assert torch.equal(got_ids, ref_ids)


@pytest.mark.parametrize("adapter", [False, True])
def test_bf16_answers_are_the_same_at_every_batch_size(adapter):
    """bf16 on CPU: the same answers one by one and in batches of 2, 3 and 7, on a model whose flat logits
    tie exactly once rounded to bf16 (top-2 gaps of 0.0), so any batch-dependent bit shows (without the
    kernels 6 of 7 answers matched, whatever the batch size; measured on AVX512-BF16); also with
    an unmerged LoRA adapter (PEFT keeps its weights in fp32)."""
    from peft import LoraConfig, get_peft_model

    from instructlab import cpu_kernels
    from instructlab.generate import generate_answers, generate_one_by_one

    tok, m = models.load_tokenizer(TINY), varied_tiny("bfloat16")
    if adapter:
        m = get_peft_model(m, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"],
                                         task_type="CAUSAL_LM", init_lora_weights=False))
    assert cpu_kernels.needs_batch_invariance(m)
    single = generate_one_by_one(m, tok, CONVS, max_new_tokens=12)
    assert all(single) and len(set(single)) > 1
    for batch_size in (2, 3, 7):
        assert generate_answers(m, tok, CONVS, max_new_tokens=12, batch_size=batch_size, progress=False) == single
