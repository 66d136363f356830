"""The fused CPU kernels (instructlab/csrc/cpu_fused.c) compute what the PyTorch operations they replace compute:
the same bits for SwiGLU and the rotary embedding (forward and backward) in bf16, a bf16 rounding apart on rare
elements of RMSNorm (forward and backward), fp32 rounding apart in fp32. They run only where they apply, fall
back to PyTorch's operations where they cannot be built, and a trainer with them on gives the loss and LoRA
gradients of one without them (on SmolLM2: as close to fp32 as PyTorch's bf16 operations)."""

import copy
import pickle
import platform
import shutil

import pytest
import torch
from conftest import scratch_dir
from transformers.models.llama import modeling_llama

from instructlab import cpu_fused, models

DTYPES = [torch.bfloat16, torch.float32]
HAS_COMPILER = bool(cpu_fused._compiler())


@pytest.fixture
def fused():
    """The compiled library (these tests are about it: without a C compiler there is nothing to test)."""
    if not HAS_COMPILER:
        pytest.skip("no C compiler on this machine: the kit keeps PyTorch's operations (tested below)")
    lib = cpu_fused.library()
    assert lib is not None, cpu_fused.status()
    return lib


def _count_kernel_calls(monkeypatch, functions: dict[str, str]) -> dict[str, int]:
    """Wrap each of ``cpu_fused``'s functions named in ``functions`` (count name -> function name) so that every call
    returning a tensor (not None: the kernel ran) adds one to its count; returns the live counts."""
    calls = dict.fromkeys(functions, 0)
    for name, attr in functions.items():
        original = getattr(cpu_fused, attr)

        def counted(*args, _name=name, _original=original):
            out = _original(*args)
            calls[_name] += out is not None
            return out
        monkeypatch.setattr(cpu_fused, attr, counted)
    return calls


def _close(fused_out, eager_out, dtype, exact):
    """bf16: the same bits where ``exact``, else at most one bf16 rounding apart on under 0.1% of the elements;
    fp32: within fp32 rounding."""
    assert fused_out.dtype == eager_out.dtype and fused_out.shape == eager_out.shape
    if dtype == torch.float32:
        torch.testing.assert_close(fused_out, eager_out, rtol=1e-5, atol=1e-6)
    elif exact:
        assert torch.equal(fused_out, eager_out)
    else:
        differ = fused_out != eager_out
        assert differ.float().mean() < 1e-3
        torch.testing.assert_close(fused_out, eager_out, rtol=2 ** -7, atol=0)  # one bf16 ulp


def test_the_kernels_build_and_share_pytorchs_threads(fused):
    assert cpu_fused.status().startswith("on: compiled")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert fused.fused_threads() == 1  # PyTorch's OpenMP runtime: the kernels follow its setting
        torch.set_num_threads(2)
        assert fused.fused_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rms_norm_is_transformers_llama_rms_norm(fused, dtype):
    g = torch.Generator().manual_seed(0)
    norm = modeling_llama.LlamaRMSNorm(96, eps=1e-5)
    norm.weight.data = 1 + 0.2 * torch.randn(96, generator=g)
    norm = norm.to(dtype).requires_grad_(False)
    x0 = (torch.randn(3, 41, 96, generator=g) * 3).to(dtype)
    x0[0, 0] = 0  # an all-zero row: rsqrt(eps), finite
    grad = torch.randn(3, 41, 96, generator=g).to(dtype)
    outs = []
    for use in (False, True):
        x = x0.clone().requires_grad_(True)
        y = cpu_fused.rms_norm(x, norm.weight, norm.variance_epsilon) if use else norm(x)
        y.backward(grad)
        outs.append((y, x.grad))
    for eager, fused_out in zip(*outs):
        _close(fused_out, eager, dtype, exact=False)  # each row's sum in another order


@pytest.mark.parametrize("dtype", DTYPES)
def test_swiglu_is_silu_times_up(fused, dtype):
    g = torch.Generator().manual_seed(1)
    gate0 = (torch.randn(5, 33, 160, generator=g) * 4).to(dtype)
    gate0.view(-1)[:4] = torch.tensor([-100.0, 100.0, 0.0, -0.0])  # exp's clamps, and zeros
    up0 = torch.randn(5, 33, 160, generator=g).to(dtype)
    grad = torch.randn(5, 33, 160, generator=g).to(dtype)
    outs = []
    for use in (False, True):
        gate, up = gate0.clone().requires_grad_(True), up0.clone().requires_grad_(True)
        y = cpu_fused.swiglu(gate, up) if use else torch.nn.functional.silu(gate) * up
        y.backward(grad)
        outs.append((y, gate.grad, up.grad))
    for eager, fused_out in zip(*outs):
        _close(fused_out, eager, dtype, exact=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_cos", [True, False])  # positions per sequence, or one set for the batch
def test_rotary_is_transformers_apply_rotary_pos_emb_on_the_attentions_layout(fused, dtype, batch_cos):
    g = torch.Generator().manual_seed(2)
    b, length, heads, d = 3, 17, 4, 16
    proj0 = torch.randn(b, length, heads * d, generator=g).to(dtype)  # as a projection's output
    n = b if batch_cos else 1
    angles = torch.rand(n, length, d // 2, generator=g) * 6
    cos, sin = torch.cat([angles.cos()] * 2, -1).to(dtype), torch.cat([angles.sin()] * 2, -1).to(dtype)
    grad = torch.randn(b, heads, length, d, generator=g).to(dtype)
    outs = []
    for use in (False, True):
        proj = proj0.clone().requires_grad_(True)
        q = proj.view(b, length, heads, d).transpose(1, 2)  # what LlamaAttention hands the rotary embedding
        y = cpu_fused.rotary(q, cos, sin) if use else modeling_llama.apply_rotary_pos_emb(q, q, cos, sin)[0]
        y.backward(grad)
        outs.append((y, proj.grad))
    for eager, fused_out in zip(*outs):
        _close(fused_out, eager, dtype, exact=dtype == torch.bfloat16)
    assert outs[1][0].stride() == outs[0][0].stride()  # the same layout as PyTorch's result


def test_the_fused_path_runs_only_where_it_applies(fused, monkeypatch):
    x = torch.randn(4, 8, dtype=torch.bfloat16, requires_grad=True)
    w = torch.ones(8, dtype=torch.bfloat16)
    assert cpu_fused.rms_norm(x, w, 1e-6) is not None
    with torch.no_grad():  # evaluation and generation keep PyTorch's operations
        assert cpu_fused.rms_norm(x, w, 1e-6) is None
    assert cpu_fused.rms_norm(x, w.clone().requires_grad_(True), 1e-6) is None  # a trained norm weight
    assert cpu_fused.rms_norm(x, w.float(), 1e-6) is None  # a weight of another dtype
    assert cpu_fused.rms_norm(x.half(), w.half(), 1e-6) is None  # a dtype without kernels
    assert cpu_fused.swiglu(x, x[:2]) is None  # shapes that differ
    assert cpu_fused.rotary(torch.randn(2, 3, 5, 7, requires_grad=True), torch.randn(2, 5, 7),
                            torch.randn(2, 5, 7)) is None  # an odd head size
    monkeypatch.setenv(cpu_fused.DISABLE_ENV, "0")
    assert cpu_fused.library() is None and cpu_fused.rms_norm(x, w, 1e-6) is None
    assert cpu_fused.status() == f"off ({cpu_fused.DISABLE_ENV}=0)"


def test_without_a_working_compiler_nothing_changes(tmp_path, monkeypatch):
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path))
    monkeypatch.setenv("CC", shutil.which("false") or "false")  # a "compiler" that always fails
    cpu_fused._load.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="could not be built"):
            assert cpu_fused.library() is None
        assert cpu_fused.status().startswith("off: could not be built or loaded: the C compiler failed")
        x = torch.randn(2, 8, requires_grad=True)
        assert cpu_fused.swiglu(x, x) is None
        assert not list((tmp_path / "cpu_fused").glob("*.so"))  # nothing half-built left in the cache
    finally:
        cpu_fused._load.cache_clear()  # the next test builds (or finds) the real library again


def test_without_pytorchs_openmp_runtime_the_kernels_run_on_one_thread(fused, tmp_path, monkeypatch):
    """Where PyTorch bundles no libgomp (another OpenMP runtime, or none), the kernels are built without OpenMP,
    so that two runtimes never share the process: one thread, the same results."""
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(cpu_fused, "_torch_openmp", lambda: None)
    x = torch.randn(6, 40, 64, dtype=torch.bfloat16, requires_grad=True)
    threaded = cpu_fused.swiglu(x, x * 2)
    cpu_fused._load.cache_clear()
    try:
        serial = cpu_fused.library()
        assert serial is not None and serial is not fused and serial.fused_threads() == 1
        assert torch.equal(cpu_fused.swiglu(x, x * 2), threaded)
    finally:
        cpu_fused._load.cache_clear()


def test_the_march_target_is_native_unless_named_and_a_bad_name_is_refused(monkeypatch):
    monkeypatch.delenv(cpu_fused.MARCH_ENV, raising=False)
    assert "-march=native" in cpu_fused._flag_sets(None)[0]
    monkeypatch.setenv(cpu_fused.MARCH_ENV, "x86-64-v3")
    tuned = cpu_fused._flag_sets(None)[0]
    assert "-march=x86-64-v3" in tuned and "-march=native" not in tuned
    assert "-mprefer-vector-width=512" not in tuned  # only where native AVX-512 is there to prefer
    assert all(not f.startswith("-march") for f in cpu_fused._flag_sets(None)[1])  # the portable fallback
    monkeypatch.setenv(cpu_fused.MARCH_ENV, "native -O0")  # a flag smuggled in: refused, naming the variable
    with pytest.raises(ValueError, match=cpu_fused.MARCH_ENV):
        cpu_fused._flag_sets(None)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64") or not HAS_COMPILER,
                    reason="x86 targets, checked with the C compiler")
def test_a_target_this_cpu_cannot_run_is_refused_before_building(tmp_path, monkeypatch):
    """``x86-64-v4`` (AVX-512) on a CPU with AVX2 alone would build, then die of an illegal instruction."""
    avx2_cpu = {"avx", "avx2", "fma", "f16c", "bmi1", "bmi2", "sse4_2"}
    monkeypatch.setattr(models, "_cpu_info", lambda: ("an AVX2 CPU", avx2_cpu))
    monkeypatch.setenv(cpu_fused.MARCH_ENV, "x86-64-v4")
    with pytest.raises(ValueError, match=r"INSTRUCTLAB_CPU_FUSED_MARCH='x86-64-v4'.*avx512f"):
        cpu_fused._check_target(cpu_fused._compiler(), "x86-64-v4", avx2_cpu)
    cpu_fused._check_target(cpu_fused._compiler(), "haswell", avx2_cpu)  # AVX2 code on that CPU: fine
    with pytest.raises(ValueError, match="does not take this -march target"):  # not the portable build instead
        cpu_fused._check_target(cpu_fused._compiler(), "no-such-cpu", avx2_cpu)
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path))
    cpu_fused._load.cache_clear()
    try:
        with pytest.raises(ValueError, match="illegal instruction"):
            cpu_fused.library()
        assert not list((tmp_path / "cpu_fused").glob("*.so"))  # refused before anything was built
    finally:
        cpu_fused._load.cache_clear()


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="haswell is an x86 target")
def test_an_avx2_build_computes_what_the_native_build_computes(fused, tmp_path, monkeypatch):
    """The code a CPU with AVX2 alone runs (``-march=haswell``), built and run on this machine: SwiGLU, the
    decoding attention and the masked softmax the same bits as the native build, RMSNorm a bf16 rounding apart on rare elements at most
    (its row sums are vectorized at another width); the status line says which target was built."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 40, 64, dtype=torch.bfloat16, generator=g).requires_grad_()
    up = torch.randn(6, 40, 64, dtype=torch.bfloat16, generator=g)
    w = torch.randn(64, dtype=torch.bfloat16, generator=g)
    case = _decode_case(slots=120)
    scores = torch.randn(2, 3, 2, 37, 37, dtype=torch.bfloat16, generator=g).requires_grad_()
    allowed = _attention_masks(2, 37)["dead rows"]

    def softmax_and_grad():
        with cpu_fused.fused_softmax():
            probs = cpu_fused.masked_softmax(scores * 1, allowed)
        (grad,) = torch.autograd.grad(probs, scores, probs * 3)
        return probs.detach(), grad

    native = cpu_fused.swiglu(x, up), cpu_fused.rms_norm(x, w, 1e-5), cpu_fused.decode_attention(*case[:3], cpu_fused.decode_bounds(*case[3:]), 0.125)
    native_softmax = softmax_and_grad()
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path))
    monkeypatch.setenv(cpu_fused.MARCH_ENV, "haswell")
    cpu_fused._load.cache_clear()
    try:
        avx2 = cpu_fused.library()
        assert avx2 is not None and avx2 is not fused
        assert "-march=haswell" in cpu_fused.status()
        assert torch.equal(cpu_fused.swiglu(x, up), native[0])
        _close(cpu_fused.rms_norm(x, w, 1e-5), native[1], torch.bfloat16, exact=False)
        assert torch.equal(cpu_fused.decode_attention(*case[:3], cpu_fused.decode_bounds(*case[3:]), 0.125), native[2])  # no reassociation: the same bits
        assert all(torch.equal(a, b) for a, b in zip(softmax_and_grad(), native_softmax))  # lanes summed alike
    finally:
        cpu_fused._load.cache_clear()


def test_use_fused_elementwise_switches_llama_modules_and_back(fused):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(models.load_model("tiny-random", dtype="bfloat16"),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    names = [type(m).__name__ for m in model.modules()]
    n = names.count("LlamaRMSNorm") + names.count("LlamaMLP")
    assert n > 0
    assert cpu_fused.fused_modules(model) == 0 and cpu_fused.status(model).startswith("off: none of this model's")
    ids = torch.tensor([[1, 5, 9, 14, 3, 7]])
    model.eval()
    with torch.no_grad():
        before = model(input_ids=ids).logits
    assert cpu_fused.use_fused_elementwise(model) == n
    assert {type(m).__name__ for m in model.modules()} >= {"FusedLlamaRMSNorm", "FusedLlamaMLP"}
    assert cpu_fused.fused_modules(model) == n and cpu_fused.status(model) == cpu_fused.status()  # on: compiled
    calls = []
    gate = next(m for n, m in model.named_modules() if n.endswith("mlp.gate_proj"))
    hook = gate.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():  # evaluation: PyTorch's operations, unchanged, and no projection computed twice
        assert torch.equal(model(input_ids=ids).logits, before)
    model.train()
    model(input_ids=ids).logits.sum().backward()  # training: the fused path, the same projections once
    model.eval()
    hook.remove()
    assert len(calls) == 2
    for twin in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert sum(type(m).__name__.startswith("FusedLlama") for m in twin.modules()) == n
    assert cpu_fused.use_fused_elementwise(model, enabled=False) == n
    assert not any(type(m).__name__.startswith("Fused") for m in model.modules())
    assert cpu_fused.fused_modules(model) == 0


def _attention_masks(b: int, n: int) -> dict[str, torch.Tensor]:
    """Masks of the shapes short attention passes: causal with right padding (sequence 1 ends at 13 of n), a row with
    nothing allowed (left padding: queries 0-2 of sequence 0), and one causal mask for every sequence (2-D)."""
    padded = torch.ones(n, n, dtype=torch.bool).tril()[None, None, None].expand(b, 1, 1, n, n).clone()
    padded[1, ..., 13:] = False
    dead = padded.clone()
    dead[0, ..., :3, :] = False
    return {"padded": padded, "dead rows": dead, "causal, 2-D": torch.ones(n, n, dtype=torch.bool).tril()}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [9, 16, 37])  # shorter than a vector, a vector, vectors and a remainder
def test_masked_softmax_is_the_two_step_masked_softmax_forward_and_backward(fused, dtype, n):
    """The compiled kernel against the kit's PyTorch version (cpu_kernels._MaskedSoftmax, itself masked_fill then
    softmax): fp32 within rounding; bf16 one rounding apart on few elements (the kernel's exp is not Sleef's).
    Masked keys get exactly 0 and no gradient; a row with no allowed key is uniform, with no gradient."""
    from instructlab.cpu_kernels import _MaskedSoftmax

    from test_cpu_kernels import _relative_error

    g = torch.Generator().manual_seed(n)
    for name, allowed in _attention_masks(2, n).items():
        scores = (3 * torch.randn(2, 3, 2, n, n, generator=g)).to(dtype)
        grad = torch.randn(2, 3, 2, n, n, generator=g).to(dtype)
        results = []
        for use in (False, True):
            leaf = scores.clone().requires_grad_(True)
            with cpu_fused.fused_softmax(use):
                out = cpu_fused.masked_softmax(leaf * 1, allowed)  # a non-leaf, as the scores are in attention
            assert (out is not None) == use, name
            if out is None:
                out = _MaskedSoftmax.apply(leaf * 1, allowed)
            out.backward(grad)
            results.append((out.detach(), leaf.grad))
        (ref, ref_grad), (out, got) = results
        masked = ~allowed.expand_as(out)
        if name == "dead rows":
            masked[0, ..., :3, :] = False  # uniform rows: every key gets 1 / n
            assert torch.equal(out[0, ..., :3, :], torch.full_like(out[0, ..., :3, :], 1 / n))
            assert got[0, ..., :3, :].abs().max() == 0
        assert out[masked].abs().max() == 0 and got[masked].abs().max() == 0, name
        if dtype == torch.float32:
            torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(got, ref_grad, rtol=1e-4, atol=1e-5)
        else:
            assert (out != ref).float().mean() < 0.01, name
            torch.testing.assert_close(out, ref, rtol=2 ** -7, atol=2 ** -16)  # a bf16 rounding
            torch.testing.assert_close(got.float(), ref_grad.float(), rtol=0.05, atol=0.02)
            assert _relative_error([got.float()], [ref_grad.float()]) < 0.01, name


@pytest.mark.parametrize("dtype", DTYPES)
def test_masked_softmax_on_a_block_of_queries_gives_the_bits_of_the_whole_square(fused, dtype):
    """A block of queries a..c-1 over keys 0..c-1 (c a multiple of 16, as the short attention's causal blocks
    end, or the sequence's end): each row's probabilities and gradient are those it gets in the whole square, bit
    for bit, forward and backward, through the autograd function and through ``masked_softmax_rows`` (no graph).
    A row with nothing allowed is uniform over the block's keys."""
    n, b = 53, 2
    g = torch.Generator().manual_seed(1)
    for name, allowed in _attention_masks(b, n).items():
        scores = (3 * torch.randn(b, 3, 2, n, n, generator=g)).to(dtype)
        grad = torch.randn(b, 3, 2, n, n, generator=g).to(dtype)
        leaf = scores.clone().requires_grad_(True)
        with cpu_fused.fused_softmax():
            whole = cpu_fused.masked_softmax(leaf * 1, allowed)
        whole.backward(grad)
        for a, c in ((0, 16), (16, 32), (32, 48), (48, n), (3, 32)):
            block = scores[..., a:c, :c].contiguous()
            mask = allowed[..., a:c, :c]
            part = block.clone().requires_grad_(True)
            with cpu_fused.fused_softmax():
                probs = cpu_fused.masked_softmax(part * 1, mask)
                probs_rows, backward = cpu_fused.masked_softmax_rows(block, mask)
            probs.backward(grad[..., a:c, :c].contiguous())
            rows_grad = backward(grad[..., a:c, :c].contiguous())
            live = mask.expand_as(probs).any(-1)  # rows with something allowed
            if name == "dead rows" and a < 3:
                assert torch.equal(probs[0, ..., : 3 - a, :], torch.full_like(probs[0, ..., : 3 - a, :], 1 / c))
            for got, got_grad in ((probs, part.grad), (probs_rows, rows_grad)):
                assert torch.equal(got[live], whole[..., a:c, :c][live]), (name, a, c)
                assert torch.equal(got_grad[live], leaf.grad[..., a:c, :c][live]), (name, a, c)
            if c < n:  # the keys past c, which the block does not have, are masked for its live rows: 0 there
                assert whole[..., a:c, c:][live].abs().max() == 0


def test_masked_softmax_runs_only_where_it_applies(fused, monkeypatch):
    scores = torch.randn(2, 3, 5, 5, dtype=torch.bfloat16, requires_grad=True)
    allowed = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    assert cpu_fused.masked_softmax(scores, allowed) is None  # outside fused_softmax: the trainer's loss alone
    with cpu_fused.fused_softmax():
        assert cpu_fused.masked_softmax(scores, allowed) is not None
        with cpu_fused.fused_softmax(False):  # nested: stays on
            assert cpu_fused.masked_softmax(scores, allowed) is not None
        with torch.no_grad():  # evaluation and generation keep PyTorch's operations
            assert cpu_fused.masked_softmax(scores, allowed) is None
        assert cpu_fused.masked_softmax(scores.half(), allowed) is None  # a dtype without kernels
        assert cpu_fused.masked_softmax(scores, allowed.float()) is None  # a float mask
        assert cpu_fused.masked_softmax(scores, torch.ones(2, 3, 5, 5, dtype=torch.bool)) is None  # per head
        assert cpu_fused.masked_softmax(scores.transpose(-1, -2), allowed) is None  # not contiguous
        assert cpu_fused.masked_softmax(scores[..., :4], allowed[..., :4]) is None  # more queries than keys
        assert cpu_fused.masked_softmax(scores[..., :4, :].contiguous(), allowed[..., :4, :]) is not None  # 4 queries
        monkeypatch.setattr(cpu_fused, "_SOFTMAX_MAX_KEYS", 4)
        assert cpu_fused.masked_softmax(scores, allowed) is None  # more keys than a row's terms on the stack
        monkeypatch.undo()
    with cpu_fused.fused_softmax(False):
        assert cpu_fused.masked_softmax(scores, allowed) is None


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_trainer_with_the_fused_kernels_gives_the_loss_and_lora_gradients_without_them(fused, dtype, monkeypatch):
    """On by default on CPU; every RMSNorm, MLP, rotary and masked-softmax call of the forward goes through a
    kernel, and the loss and LoRA gradients are those of PyTorch's operations (bf16: within bf16 rounding,
    compared as a whole)."""
    from instructlab.train import TrainConfig, use_cpu_kernels

    from test_cpu_kernels import _relative_error
    from test_precision import _batch_and_lora, _loss_and_lora_grads, _tiny_trainer

    cfg = TrainConfig(epochs=1, max_steps=2, batch_size=4, max_length=256, save_steps=100, seed=3,
                      lora_dropout=0.1, dtype=dtype)
    trainer = _tiny_trainer(cfg, dtype)
    assert trainer.kit_fused_rotary and trainer.kit_fused_softmax
    calls = _count_kernel_calls(monkeypatch, {"rms_norm": "rms_norm", "swiglu": "swiglu", "rotary": "rotary",
                                              "masked_softmax": "masked_softmax"})
    batch, lora = _batch_and_lora(trainer)
    out = {}
    for use in (False, True):
        use_cpu_kernels(trainer, fused_elementwise=use)
        torch.manual_seed(11)  # the same dropout masks
        out[use] = _loss_and_lora_grads(trainer, batch, lora)
    layers = trainer.model.get_base_model().config.num_hidden_layers
    assert calls == {"rms_norm": 2 * layers + 1, "swiglu": layers, "rotary": 2 * layers, "masked_softmax": layers}
    assert all(g.abs().max() > 0 for g in out[False][1])
    if dtype == "float32":
        torch.testing.assert_close(out[True][0], out[False][0], rtol=1e-5, atol=1e-6)
        assert _relative_error(out[True][1], out[False][1]) < 1e-5
    else:
        torch.testing.assert_close(out[True][0], out[False][0], rtol=1e-3, atol=1e-3)
        assert _relative_error(out[True][1], out[False][1]) < 2e-3


@pytest.mark.real_model
def test_on_smollm2_the_fused_kernels_are_as_accurate_as_pytorchs_bf16_operations(fused):
    """On a 30-layer model, bf16 rounding differences grow through the layers, so the fused kernels' loss and LoRA
    gradients are not PyTorch's bits (their RMSNorm sums a row in another order, their exp is not Sleef's):
    both are compared with the fp32 computation on the same weights, and the fused error is PyTorch's bf16 error
    within rounding luck (measured on this batch: 4.49% against 5.45%, with the compiled masked softmax and the batch
    padded to a multiple of 8; the loss 0.09% and 0.06% from fp32's)."""
    from instructlab import formats
    from instructlab.profiles import REPO_ROOT
    from instructlab.train import (TrainConfig, as_conversations, build_trainer, prepare_examples, select_examples,
                                   sft_config, to_dataset, use_cpu_kernels)

    from test_cpu_kernels import _errors_against_fp32
    from test_precision import _batch_and_lora, _loss_and_lora_grads

    name = "smollm2-135m-instruct"
    cfg = TrainConfig(epochs=1, max_steps=1, batch_size=4, max_length=512, save_steps=100, seed=0, dtype="bfloat16",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    hw = models.device_settings(dtype="bfloat16")
    tok = models.load_tokenizer(name)
    records = select_examples(formats.load_records(REPO_ROOT / "data/kestrel/train.jsonl"), 8, seed=0)
    masked = prepare_examples(tok, as_conversations(records), cfg)
    args = sft_config(cfg, hw, scratch_dir("trainer"))
    trainer = build_trainer(name, to_dataset(masked.examples), None, cfg, args, tok, hw)
    batch, lora = _batch_and_lora(trainer)
    out = {}
    for use in (False, True):
        use_cpu_kernels(trainer, fused_elementwise=use)
        torch.manual_seed(11)
        out[use] = _loss_and_lora_grads(trainer, batch, lora)
    (eager_error, fused_error), (_, fused_loss) = _errors_against_fp32(
        trainer, batch, lora, out, lambda: use_cpu_kernels(trainer, fused_elementwise=False), seed=11)
    assert 0 < eager_error < 0.1
    assert fused_error < 1.25 * eager_error, (fused_error, eager_error)
    assert fused_loss < 2e-3 * float(out[False][0])  # bf16 rounding: a wrong kernel is off by far more


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_generation_gives_pytorchs_bits_in_bf16_generation_and_restores(fused, dtype, monkeypatch):
    """Inside ``fused_generation`` a Llama model's RMSNorms, SwiGLU and rotary embeddings run the kernels in bf16
    forwards without gradients, with PyTorch's bits: the same logits and the same greedy tokens. fp32, and a forward that
    records gradients (training), keep their own path; everything is restored on exit."""
    from test_generate import varied_tiny

    model = varied_tiny(str(dtype).replace("torch.", "")).eval()
    calls = _count_kernel_calls(monkeypatch, {"swiglu": "_swiglu_out", "rotary": "_rotary_out",
                                              "rms_norm": "rms_norm_exact"})
    ids = torch.tensor([[1, 5, 9, 14, 3, 7], [2, 8, 8, 4, 11, 6]])
    rope, mlp_forward = modeling_llama.apply_rotary_pos_emb, modeling_llama.LlamaMLP.forward

    def run():
        with torch.no_grad():
            logits = model(input_ids=ids).logits
            tokens = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6,
                                    do_sample=False, pad_token_id=0)
        return logits, tokens
    before = run()
    with cpu_fused.fused_generation(model):
        assert modeling_llama.apply_rotary_pos_emb is not rope
        after = run()
        n = dict(calls)
        model(input_ids=ids).logits.float().sum().backward()  # a training forward: not the no-gradient path
        assert calls == n
    layers = model.config.num_hidden_layers
    if dtype == torch.bfloat16:  # a forward, then generate's prompt forward and 5 steps: each layer once each
        norms = 2 * layers + 1 if cpu_fused._sum_lanes() else 0
        assert calls == {"swiglu": 7 * layers, "rotary": 2 * 7 * layers, "rms_norm": 7 * norms}
    else:
        assert calls == {"swiglu": 0, "rotary": 0, "rms_norm": 0}
    assert torch.equal(after[0], before[0]) and torch.equal(after[1], before[1])
    assert modeling_llama.apply_rotary_pos_emb is rope and modeling_llama.LlamaMLP.forward is mlp_forward
    assert not any("forward" in m.__dict__ for m in model.modules())
    with cpu_fused.fused_generation(model, enabled=False):
        assert modeling_llama.apply_rotary_pos_emb is rope
    n = cpu_fused.use_fused_elementwise(model)  # the training kernels' module classes are swapped too
    with cpu_fused.fused_generation(model):
        assert sum("forward" in m.__dict__ for m in model.modules()) == n
        assert torch.equal(run()[1], before[1])
    assert not any("forward" in m.__dict__ for m in model.modules())


def test_the_exact_rms_norm_sums_in_pytorchs_order_and_gives_its_bits(fused):
    """``rms_norm_exact`` reproduces at::sum's cascade over the vector width it found PyTorch's sum kernel to use
    (rows shorter than a vector, several vectors, the cascade's levels, odd tails), so its RMSNorm is
    transformers' to the bit; another width gives other sums (the probe can tell them apart)."""
    lanes = cpu_fused._sum_lanes()
    if lanes is None:
        assert torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512")  # x86 with AVX2: a width is found
        pytest.skip("no vector width gives PyTorch's sums here: generation keeps PyTorch's RMSNorm")
    g = torch.Generator().manual_seed(4)
    for d in (576, 64, 7, 33, 1000, 2051, 20000):
        for rows, scale in ((1, 1.0), (16, 30.0), (129, 1e-3)):
            norm = modeling_llama.LlamaRMSNorm(d, eps=1e-5).to(torch.bfloat16)
            with torch.no_grad():
                norm.weight.normal_(1, 0.2, generator=g)
                x = (torch.randn(rows, d, generator=g) * scale).to(torch.bfloat16)
                assert torch.equal(cpu_fused.rms_norm_exact(x, norm.weight, norm.variance_epsilon), norm(x))
                assert torch.equal(cpu_fused.rms_norm_exact(x[None], norm.weight, 1e-5), norm(x[None]))
    x = (torch.randn(64, 576, generator=g) * 30).to(torch.bfloat16)
    sums = {}
    for width in (16, 8):
        sums[width] = torch.empty(64)
        fused.sum_of_squares_bf16(x.data_ptr(), sums[width].data_ptr(), 64, 576, width)
    assert torch.equal(sums[lanes], x.float().pow(2).sum(-1)) and not torch.equal(sums[16], sums[8])
    w = torch.ones(576, dtype=torch.bfloat16)
    assert cpu_fused.rms_norm_exact(x.float(), w.float(), 1e-5) is None  # fp32: PyTorch's operations
    assert cpu_fused.rms_norm_exact(x.requires_grad_(), w, 1e-5) is None  # a graph being recorded: training's own


def _decode_case(b=5, kv_heads=3, groups=3, d=64, slots=37, seed=0):
    """A decoding step's query, a static cache's keys and values (bf16), and each sequence's key range."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, kv_heads, groups, d, generator=g).to(torch.bfloat16)
    k = (torch.randn(b, kv_heads, slots, d, generator=g) * 2).to(torch.bfloat16)
    v = torch.randn(b, kv_heads, slots, d, generator=g).to(torch.bfloat16)
    lo = torch.randint(0, slots // 2, (b,), generator=g).tolist()
    hi = [min(slots, a + 1 + int(torch.randint(0, slots // 2 + 1, (1,), generator=g))) for a in lo]
    return q, k, v, lo, hi


@pytest.mark.parametrize("groups,d", [(3, 64), (4, 256), (1, 128), (2, 8), (3, 40)])
def test_decode_attention_is_each_sequences_attention_on_its_keys(fused, groups, d):
    """The compiled decoding attention is softmax(q k^T / sqrt(d)) v over each sequence's own slots, for every
    query head that shares a key/value head: within one bf16 rounding of fp32 attention on the same bf16 inputs
    (the head sizes the kit's models use, unrolled, and others)."""
    q, k, v, lo, hi = _decode_case(groups=groups, d=d)
    scale = d ** -0.5
    out = cpu_fused.decode_attention(q, k, v, cpu_fused.decode_bounds(lo, hi), scale)
    assert out is not None and out.dtype == torch.bfloat16 and out.shape == q.shape
    for i, (a, z) in enumerate(zip(lo, hi)):
        ref = torch.nn.functional.scaled_dot_product_attention(q[i].float(), k[i, :, a:z].float(), v[i, :, a:z].float(),
                                                               scale=scale)
        torch.testing.assert_close(out[i].float(), ref, rtol=2 ** -8, atol=1e-5)


def test_decode_attention_gives_a_sequence_the_same_bits_in_any_batch(fused):
    """A sequence's result does not depend on its batch: alone or among others, at another offset in a longer
    cache, on one thread or two, the same bits (what batch-invariant greedy generation needs)."""
    q, k, v, lo, hi = _decode_case(b=6, slots=300, seed=1)
    scale = 0.125
    batched = cpu_fused.decode_attention(q, k, v, cpu_fused.decode_bounds(lo, hi), scale)
    threads = torch.get_num_threads()
    try:
        for n_threads in (1, 2):
            torch.set_num_threads(n_threads)
            for i, (a, z) in enumerate(zip(lo, hi)):
                shift = 17 + i  # the same keys later in a longer cache, in a batch of one
                k2 = torch.zeros(1, 3, 340, 64, dtype=torch.bfloat16)
                v2 = torch.zeros_like(k2)
                k2[0, :, a + shift:z + shift], v2[0, :, a + shift:z + shift] = k[i, :, a:z], v[i, :, a:z]
                alone = cpu_fused.decode_attention(q[i:i + 1], k2, v2, cpu_fused.decode_bounds([a + shift], [z + shift]),
                                                 scale)
                assert torch.equal(alone[0], batched[i])
            two = cpu_fused.decode_attention(q[:2], k[:2], v[:2], cpu_fused.decode_bounds(lo[:2], hi[:2]), scale)
            assert torch.equal(two, batched[:2])
    finally:
        torch.set_num_threads(threads)


def test_decode_attention_declines_what_it_does_not_take(fused):
    """None (the caller then runs SDPA) for fp32 or fp16, a graph being recorded, more than 16 query heads per
    key/value head, heads over 512, keys not contiguous in their last dimension, a key range off the cache or
    reversed, or bounds of another dtype or shape."""
    q, k, v, lo, hi = _decode_case()
    bounds = cpu_fused.decode_bounds(lo, hi)
    assert cpu_fused.decode_attention(q, k, v, bounds, 0.125) is not None
    assert cpu_fused.decode_attention(q.float(), k.float(), v.float(), bounds, 0.125) is None
    assert cpu_fused.decode_attention(q.half(), k.half(), v.half(), bounds, 0.125) is None
    assert cpu_fused.decode_attention(q.clone().requires_grad_(), k, v, bounds, 0.125) is None
    many = _decode_case(groups=17)[0]
    assert cpu_fused.decode_attention(many, k, v, bounds, 0.125) is None
    wide = _decode_case(d=520)
    assert cpu_fused.decode_attention(*wide[:3], cpu_fused.decode_bounds(*wide[3:]), 0.125) is None
    assert cpu_fused.decode_attention(q, k.transpose(2, 3).contiguous().transpose(2, 3), v, bounds, 0.125) is None
    for bad_lo, bad_hi in ((lo, [h + 100 for h in hi]), ([-1] + lo[1:], hi), (hi, lo)):
        assert cpu_fused.decode_attention(q, k, v, cpu_fused.decode_bounds(bad_lo, bad_hi), 0.125) is None
    assert cpu_fused.decode_attention(q, k, v, bounds.int(), 0.125) is None
    assert cpu_fused.decode_attention(q, k, v, bounds[:, :3], 0.125) is None


def test_batch_invariant_decoding_runs_the_kernel_and_sdpa_for_a_row_with_gaps(fused, monkeypatch):
    """Inside ``batch_invariant`` a bf16 decoding step's attention is the compiled kernel, one call for the batch;
    a row whose keys have gaps (a mask with holes) is redone by SDPA with its mask. Generation with the kernels off
    (``INSTRUCTLAB_CPU_FUSED=0``) takes SDPA for every row, and is batch-invariant too."""
    from types import SimpleNamespace

    from instructlab import cpu_kernels
    from instructlab.generate import generate_answers, generate_one_by_one
    from test_generate import CONVS, varied_tiny

    q, k, v, _, _ = _decode_case(b=3, slots=20, seed=2)
    mask = torch.zeros(3, 1, 1, 20, dtype=torch.bool)
    mask[0, ..., 4:15] = True                       # left padding, then the keys so far
    mask[1, ..., 2:15] = True
    mask[1, ..., 6] = False                         # a hole: SDPA with the mask
    mask[2, ..., 0:15] = True
    query = q.reshape(3, 9, 1, 64)
    out, _ = cpu_kernels.invariant_attention_forward(SimpleNamespace(is_causal=True), query, k, v, mask, scaling=0.125)
    assert out.shape == (3, 1, 9, 64)
    kernel = cpu_fused.decode_attention(q, k, v, cpu_fused.decode_bounds([4, 2, 0], [15, 15, 15]), 0.125)
    assert torch.equal(out[0, 0], kernel[0].reshape(9, 64)) and torch.equal(out[2, 0], kernel[2].reshape(9, 64))
    holes = torch.nn.functional.scaled_dot_product_attention(q[1:2], k[1:2, :, 2:15], v[1:2, :, 2:15],
                                                             attn_mask=mask[1:2, :, :, 2:15], scale=0.125)
    assert torch.equal(out[1, 0], holes[0].reshape(9, 64))

    tok, m = models.load_tokenizer("tiny-random"), varied_tiny("bfloat16")
    calls = _count_kernel_calls(monkeypatch, {"decode": "decode_attention"})
    assert all(generate_answers(m, tok, CONVS, max_new_tokens=8, batch_size=3, progress=False))
    assert calls["decode"] > 0
    monkeypatch.setenv(cpu_fused.DISABLE_ENV, "0")
    seen = calls["decode"]
    single = generate_one_by_one(m, tok, CONVS, max_new_tokens=8)
    assert generate_answers(m, tok, CONVS, max_new_tokens=8, batch_size=3, progress=False) == single
    assert calls["decode"] == seen  # the kernels off: not one decoding step ran it


# ----------------------------------------------------------------------------- bf16 linear layers on AMX tiles

@pytest.mark.parametrize("n_in, n_out", [(576, 576), (576, 192), (1536, 576), (640, 2048), (32, 64)])
def test_amx_linear_gives_f_linears_bits_at_a_decoding_steps_rows(n_in, n_out):
    if not cpu_fused.amx_matches_plain():
        pytest.skip("no AMX kernel here (not an AMX CPU, kernels off, or not F.linear's bits)")
    g = torch.Generator().manual_seed(n_in + n_out)
    w = (torch.randn(n_out, n_in, generator=g) * torch.rand(n_out, 1, generator=g)).to(torch.bfloat16)
    assert cpu_fused.amx_fits(w)
    packed = cpu_fused.amx_pack(w)
    x = (torch.randn(16, n_in, generator=g) * 4).to(torch.bfloat16)
    for rows in (1, 2, 5, 16):
        assert torch.equal(cpu_fused.amx_linear(x[:rows], packed), torch.nn.functional.linear(x[:rows], w))
    # a row's bits do not depend on the other rows of its call
    assert torch.equal(cpu_fused.amx_linear(x[3:4], packed)[0], cpu_fused.amx_linear(x, packed)[3])


def test_amx_linear_takes_only_what_it_was_built_for():
    w = torch.randn(128, 64).to(torch.bfloat16)
    # shapes, dtype and bias it does not take, on any machine
    assert not cpu_fused.amx_fits(torch.randn(96, 64).to(torch.bfloat16))      # out_features not a multiple of 64
    assert not cpu_fused.amx_fits(torch.randn(128, 48).to(torch.bfloat16))     # in_features not a multiple of 32
    assert not cpu_fused.amx_fits(w.float()) and not cpu_fused.amx_fits(w, bias=torch.zeros(128))
    if not cpu_fused.amx_matches_plain():
        assert not cpu_fused.amx_fits(w)  # and nothing at all where the kernel does not run
        return
    packed = cpu_fused.amx_pack(w)
    assert cpu_fused.amx_linear(torch.randn(17, 64).to(torch.bfloat16), packed) is None  # 17 rows: not 16k
    assert cpu_fused.amx_linear(torch.randn(4, 64), packed) is None                      # fp32 rows
    assert cpu_fused.amx_linear(torch.randn(32, 64).to(torch.bfloat16), packed).shape == (32, 128)
